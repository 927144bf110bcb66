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
import os
import sys

from signfuse.commands import (
    check_data,
    demo,
    describe,
    describe_stats,
    evaluate,
    export_pose,
    extract_pose,
    make_synthetic,
    plot_gates,
    precompute_text,
    predict,
    pretrain,
    render,
    score,
    serve,
    train,
    translate,
)
from signfuse.commands.train import run_training
from signfuse.errors import SignfuseError
from signfuse.flags import (  # noqa: F401 (re-exported)
    DESCRIPTION_MODEL,
    FLAGS,
    add_data_args,
    add_description_args,
    add_distributed_args,
    add_flags,
    add_generation_args,
    add_rgb_args,
    add_run_args,
    check_run_args,
    given_flags,
    pretrain_parser,
    run_parser,
)


def command_modules() -> list:
    """The modules of the sub-commands, in the order of ``signfuse --help``; each has
    ``register(sub)`` (its parser, ``set_defaults(func=handler)``)."""
    return [train, evaluate, predict, score, make_synthetic, describe_stats, demo, plot_gates, check_data,
            precompute_text, extract_pose, translate, describe, render, export_pose, serve, pretrain]


def _extra_commands():
    """The ``register`` functions of every sub-command."""
    return [module.register for module in command_modules()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="signfuse", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in _extra_commands():
        register(sub)
    return p


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
    return _script_main("fine_tuning.py", run_parser(), lambda args: run_training(args, evaluate_only=False), argv)


def pre_training_main(argv=None) -> int:
    """``python pre_training.py ...``: Uni-Sign's pre-training entry point (stages 1 and 2)."""
    return _script_main("pre_training.py", pretrain_parser(), pretrain.run_pretrain, argv)


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
