"""Command line: ``fine_tuning.py`` (Uni-Sign's flags) and the ``signfuse`` command.

    signfuse train|eval [flags of fine_tuning.py]
    signfuse score --pred P --ref R [--dataset D] [--task T]
    signfuse predict --finetune CKPT --mt5_model DIR --pose FILE.pkl [--description FILE.json]
    signfuse precompute-text --desc_dir DIR --dataset NAME --desc_encoder DIR [--out FILE]
    signfuse describe-stats --desc_dir DIR --dataset NAME [--split S]
    signfuse check-data --dataset NAME [--use_descriptions]
    signfuse make-synthetic --out DIR --samples N --seed S
    signfuse plot-gates --gates FILE.npz [--sample NAME] --out FILE.png
    signfuse demo [--quick]

A bad input stops the command with one line on stderr naming the file and the problem,
and exit status 2 (no traceback).
"""
import argparse
import json
import os
import sys

from signfuse.config import ALIGNMENTS, DATASETS, FUSION_TYPES, TASKS, UNISIGN_MT5_DIR
from signfuse.errors import InputError, SignfuseError


def _optional_int(text):
    return None if text in (None, "", "none", "None") else int(text)


def add_run_args(p: argparse.ArgumentParser) -> None:
    """Every flag of Uni-Sign's fine_tuning.py, then signfuse's own."""
    g = p.add_argument_group("Uni-Sign flags")
    g.add_argument("--batch-size", dest="batch_size", type=int, default=16, help="samples per process and step")
    g.add_argument("--gradient-accumulation-steps", dest="gradient_accumulation_steps", type=int, default=8)
    g.add_argument("--gradient-clipping", dest="gradient_clipping", type=float, default=1.0)
    g.add_argument("--epochs", type=int, default=20)
    g.add_argument("--finetune", default="", help="checkpoint to start from ({'model': state_dict}, Uni-Sign's format)")
    g.add_argument("--opt", default="adamw")
    g.add_argument("--opt-eps", dest="opt_eps", type=float, default=1e-9)
    g.add_argument("--weight-decay", dest="weight_decay", type=float, default=1e-4)
    g.add_argument("--lr", type=float, default=1e-3)
    g.add_argument("--min-lr", dest="min_lr", type=float, default=1e-8)
    g.add_argument("--warmup-epochs", dest="warmup_epochs", type=float, default=0)
    g.add_argument("--sched", default="cosine")
    g.add_argument("--output_dir", default="", help="where checkpoints, logs and results go")
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--eval", action="store_true", help="evaluate (dev then test) instead of training")
    g.add_argument("--num_workers", type=int, default=8)
    g.add_argument("--max_length", type=int, default=256, help="frames sampled per video at most")
    g.add_argument("--dataset", default="CSL_Daily", choices=DATASETS)
    g.add_argument("--task", default="SLT", choices=TASKS)
    g.add_argument("--label_smoothing", type=float, default=0.2)
    g.add_argument("--rgb_support", action="store_true", help="RGB branch (not available in signfuse yet)")
    g.add_argument("--hidden_dim", type=int, default=256, help="accepted for compatibility (Uni-Sign's pose width)")
    g.add_argument("--dtype", default="bf16", choices=("bf16", "fp16"), help="autocast/DeepSpeed precision on GPU")
    g.add_argument("--zero_stage", type=int, default=2, help="DeepSpeed ZeRO stage")
    g.add_argument("--offload", action="store_true", help="DeepSpeed optimizer offload to CPU")
    g.add_argument("--local_rank", "--local-rank", dest="local_rank", type=int, default=None,
                   help="set by the deepspeed launcher")

    g = p.add_argument_group("signfuse flags")
    g.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when present)")
    g.add_argument("--mt5_model", default=UNISIGN_MT5_DIR,
                   help="local mT5 directory (config.json, weights, tokenizer); 'tiny' for the embedded tiny model")
    g.add_argument("--data_root", default=".", help="root of Uni-Sign's layout (data/<dataset>/, dataset/<dataset>/pose_format)")
    g.add_argument("--label_dir", default=None, help="folder of labels.<split> (overrides --data_root)")
    g.add_argument("--pose_dir", default=None, help="folder of the pose .pkl files (overrides --data_root)")
    g.add_argument("--trust_pickles", action="store_true",
                   help="load pose/label pickles with the unrestricted unpickler (only for files you trust)")
    g.add_argument("--engine", default="auto", choices=("auto", "torch", "deepspeed"),
                   help="auto: DeepSpeed under the deepspeed launcher, else torch (DDP under torchrun)")
    g.add_argument("--resume", default="none", help="'auto': continue from <output_dir>/last.pth; or a folder")
    g.add_argument("--save_every_steps", type=int, default=0, help="also write last.pth every N optimizer steps")
    g.add_argument("--skip_nonfinite", action="store_true", help="skip (and count) steps whose loss is NaN/inf")
    g.add_argument("--eval_every_epochs", type=int, default=1)
    g.add_argument("--max_samples", type=int, default=None, help="use only the first N samples of each split")
    g.add_argument("--max_steps", type=int, default=None, help="stop after N optimizer steps (end of that epoch)")
    g.add_argument("--finetune_allow_unexpected", action="store_true",
                   help="ignore (with a warning) checkpoint weights this model does not have")
    g.add_argument("--num_beams", type=int, default=4, help="beam width of evaluation (1: greedy)")
    g.add_argument("--max_new_tokens", type=int, default=100, help="most tokens generated per sample in evaluation")

    g = p.add_argument_group("descriptions")
    g.add_argument("--use_descriptions", action="store_true", help="fuse per-frame action descriptions")
    g.add_argument("--text_fusion_type", default="gating", choices=FUSION_TYPES)
    g.add_argument("--text_dropout_p", type=float, default=0.1)
    g.add_argument("--text_dropout_sample_p", type=float, default=0.0)
    g.add_argument("--desc_dir", default="description")
    g.add_argument("--desc_encoder", default=None, help="frozen text encoder directory (default: --mt5_model)")
    g.add_argument("--desc_store", default=None, help="precomputed embedding store (signfuse precompute-text)")
    g.add_argument("--desc_max_tokens", type=int, default=64)
    g.add_argument("--desc_strict", action="store_true", help="an unusable description file stops the run")
    g.add_argument("--max_gap", type=_optional_int, default=None, help="nearest-neighbour limit in frames")
    g.add_argument("--desc_alignment", default="interpolate", choices=ALIGNMENTS)
    g.add_argument("--eval_descriptions", default="on", choices=("on", "off", "both"),
                   help="evaluate with descriptions, with every frame masked, or both")


def run_parser(prog="fine_tuning.py") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Fine-tune or evaluate (--eval) Uni-Sign with descriptions.")
    add_run_args(p)
    return p


def check_run_args(args) -> None:
    """Flag problems that must stop a run before any work."""
    if args.rgb_support:
        raise InputError("--rgb_support: the RGB branch of Uni-Sign is not part of signfuse yet; "
                         "run without --rgb_support (pose only)")
    for name in ("batch_size", "gradient_accumulation_steps", "epochs", "max_length"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-') if name != 'max_length' else name} {getattr(args, name)}: must be at least 1")
    if not 0.0 <= args.text_dropout_p <= 1.0 or not 0.0 <= args.text_dropout_sample_p <= 1.0:
        raise InputError("--text_dropout_p / --text_dropout_sample_p: must be probabilities in [0, 1]")


def _run(args, evaluate_only: bool):
    from signfuse.training import run
    check_run_args(args)
    if evaluate_only or args.eval:
        return run.evaluate(args)
    return run.train(args)


# ----------------------------------------------------------------------------- sub-commands

def cmd_score(args):
    from signfuse.metrics import score_files
    print(json.dumps(score_files(args.pred, args.ref, dataset=args.dataset, task=args.task)))


def cmd_predict(args):
    from signfuse.predict import predict_file
    print(predict_file(args))


def _fractions(text: str) -> tuple:
    """'0.8,0.1,0.1' -> (0.8, 0.1, 0.1) (argparse type of make-synthetic --split)."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"{text!r}: expected three comma-separated fractions, e.g. 0.8,0.1,0.1")
    return values


def cmd_make_synthetic(args):
    from signfuse.data.synthetic import make_synthetic
    summary = make_synthetic(args.out, samples=args.samples, seed=args.seed, n_signs=args.n_signs,
                             n_pairs=args.n_pairs, desc_fraction=args.desc_fraction, split=args.split)
    print(json.dumps(summary, default=str))


def cmd_describe_stats(args):
    from signfuse.data.descriptions import describe_stats_command
    print(describe_stats_command(args))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="signfuse", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for name, evaluate_only, text in (("train", False, "fine-tune (same flags as fine_tuning.py)"),
                                      ("eval", True, "evaluate dev then test (same flags as fine_tuning.py)")):
        sp = sub.add_parser(name, help=text, description=text)
        add_run_args(sp)
        sp.set_defaults(func=lambda a, e=evaluate_only: _run(a, e))

    sp = sub.add_parser("score", help="score prediction/reference files written by evaluation")
    sp.add_argument("--pred", required=True, help="<split>_tmp_pres.txt")
    sp.add_argument("--ref", required=True, help="<split>_tmp_refs.txt")
    sp.add_argument("--dataset", default="CSL_Daily", choices=DATASETS, help="selects the post-processing")
    sp.add_argument("--task", default="SLT", choices=TASKS)
    sp.set_defaults(func=cmd_score)

    sp = sub.add_parser("predict", help="translate one pose file")
    sp.add_argument("--finetune", required=True, help="checkpoint")
    sp.add_argument("--mt5_model", default=UNISIGN_MT5_DIR)
    sp.add_argument("--pose", required=True, help="pose .pkl file")
    sp.add_argument("--description", default=None, help="description .json file of that video")
    sp.add_argument("--dataset", default=None, choices=DATASETS, help="(default: from the checkpoint)")
    sp.add_argument("--device", default=None)
    sp.add_argument("--max_length", type=int, default=256)
    sp.add_argument("--num_beams", type=int, default=4)
    sp.add_argument("--max_new_tokens", type=int, default=100)
    sp.add_argument("--trust_pickles", action="store_true")
    sp.add_argument("--desc_store", default=None)
    sp.add_argument("--desc_encoder", default=None)
    sp.add_argument("--desc_alignment", default="interpolate", choices=ALIGNMENTS)
    sp.add_argument("--max_gap", type=_optional_int, default=None)
    sp.set_defaults(func=cmd_predict)

    sp = sub.add_parser("make-synthetic", help="write the synthetic sign benchmark in Uni-Sign's layout")
    sp.add_argument("--out", required=True)
    sp.add_argument("--samples", type=int, default=600)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--n_signs", type=int, default=16, help="words of the lexicon")
    sp.add_argument("--n_pairs", type=int, default=4,
                    help="pairs of words that share their keypoints (told apart only by descriptions)")
    sp.add_argument("--desc_fraction", type=float, default=0.8, help="share of the samples with a description file")
    sp.add_argument("--split", type=_fractions, default=(0.8, 0.1, 0.1),
                    help="train,dev,test fractions of the samples (default 0.8,0.1,0.1)")
    sp.set_defaults(func=cmd_make_synthetic)

    sp = sub.add_parser("describe-stats", help="coverage of a dataset's description files")
    sp.add_argument("--desc_dir", default="description")
    sp.add_argument("--dataset", required=True, choices=DATASETS)
    sp.add_argument("--split", default=None, help="only the samples of this split's label file")
    sp.add_argument("--data_root", default=".")
    sp.add_argument("--label_dir", default=None)
    sp.add_argument("--mt5_model", default=None, help="count text length in this tokenizer's tokens")
    sp.add_argument("--trust_pickles", action="store_true")
    sp.set_defaults(func=cmd_describe_stats)

    for register in _extra_commands():
        register(sub)
    return p


def _extra_commands():
    """Sub-commands defined next to the code they drive."""
    from signfuse import demo, plotting
    from signfuse.data import check
    from signfuse.models import text_store
    return [demo.register, plotting.register, check.register, text_store.register]


def _rank_tag() -> str:
    """' (rank N)' for the processes other than rank 0 of a multi-process run, so that the
    same error from every rank reads as one line plus marked copies."""
    rank = os.environ.get("RANK", "0")
    return "" if rank == "0" else f" (rank {rank})"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except SignfuseError as e:
        print(f"signfuse: error{_rank_tag()}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("signfuse: interrupted", file=sys.stderr)
        return 130
    return 0


def fine_tuning_main(argv=None) -> int:
    """``python fine_tuning.py ...``: Uni-Sign's entry point."""
    args = run_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        _run(args, evaluate_only=False)
    except SignfuseError as e:
        print(f"fine_tuning.py: error{_rank_tag()}: {e}", file=sys.stderr)
        return 2
    return 0
