"""Does description fusion help when the cue is in the keypoints too? (issue 13, "Does it help?")

On the synthetic benchmark with a weak facial cue put into the keypoints themselves
(``make_synthetic(..., cue_amplitude=A)``: the paired signs' face points move by A body units),
for each seed: make the data, write the ``rules`` describer's texts (``signfuse describe
--desc_dir D/rules``), then train and evaluate with the demo's recipe (``signfuse.demo.run_flags``:
tiny mT5, 8 signs in 4 pairs, its lr/batch, text dropout, ``--desc_off_loss``) three models:

- pose-only (Uni-Sign),
- gated with the rules describer's descriptions (``--desc_dir D/rules``),
- gated with the generator's own descriptions (``--desc_dir D/description``, what the demo uses),

the two gated ones with the description predictor (``--desc_distill_weight``, issue 19; 0: none)
and evaluated with their descriptions given, off (every frame masked) and predicted (no
description read: the predictor's embeddings; ``--eval_descriptions all``), with the predictor's
cosine to the true embeddings on the test frames that have a text.
Writes docs/results/describe_helps.json (``--out``) and prints a markdown table of test BLEU-4 /
ROUGE-L per seed and their mean.

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/describe_helps.py --seeds 0 1 2
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from common import REPO, RESULTS, machine_info, machine_line, write_result

from signfuse.config import RULES_CLAUSES
from signfuse.demo import run as demo
from signfuse.demo.synthetic import make_synthetic

# (key, --desc_dir folder under the data or None for pose-only, table name, --text_fusion_type),
# longest runs first; the gated models train the description predictor (--desc_distill_weight)
MODELS = (("gated_generator", "description", "gated, generator's descriptions", "gating"),
          ("gated_rules", "rules", "gated, rules descriptions", "gating"),
          ("cross_generator", "description", "cross-attention, generator's descriptions", "cross_attn"),
          ("pose_only", None, "pose-only", None))
DEFAULT_MODELS = ("gated_generator", "gated_rules", "pose_only")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--samples", type=int, default=320, help="videos per dataset, split 0.6 / 0.1 / 0.3 (the demo before its test split grew: 800; --quick: 240)")
    p.add_argument("--epochs", type=int, default=5, help="training epochs (demo: 20, --quick 3)")
    p.add_argument("--cue_amplitude", type=float, default=0.04)
    p.add_argument("--workers", type=int, default=2, help="trainings at a time (one torch thread each)")
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), choices=[m[0] for m in MODELS])
    p.add_argument("--desc_distill_weight", type=float, default=1.0, help="0: no description predictor")
    p.add_argument("--desc_predictor_hidden", type=int, default=256)
    p.add_argument("--desc_distill_loss", default="contrastive", choices=("cosine", "mse", "contrastive"))
    p.add_argument("--desc_predicted_p", type=float, default=0.0)
    p.add_argument("--desc_predicted_loss", type=float, default=0.0)
    p.add_argument("--desc_predicted_indicator", action="store_true",
                   help="the gate also reads whether a frame's text is predicted (signfuse train --desc_predicted_indicator)")
    p.add_argument("--rules_clauses", default="all", choices=RULES_CLAUSES,
                   help="what the rules describer's texts say (signfuse describe --rules_clauses)")
    p.add_argument("--work_dir", default="/tmp/describe_helps")
    p.add_argument("--out", default=str(RESULTS / "describe_helps.json"))
    p.add_argument("--reuse", action="store_true",
                   help="no data or training: rebuild the figures from --work_dir's runs (done.json) of the same settings")
    return p.parse_args(argv)


def make_data(work: Path, s: dict, seed: int, cue_amplitude: float, rules_clauses: str = "all") -> dict:
    """The seed's dataset (``<work>/<seed>/data``) and its rules descriptions (``data/rules``)."""
    data = work / str(seed) / "data"
    summary = make_synthetic(data, samples=s["samples"], seed=seed, n_signs=s["n_signs"], n_pairs=s["n_pairs"],
                             split=s["split"], overwrite=True, cue_amplitude=cue_amplitude)
    subprocess.run([sys.executable, "-c", "import sys; from signfuse.cli import main; sys.exit(main())",
                    "describe", "--dataset", demo.DATASET, "--data_root", str(data), "--desc_dir", str(data / "rules"),
                    "--rules_clauses", rules_clauses],
                   check=True, cwd=REPO, capture_output=True)
    return summary


def jobs_of_seed(work: Path, s: dict, seed: int, models: list) -> tuple:
    """(jobs for demo._run_all, {key: [train command, eval command]}) of one seed."""
    data, jobs, commands = work / str(seed) / "data", [], {}
    for key, desc, _, fusion in MODELS:
        if key not in models:
            continue
        out, predictor = work / str(seed) / key, fusion == "gating"
        flags = demo.run_flags(data, out, s, seed, fusion, predictor=predictor)
        eval_flags = demo.run_flags(data, out / "eval", s, seed, fusion, predictor=predictor)
        eval_flags += ["--finetune", str(out / "best_checkpoint.pth")]
        eval_flags += ["--eval_descriptions", "all" if predictor and s["desc_distill_weight"] else "both"] if desc else []
        for f in (flags, eval_flags):
            f[f.index("--desc_dir") + 1] = str(data / (desc or "description"))
        jobs.append((f"{seed}/{key}", flags, eval_flags))
        commands[key] = ["signfuse train " + " ".join(flags), "signfuse eval " + " ".join(eval_flags)]
    return jobs, commands


def mean_gate(log_file: Path):
    """The training's mean gate over its last epoch's frames (its log.txt), None without one."""
    lines = log_file.read_text().splitlines() if log_file.exists() else []
    return json.loads(lines[-1]).get("mean_gate") if lines else None


def rows_of(done: dict, seeds: list, work: Path, pairs) -> dict:
    """{row: {seed: {"BLEU-4", "ROUGE-L", "paired words %", "train mean gate", "train_s"}}} from
    the runs' test results and prediction files."""
    rows = {}
    for key, desc, title, _ in MODELS:
        if f"{seeds[0]}/{key}" not in done:
            continue
        tags = [("", f"{title}"), ("_nodesc", f"{title} (descriptions off)")] if desc else [("", title)]
        if desc and "test_predicted" in done[f"{seeds[0]}/{key}"]["results"]:
            tags.insert(1, ("_predicted", f"{title} (descriptions predicted)"))
        for tag, row in tags:
            rows[row] = {}
            for seed in seeds:
                r, ev = done[f"{seed}/{key}"], work / str(seed) / key / "eval"
                paired = demo.paired_word_accuracy(ev / f"test{tag}_tmp_pres.txt", ev / f"test{tag}_tmp_refs.txt", pairs)
                rows[row][str(seed)] = {"BLEU-4": r["results"]["test" + tag]["bleu4"],
                                        "ROUGE-L": r["results"]["test" + tag]["rouge"], "paired words %": paired,
                                        "train mean gate": mean_gate(work / str(seed) / key / "log.txt") if desc else None,
                                        "train_s": round(r["train_s"], 1)}
                if tag == "_predicted":
                    rows[row][str(seed)]["predictor cosine"] = r["results"]["test_predicted"].get("predictor_cosine")
    return rows


def table(rows: dict, seeds: list) -> str:
    """Markdown: BLEU-4 / ROUGE-L / paired words % per seed, and their means."""
    head = "| model | " + " | ".join(f"seed {s}: BLEU-4 / ROUGE-L / paired %" for s in seeds)
    lines = [head + " | mean BLEU-4 | mean ROUGE-L | mean paired % |", "|" + "---|" * (len(seeds) + 4)]
    cols = ("BLEU-4", "ROUGE-L", "paired words %")
    for row, per_seed in rows.items():
        cells = [" / ".join(f"{per_seed[str(s)][c]:.1f}" for c in cols) for s in seeds]
        means = [f"{sum(per_seed[str(s)][c] for s in seeds) / len(seeds):.1f}" for c in cols]
        lines.append(f"| {row} | " + " | ".join(cells + means) + " |")
    for row, per_seed in rows.items():  # the predictor's cosine to the true embedding (test frames with a text)
        if "(descriptions predicted)" in row:
            cos = [per_seed[str(s)].get("predictor cosine") for s in seeds]
            lines.append(f"\n{row}: predictor cosine to the true embedding per seed "
                         + ", ".join("-" if c is None else f"{c:.3f}" for c in cos))
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    info = machine_info()
    s = demo.settings(samples=args.samples, split=demo.SPLIT_800, epochs=args.epochs,
                      desc_distill_weight=args.desc_distill_weight,
                      desc_predictor_hidden=args.desc_predictor_hidden, desc_distill_loss=args.desc_distill_loss,
                      desc_predicted_p=args.desc_predicted_p, desc_predicted_loss=args.desc_predicted_loss,
                      desc_predicted_indicator=args.desc_predicted_indicator)
    work = Path(args.work_dir)
    t0 = time.time()
    jobs, commands = [], {}
    for seed in args.seeds:
        summary = (json.loads((work / str(seed) / "summary.json").read_text()) if args.reuse
                   else make_data(work, s, seed, args.cue_amplitude, args.rules_clauses))
        (work / str(seed) / "summary.json").write_text(json.dumps(summary, default=str))
        seed_jobs, commands[str(seed)] = jobs_of_seed(work, s, seed, args.models)
        jobs += seed_jobs
    print(f"data: {summary['splits']} per seed; pairs: {summary['pairs']}; {len(jobs)} trainings, "
          f"{args.workers} at a time", flush=True)
    jobs.sort(key=lambda job: job[0].endswith("pose_only"))  # the gated (longer) runs first
    if args.reuse:
        done = json.loads((work / "done.json").read_text())
    else:
        done = demo._run_all(jobs, args.workers, threads=1, quiet=True)
        (work / "done.json").write_text(json.dumps(done, default=str))  # the raw results, for --reuse
    rows = rows_of(done, args.seeds, work, summary["pairs"])
    settings = {**s, "seeds": args.seeds, "cue_amplitude": args.cue_amplitude, "rules_clauses": args.rules_clauses,
                "workers": args.workers,
                "splits": summary["splits"], "pairs": summary["pairs"], "wall_s": round(time.time() - t0, 1),
                "train_s": {job[0]: round(done[job[0]]["train_s"], 1) for job in jobs}}
    write_result(args.out, {"rows": rows, "table": table(rows, args.seeds), "commands": commands},
                 settings, info, argv)
    print(machine_line(info))
    print(f"test split ({summary['splits']['test']} videos), greedy decoding; {s['epochs']} epochs of "
          f"{summary['splits']['train']} videos; cue_amplitude {args.cue_amplitude}; paired %: share of the "
          f"reference's paired words ({', '.join('/'.join(p) for p in summary['pairs'])}) in the translation")
    print(table(rows, args.seeds))


if __name__ == "__main__":
    main()
