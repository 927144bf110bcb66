"""``signfuse translate VIDEO... --finetune CKPT``: sign language videos in, translations out.

For each video, in order:
1. pose: the video's pose file in Uni-Sign's format (``signfuse.pose_extraction``, rtmlib),
   cached: ``<cache_dir>/<video stem>.pkl`` with ``--cache_dir``, else ``<video stem>.pose.pkl``
   next to the video. A cached file is used again unless ``--overwrite``, or unless signfuse
   made it with other models (its ``extraction`` block names them); a pose file made by
   another tool (no ``extraction`` block, e.g. Uni-Sign's own) is used as it is (said on stderr).
2. translation: exactly ``signfuse predict`` on that pose file, by one ``signfuse.predict.Predictor``
   for all the videos (the checkpoint is read and the model built once; the checkpoint's
   configuration decides the describer and the RGB branch): its namespace is predict's own
   defaults, overridden by the flags given here (same names, same meaning); the video gives
   the hand crops of an RGB-pose checkpoint.
The translation is printed, one line per video (``--json``: one JSON object per line with the
text, the pose file, timings per stage in seconds (pose, load, describe, rgb_crops, generate,
total) and the gate summary (``signfuse.predict.gate_summary``; null for a pose-only model)).
The pose stage needs rtmlib (``signfuse[pose]``) only when a pose file must be made.
"""
import argparse
import json
import sys
import time
from pathlib import Path

from signfuse import pose_extraction
from signfuse.errors import InputError, SampleError
from signfuse.safe_pickle import load_pickle


def cache_path(video, cache_dir=None) -> Path:
    """Where the pose file of ``video`` is kept."""
    video = Path(video)
    return Path(cache_dir) / f"{video.stem}.pkl" if cache_dir else video.with_name(f"{video.stem}.pose.pkl")


def model_names(mode: str, det, pose) -> dict:
    """The file names of the detector and pose models extract-pose will use (no download)."""
    from rtmlib import Wholebody
    names = {}
    for kind, path in (("det", det), ("pose", pose)):
        names[kind] = Path(path).name if path else Path(Wholebody.MODE[mode][kind]).name.split(".")[0] + ".onnx"
    return names


def reusable(path: Path, args) -> bool:
    """A cached pose file that can be used as it is (see the module doc)."""
    if args.overwrite or not path.is_file():
        return False
    try:
        data = load_pickle(path, error=SampleError)
    except SampleError:
        return False  # unreadable: made again
    made = data.get("extraction") if isinstance(data, dict) else None
    if not isinstance(made, dict):
        print(f"translate: using {path} as it is (a pose file not made by signfuse extract-pose)", file=sys.stderr)
        return True
    try:
        wanted = model_names(args.mode, args.det, args.pose)
    except ImportError:  # no rtmlib: the cached file is all there is
        return True
    return made.get("det") == wanted["det"] and made.get("pose") == wanted["pose"]


class Poses:
    """Pose files of videos; the extractor (rtmlib's models) is loaded once, when first needed."""

    def __init__(self, args):
        self.args, self.extractor = args, None

    def device(self) -> str:
        """onnxruntime's device: --device when onnxruntime runs there, else the CPU (the translation
        model still runs on --device); no --device: CUDA when onnxruntime has it and a GPU is present."""
        pose_extraction.require_rtmlib()
        import onnxruntime
        wanted = self.args.device
        if wanted is None:
            return pose_extraction.check_device(None)
        if wanted.startswith("cuda") and "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            return "cpu"
        return wanted

    def get(self, video: Path) -> tuple:
        """(pose file, 'cached' or 'extracted')."""
        target = cache_path(video, self.args.cache_dir)
        if reusable(target, self.args):
            return target, "cached"
        if self.extractor is None:
            self.extractor = pose_extraction.PoseExtractor(self.args.mode, self.args.det, self.args.pose,
                                                           self.device())
        try:
            pose_extraction.extract_one(self.extractor, video, target, overwrite=True, progress=True)
        except SampleError as e:
            raise InputError(str(e)) from None
        return target, "extracted"


def predict_parser() -> argparse.ArgumentParser:
    """The parser of ``signfuse predict`` (whatever flags it has)."""
    from signfuse import cli
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["predict"]


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


def translate_videos(args):
    """Yield, per video of ``args.videos`` in order, its result dict (text, pose file, timings, gates)."""
    from signfuse.predict import Predictor
    videos = [Path(v) for v in args.videos]
    for video in videos:  # every video is checked before any work
        if not video.is_file():
            raise InputError(f"{video}: video file not found" + (" (it is a directory)" if video.is_dir() else ""))
    if args.description and len(videos) > 1:
        raise InputError(f"--description {args.description}: the description file of one video; "
                         f"{len(videos)} videos given")
    predictor = Predictor(predict_args(args, predict_parser()))  # reads the checkpoint (a bad one stops here)
    poses = Poses(args)
    for video in videos:
        start = time.perf_counter()
        pose_file, how = poses.get(video)
        timings = {"pose": time.perf_counter() - start}
        details = {}
        text = predictor.predict(pose_file, str(pose_file), video=video, details=details)
        timings.update(details["timings"], total=time.perf_counter() - start)
        yield {"video": str(video), "text": text, "pose_file": str(pose_file), "pose": how,
               "timings_s": {k: round(v, 4) for k, v in timings.items()}, "gates": details["gates"]}


def cmd_translate(args) -> None:
    for result in translate_videos(args):
        if args.json:
            print(json.dumps(result, ensure_ascii=False), flush=True)
        else:
            print(" ".join(result["text"].splitlines()), flush=True)


RULES_FRAME_NOTE = ("The rules describer (--describe rules) takes --frame_size and --fps from the checkpoint "
                    "(its training data's, so that its texts follow training's convention; else the dataset's "
                    "defaults), not the video's "
                    "frame size and frame rate that the pose file records; give the flags to change them.")


def register(sub) -> None:
    from signfuse import flags as cli
    sp = sub.add_parser("translate", help="translate sign language videos (pose extraction, then predict)",
                        description=__doc__.split("\n\n")[0], epilog=RULES_FRAME_NOTE)
    g = sp.add_argument_group("inputs")
    g.add_argument("videos", nargs="+", metavar="VIDEO", help="video files")
    cli.add_flags(g, "finetune", required=("finetune",))
    g.add_argument("--description", default=None, help="description .json file of the video (one video only)")
    g = sp.add_argument_group("output and pose files")
    g.add_argument("--json", action="store_true", help="one JSON object per video: text, pose file, timings, gates")
    g.add_argument("--cache_dir", default=None,
                   help="folder of the pose files (<stem>.pkl; default: <stem>.pose.pkl next to each video)")
    pose_extraction.add_extraction_args(sp)
    # predict's own flags (the checkpoint's settings unless given), as `signfuse predict` has them
    cli.add_data_args(sp, "dataset", "max_length")
    cli.add_flags(sp.add_argument_group("model"), "mt5_model")
    cli.add_description_args(sp, "describe", "language", "frame_size", "fps", *cli.DESCRIPTION_MODEL)
    cli.add_generation_args(sp)
    cli.add_distributed_args(sp, "device")
    cli.add_rgb_args(sp, "rgb_support", "rgb_eval_sampling", "rgb_crop")
    sp.set_defaults(func=cmd_translate)
