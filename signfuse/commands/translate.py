"""``signfuse translate``: sign language videos to text (pose extraction, then predict)."""
import argparse
import json

from signfuse import flags
from signfuse.commands import extract_pose, predict
from signfuse.inference import translate
from signfuse.inference.translate import translate_videos


def predict_parser() -> argparse.ArgumentParser:
    """The parser of ``signfuse predict`` (whatever flags it has)."""
    parser = argparse.ArgumentParser(prog="signfuse")
    predict.register(parser.add_subparsers())
    return parser._subparsers._group_actions[0].choices["predict"]


def predict_args(args, predict: argparse.ArgumentParser) -> argparse.Namespace:
    """The namespace of the videos' Predictor: predict's defaults, then the values of this
    command's flags that predict has (same names, same meaning)."""
    ns = argparse.Namespace(**{a.dest: predict.get_default(a.dest) for a in predict._actions if a.dest != "help"})
    for name, value in vars(args).items():
        if hasattr(ns, name) and name not in ("pose", "func"):
            setattr(ns, name, value)
    ns.pose = ns.video = None  # given per video
    given = getattr(args, "given_flags", None)
    ns.given_flags = None if given is None else frozenset(given) & set(vars(ns))
    return ns


def cmd_translate(args) -> None:
    for result in translate_videos(args, predict_args(args, predict_parser())):
        if args.json:
            print(json.dumps(result, ensure_ascii=False), flush=True)
        else:
            print(" ".join(result["text"].splitlines()), flush=True)


RULES_FRAME_NOTE = ("The rules describer (--describe rules) takes --frame_size and --fps from the checkpoint "
                    "(its training data's, so that its texts follow training's convention; else the dataset's "
                    "defaults), not the video's "
                    "frame size and frame rate that the pose file records; give the flags to change them.")


def register(sub) -> None:
    sp = sub.add_parser("translate", help="translate sign language videos (pose extraction, then predict)",
                        description=translate.__doc__.split("\n\n")[0], epilog=RULES_FRAME_NOTE)
    g = sp.add_argument_group("inputs")
    g.add_argument("videos", nargs="+", metavar="VIDEO", help="video files")
    flags.add_flags(g, "finetune", required=("finetune",))
    g.add_argument("--description", default=None, help="description .json file of the video (one video only)")
    g = sp.add_argument_group("output and pose files")
    g.add_argument("--json", action="store_true", help="one JSON object per video: text, pose file, timings, gates")
    g.add_argument("--cache_dir", default=None,
                   help="folder of the pose files (<stem>.pkl; default: <stem>.pose.pkl next to each video)")
    extract_pose.add_extraction_args(sp)
    # predict's own flags (the checkpoint's settings unless given), as `signfuse predict` has them
    flags.add_prediction_args(sp)
    sp.set_defaults(func=cmd_translate)
