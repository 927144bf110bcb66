"""``signfuse demo``: the whole product in a few minutes on a laptop CPU, with no download.

1. ``make_synthetic`` writes the synthetic benchmark (``<out>/data``): a small sign language
   in which 4 pairs of words (happy/sad, big/small, hot/cold, yes/no) share exactly the same
   keypoints and differ only by a facial cue that the sparse action descriptions state.
2. Two runs of the real training pipeline (``signfuse.training.run.train``), with the tiny
   mT5 (``--mt5_model tiny``, random weights) and the same ``--seed``, hence the same initial
   pose-encoder and mT5 weights, the same batches and the same number of steps:
   ``pose-only`` (Uni-Sign) and ``gated`` (``--use_descriptions --text_fusion_type gating``).
3. Both evaluated on the test split (``run.evaluate``; the gated one also with every
   description masked, ``--eval_descriptions both``), with greedy decoding (``--num_beams 1``).
4. A table (BLEU-4, ROUGE-L, share of the paired words recovered, train time, parameters),
   the gate plot of one test sample, and the commands that reproduce each number.

Without descriptions a model can at best guess between the two members of a pair; the gated
model reads the cue. ``run_demo`` returns the numbers as a dict.
"""
import contextlib
import json
import time
from pathlib import Path

import torch

DATASET = "Synthetic"

# The budget. One torch thread: on 2 cores the batches are too small for a second thread to
# pay (and it slows everything down as soon as anything else runs). The generator keeps its
# defaults (16 signs, 4 pairs, 30-90 frames, 80 % of the samples described), so
# ``signfuse make-synthetic --samples N --seed S`` writes the same data.
FULL = dict(samples=600, epochs=5, batch_size=16, max_length=32, lr=3e-3, warmup_epochs=0.5,
            num_beams=1, max_new_tokens=16, threads=1)
QUICK = dict(FULL, samples=240, epochs=3)

ROWS = ("pose-only", "gated (descriptions)", "gated (descriptions off)")
COLUMNS = ("BLEU-4", "ROUGE-L", "paired words %", "train time (s)", "parameters")


def settings(quick: bool = False, **overrides) -> dict:
    """The demo's budget (``QUICK`` or ``FULL``), with ``overrides`` (None values ignored)."""
    s = dict(QUICK if quick else FULL)
    unknown = set(overrides) - set(s)
    if unknown:
        raise TypeError(f"unknown demo settings: {sorted(unknown)}")
    s.update({k: v for k, v in overrides.items() if v is not None})
    return s


def run_flags(data_dir, output_dir, s: dict, seed: int, gated: bool, device: str = "cpu") -> list:
    """The ``signfuse train`` flags of one of the two runs (the two differ only by the
    description flags). ``signfuse eval`` takes the same flags plus ``--finetune``."""
    data_dir = Path(data_dir)
    flags = ["--mt5_model", "tiny", "--dataset", DATASET, "--data_root", str(data_dir),
             "--desc_dir", str(data_dir / "description"), "--output_dir", str(output_dir),
             "--seed", str(seed), "--device", device, "--num_workers", "0",
             "--batch-size", str(s["batch_size"]), "--gradient-accumulation-steps", "1",
             "--epochs", str(s["epochs"]), "--lr", str(s["lr"]),
             "--warmup-epochs", str(s["warmup_epochs"]), "--max_length", str(s["max_length"]),
             "--num_beams", str(s["num_beams"]), "--max_new_tokens", str(s["max_new_tokens"]),
             "--eval_every_epochs", str(s["epochs"])]
    if gated:
        flags += ["--use_descriptions", "--text_fusion_type", "gating"]
    return flags


def parse_run_args(flags: list):
    from signfuse.cli import run_parser
    return run_parser().parse_args(flags)


def build_model(args):
    """The run's model (with its text source), on ``args.device``."""
    from signfuse.training import distributed as D
    from signfuse.training import run
    info = D.DistInfo(device=torch.device(args.device or "cpu"))
    model, _ = run.build_run_model(args, info, log=lambda *_: None)
    return model


@torch.no_grad()
def heldout_loss(model, args, split: str = "test", descriptions_off: bool = False) -> float:
    """Teacher-forced loss (the training loss, label smoothing included) of ``model`` in eval
    mode over ``split``, averaged over target tokens."""
    from signfuse.training import distributed as D
    from signfuse.training import run
    from signfuse.training.engine import to_device
    describer = run.build_describer(args)
    ds = run.build_dataset(args, split, train=False, describer=describer)
    loader = run.build_loader(ds, args, D.DistInfo(device=torch.device("cpu")), train=False)
    model.eval()
    device = next(model.parameters()).device
    total, tokens = 0.0, 0
    for batch in loader:
        if not batch["names"]:
            continue
        batch = to_device(batch, device)
        out = model(batch, descriptions_off=descriptions_off) if model.cfg.use_descriptions else model(batch)
        n = int((model.tokenize_targets(batch["targets"]) != -100).sum())
        total += float(out["loss"]) * n
        tokens += n
    return total / max(1, tokens)


def paired_word_accuracy(pred_file, ref_file, pairs) -> float:
    """Share (%) of the paired words of the references that the predictions contain (counts
    clipped per sample): the words that only the descriptions tell apart."""
    from signfuse.metrics import read_results
    paired = {w for pair in pairs for w in pair}
    preds, refs = read_results(pred_file, "prediction"), read_results(ref_file, "ground-truth")
    hit = total = 0
    for name, ref in refs.items():
        ref_words, pred_words = ref.split(), preds.get(name, "").split()
        for w in set(ref_words) & paired:
            total += ref_words.count(w)
            hit += min(ref_words.count(w), pred_words.count(w))
    return 100.0 * hit / max(1, total)


@contextlib.contextmanager
def _threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _quiet(enabled: bool):
    """Silence the runs' own logging (their run.txt still has it)."""
    if not enabled:
        yield
        return
    import io
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def run_demo(out_dir="signfuse_demo", quick: bool = False, seed: int = 0, device: str = "cpu",
             verbose: bool = False, echo=print, **overrides) -> dict:
    """Make the data, train and evaluate pose-only and gated, print the table; return
    ``{"rows": {row: {column: value}}, "gate_plot", "commands", "settings", "times"}``.

    ``overrides``: any key of ``FULL`` (samples, epochs, batch_size, max_length, lr,
    warmup_epochs, num_beams, max_new_tokens, threads).
    """
    from signfuse.data.synthetic import make_synthetic
    from signfuse.training import run

    s = settings(quick, **overrides)
    out = Path(out_dir)
    data = out / "data"
    t_start = time.time()
    with _threads(s["threads"]):
        summary = make_synthetic(data, samples=s["samples"], seed=seed, overwrite=True)
        echo(f"data: {summary['splits']['train']} train / {summary['splits']['dev']} dev / "
             f"{summary['splits']['test']} test videos of {len(summary['words'])} signs in {data}; "
             f"pairs told apart only by descriptions: "
             + ", ".join("/".join(p) for p in summary["pairs"]))
        rows, times, commands, params = {}, {}, {}, {}
        for key, gated in (("pose_only", False), ("gated", True)):
            flags = run_flags(data, out / key, s, seed, gated, device)
            args = parse_run_args(flags)
            echo(f"training {key.replace('_', '-')} ({s['epochs']} epochs of "
                 f"{summary['splits']['train']} samples, batch {s['batch_size']}) ...")
            t0 = time.time()
            with _quiet(not verbose):
                run.train(args)
            times[f"train_{key}"] = time.time() - t0
            ckpt = out / key / "best_checkpoint.pth"
            eval_flags = [f if f != str(out / key) else str(out / key / "eval") for f in flags]
            eval_flags += ["--finetune", str(ckpt)] + (["--eval_descriptions", "both"] if gated else [])
            t0 = time.time()
            with _quiet(not verbose):
                results = run.evaluate(parse_run_args(eval_flags))
            times[f"eval_{key}"] = time.time() - t0
            params[key] = run.count_parameters(build_model(parse_run_args(flags)))[0]
            commands[key] = (["signfuse train"] + flags, ["signfuse eval"] + eval_flags)
            tags = [("", ROWS[1] if gated else ROWS[0])] + ([("_nodesc", ROWS[2])] if gated else [])
            for tag, row in tags:
                r = results["test" + tag]
                ev = out / key / "eval"
                rows[row] = {
                    "BLEU-4": r["bleu4"], "ROUGE-L": r["rouge"],
                    "paired words %": paired_word_accuracy(ev / f"test{tag}_tmp_pres.txt",
                                                           ev / f"test{tag}_tmp_refs.txt", summary["pairs"]),
                    "train time (s)": times[f"train_{key}"], "parameters": params[key]}
        gate_plot = _plot_one_gate(out, data)
    times["total"] = time.time() - t_start
    table = format_table(rows)
    echo("")
    echo(f"test split ({summary['splits']['test']} videos), same seed ({seed}), same steps; "
         f"greedy decoding; BLEU-4 and ROUGE-L in %:")
    echo(table)
    echo(f"gated - pose-only: BLEU-4 {rows[ROWS[1]]['BLEU-4'] - rows[ROWS[0]]['BLEU-4']:+.2f}; "
         f"gated with descriptions off - pose-only: "
         f"{rows[ROWS[2]]['BLEU-4'] - rows[ROWS[0]]['BLEU-4']:+.2f}")
    echo(f"gate plot: {gate_plot}")
    echo(f"total time: {times['total']:.0f} s")
    echo("")
    echo("reproduce:")
    echo(f"  signfuse make-synthetic --out {data} --samples {s['samples']} --seed {seed}")
    for key in ("pose_only", "gated"):
        for cmd in commands[key]:
            echo("  " + " ".join(cmd))
    echo(f"  signfuse plot-gates --gates {out / 'gated' / 'eval' / 'test_gates.npz'} "
         f"--sample {gate_plot.stem.split('gate_')[-1]} --desc_dir {data / 'description' / DATASET} "
         f"--out {gate_plot}")
    result = {"rows": rows, "table": table, "gate_plot": str(gate_plot), "settings": s, "seed": seed,
              "times": times, "commands": {k: [" ".join(c) for c in v] for k, v in commands.items()}}
    (out / "demo_results.json").write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    return result


def _plot_one_gate(out: Path, data: Path) -> Path:
    """Draw the gate of the first test sample with a paired word and descriptions."""
    from signfuse.data.descriptions import DescriptionLoader
    from signfuse.plotting import load_gates, plot_gate
    gates = load_gates(out / "gated" / "eval" / "test_gates.npz")
    loader = DescriptionLoader(data / "description" / DATASET)
    cues = {"mouth", "cheeks", "lips", "eyebrows", "head"}
    chosen, texts = None, None
    for name in sorted(gates):
        t, _ = loader.load(name)
        if gates[name]["has_description"].sum() > 0:
            if chosen is None:
                chosen, texts = name, t
            if any(str(v).split()[0] in cues for v in t.values()):
                chosen, texts = name, t
                break
    return plot_gate(gates[chosen], chosen, out / f"gate_{chosen}.png", texts)


def format_table(rows: dict) -> str:
    """The result table: one line per row of ``ROWS``, the columns of ``COLUMNS``."""
    width = max(len(r) for r in ROWS)
    head = f"{'model':<{width}}  " + "  ".join(f"{c:>14}" for c in COLUMNS)
    lines = [head, "-" * len(head)]
    for row in ROWS:
        v = rows[row]
        cells = [f"{v['BLEU-4']:14.2f}", f"{v['ROUGE-L']:14.2f}", f"{v['paired words %']:14.1f}",
                 f"{v['train time (s)']:14.1f}", f"{v['parameters']:14,d}"]
        lines.append(f"{row:<{width}}  " + "  ".join(cells))
    return "\n".join(lines)


def cmd_demo(args) -> None:
    run_demo(args.out, quick=args.quick, seed=args.seed, device=args.device, verbose=args.verbose,
             samples=args.samples, epochs=args.epochs, threads=args.threads)


def register(sub) -> None:
    sp = sub.add_parser("demo", help="generate synthetic data, train pose-only and gated models, compare",
                        description="Generate the synthetic benchmark, fine-tune the pose-only and the "
                                    "gated model from the same initial weights on CPU, evaluate both, "
                                    "print the comparison and save a gate plot (about 3 minutes; "
                                    "--quick: about 1 minute).")
    sp.add_argument("--out", default="signfuse_demo", help="output folder (data, runs, table, plot)")
    sp.add_argument("--quick", action="store_true", help="smaller data and fewer epochs (CI)")
    sp.add_argument("--seed", type=int, default=0, help="seed of the data and of both runs")
    sp.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    sp.add_argument("--samples", type=int, default=None, help="videos to generate (default: 600, --quick 240)")
    sp.add_argument("--epochs", type=int, default=None, help="training epochs (default: 5, --quick 3)")
    sp.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 1)")
    sp.add_argument("--verbose", action="store_true", help="show the runs' own logs and progress bars")
    sp.set_defaults(func=cmd_demo)
