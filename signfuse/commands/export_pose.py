"""``signfuse export-pose POSE.pkl... --out DIR [--format pose]``: pose files in another format
(``signfuse.data.pose_files``): ``DIR/<stem>.pose``, one JSON line per file."""
import json
from pathlib import Path

from signfuse import flags
from signfuse.data.pose_files import export_pose_file
from signfuse.errors import InputError


def cmd_export_pose(args) -> None:
    stems = [Path(p).stem for p in args.pose_files]
    if len(set(stems)) != len(stems):
        raise InputError(f"{args.out}: two pose files have the same name ({', '.join(stems)}): export them apart")
    for path in args.pose_files:
        out = Path(args.out) / f"{Path(path).stem}.{args.format}"
        print(json.dumps(export_pose_file(path, out, args.trust_pickles, args.frame_size, args.fps)), flush=True)


def register(sub) -> None:
    sp = sub.add_parser("export-pose", help="pose files as pose-format .pose files",
                        description=__doc__.split("\n\n")[0],
                        epilog="--frame_size and --fps apply to pose files that do not record them (signfuse "
                               "extract-pose records both; default 512 x 512, 25 fps).")
    sp.add_argument("pose_files", nargs="+", metavar="POSE.pkl", help="signfuse / Uni-Sign pose files")
    sp.add_argument("--out", required=True, metavar="DIR", help="folder of the exported files")
    flags.add_flags(sp, "format", "trust_pickles", "frame_size", "fps")
    sp.set_defaults(func=cmd_export_pose)
