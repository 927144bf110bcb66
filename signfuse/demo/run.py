"""``signfuse demo``: the whole product in a few minutes on a laptop CPU, with no download.

1. ``make_synthetic`` writes the synthetic benchmark (``<out>/data``): a small sign language
   in which 4 pairs of words (happy/sad, big/small, hot/cold, yes/no) share exactly the same
   keypoints and differ only by a facial cue that the sparse action descriptions state.
2. Three runs of the real training pipeline (``signfuse.training.run.train``), with the tiny
   mT5 (``--mt5_model tiny``, random weights) and the same ``--seed``, hence the same initial
   pose-encoder and mT5 weights, the same batches and the same number of steps:
   ``pose-only`` (Uni-Sign), ``gated`` (``--use_descriptions --text_fusion_type gating``,
   phase 1) and ``cross-attention`` (``--text_fusion_type cross_attn``, phase 2).
3. All evaluated on the test split (``run.evaluate``; the two fusions also with every
   description masked, ``--eval_descriptions both``), with greedy decoding (``--num_beams 1``).
4. A table (BLEU-4, ROUGE-L, share of the paired words recovered, train time, parameters),
   the mean gate per alignment kind, the gate plot of one test sample (with and without its
   descriptions), the gate distribution over the test split, and the commands that reproduce
   each number. ``--results FILE`` also writes the figures with the commit, the CPU and the
   torch version (docs/results/demo-<seed>.json).

Without descriptions a model can at best guess between the two members of a pair; the fused
models read the cue. ``run_demo`` returns the numbers as a dict.
"""
import contextlib
import io
import json
import multiprocessing
import os
import platform
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from signfuse.data.dataset import collate_fn
from signfuse.demo.synthetic import make_synthetic
from signfuse.demo.synthetic_video import write_videos
from signfuse.describe.describer import build_describer, folder_describer
from signfuse.flags import run_parser
from signfuse.inference.plotting import (
    frame_kinds,
    gate_summary,
    load_gates,
    plot_gate,
    plot_gate_summary,
)
from signfuse.metrics import read_results
from signfuse.training import distributed as D
from signfuse.training import inputs, model_setup, run
from signfuse.training.engine import to_device

DATASET = "Synthetic"

# The budget. One torch thread: on 2 cores the batches are too small for a second thread to
# pay (and it slows everything down as soon as anything else runs).
# The data: 8 signs, all of them in the 4 pairs (4 keypoint patterns, each shared by two words),
# so that a few minutes of CPU training show what the descriptions bring; the generator's other
# defaults (30-90 frames, 80 % of the samples described, 3 invalid files) are kept, and
# ``signfuse make-synthetic --samples 3000 --seed S --n_signs 8 --split_fractions 0.16,0.04,0.8`` writes
# the same data: 480 training videos and a test split of 2,400. Its size is what makes the table
# a measurement: the models are near chance on which member of a pair was signed, and one
# pose-only model scores 4-10 BLEU-4 apart on different 240-video test splits (docs/gate.md;
# training with another --seed moves it by up to 5 even on 2,400). Decoding 2,400 videos takes
# ~10 s a path.
# The path without descriptions is trained explicitly (docs/gate.md): text dropout drops
# single frames' and whole samples' descriptions, and every step also takes the loss of the
# same batch with every description masked (--desc_off_loss), so that the fused models still
# translate about as well as pose-only when a video comes without any. The gated model also
# trains the description predictor and its path (--desc_predicted_loss 1: the loss with every
# frame reading the predictions) and keeps the off loss at 1 (2 beside the predicted loss made
# every path worse); cross-attention, without a predictor, takes 2 (at 1 its off path fell 3.3
# below pose-only on seed 3; at 2 it is within 2.0 on seeds 0-4). docs/predictor.md and
# docs/gate.md have the measurements.
FULL = dict(samples=3000, split=(0.16, 0.04, 0.8), n_signs=8, n_pairs=4, epochs=20, batch_size=16, max_length=16, lr=2e-3,
            warmup_epochs=0.5, label_smoothing=0.1, text_dropout_p=0.1, text_dropout_sample_p=0.1, desc_off_loss=1.0,
            cross_attn_desc_off_loss=2.0,
            num_beams=1, max_new_tokens=16, threads=1,
            desc_distill_weight=1.0, desc_predictor_hidden=256, desc_distill_loss="contrastive", desc_predicted_p=0.0,
            desc_predicted_loss=1.0, desc_predicted_indicator=False,
            cue_amplitude=0.04)
# The split the demo had before its test split grew (480 / 80 / 240 of 800 videos): --quick and
# the benchmarks measured with it (describe_helps.py, gate_variants.py) keep it.
SPLIT_800 = (0.6, 0.1, 0.3)
QUICK = dict(FULL, samples=240, split=SPLIT_800, epochs=3)

# (key, --text_fusion_type or None, table name), in the table's order; the runs start longest first
MODELS = (("pose_only", None, "pose-only"), ("gated", "gating", "gated"), ("cross_attn", "cross_attn", "cross-attention"))
ROWS = ("pose-only", "gated (descriptions)", "gated (descriptions predicted)", "gated (descriptions off)",
        "cross-attention (descriptions)", "cross-attention (descriptions off)")
COLUMNS = ("BLEU-4", "ROUGE-L", "paired words %", "train time (s)", "parameters")
KIND_ORDER = ("exact", "interpolated", "nearest", "undescribed")


def settings(quick: bool = False, **overrides) -> dict:
    """The demo's budget (``QUICK`` or ``FULL``), with ``overrides`` (None values ignored)."""
    s = dict(QUICK if quick else FULL)
    unknown = set(overrides) - set(s)
    if unknown:
        raise TypeError(f"unknown demo settings: {sorted(unknown)}")
    s.update({k: v for k, v in overrides.items() if v is not None})
    return s


def run_flags(data_dir, output_dir, s: dict, seed: int, fusion=None, device: str = "cpu",
              predictor: bool = False) -> list:
    """The ``signfuse train`` flags of one run; ``fusion``: None/False (pose-only), True
    ("gating") or a ``--text_fusion_type``; ``predictor``: with the description predictor
    (``s["desc_distill_weight"]`` and its settings). The runs differ only by the description flags.
    ``signfuse eval`` takes the same flags plus ``--finetune``."""
    data_dir = Path(data_dir)
    flags = ["--mt5_model", "tiny", "--dataset", DATASET, "--data_root", str(data_dir),
             "--desc_dir", str(data_dir / "description"), "--output_dir", str(output_dir),
             "--seed", str(seed), "--device", device, "--num_workers", "0",
             "--batch-size", str(s["batch_size"]), "--gradient-accumulation-steps", "1",
             "--epochs", str(s["epochs"]), "--lr", str(s["lr"]), "--label_smoothing", str(s["label_smoothing"]),
             "--warmup-epochs", str(s["warmup_epochs"]), "--max_length", str(s["max_length"]),
             "--num_beams", str(s["num_beams"]), "--max_new_tokens", str(s["max_new_tokens"]),
             "--eval_every_epochs", str(s["epochs"])]
    if fusion:
        flags += ["--use_descriptions", "--text_fusion_type", "gating" if fusion is True else str(fusion),
                  "--text_dropout_p", str(s["text_dropout_p"]),
                  "--text_dropout_sample_p", str(s["text_dropout_sample_p"])]
        off = s["cross_attn_desc_off_loss"] if fusion == "cross_attn" else s["desc_off_loss"]
        flags += ["--desc_off_loss", str(off)] if off else []
    if fusion and predictor and s.get("desc_distill_weight"):
        flags += ["--desc_distill_weight", str(s["desc_distill_weight"]),
                  "--desc_predictor_hidden", str(s["desc_predictor_hidden"]),
                  "--desc_distill_loss", s["desc_distill_loss"], "--desc_predicted_p", str(s["desc_predicted_p"]),
                  "--desc_predicted_loss", str(s["desc_predicted_loss"])]
        flags += ["--desc_predicted_indicator"] if s.get("desc_predicted_indicator") else []
    return flags


def parse_run_args(flags: list):
    return run_parser().parse_args(flags)


def run_model(args):
    """The run's model (with its text source), on ``args.device``."""
    info = D.DistInfo(device=torch.device(args.device or "cpu"))
    model, _ = model_setup.build_run_model(args, info, log=lambda *_: None)
    return model


def paired_word_accuracy(pred_file, ref_file, pairs) -> float:
    """Share (%) of the paired words of the references that the predictions contain (counts
    clipped per sample): the words that only the descriptions tell apart."""
    paired = {w for pair in pairs for w in pair}
    preds, refs = read_results(pred_file, "prediction"), read_results(ref_file, "ground-truth")
    hit = total = 0
    for name, ref in refs.items():
        ref_words, pred_words = ref.split(), preds.get(name, "").split()
        for w in set(ref_words) & paired:
            total += ref_words.count(w)
            hit += min(ref_words.count(w), pred_words.count(w))
    return 100.0 * hit / max(1, total)


# ----------------------------------------------------------------------------- running the three models

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
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def _train_and_evaluate(key: str, flags: list, eval_flags: list, threads: int, quiet: bool) -> dict:
    """One of the runs: train, evaluate on dev and test, count parameters. Runs in a worker
    process when the demo trains the models side by side."""
    torch.set_num_threads(threads)
    with _quiet(quiet):
        t0 = time.time()
        run.train(parse_run_args(flags))
        train_s = time.time() - t0
        t0 = time.time()
        results = run.evaluate(parse_run_args(eval_flags))
        eval_s = time.time() - t0
        params = model_setup.count_model_parameters(run_model(parse_run_args(flags)))
    return {"key": key, "results": json.loads(json.dumps(results, default=float)), "train_s": train_s,
            "eval_s": eval_s, "parameters": params[0], "fusion_parameters": params[1]}


def _run_all(jobs: list, workers: int, threads: int, quiet: bool) -> dict:
    """{key: _train_and_evaluate(...)} of every job, ``workers`` at a time (separate processes
    when more than one: each trains on its own core)."""
    if workers <= 1:
        with _threads(threads):
            return {job[0]: _train_and_evaluate(*job, threads, quiet) for job in jobs}
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_train_and_evaluate, *job, threads, quiet) for job in jobs]
        return {done["key"]: done for done in (f.result() for f in futures)}


def default_workers() -> int:
    """One process per model, at most one per core."""
    return max(1, min(len(MODELS), os.cpu_count() or 1))


def _jobs(out: Path, data: Path, s: dict, seed: int, device: str) -> tuple[list, dict]:
    """(jobs for ``_run_all``, {key: [train command, eval command]})."""
    jobs, commands = [], {}
    for key, fusion, _ in reversed(MODELS):  # cross-attention, gated, pose-only: the longest first
        predictor = fusion == "gating"  # the gated model also learns to predict its descriptions
        flags = run_flags(data, out / key, s, seed, fusion, device, predictor)
        eval_flags = run_flags(data, out / key / "eval", s, seed, fusion, device, predictor)
        eval_flags += ["--finetune", str(out / key / "best_checkpoint.pth")]
        eval_flags += ["--eval_descriptions", "all" if predictor and s["desc_distill_weight"] else "both"] if fusion else []
        jobs.append((key, flags, eval_flags))
        commands[key] = ["signfuse train " + " ".join(flags), "signfuse eval " + " ".join(eval_flags)]
    return jobs, commands


def row_sources() -> dict:
    """{row of ROWS: (run key, tag)}: a row's test results are the evaluation's ``"test" + tag``,
    its predictions ``<out>/<key>/eval/test<tag>_tmp_pres.txt`` (and ``_refs``)."""
    paths = {"": " (descriptions)", "_predicted": " (descriptions predicted)", "_nodesc": " (descriptions off)"}
    sources = {}
    for key, fusion, title in MODELS:
        for tag, suffix in (paths.items() if fusion else [("", "")]):
            sources[title + suffix] = (key, tag)
    return {row: sources[row] for row in ROWS}


def _table_rows(out: Path, done: dict, pairs) -> dict:
    """{row of ROWS: {column: value}} from the runs' test results and prediction files (the
    predicted row only where the evaluation has one)."""
    rows = {}
    for row, (key, tag) in row_sources().items():
        if tag == "_predicted" and "test_predicted" not in done[key]["results"]:
            continue
        r, ev = done[key]["results"]["test" + tag], out / key / "eval"
        rows[row] = {"BLEU-4": r["bleu4"], "ROUGE-L": r["rouge"],
                     "paired words %": paired_word_accuracy(ev / f"test{tag}_tmp_pres.txt",
                                                            ev / f"test{tag}_tmp_refs.txt", pairs),
                     "train time (s)": done[key]["train_s"], "parameters": done[key]["parameters"]}
    return rows


# ----------------------------------------------------------------------------- gates

def gate_by_kind(gates_file, data) -> dict:
    """{kind: {"frames", "mean", "median", "std"}} of the gate over a split's frames (the
    ``<split>_gates.npz`` of an evaluation), per alignment kind (the saved ``alignment``, else
    recomputed from the description files with the demo's alignment, interpolate)."""
    gates = load_gates(gates_file)
    describer = folder_describer(DATASET, data_root=data)
    kinds = {name: frame_kinds(sample, describer, name) for name, sample in gates.items()}
    return {k: {s: v for s, v in d.items() if s != "values"} for k, d in gate_summary(gates, kinds).items()}


@torch.no_grad()
def gate_without_descriptions(eval_flags: list, name: str) -> np.ndarray:
    """The gate of test sample ``name`` when every frame carries the mask embedding
    (``--eval_descriptions off``), from the run's best checkpoint."""
    args = parse_run_args(eval_flags)
    model = run_model(args).eval()
    ds = inputs.build_dataset(args, "test", train=False, describer=build_describer(args))
    index = next(i for i, k in enumerate(ds.keys) if ds.labels[k]["name"] == name)
    batch = to_device(collate_fn([ds[index]]), next(model.parameters()).device)
    return model(batch, descriptions_off=True)["gate"][0, :, 0].float().cpu().numpy()


def _pick_sample(gates: dict, describer) -> str:
    """The first test sample (by name) with the most sampled frames described by a paired
    sign's facial cue (the text only the descriptions give), else the first one."""
    cues = ("mouth", "cheeks", "lips", "eyebrows", "head")

    def cue_frames(name):
        texts = describer.descriptions(name)
        frames = gates[name]["frame_indices"][gates[name]["has_description"] > 0.5]
        return sum(str(texts.get(int(f), "")).startswith(cues) for f in frames)
    return max(sorted(gates), key=cue_frames)


def _plot_gates(out: Path, data: Path, eval_flags: list) -> dict:
    """The gated model's gate plot of one test sample (with its descriptions, with them off,
    and the cross-attention model's gate on the same frames) and its gate distribution over
    the test split; returns their paths and the sample's name."""
    gates_file = out / "gated" / "eval" / "test_gates.npz"
    gates = load_gates(gates_file)
    cross = load_gates(out / "cross_attn" / "eval" / "test_gates.npz")
    describer = folder_describer(DATASET, data_root=data)
    name = _pick_sample(gates, describer)
    off = gate_without_descriptions(eval_flags, name)
    plot = plot_gate(gates[name], name, out / f"gate_{name}.png", describer.descriptions(name),
                     frame_kinds(gates[name], describer, name), gate_off=off,
                     others={"cross-attention": cross[name]["gate"]} if name in cross else None, label="gated")
    kinds = {n: frame_kinds(s, describer, n) for n, s in gates.items()}
    summary, _ = plot_gate_summary(gates, kinds, out / "gate_summary.png",
                                   f"gated model, test split: gate per frame over {len(gates)} videos, "
                                   "by alignment kind (diamond: mean)")
    return {"sample": name, "plot": plot, "summary": summary, "gates_file": gates_file}


# ----------------------------------------------------------------------------- the demo

def run_demo(out_dir="signfuse_demo", quick: bool = False, seed: int = 0, device: str = "cpu",
             workers: int = None, verbose: bool = False, echo=print, results_file=None, **overrides) -> dict:
    """Make the data, train and evaluate pose-only, gated and cross-attention, print the
    table; return ``{"rows": {row: {column: value}}, "gates", "table", "gate_plot",
    "gate_summary", "commands", "settings", "times", ...}`` (also written to
    ``<out_dir>/demo_results.json``, and with the provenance to ``results_file`` if given).

    ``workers``: processes training the models side by side (default: one per model, at most
    one per core). ``overrides``: any key of ``FULL``.
    """

    s = settings(quick, **overrides)
    workers = default_workers() if workers is None else max(1, int(workers))
    out, t_start = Path(out_dir), time.time()
    data = out / "data"
    summary = make_synthetic(data, samples=s["samples"], seed=seed, n_signs=s["n_signs"],
                             n_pairs=s["n_pairs"], split=s["split"], overwrite=True, cue_amplitude=s["cue_amplitude"])
    splits = summary["splits"]
    echo(f"data: {splits['train']} train / {splits['dev']} dev / {splits['test']} test videos of "
         f"{len(summary['words'])} signs in {data}; pairs told apart only by descriptions: "
         + ", ".join("/".join(p) for p in summary["pairs"]))
    jobs, commands = _jobs(out, data, s, seed, device)
    echo(f"training pose-only, gated and cross-attention ({s['epochs']} epochs of {splits['train']} samples, "
         f"batch {s['batch_size']}, same seed {seed}) "
         + (f"side by side in {workers} processes" if workers > 1 else "one after the other") + " ...")
    done = _run_all(jobs, workers, s["threads"], quiet=not verbose)
    rows = _table_rows(out, done, summary["pairs"])
    gates = {key: gate_by_kind(out / key / "eval" / "test_gates.npz", data) for key, fusion, _ in MODELS if fusion}
    plots = _plot_gates(out, data, dict((k, e) for k, _, e in jobs)["gated"])
    times = {"total": time.time() - t_start,
             **{f"{step}_{key}": done[key][f"{step}_s"] for key in done for step in ("train", "eval")}}
    table = format_table(rows)
    _report(echo, rows, table, gates, plots, times, splits, summary["pairs"])
    synth = (f"signfuse make-synthetic --out {data} --samples {s['samples']} --seed {seed} --n_signs {s['n_signs']} "
             f"--n_pairs {s['n_pairs']} --split_fractions {','.join(map(str, s['split']))}"
             + (f" --cue_amplitude {s['cue_amplitude']}" if s["cue_amplitude"] else ""))
    plot_cmd = (f"signfuse plot-gates --gates {plots['gates_file']} --sample {plots['sample']} --desc_dir "
                f"{data / 'description'} --dataset {DATASET} --out {plots['plot']} --summary {plots['summary']}")
    echo("")
    echo("reproduce:")
    for cmd in [synth] + [c for key, _, _ in MODELS for c in commands[key]] + [plot_cmd]:
        echo("  " + cmd)
    result = {"rows": rows, "gates": gates, "table": table, "gate_plot": str(plots["plot"]),
              "gate_summary": str(plots["summary"]), "gate_sample": plots["sample"], "settings": s, "seed": seed,
              "workers": workers, "times": times, "commands": {"data": synth, **commands, "plot": plot_cmd},
              "results": {k: v["results"] for k, v in done.items()}}
    (out / "demo_results.json").write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    if results_file:
        record = {"command": demo_command(quick, seed, device, workers, overrides), **provenance(), **result}
        Path(results_file).parent.mkdir(parents=True, exist_ok=True)
        Path(results_file).write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
        echo(f"results: {results_file}")
    return result


def _report(echo, rows: dict, table: str, gates: dict, plots: dict, times: dict, splits: dict, pairs) -> None:
    """Print the table, the differences to pose-only, the mean gates and where the plots are."""
    echo("")
    echo(f"test split ({splits['test']} videos); greedy decoding; BLEU-4 and ROUGE-L in %; paired words %: share "
         f"of the reference's paired words ({', '.join('/'.join(p) for p in pairs)}) that the translation contains")
    echo(table)
    base = rows[ROWS[0]]["BLEU-4"]
    echo("BLEU-4 - pose-only: " + ", ".join(f"{row} {rows[row]['BLEU-4'] - base:+.2f}" for row in ROWS[1:] if row in rows))
    for key, fusion, title in MODELS:
        if fusion:
            g = gates[key]
            echo(f"mean gate of {title} on the test frames: "
                 + ", ".join(f"{k} {g[k]['mean']:.3f} ({g[k]['frames']} frames)" for k in KIND_ORDER if k in g))
    echo(f"gate plot: {plots['plot']}")
    echo(f"gate summary: {plots['summary']}")
    echo(f"total time: {times['total']:.0f} s")


def demo_command(quick: bool, seed: int, device: str, workers: int, overrides: dict) -> str:
    """The ``signfuse demo`` command line of these settings."""
    parts = ["signfuse demo", f"--seed {seed}"] + (["--quick"] if quick else [])
    parts += [f"--{k} {v}" for k, v in overrides.items() if v is not None]
    parts += [] if device == "cpu" else [f"--device {device}"]
    return " ".join(parts + [f"--workers {workers}"])


def provenance() -> dict:
    """Where the figures come from: commit (and whether the tree had uncommitted changes), CPU,
    cores, torch version, date."""
    repo = Path(__file__).resolve().parents[1]

    def git(*cmd):
        try:
            return subprocess.run(["git", *cmd], cwd=repo, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return {"commit": git("rev-parse", "HEAD") or None, "uncommitted_changes": bool(git("status", "--porcelain")),
            "cpu": cpu, "cpu_count": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def format_table(rows: dict) -> str:
    """The result table: one line per row of ``ROWS``, the columns of ``COLUMNS``."""
    width = max(len(r) for r in ROWS)
    head = f"{'model':<{width}}  " + "  ".join(f"{c:>14}" for c in COLUMNS)
    lines = [head, "-" * len(head)]
    for row in (r for r in ROWS if r in rows):  # the predicted row only with a description predictor
        v = rows[row]
        cells = [f"{v['BLEU-4']:14.2f}", f"{v['ROUGE-L']:14.2f}", f"{v['paired words %']:14.1f}",
                 f"{v['train time (s)']:14.1f}", f"{v['parameters']:14,d}"]
        lines.append(f"{row:<{width}}  " + "  ".join(cells))
    return "\n".join(lines)


def readme_table(records: list) -> str:
    """A Markdown table of ``--results`` files (one row per seed): BLEU-4 of every row of the
    table (the fusions with their difference to pose-only), the gated model's mean gate on
    exactly described and on undescribed frames, the total time."""
    head = ("| seed | pose-only | gated | gated, descriptions predicted | gated, descriptions off | cross-attention "
            "| cross-attention, descriptions off | gate: exact / undescribed | total time |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in sorted(records, key=lambda r: r["seed"]):
        base = r["rows"][ROWS[0]]["BLEU-4"]
        cells = [str(r["seed"]), f"{base:.2f}"] + [f"{r['rows'][row]['BLEU-4']:.2f} ({r['rows'][row]['BLEU-4'] - base:+.1f})"
                                                  if row in r["rows"] else "-" for row in ROWS[1:]]
        g = r["gates"]["gated"]
        cells.append(f"{g['exact']['mean']:.3f} / {g['undescribed']['mean']:.3f}" if "undescribed" in g else "-")
        cells.append(f"{r['times']['total']:.0f} s")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- --rgb

#: ``signfuse demo --rgb``: a smaller budget than the main demo (EfficientNet-B0 runs on every hand crop)
RGB_DEMO = dict(samples=160, epochs=4, batch_size=8)
RGB_FLAGS = ["--rgb_support", "--rgb_gate_init", "small"]  # the plan's RGB flags


def run_rgb_demo(out_dir="signfuse_demo_rgb", seed: int = 0, device: str = "cpu", verbose: bool = False,
                 echo=print, **overrides) -> dict:
    """``signfuse demo --rgb``: the synthetic benchmark with its videos (``make-synthetic --videos``:
    the hands drawn where the pose puts them), the plan's RGB-pose gated model (``--use_descriptions
    --text_fusion_type gating --rgb_support --rgb_gate_init small``) trained and evaluated with
    descriptions on and off, and the mean RGB fusion gate over the test crops. It shows the RGB
    path end to end (frame-exact video reading, hand crops, EfficientNet-B0, PGF, a gate that
    learns); the videos hold nothing the pose lacks, so no gain over pose-only is expected or
    claimed. ``overrides``: keys of ``FULL``. Returns the figures (also ``<out_dir>/demo_rgb_results.json``)."""
    s = settings(True, **{**RGB_DEMO, **{k: v for k, v in overrides.items() if v is not None}})
    out, t0 = Path(out_dir), time.time()
    data, run_dir = out / "data", out / "rgb_gated"
    summary = make_synthetic(data, samples=s["samples"], seed=seed, n_signs=s["n_signs"], n_pairs=s["n_pairs"],
                             split=s["split"], overwrite=True)
    videos = write_videos(data, overwrite=True)
    echo(f"data: {summary['splits']} videos and their hand videos ({videos['frames']} frames) in {data}")
    flags = run_flags(data, run_dir, s, seed, True, device) + RGB_FLAGS
    eval_flags = run_flags(data, run_dir / "eval", s, seed, True, device) + RGB_FLAGS + [
        "--finetune", str(run_dir / "best_checkpoint.pth"), "--eval_descriptions", "both"]
    echo(f"training the RGB-pose gated model ({s['epochs']} epochs of {summary['splits']['train']} samples) ...")
    with _threads(s["threads"]), _quiet(not verbose):
        run.train(parse_run_args(flags))
        results = json.loads(json.dumps(run.evaluate(parse_run_args(eval_flags)), default=float))
        gate = rgb_gate_mean(eval_flags)
    losses = [json.loads(line)["train_loss"] for line in (run_dir / "log.txt").read_text().splitlines()]
    on, off = results["test"], results["test_nodesc"]
    echo(f"test split: BLEU-4 {on['bleu4']:.2f} (descriptions off {off['bleu4']:.2f}), ROUGE-L {on['rouge']:.2f} "
         f"({off['rouge']:.2f}); train loss {losses[0]:.3f} (epoch 0) -> {losses[-1]:.3f}")
    echo(f"RGB fusion gate on the test hand crops: mean {gate:.4f} (started near 0.01; Uni-Sign's zero gate "
         "would stay 0 and pass no gradient)")
    echo("what this shows: the RGB-pose path end to end; the synthetic videos draw only the hands the pose "
         "already holds, so RGB brings no information here")
    commands = {"data": f"signfuse make-synthetic --out {data} --samples {s['samples']} --seed {seed} "
                        f"--n_signs {s['n_signs']} --n_pairs {s['n_pairs']} --split_fractions "
                        f"{','.join(map(str, s['split']))} --videos",
                "train": "signfuse train " + " ".join(flags), "eval": "signfuse eval " + " ".join(eval_flags)}
    echo("reproduce:\n" + "\n".join("  " + c for c in commands.values()))
    result = {"results": results, "rgb_gate_mean": gate, "train_loss": losses, "settings": s, "seed": seed,
              "commands": commands, "time_s": time.time() - t0}
    (out / "demo_rgb_results.json").write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    return result


@torch.no_grad()
def rgb_gate_mean(eval_flags: list) -> float:
    """The mean of the RGB fusion gate (``fusion_gate``'s output, docs/rgb-pose.md 8.2) over the hand
    nodes of every real crop of the test split, from the run's best checkpoint."""
    args = parse_run_args(eval_flags)
    model = run_model(args).eval()
    values = []
    hook = model.fusion_gate.register_forward_hook(lambda module, inputs, output: values.append(output.flatten()))
    ds = inputs.build_dataset(args, "test", train=False)
    for start in range(0, len(ds), args.batch_size):
        model.encode_pose(collate_fn([ds[i] for i in range(start, min(start + args.batch_size, len(ds)))]))
    hook.remove()
    return float(torch.cat(values).mean()) if values else 0.0
