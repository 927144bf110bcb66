"""Command line: ``fine_tuning.py`` (Uni-Sign's flags) and the ``signfuse`` command.

    signfuse train|eval [flags of fine_tuning.py]
    signfuse score --pred P --ref R [--dataset D] [--task T]
    signfuse predict --finetune CKPT --pose FILE.pkl [--description FILE.json] [--video FILE.mp4]
    signfuse precompute-text --dataset NAME [--desc_dir DIR] [--desc_encoder DIR] [--out FILE]
    signfuse describe-stats --dataset NAME [--desc_dir DIR] [--split S]
    signfuse check-data --dataset NAME [--use_descriptions] [--rgb_support]
    signfuse make-synthetic --out DIR --samples N --seed S [--videos]
    signfuse plot-gates --gates FILE.npz [--sample NAME] [--desc_dir DIR --dataset NAME] --out FILE.png
    signfuse extract-pose / translate / describe   (pose files from videos, videos to text, descriptions)
    signfuse pretrain [flags of pre_training.py]
    signfuse demo [--quick]

Every flag is defined once, in ``FLAGS`` (its type, default, choices and help), and means the
same in every command that takes it; commands pick theirs with the group functions
(``add_data_args``, ``add_description_args``, ``add_rgb_args``, ``add_generation_args``,
``add_distributed_args``, ...). ``check_run_args`` validates a run's flags, once.

A bad input stops the command with one line on stderr naming the file and the problem,
and exit status 2 (no traceback).
"""
import argparse
import json
import os
import sys

from signfuse.errors import SignfuseError
from signfuse.flags import (DESCRIPTION_MODEL, FLAGS, add_data_args, add_description_args,  # noqa: F401 (re-exported)
                            add_distributed_args, add_flags, add_generation_args, add_rgb_args, add_run_args,
                            check_run_args, given_flags, pretrain_parser, run_parser)


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
    """'0.8,0.1,0.1' -> (0.8, 0.1, 0.1) (argparse type of make-synthetic --split_fractions)."""
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
                             n_pairs=args.n_pairs, desc_fraction=args.desc_fraction, split=args.split_fractions,
                             mouthing=args.mouthing, cue_amplitude=args.cue_amplitude)
    if args.videos:
        from signfuse.data.synthetic_video import write_videos
        summary["videos"] = write_videos(args.out)
    print(json.dumps(summary, default=str))


def cmd_describe_stats(args):
    from signfuse.data.descriptions import describe_stats_command
    print(describe_stats_command(args))


def _add_run_commands(sub) -> None:
    for name, evaluate_only, text in (("train", False, "fine-tune (same flags as fine_tuning.py)"),
                                      ("eval", True, "evaluate dev then test (same flags as fine_tuning.py)")):
        sp = sub.add_parser(name, help=text, description=text)
        add_run_args(sp)
        sp.set_defaults(func=lambda a, e=evaluate_only: _run(a, e))


def _add_predict(sub) -> None:
    text = ("translate one pose file; the model's settings (mT5, dataset, sampling, alignment, generation, "
            "descriptions, RGB) are the checkpoint's unless given")
    sp = sub.add_parser("predict", help="translate one pose file", description=text)
    g = sp.add_argument_group("inputs")
    add_flags(g, "finetune", required=("finetune",))
    g.add_argument("--pose", required=True, help="pose .pkl file")
    g.add_argument("--description", default=None, help="description .json file of that video")
    add_flags(g, "video")
    add_data_args(sp, "dataset", "max_length", "trust_pickles")
    add_flags(sp.add_argument_group("model"), "mt5_model")
    add_description_args(sp, "describe", "language", "frame_size", "fps", *DESCRIPTION_MODEL)
    add_generation_args(sp)
    add_distributed_args(sp, "device")
    add_rgb_args(sp, "rgb_support", "rgb_eval_sampling", "rgb_crop")
    sp.set_defaults(func=cmd_predict)


def _add_data_commands(sub) -> None:
    sp = sub.add_parser("score", help="score prediction/reference files written by evaluation")
    sp.add_argument("--pred", required=True, help="<split>_tmp_pres.txt")
    sp.add_argument("--ref", required=True, help="<split>_tmp_refs.txt")
    add_data_args(sp, "dataset", "task")
    sp.set_defaults(func=cmd_score)

    sp = sub.add_parser("make-synthetic", help="write the synthetic sign benchmark in Uni-Sign's layout")
    sp.add_argument("--out", required=True)
    sp.add_argument("--samples", type=int, default=600)
    sp.add_argument("--seed", type=int, default=0, help="seed of the generated data")
    sp.add_argument("--n_signs", type=int, default=16, help="words of the lexicon")
    sp.add_argument("--n_pairs", type=int, default=4,
                    help="pairs of words that share their keypoints (told apart only by descriptions)")
    sp.add_argument("--desc_fraction", type=float, default=0.8, help="share of the samples with a description file")
    sp.add_argument("--split_fractions", type=_fractions, default=(0.8, 0.1, 0.1),
                    help="train,dev,test fractions of the samples (default 0.8,0.1,0.1)")
    sp.add_argument("--mouthing", type=float, default=0.0,
                    help="share of the signs during which the mouth opens (0 to 1; ground truth in truth/)")
    sp.add_argument("--cue_amplitude", type=float, default=0.0,
                    help="how far the paired signs' facial cue moves the face points, in body units (half a "
                         "shoulder width): a weak cue in the keypoints themselves (0: none)")
    add_flags(sp, "videos")
    sp.set_defaults(func=cmd_make_synthetic)

    sp = sub.add_parser("describe-stats", help="coverage of a dataset's description files")
    add_data_args(sp, "dataset", "split", "data_root", "label_dir", "trust_pickles", required=("dataset",))
    add_description_args(sp, "desc_dir")
    add_flags(sp, "mt5_model", default={"mt5_model": None})  # None: text length in words
    sp.set_defaults(func=cmd_describe_stats)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="signfuse", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run_commands(sub)
    _add_predict(sub)
    _add_data_commands(sub)
    for register in _extra_commands():
        register(sub)
    return p


def _extra_commands():
    """Sub-commands defined next to the code they drive."""
    from signfuse import demo, plotting, pose_extraction, translate
    from signfuse.data import check
    from signfuse.describe import command as describe
    from signfuse.commands import pretrain
    from signfuse.models import text_store
    return [demo.register, plotting.register, check.register, text_store.register, pose_extraction.register,
            translate.register, describe.register, pretrain.register]


def _rank_tag() -> str:
    """' (rank N)' for the processes other than rank 0 of a multi-process run, so that the
    same error from every rank reads as one line plus marked copies."""
    rank = os.environ.get("RANK", "0")
    return "" if rank == "0" else f" (rank {rank})"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    args.given_flags = given_flags(parser, argv)
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
    return _script_main("fine_tuning.py", run_parser(), lambda args: _run(args, evaluate_only=False), argv)


def pre_training_main(argv=None) -> int:
    """``python pre_training.py ...``: Uni-Sign's pre-training entry point (stages 1 and 2)."""
    from signfuse.commands.pretrain import run_pretrain
    return _script_main("pre_training.py", pretrain_parser(), run_pretrain, argv)


def _script_main(name: str, parser, body, argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    args.given_flags = given_flags(parser, argv)
    try:
        body(args)
    except SignfuseError as e:
        print(f"{name}: error{_rank_tag()}: {e}", file=sys.stderr)
        return 2
    return 0
