"""Does description fusion help when the cue is in the keypoints too? (issue 13, "Does it help?")

On the synthetic benchmark with a weak facial cue put into the keypoints themselves
(``make_synthetic(..., cue_amplitude=A)``: the paired signs' face points move by A body units),
for each seed: make the data, write the ``rules`` describer's texts (``signfuse describe
--desc_dir D/rules``), then train and evaluate with the demo's recipe (``signfuse.demo.run_flags``:
tiny mT5, 8 signs in 4 pairs, its lr/batch, text dropout, ``--desc_off_loss``) three models:

- pose-only (Uni-Sign),
- gated with the rules describer's descriptions (``--desc_dir D/rules``),
- gated with the generator's own descriptions (``--desc_dir D/description``, what the demo uses),

the two gated ones also evaluated with every description masked (``--eval_descriptions both``).
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

from signfuse import demo
from signfuse.data.synthetic import make_synthetic

# (key, --desc_dir folder under the data or None for pose-only, table name), longest runs first
MODELS = (("gated_generator", "description", "gated, generator's descriptions"),
          ("gated_rules", "rules", "gated, rules descriptions"),
          ("pose_only", None, "pose-only"))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--samples", type=int, default=320, help="videos per dataset (demo: 800, --quick 240)")
    p.add_argument("--epochs", type=int, default=5, help="training epochs (demo: 20, --quick 3)")
    p.add_argument("--cue_amplitude", type=float, default=0.04)
    p.add_argument("--workers", type=int, default=2, help="trainings at a time (one torch thread each)")
    p.add_argument("--work_dir", default="/tmp/describe_helps")
    p.add_argument("--out", default=str(RESULTS / "describe_helps.json"))
    return p.parse_args(argv)


def make_data(work: Path, s: dict, seed: int, cue_amplitude: float) -> dict:
    """The seed's dataset (``<work>/<seed>/data``) and its rules descriptions (``data/rules``)."""
    data = work / str(seed) / "data"
    summary = make_synthetic(data, samples=s["samples"], seed=seed, n_signs=s["n_signs"], n_pairs=s["n_pairs"],
                             split=s["split"], overwrite=True, cue_amplitude=cue_amplitude)
    subprocess.run([sys.executable, "-c", "import sys; from signfuse.cli import main; sys.exit(main())",
                    "describe", "--dataset", demo.DATASET, "--data_root", str(data), "--desc_dir", str(data / "rules")],
                   check=True, cwd=REPO, capture_output=True)
    return summary


def jobs_of_seed(work: Path, s: dict, seed: int) -> tuple:
    """(jobs for demo._run_all, {key: [train command, eval command]}) of one seed."""
    data, jobs, commands = work / str(seed) / "data", [], {}
    for key, desc, _ in MODELS:
        out = work / str(seed) / key
        flags = demo.run_flags(data, out, s, seed, fusion=bool(desc))
        eval_flags = demo.run_flags(data, out / "eval", s, seed, fusion=bool(desc))
        eval_flags += ["--finetune", str(out / "best_checkpoint.pth")]
        eval_flags += ["--eval_descriptions", "both"] if desc else []
        for f in (flags, eval_flags):
            f[f.index("--desc_dir") + 1] = str(data / (desc or "description"))
        jobs.append((f"{seed}/{key}", flags, eval_flags))
        commands[key] = ["signfuse train " + " ".join(flags), "signfuse eval " + " ".join(eval_flags)]
    return jobs, commands


def rows_of(done: dict, seeds: list) -> dict:
    """{row: {seed: {"BLEU-4", "ROUGE-L", "train_s"}}} from the runs' test results."""
    rows = {}
    for key, desc, title in MODELS:
        tags = [("", f"{title}"), ("_nodesc", f"{title} (descriptions off)")] if desc else [("", title)]
        for tag, row in tags:
            rows[row] = {str(seed): {"BLEU-4": done[f"{seed}/{key}"]["results"]["test" + tag]["bleu4"],
                                     "ROUGE-L": done[f"{seed}/{key}"]["results"]["test" + tag]["rouge"],
                                     "train_s": round(done[f"{seed}/{key}"]["train_s"], 1)} for seed in seeds}
    return rows


def table(rows: dict, seeds: list) -> str:
    head = "| model | " + " | ".join(f"seed {s} BLEU-4 / ROUGE-L" for s in seeds) + " | mean BLEU-4 | mean ROUGE-L |"
    lines = [head, "|" + "---|" * (len(seeds) + 3)]
    for row, per_seed in rows.items():
        cells = [f"{per_seed[str(s)]['BLEU-4']:.1f} / {per_seed[str(s)]['ROUGE-L']:.1f}" for s in seeds]
        mb = sum(per_seed[str(s)]["BLEU-4"] for s in seeds) / len(seeds)
        mr = sum(per_seed[str(s)]["ROUGE-L"] for s in seeds) / len(seeds)
        lines.append(f"| {row} | " + " | ".join(cells) + f" | {mb:.1f} | {mr:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    info = machine_info()
    s = demo.settings(samples=args.samples, epochs=args.epochs)
    work = Path(args.work_dir)
    t0 = time.time()
    jobs, commands = [], {}
    for seed in args.seeds:
        summary = make_data(work, s, seed, args.cue_amplitude)
        seed_jobs, commands[str(seed)] = jobs_of_seed(work, s, seed)
        jobs += seed_jobs
    print(f"data: {summary['splits']} per seed; pairs: {summary['pairs']}; {len(jobs)} trainings, "
          f"{args.workers} at a time", flush=True)
    jobs.sort(key=lambda job: job[0].endswith("pose_only"))  # the gated (longer) runs first
    done = demo._run_all(jobs, args.workers, threads=1, quiet=True)
    (work / "done.json").write_text(json.dumps(done, default=str))  # the raw results, should the table fail
    rows = rows_of(done, args.seeds)
    settings = {**s, "seeds": args.seeds, "cue_amplitude": args.cue_amplitude, "workers": args.workers,
                "splits": summary["splits"], "wall_s": round(time.time() - t0, 1)}
    write_result(args.out, {"rows": rows, "table": table(rows, args.seeds), "commands": commands},
                 settings, info, argv)
    print(machine_line(info))
    print(f"test split, greedy decoding; {s['epochs']} epochs of {summary['splits']['train']} videos; "
          f"cue_amplitude {args.cue_amplitude}; wall {settings['wall_s']} s")
    print(table(rows, args.seeds))


if __name__ == "__main__":
    main()
