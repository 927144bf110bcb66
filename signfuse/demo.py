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
import os
import time
from pathlib import Path

import torch

DATASET = "Synthetic"

# The budget. One torch thread: on 2 cores the batches are too small for a second thread to
# pay (and it slows everything down as soon as anything else runs).
# The data: 8 signs, all of them in the 4 pairs (4 keypoint patterns, each shared by two words),
# so that a few minutes of CPU training show what the descriptions bring; the generator's other
# defaults (30-90 frames, 80 % of the samples described, 3 invalid files) are kept, and
# ``signfuse make-synthetic --samples N --seed S --n_signs 8 --split 0.6,0.1,0.3`` writes the
# same data. A large test split (240 videos): the table's scores move little with the seed.
# text_dropout_sample_p: the gated run also trains on samples with every description dropped,
# so that it still translates (nearly) as well as pose-only when a video comes without any.
FULL = dict(samples=800, split=(0.6, 0.1, 0.3), n_signs=8, n_pairs=4, epochs=20, batch_size=16, max_length=16, lr=2e-3,
            warmup_epochs=0.5, label_smoothing=0.1, text_dropout_sample_p=0.1, num_beams=1,
            max_new_tokens=16, threads=1)
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
             "--epochs", str(s["epochs"]), "--lr", str(s["lr"]), "--label_smoothing", str(s["label_smoothing"]),
             "--warmup-epochs", str(s["warmup_epochs"]), "--max_length", str(s["max_length"]),
             "--num_beams", str(s["num_beams"]), "--max_new_tokens", str(s["max_new_tokens"]),
             "--eval_every_epochs", str(s["epochs"])]
    if gated:
        flags += ["--use_descriptions", "--text_fusion_type", "gating",
                  "--text_dropout_sample_p", str(s["text_dropout_sample_p"])]
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


def _train_and_evaluate(key: str, flags: list, eval_flags: list, threads: int, quiet: bool) -> dict:
    """One of the two runs: train, evaluate on dev and test, count parameters. Runs in a
    worker process when the demo trains the two models side by side."""
    from signfuse.training import run
    torch.set_num_threads(threads)
    with _quiet(quiet):
        t0 = time.time()
        run.train(parse_run_args(flags))
        train_s = time.time() - t0
        t0 = time.time()
        results = run.evaluate(parse_run_args(eval_flags))
        eval_s = time.time() - t0
        params = run.count_parameters(build_model(parse_run_args(flags)))
    return {"key": key, "results": json.loads(json.dumps(results, default=float)), "train_s": train_s,
            "eval_s": eval_s, "parameters": params[0], "fusion_parameters": params[1]}


def _run_both(jobs: list, workers: int, threads: int, quiet: bool) -> dict:
    """{key: _train_and_evaluate(...)} of every job, ``workers`` at a time (separate processes
    when more than one: each trains on its own core)."""
    if workers <= 1:
        with _threads(threads):
            return {job[0]: _train_and_evaluate(*job, threads, quiet) for job in jobs}
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_train_and_evaluate, *job, threads, quiet) for job in jobs]
        return {done["key"]: done for done in (f.result() for f in futures)}


def default_workers() -> int:
    """Two processes (one per model) when the machine has two cores or more."""
    return 2 if (os.cpu_count() or 1) >= 2 else 1


def run_demo(out_dir="signfuse_demo", quick: bool = False, seed: int = 0, device: str = "cpu",
             workers: int = None, verbose: bool = False, echo=print, **overrides) -> dict:
    """Make the data, train and evaluate pose-only and gated, print the table; return
    ``{"rows": {row: {column: value}}, "table", "gate_plot", "commands", "settings", "times"}``
    (also written to ``<out_dir>/demo_results.json``).

    ``workers``: processes training the two models side by side (default: 2 on a machine with
    two cores or more, else 1). ``overrides``: any key of ``FULL``.
    """
    from signfuse.data.synthetic import make_synthetic

    s = settings(quick, **overrides)
    workers = default_workers() if workers is None else max(1, int(workers))
    out = Path(out_dir)
    data = out / "data"
    t_start = time.time()
    summary = make_synthetic(data, samples=s["samples"], seed=seed, n_signs=s["n_signs"],
                             n_pairs=s["n_pairs"], split=s["split"], overwrite=True)
    echo(f"data: {summary['splits']['train']} train / {summary['splits']['dev']} dev / "
         f"{summary['splits']['test']} test videos of {len(summary['words'])} signs in {data}; "
         f"pairs told apart only by descriptions: " + ", ".join("/".join(p) for p in summary["pairs"]))
    jobs, commands = [], {}
    for key, gated in (("pose_only", False), ("gated", True)):
        flags = run_flags(data, out / key, s, seed, gated, device)
        eval_flags = run_flags(data, out / key / "eval", s, seed, gated, device)
        eval_flags += ["--finetune", str(out / key / "best_checkpoint.pth")]
        eval_flags += ["--eval_descriptions", "both"] if gated else []
        jobs.append((key, flags, eval_flags))
        commands[key] = ["signfuse train " + " ".join(flags), "signfuse eval " + " ".join(eval_flags)]
    echo(f"training pose-only and gated ({s['epochs']} epochs of {summary['splits']['train']} samples, "
         f"batch {s['batch_size']}, same seed {seed}) "
         + ("side by side in 2 processes" if workers > 1 else "one after the other") + " ...")
    done = _run_both(jobs, workers, s["threads"], quiet=not verbose)
    rows = {}
    for key, tags in (("pose_only", [("", ROWS[0])]), ("gated", [("", ROWS[1]), ("_nodesc", ROWS[2])])):
        ev = out / key / "eval"
        for tag, row in tags:
            r = done[key]["results"]["test" + tag]
            rows[row] = {"BLEU-4": r["bleu4"], "ROUGE-L": r["rouge"],
                         "paired words %": paired_word_accuracy(ev / f"test{tag}_tmp_pres.txt",
                                                                ev / f"test{tag}_tmp_refs.txt", summary["pairs"]),
                         "train time (s)": done[key]["train_s"], "parameters": done[key]["parameters"]}
    gate_plot = _plot_one_gate(out, data)
    times = {"total": time.time() - t_start,
             **{f"{step}_{key}": done[key][f"{step}_s"] for key in done for step in ("train", "eval")}}
    table = format_table(rows)
    echo("")
    echo(f"test split ({summary['splits']['test']} videos); greedy decoding; BLEU-4 and ROUGE-L in %; "
         f"paired words %: share of the reference's paired words ({', '.join('/'.join(p) for p in summary['pairs'])}) "
         f"that the translation contains")
    echo(table)
    echo(f"gated - pose-only: BLEU-4 {rows[ROWS[1]]['BLEU-4'] - rows[ROWS[0]]['BLEU-4']:+.2f}; "
         f"gated with descriptions off - pose-only: BLEU-4 {rows[ROWS[2]]['BLEU-4'] - rows[ROWS[0]]['BLEU-4']:+.2f}")
    echo(f"gate plot: {gate_plot}")
    echo(f"total time: {times['total']:.0f} s")
    echo("")
    echo("reproduce:")
    synth = f"signfuse make-synthetic --out {data} --samples {s['samples']} --seed {seed}"
    synth += f" --n_signs {s['n_signs']} --n_pairs {s['n_pairs']} --split {','.join(map(str, s['split']))}"
    echo("  " + synth)
    for key in ("pose_only", "gated"):
        for cmd in commands[key]:
            echo("  " + cmd)
    echo(f"  signfuse plot-gates --gates {out / 'gated' / 'eval' / 'test_gates.npz'} "
         f"--sample {gate_plot.stem[len('gate_'):]} --desc_dir {data / 'description' / DATASET} --out {gate_plot}")
    result = {"rows": rows, "table": table, "gate_plot": str(gate_plot), "settings": s, "seed": seed,
              "workers": workers, "times": times, "commands": {"data": synth, **commands},
              "results": {k: v["results"] for k, v in done.items()}}
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
    run_demo(args.out, quick=args.quick, seed=args.seed, device=args.device, workers=args.workers,
             verbose=args.verbose, samples=args.samples, epochs=args.epochs, threads=args.threads)


def register(sub) -> None:
    sp = sub.add_parser("demo", help="generate synthetic data, train pose-only and gated models, compare",
                        description="Generate the synthetic benchmark, fine-tune the pose-only and the "
                                    "gated model from the same initial weights on CPU, evaluate both, "
                                    "print the comparison and save a gate plot (about 3 minutes on 2 "
                                    "cores; --quick: under a minute).")
    sp.add_argument("--out", default="signfuse_demo", help="output folder (data, runs, table, plot)")
    sp.add_argument("--quick", action="store_true", help="smaller data and fewer epochs (CI)")
    sp.add_argument("--seed", type=int, default=0, help="seed of the data and of both runs")
    sp.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    sp.add_argument("--samples", type=int, default=None, help=f"videos to generate (default: {FULL['samples']}, --quick {QUICK['samples']})")
    sp.add_argument("--epochs", type=int, default=None, help=f"training epochs (default: {FULL['epochs']}, --quick {QUICK['epochs']})")
    sp.add_argument("--threads", type=int, default=None, help="torch CPU threads per process (default 1)")
    sp.add_argument("--workers", type=int, default=None,
                    help="processes training the two models side by side (default: 2 with two cores or more)")
    sp.add_argument("--verbose", action="store_true", help="show the runs' own logs and progress bars")
    sp.set_defaults(func=cmd_demo)
