"""``signfuse extract-pose``: videos -> pose files in Uni-Sign's format, with rtmlib.

Uni-Sign's pose files come from its ``demo/pose_extraction.py``: rtmlib's ``Wholebody``
(a YOLOX person detector, then RTMW whole-body SimCC pose on each box, onnxruntime) on
every frame as OpenCV decodes it (BGR), keypoints divided by the frame's (W, H). The
extraction is part of the model (pose files made otherwise give other results), so this
module does the same, with these differences:

- Frames are decoded with PyAV, sequentially: frame k of the pose file is the k-th frame
  of the video in presentation order, the same numbering as the RGB branch's reader. The
  frames go to rtmlib as BGR (``to_ndarray(format="bgr24")``), the order its models get
  from OpenCV.
- The person kept is the signer, tracked over the whole video (Uni-Sign's bundled rtmlib
  keeps the largest box of each frame, which can jump to another person):
  every detection gets a score ``size * centrality * confidence`` (``person_score``);
  detections are linked over frames into tracks (greedy IoU >= ``LINK_IOU`` with the track's
  last box, gaps up to ``LINK_GAP`` frames); the signer is the track with the highest sum of
  scores. In a frame where the signer was not detected, the pose model runs on the
  signer's box from the nearest frame where it was; in a video where nobody is detected,
  on the whole frame (what rtmlib does without a box).

File written (``pickle``, protocol 4), exactly what Uni-Sign's demo writes plus two keys
its loader and signfuse's ignore (``start``/``end`` are never written):
    keypoints: list over frames of (1, 133, 2) float64 arrays, x / W and y / H
    scores:    list over frames of (1, 133) float32 arrays
    person_selection: how the person was chosen (``SELECTION``, per-frame counts and scores)
    extraction: models, input sizes, decoder, frame size (W, H) of the first frame, frame rate, frame count
Plain Python types only in the extra keys, so that ``signfuse.safe_pickle`` reads them.
"""
import contextlib
import io
import os
import pickle
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import torch
from tqdm import tqdm

from signfuse.errors import InputError, SampleError

MODES = ("lightweight", "balanced", "performance")
DEFAULT_MODE = "lightweight"  # Uni-Sign's demo default
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv")
NUM_POINTS = 133
LINK_IOU = 0.3   # a detection continues a track when its IoU with the track's last box is at least this
LINK_GAP = 30    # frames a track may go undetected and still be continued
DETECTED, CARRIED, WHOLE_FRAME = 0, 1, 2  # person_selection["source"] per frame
SELECTION = {
    "method": "signer track: detections linked over frames (greedy IoU >= %.1f with the track's last box, "
              "gaps up to %d frames); the track with the highest sum of person scores is the signer"
              % (LINK_IOU, LINK_GAP),
    "score": "size * centrality * confidence; size = sqrt(box area in the frame / frame area); centrality = "
             "max(0, 1 - distance(box centre, frame centre) / half the frame diagonal); confidence = mean over "
             "the 133 points of the pose score clipped to [0, 1]",
    "source_codes": {str(DETECTED): "signer detected in this frame",
                     str(CARRIED): "signer not detected: pose on its box from the nearest frame where it was",
                     str(WHOLE_FRAME): "nobody detected in the video: pose on the whole frame"},
}
INSTALL_HINT = "pip install 'signfuse[pose]'"
UMASK = os.umask(0o022)  # read once (at import, single-threaded) and restored
os.umask(UMASK)


# ----------------------------------------------------------------------------- video frames

def iter_frames(path, fmt: str = "bgr24"):
    """Every frame of ``path`` as an (H, W, 3) uint8 array, in presentation order (a
    sequential PyAV decode: frame k is the k-th frame). Unreadable video -> SampleError."""
    try:
        container = av.open(str(path))
    except av.FFmpegError as e:
        raise SampleError(f"{path}: cannot open the video ({getattr(e, 'strerror', None) or e})",
                          kind="video") from None
    with container:
        if not container.streams.video:
            raise SampleError(f"{path}: no video stream in the file", kind="video")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        count = 0
        try:
            for frame in container.decode(stream):
                yield np.ascontiguousarray(frame.to_ndarray(format=fmt))  # (H, W, 3)
                count += 1
        except av.FFmpegError as e:
            raise SampleError(f"{path}: decoding failed after {count} frames "
                              f"({getattr(e, 'strerror', None) or e})", kind="video") from None


def video_fps(path):
    """The frame rate the container states (average, else guessed), or None."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
    except (av.FFmpegError, IndexError):
        return None
    return float(rate) if rate else None


# ----------------------------------------------------------------------------- the signer

def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boxes (x0, y0, x1, y1)."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def person_score(box: np.ndarray, scores: np.ndarray, width: int, height: int) -> float:
    """size * centrality * confidence of one person (``SELECTION['score']``)."""
    x0, y0 = np.clip(box[:2], 0, (width, height))
    x1, y1 = np.clip(box[2:], 0, (width, height))
    size = np.sqrt(max(0.0, x1 - x0) * max(0.0, y1 - y0) / (width * height))
    centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    distance = np.linalg.norm(centre - np.array([width / 2, height / 2]))
    centrality = max(0.0, 1.0 - distance / (0.5 * np.hypot(width, height)))
    confidence = np.clip(scores, 0.0, 1.0).mean()
    return float(size * centrality * confidence)


@dataclass
class Person:
    box: np.ndarray        # (4,) x0 y0 x1 y1, pixels
    keypoints: np.ndarray  # (133, 2) float64, pixels
    scores: np.ndarray     # (133,) float32
    score: float           # person_score


@dataclass
class Track:
    frames: dict = field(default_factory=dict)  # frame -> index of its person in that frame
    total: float = 0.0
    last: int = -1

    def box(self, persons: list, frame: int) -> np.ndarray:
        return persons[frame][self.frames[frame]].box


def link_tracks(persons: list) -> list:
    """Tracks over ``persons`` (per frame a list of Person): greedy by IoU, best pairs first."""
    tracks = []
    for t, people in enumerate(persons):
        live = [tr for tr in tracks if t - tr.last <= LINK_GAP]
        pairs = sorted(((box_iou(tr.box(persons, tr.last), p.box), k, i)
                        for k, tr in enumerate(live) for i, p in enumerate(people)), reverse=True)
        used_tracks, used_people = set(), set()
        for iou, k, i in pairs:
            if iou < LINK_IOU:
                break
            if k in used_tracks or i in used_people:
                continue
            used_tracks.add(k)
            used_people.add(i)
            live[k].frames[t], live[k].last = i, t
            live[k].total += people[i].score
        for i, person in enumerate(people):
            if i not in used_people:
                tracks.append(Track({t: i}, person.score, t))
    return tracks


def choose_signer(persons: list):
    """-> (signer Track or None, tracks): the track with the highest sum of scores (ties: the earliest)."""
    tracks = link_tracks(persons)
    if not tracks:
        return None, tracks
    return max(tracks, key=lambda tr: tr.total), tracks


def nearest_box(track: Track, persons: list, frame: int) -> np.ndarray:
    """The signer's box in the tracked frame nearest to ``frame`` (the earlier one on a tie)."""
    nearest = min(track.frames, key=lambda t: (abs(t - frame), t))
    return track.box(persons, nearest)


# ----------------------------------------------------------------------------- rtmlib

def require_rtmlib() -> None:
    """InputError (one line, what to install) when rtmlib or onnxruntime is missing."""
    try:
        import onnxruntime  # noqa: F401
        import rtmlib  # noqa: F401
    except ImportError as e:
        raise InputError(f"pose extraction needs rtmlib and onnxruntime ({e.name or e} is not installed): "
                         f"{INSTALL_HINT}") from None


def check_device(device) -> str:
    """onnxruntime's device for --device: cpu, cuda or cuda:N (CUDA must be in this onnxruntime);
    None: CUDA when this onnxruntime has it and a GPU is present, else the CPU."""
    import onnxruntime
    has_cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    if device in (None, "", "auto"):
        return "cuda" if has_cuda and torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        if not has_cuda:
            raise InputError(f"--device {device}: this onnxruntime has no CUDA support (install onnxruntime-gpu, "
                             f"or use --device cpu)")
        return device
    raise InputError(f"--device {device}: expected cpu, cuda or cuda:N")


def resolve_model(path, kind: str, mode: str) -> str:
    """A local ONNX file: ``path`` when given, else rtmlib's model of ``mode`` (downloaded once into
    rtmlib's cache). No network -> InputError saying how to pass local files."""
    if path is not None:
        if not Path(path).is_file():
            raise InputError(f"{path}: file not found (--{kind})")
        return str(path)
    from rtmlib import Wholebody
    from rtmlib.tools import file as rtm_file
    url = Wholebody.MODE[mode][kind]
    cached = Path(rtm_file._get_rtmhub_dir(), "checkpoints", Path(url).name.split(".")[0] + ".onnx")
    if not cached.is_file():
        print(f"extract-pose: downloading rtmlib's {mode} {kind} model (once, into {cached.parent}): {url}",
              file=sys.stderr)
    messages = io.StringIO()
    try:
        with contextlib.redirect_stderr(messages), contextlib.redirect_stdout(messages):
            return rtm_file.download_checkpoint(url)
    except Exception as e:  # no network (URLError, timeout), HTTP error, broken archive
        reason = str(getattr(e, "reason", None) or e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"{url}: cannot download rtmlib's {mode} {kind} model ({reason}); without a network, "
                         f"pass local ONNX files: --det FILE.onnx --pose FILE.onnx") from None


def onnx_input_size(session, default: tuple, order: str) -> tuple:
    """The model's fixed input size from its ONNX signature (1, 3, H, W), as (H, W) or (W, H)."""
    shape = session.get_inputs()[0].shape
    if len(shape) == 4 and all(isinstance(v, int) and v > 0 for v in shape[2:]):
        h, w = shape[2], shape[3]
        return (h, w) if order == "hw" else (w, h)
    return tuple(default)


class PoseExtractor:
    """rtmlib's Wholebody (YOLOX + RTMW, onnxruntime): frames -> persons -> Uni-Sign's pose file."""

    def __init__(self, mode: str = DEFAULT_MODE, det=None, pose=None, device: str = None):
        require_rtmlib()
        from rtmlib import Wholebody
        if mode not in MODES:
            raise InputError(f"--mode {mode}: expected one of {', '.join(MODES)}")
        device = check_device(device)
        spec = Wholebody.MODE[mode]
        det_path, pose_path = resolve_model(det, "det", mode), resolve_model(pose, "pose", mode)
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # rtmlib prints each model it loads
                body = Wholebody(det=det_path, det_input_size=spec["det_input_size"], pose=pose_path,
                                 pose_input_size=spec["pose_input_size"], mode=mode, backend="onnxruntime",
                                 device=device)
        except Exception as e:  # onnxruntime: not an ONNX file, unsupported operator ...
            raise InputError(f"{det_path}, {pose_path}: onnxruntime cannot load the models "
                             f"({str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__})") from None
        self.det_model, self.pose_model = body.det_model, body.pose_model
        # local files may have other input sizes than the mode's: their ONNX signature decides
        self.det_model.model_input_size = onnx_input_size(self.det_model.session, spec["det_input_size"], "hw")
        self.pose_model.model_input_size = onnx_input_size(self.pose_model.session, spec["pose_input_size"], "wh")
        import rtmlib
        self.settings = {
            "tool": "signfuse extract-pose", "rtmlib": getattr(rtmlib, "__version__", "?"),
            "mode": mode, "det": Path(det_path).name, "pose": Path(pose_path).name,
            "det_input_size_hw": list(self.det_model.model_input_size),
            "pose_input_size_wh": list(self.pose_model.model_input_size),
            "channel_order": "BGR", "decoder": f"PyAV {av.__version__}",
        }

    def persons(self, image: np.ndarray, boxes) -> list:
        """Pose of each box ((K, 4) pixels, as the detector gave them) of a BGR frame."""
        height, width = image.shape[:2]
        if len(boxes) == 0:
            return []
        keypoints, scores = self.pose_model(image, bboxes=list(boxes))  # (K, 133, 2), (K, 133)
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        return [Person(box, kp, sc, person_score(box, sc, width, height))
                for box, kp, sc in zip(boxes, keypoints, scores, strict=True)]

    def whole_frame(self, image: np.ndarray) -> Person:
        """rtmlib's pose without a box: the whole frame."""
        height, width = image.shape[:2]
        keypoints, scores = self.pose_model(image, bboxes=[])  # (1, 133, 2), (1, 133)
        box = np.array([0, 0, width, height], np.float64)
        return Person(box, keypoints[0], scores[0], person_score(box, scores[0], width, height))

    def extract(self, path, progress: bool = False) -> dict:
        """The pose file (a dict, see the module doc) of the video at ``path``."""
        persons, sizes = [], []
        for image in tqdm(iter_frames(path), desc=Path(path).name, unit="frame", leave=False,
                          disable=None if progress else True, file=sys.stderr):
            sizes.append(image.shape[1::-1])  # (W, H)
            persons.append(self.persons(image, self.det_model(image)))
        if not persons:
            raise SampleError(f"{path}: the video has no frames", kind="video")
        signer, tracks = choose_signer(persons)
        chosen = [people[signer.frames[t]] if signer is not None and t in signer.frames else None
                  for t, people in enumerate(persons)]
        missing = [t for t, person in enumerate(chosen) if person is None]
        if missing:  # a second decode, of the frames where the signer was not detected
            for t, image in enumerate(iter_frames(path)):
                if chosen[t] is None:
                    chosen[t] = self.whole_frame(image) if signer is None else \
                        self.persons(image, nearest_box(signer, persons, t)[None])[0]
                if t == missing[-1]:
                    break
            if any(person is None for person in chosen):
                raise SampleError(f"{path}: a second decode gave fewer frames than the first ({len(chosen)})",
                                  kind="video")
        source = [DETECTED if signer is not None and t in signer.frames else
                  CARRIED if signer is not None else WHOLE_FRAME for t in range(len(chosen))]
        settings = dict(self.settings, fps=video_fps(path))
        return pose_file(chosen, sizes, persons, source, signer, tracks, settings)


def pose_file(chosen: list, sizes: list, persons: list, source: list, signer, tracks, settings: dict) -> dict:
    """Uni-Sign's pose dict (person ``chosen[t]`` of each frame) plus the two metadata keys."""
    keypoints = [np.asarray(p.keypoints[None] / np.array(size)[None, None], np.float64)  # (1, 133, 2)
                 for p, size in zip(chosen, sizes, strict=True)]
    scores = [np.asarray(p.scores[None], np.float32) for p in chosen]  # (1, 133)
    selection = dict(SELECTION)
    selection.update({
        "tracks": len(tracks), "signer_track_score": float(signer.total) if signer is not None else 0.0,
        "persons": [len(people) for people in persons],  # persons detected per frame
        "source": [int(s) for s in source],
        "frame_score": [round(p.score, 6) for p in chosen],
    })
    extraction = dict(settings, frames=len(chosen), frame_size=[int(v) for v in sizes[0]])
    return {"keypoints": keypoints, "scores": scores, "person_selection": selection, "extraction": extraction}


def write_pose_file(path, data: dict) -> None:
    """Pickle ``data`` to ``path`` atomically (a temporary file in the same folder, then renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(data, f, protocol=4)
        os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp makes it private; a pose file is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------- many videos

def plan_outputs(inputs, out) -> list:
    """[(video, pose file)]: a folder gives every video under it (sub-folders mirrored under
    ``out``), a file itself; the pose file is ``<out>/<relative path>`` with the suffix ``.pkl``."""
    jobs, seen = [], {}
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            found = sorted(f for f in item.rglob("*") if f.suffix.lower() in VIDEO_SUFFIXES and f.is_file())
            if not found:
                raise InputError(f"{item}: no video files ({', '.join(VIDEO_SUFFIXES)}) in this folder")
            pairs = [(f, Path(out) / f.relative_to(item).with_suffix(".pkl")) for f in found]
        elif item.is_file():
            pairs = [(item, Path(out) / Path(item.name).with_suffix(".pkl"))]
        else:
            raise InputError(f"{item}: no such file or folder (--videos)")
        for video, target in pairs:
            if target in seen:
                raise InputError(f"{video}: same pose file {target} as {seen[target]}; give them separate --out runs")
            seen[target] = video
            jobs.append((video, target))
    return jobs


@dataclass
class Summary:
    written: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    failed: list = field(default_factory=list)  # (video, reason)

    def format(self) -> str:
        lines = [f"extract-pose: {len(self.written)} written, {len(self.skipped)} skipped (pose file already "
                 f"there; --overwrite to redo), {len(self.failed)} failed"]
        lines += [f"  failed: {reason}" for _, reason in self.failed]
        return "\n".join(lines)


def inference_errors() -> tuple:
    """What onnxruntime and OpenCV raise on an input they cannot take (plain Exceptions)."""
    import cv2
    from onnxruntime.capi import onnxruntime_pybind11_state as ort
    return (RuntimeError, cv2.error, ort.Fail, ort.InvalidArgument, ort.RuntimeException)


def extract_one(extractor, video, target, overwrite: bool, progress: bool = False) -> str:
    """'written' or 'skipped'; SampleError when the video is unusable."""
    if Path(target).exists() and not overwrite:
        return "skipped"
    try:
        data = extractor.extract(video, progress=progress)
    except inference_errors() as e:  # onnxruntime / OpenCV on a frame they cannot take
        reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise SampleError(f"{video}: pose extraction failed ({type(e).__name__}: {reason})", kind="video") from None
    write_pose_file(target, data)
    return "written"


def extract_videos(jobs: list, extractor, overwrite: bool = False, workers: int = 1, progress: bool = True) -> Summary:
    """Extract every (video, pose file) of ``jobs``; a video that fails is counted and named."""
    summary = Summary()

    def run(job):
        try:
            return job, extract_one(extractor, *job, overwrite, progress=progress and workers == 1), None
        except SampleError as e:
            return job, "failed", str(e)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool, \
            tqdm(total=len(jobs), desc="extract-pose", unit="video", disable=None if progress else True,
                 file=sys.stderr) as bar:
        for future in as_completed([pool.submit(run, job) for job in jobs]):
            (video, target), status, reason = future.result()
            if status == "failed":
                summary.failed.append((video, reason))
            else:
                getattr(summary, status).append(target)
            bar.update(1)
    order = {job[0]: i for i, job in enumerate(jobs)}
    summary.failed.sort(key=lambda f: order[f[0]])
    return summary


