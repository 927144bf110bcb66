"""``signfuse translate VIDEO... --finetune CKPT``: sign language videos in, translations out.

For each video, in order:
1. pose: the video's pose file in Uni-Sign's format (``signfuse.inference.pose_extraction``, rtmlib),
   cached: ``<cache_dir>/<video stem>.pkl`` with ``--cache_dir``, else ``<video stem>.pose.pkl``
   next to the video. A cached file is used again unless ``--overwrite``, or unless signfuse
   made it with other models (its ``extraction`` block names them); a pose file made by
   another tool (no ``extraction`` block, e.g. Uni-Sign's own) is used as it is (said on stderr).
2. translation: exactly ``signfuse predict`` on that pose file, by one ``signfuse.inference.predict.Predictor``
   for all the videos (the checkpoint is read and the model built once; the checkpoint's
   configuration decides the describer and the RGB branch): its namespace is predict's own
   defaults, overridden by the flags given here (same names, same meaning); the video gives
   the hand crops of an RGB-pose checkpoint.
The translation is printed, one line per video (``--json``: one JSON object per line with the
text, the pose file, timings per stage in seconds (pose, load, describe, rgb_crops, generate,
total) and the gate summary (``signfuse.inference.predict.gate_summary``; null for a pose-only model)).
The pose stage needs rtmlib (``signfuse[pose]``) only when a pose file must be made.
"""
import argparse
import sys
import time
from pathlib import Path

from signfuse.errors import InputError, SampleError
from signfuse.inference import pose_extraction
from signfuse.inference.predict import Predictor
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


def translate_videos(args, predict_args: argparse.Namespace):
    """Yield, per video of ``args.videos`` in order, its result dict (text, pose file, timings, gates);
    ``predict_args``: the namespace of ``signfuse predict`` for the videos' Predictor."""
    videos = [Path(v) for v in args.videos]
    for video in videos:  # every video is checked before any work
        if not video.is_file():
            raise InputError(f"{video}: video file not found" + (" (it is a directory)" if video.is_dir() else ""))
    if args.description and len(videos) > 1:
        raise InputError(f"--description {args.description}: the description file of one video; "
                         f"{len(videos)} videos given")
    predictor = Predictor(predict_args)  # reads the checkpoint (a bad one stops here)
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


