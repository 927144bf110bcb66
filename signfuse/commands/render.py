"""``signfuse render (--video V | --pose P) [--finetune CKPT] --out FILE.mp4 [--gif]``: a video of
what the model saw and said (``signfuse.inference.render``).

With ``--pose`` the pose file is drawn (on the frames of ``--video`` when given, else on a plain
background); with ``--video`` alone its pose file is the one ``signfuse translate`` keeps next
to it (``<stem>.pose.pkl``), extracted with rtmlib's models when missing. With ``--finetune``
the pose is translated exactly as ``signfuse translate`` does (the same flags, the checkpoint's
settings unless given), and what the model saw is drawn.
"""
import json
from pathlib import Path
from types import SimpleNamespace

from signfuse import flags
from signfuse.commands.translate import predict_args, predict_parser
from signfuse.data.pose_files import read_pose_file
from signfuse.errors import InputError
from signfuse.inference import render, translate
from signfuse.inference.pose_extraction import DEFAULT_MODE
from signfuse.inference.predict import Predictor


def pose_of_video(args) -> Path:
    """The pose file of ``args.video``: translate's cached one, else extracted now (rtmlib)."""
    poses = translate.Poses(SimpleNamespace(mode=DEFAULT_MODE, det=None, pose=None, overwrite=False,
                                            cache_dir=None, device=args.device))
    return poses.get(Path(args.video))[0]


def cmd_render(args) -> None:
    if not args.video and not args.pose:
        raise InputError("render: give --video V, --pose P.pkl, or both")
    if args.video and not Path(args.video).is_file():
        raise InputError(f"{args.video}: video file not found")
    pose_file = Path(args.pose) if args.pose else pose_of_video(args)
    pose, size, fps = read_pose_file(pose_file, args.trust_pickles)
    seen = None
    if args.finetune:
        predictor = Predictor(predict_args(args, predict_parser()))
        seen = render.seen_by(predictor, pose, str(pose_file), video=args.video)
    out = Path(args.out)
    gif = out.with_suffix(".gif") if args.gif else None
    summary = render.render(pose, out, video=args.video, seen=seen, frame_size=size, fps=fps, gif=gif,
                            lossless=args.lossless, threshold=args.kpt_thr)
    summary.update(out=str(out), gif=str(gif) if gif else None, translation=seen.text if seen else None)
    print(json.dumps(summary, ensure_ascii=False))


def register(sub) -> None:
    sp = sub.add_parser("render", help="a video of what the model saw and said (skeleton, sampled frames, "
                                       "descriptions, gate, crops, translation)",
                        description=__doc__.split("\n\n")[0])
    g = sp.add_argument_group("inputs and output")
    flags.add_flags(g, "video")
    g.add_argument("--pose", default=None, help="pose .pkl file (frame k drawn on frame k of --video)")
    g.add_argument("--out", required=True, metavar="FILE.mp4", help="the rendered video")
    flags.add_flags(g, "gif", "lossless", "kpt_thr")
    flags.add_flags(g, "finetune")
    g.add_argument("--description", default=None, help="description .json file of the video")
    # the translation's flags, as `signfuse translate` (and predict) have them
    flags.add_prediction_args(sp, "trust_pickles")
    sp.set_defaults(func=cmd_render)
