"""Uni-Sign / signfuse time ratios of one section pooled over several runs of
``bench_vs_unisign.py``, each run's result file read back (nothing is measured here).

    python benchmarks/pool_ratios.py docs/results/bench_vs_unisign-train*.json \
        --section "pose-only training step" --out docs/results/bench_vs_unisign-train-pooled.json

A repeat's ratio is Uni-Sign's time / signfuse's of its two calls, run back to back on the same
input (``repeats_ms`` of the file). Printed and written, per run and pooled over every repeat of
every run: the median ratio and a distribution-free 95 % interval for it (order statistics,
``common.median_interval``). The pooled interval treats all repeats as independent; repeats of
one run share that run's machine state, so the runs' own medians (and their range) are given too.
"""
import argparse
import json
import statistics
from pathlib import Path

from common import command_line, git_commit, median_interval, write_json


def repeat_ratios(figures: dict) -> list:
    """Each repeat's Uni-Sign time / signfuse time."""
    times = figures["repeats_ms"]
    return [u / s for s, u in zip(times["signfuse"], times["unisign"], strict=True)]


def describe(ratios: list) -> dict:
    interval = median_interval(ratios)
    return {"repeats": len(ratios), "median_ratio": round(statistics.median(ratios), 4),
            "interval_95": [None if interval[k] is None else round(interval[k], 4) for k in ("low", "high")],
            "coverage": None if interval["coverage"] is None else round(interval["coverage"], 4),
            "repeats_at_or_above_1": sum(r >= 1 for r in ratios)}


def read_run(path: Path, section: str) -> tuple:
    """(the run's identity, its repeats' ratios) from one result file."""
    result = json.loads(path.read_text())
    figures = result.get("figures", {}).get(section)
    if figures is None or "repeats_ms" not in figures:
        raise SystemExit(f"{path}: no section {section!r} with repeats_ms (sections: {sorted(result.get('figures', {}))})")
    identity = {"file": path.name, "commit": result.get("commit"), "command": result.get("command"),
                "cpu": result.get("cpu"), "ratio_of_medians": figures.get("ratio_unisign_over_signfuse")}
    return identity, repeat_ratios(figures)


def pool(paths: list, section: str) -> dict:
    runs, every = [], []
    for path in paths:
        identity, ratios = read_run(Path(path), section)
        runs.append({**identity, **describe(ratios)})
        every += ratios
    medians = [r["median_ratio"] for r in runs]
    return {"section": section, "runs": runs, "pooled": describe(every),
            "run_medians": {"median": round(statistics.median(medians), 4), "min": min(medians), "max": max(medians),
                            "at_or_above_1": sum(m >= 1 for m in medians), "runs": len(medians)},
            "ratio": "Uni-Sign time / signfuse time of the same repeat (above 1: signfuse faster)"}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", help="result files of bench_vs_unisign.py")
    p.add_argument("--section", default="pose-only training step")
    p.add_argument("--out", default=None, help="write the pooled figures here (JSON)")
    args = p.parse_args(argv)
    result = pool(args.files, args.section)
    for run in result["runs"]:
        low, high = run["interval_95"]
        print(f"{run['file']:<40} {run['repeats']:>3} repeats  median ratio {run['median_ratio']:.3f}"
              f"  95% interval [{low}, {high}]  repeats >= 1: {run['repeats_at_or_above_1']}")
    pooled, medians = result["pooled"], result["run_medians"]
    print(f"{'pooled':<40} {pooled['repeats']:>3} repeats  median ratio {pooled['median_ratio']:.3f}"
          f"  95% interval {pooled['interval_95']}  repeats >= 1: {pooled['repeats_at_or_above_1']}")
    print(f"the runs' medians: {medians['min']} to {medians['max']} (median {medians['median']}),"
          f" {medians['at_or_above_1']} of {medians['runs']} at or above 1")
    if args.out:
        write_json(args.out, {"command": command_line(argv, __file__), "commit": git_commit(), **result})
        print(f"written: {args.out}")


if __name__ == "__main__":
    main()
