"""``signfuse extract-pose``: videos -> pose files in Uni-Sign's format (rtmlib)."""
from signfuse.errors import InputError
from signfuse.flags import add_flags
from signfuse.inference import pose_extraction
from signfuse.inference.pose_extraction import (
    DEFAULT_MODE,
    MODES,
    PoseExtractor,
    extract_videos,
    plan_outputs,
)


def cmd_extract_pose(args) -> None:
    """``signfuse extract-pose``: exit status 1 when a video failed."""
    if args.workers < 1:
        raise InputError(f"--workers {args.workers}: must be at least 1")
    jobs = plan_outputs(args.videos, args.out)
    todo = [job for job in jobs if args.overwrite or not job[1].exists()]
    extractor = PoseExtractor(args.mode, args.det, args.pose, args.device) if todo else None
    summary = extract_videos(jobs, extractor, args.overwrite, args.workers)
    print(summary.format())
    if summary.failed:
        raise SystemExit(1)


def add_extraction_args(p) -> None:
    """--mode --det --pose --overwrite: the pose extraction's flags (extract-pose, translate)."""
    g = p.add_argument_group("pose extraction (rtmlib, onnxruntime)")
    g.add_argument("--mode", default=DEFAULT_MODE, choices=MODES,
                   help="rtmlib's Wholebody models, downloaded once when --det/--pose are not given "
                        "(default: lightweight, as Uni-Sign's demo)")
    g.add_argument("--det", default=None, metavar="FILE.onnx",
                   help="local person detector (YOLOX/RTMDet end2end ONNX: dets (1, N, 5), labels (1, N))")
    g.add_argument("--pose", default=None, metavar="FILE.onnx",
                   help="local whole-body pose model (RTMW/RTMPose SimCC ONNX, 133 points)")
    g.add_argument("--overwrite", action="store_true", help="extract again the videos whose pose file exists")


def register(sub) -> None:
    sp = sub.add_parser("extract-pose", help="videos -> pose files in Uni-Sign's format (rtmlib; exit status 1 "
                                             "if a video failed)", description=pose_extraction.__doc__.split("\n\n")[0])
    sp.add_argument("--videos", nargs="+", required=True, metavar="DIR_OR_FILE",
                    help="video files, or folders (every video under them, sub-folders mirrored under --out)")
    sp.add_argument("--out", required=True, metavar="POSE_DIR", help="folder of the pose .pkl files")
    add_extraction_args(sp)
    add_flags(sp, "device")
    sp.add_argument("--workers", type=int, default=1, help="videos extracted at once (threads)")
    sp.set_defaults(func=cmd_extract_pose)
