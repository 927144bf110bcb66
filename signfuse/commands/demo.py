"""``signfuse demo``: the synthetic benchmark end to end (``signfuse.demo``)."""
import json
from pathlib import Path

from signfuse.demo.run import FULL, MODELS, QUICK, readme_table, run_demo, run_rgb_demo
from signfuse.flags import add_flags


def cmd_demo(args) -> None:
    if args.table:
        print(readme_table([json.loads(Path(f).read_text(encoding="utf-8")) for f in args.table]))
        return
    if getattr(args, "rgb", False):  # the RGB-pose branch instead (a separate, smaller demo)
        run_rgb_demo(args.out if args.out != "signfuse_demo" else "signfuse_demo_rgb", seed=args.seed,
                     device=args.device, verbose=args.verbose, samples=args.samples, epochs=args.epochs,
                     threads=args.threads)
        return
    run_demo(args.out, quick=args.quick, seed=args.seed, device=args.device, workers=args.workers,
             verbose=args.verbose, results_file=args.results, samples=args.samples, epochs=args.epochs,
             threads=args.threads, cue_amplitude=args.cue_amplitude)


def register(sub) -> None:
    sp = sub.add_parser("demo", help="generate synthetic data, train pose-only, gated and cross-attention models, compare",
                        description="Generate the synthetic benchmark, fine-tune the pose-only, the gated and the "
                                    "cross-attention model from the same initial weights on CPU, evaluate them "
                                    "(the fusions also with their descriptions off), print the comparison and save "
                                    "the gate plots (measured on 2 free cores: about 5.5 minutes with start-up; --quick: 30 s).")
    sp.add_argument("--out", default="signfuse_demo", help="output folder (data, runs, table, plots)")
    sp.add_argument("--quick", action="store_true", help="smaller data and fewer epochs (CI)")
    add_flags(sp, "seed", "device", default={"seed": 0, "device": "cpu"})
    sp.add_argument("--samples", type=int, default=None, help=f"videos to generate (default: {FULL['samples']}, --quick {QUICK['samples']})")
    add_flags(sp, "epochs", default={"epochs": None})
    sp.add_argument("--threads", type=int, default=None, help="torch CPU threads per process (default 1)")
    add_flags(sp, "cue_amplitude", default={"cue_amplitude": None})  # None: the demo's, FULL["cue_amplitude"]
    sp.add_argument("--workers", type=int, default=None,
                    help=f"processes training the models side by side (default: {len(MODELS)}, at most one per core)")
    sp.add_argument("--results", default=None, metavar="FILE",
                    help="also write the figures with the commit, CPU and torch version to FILE "
                         "(e.g. docs/results/demo-<seed>.json)")
    sp.add_argument("--verbose", action="store_true", help="show the runs' own logs and progress bars")
    sp.add_argument("--table", nargs="+", default=None, metavar="FILE",
                    help="print the Markdown table of --results files (the README's) and stop")
    sp.add_argument("--rgb", action="store_true",
                    help="instead: the RGB-pose branch end to end (videos, hand crops, EfficientNet-B0, the fusion "
                         "gate) with descriptions, on synthetic data with videos (run_rgb_demo; output signfuse_demo_rgb)")
    sp.set_defaults(func=cmd_demo)
