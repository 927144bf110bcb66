"""Pose files: the keypoints of person 0 over the frames of one sample.

A pose file (``<pose_dir>/<video stem>.pkl``) is a pickle of a dict with
- ``keypoints``: per frame an array (P, 133, 2) of COCO-WholeBody points (x, y divided by
  the frame's width and height), P persons; a list of such arrays or one stacked array.
- ``scores``: per frame an array (P, 133) of confidences.
- optional ``start``, ``end``: only frames [start, end) belong to the sample.
Only person 0 is used; a frame with no person counts as all points at 0 with score 0.
Keypoints stored as float64 (rtmlib's, so Uni-Sign's own files) are also kept at that
precision (``PoseRecord.file_keypoints``): Uni-Sign computes the pose parts and the hand
boxes from them in float64, and so does signfuse (``PoseRecord.exact_keypoints``).
A pose file is one sample's input: any problem is a SampleError (the sample is skipped), of
the kind (errors.SAMPLE_ERROR_KINDS) that says what is wrong.
"""
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from signfuse.errors import SampleError
from signfuse.safe_pickle import load_pickle

NUM_POINTS = 133


@dataclass
class PoseRecord:
    keypoints: np.ndarray  # (N, 133, 2) float32, person 0
    scores: np.ndarray     # (N, 133) float32, person 0
    start: int             # first frame of the sample
    end: int               # one past its last frame
    file_keypoints: np.ndarray | None = None  # (N, 133, 2) float64 when the file's are float64, else None

    @property
    def num_frames(self) -> int:
        return self.end - self.start

    @property
    def float64_file(self) -> bool:
        """The file's keypoints are float64 (rtmlib's): Uni-Sign computes in float64 with them."""
        return self.file_keypoints is not None

    @property
    def exact_keypoints(self) -> np.ndarray:
        """(N, 133, 2) person 0 at the file's precision (float64 or float32): what Uni-Sign
        computes the pose parts and the hand boxes from."""
        return self.keypoints if self.file_keypoints is None else self.file_keypoints


def pose_path(pose_dir, video_path: str) -> Path:
    """The pose file of a sample: ``<pose_dir>/<video_path with .mp4 replaced by .pkl>``."""
    if video_path.endswith(".mp4"):
        video_path = video_path[:-len(".mp4")] + ".pkl"
    elif not video_path.endswith(".pkl"):
        video_path = video_path + ".pkl"
    return Path(pose_dir) / video_path


def person0(frames, point_shape: tuple, key: str, path, dtype=np.float32) -> np.ndarray:
    """Person 0 of every frame of ``frames`` as one ``dtype`` array (N, *point_shape).

    ``frames`` is a stacked array (N, P, *point_shape) or a sequence of per-frame arrays
    (P, *point_shape); a frame with no person (P = 0) gives zeros. A single person per
    frame may also come without its person axis.
    """
    if isinstance(frames, (dict, str, bytes)) or not hasattr(frames, "__len__") \
            or (isinstance(frames, np.ndarray) and frames.ndim == 0):
        raise SampleError(f"{path}: '{key}' is {type(frames).__name__}, expected a sequence over frames", kind="type")
    want = f"(persons, {', '.join(map(str, point_shape))})"
    try:  # fast path: every frame has the same number of persons
        stacked = np.asarray(frames, dtype=dtype)
    except (ValueError, TypeError):
        stacked = None
    if stacked is not None and stacked.ndim >= 1 and len(stacked) > 0:
        if stacked.shape[1:] == point_shape:  # (N, *point_shape): one person, no person axis
            return np.ascontiguousarray(stacked)
        if stacked.ndim == len(point_shape) + 2 and stacked.shape[2:] == point_shape:
            if stacked.shape[1] == 0:  # no person in any frame
                return np.zeros((len(stacked),) + point_shape, dtype)
            return np.ascontiguousarray(stacked[:, 0])
    if stacked is not None and stacked.size == 0 and stacked.ndim <= 1:
        return np.zeros((0,) + point_shape, dtype)
    out = np.zeros((len(frames),) + point_shape, dtype)
    for i, frame in enumerate(frames):  # ragged: persons differ between frames
        try:
            frame = np.asarray(frame, dtype=dtype)
        except (ValueError, TypeError):
            raise SampleError(f"{path}: '{key}' of frame {i} is not an array of numbers", kind="shape") from None
        if frame.size == 0:
            continue  # nobody detected: zeros, score 0
        if frame.shape == point_shape:
            out[i] = frame
        elif frame.shape[1:] == point_shape:
            out[i] = frame[0]
        else:
            raise SampleError(f"{path}: '{key}' of frame {i} has shape {frame.shape}, expected {want}", kind="shape")
    return out


def check_frame_range(pose: dict, num_frames: int, path) -> tuple:
    """(start, end) of the sample, 0 and N when absent; 0 <= start < end <= N."""
    start, end = pose.get("start", 0), pose.get("end", num_frames)
    for key, value in (("start", start), ("end", end)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise SampleError(f"{path}: '{key}' is {type(value).__name__}, expected an int", kind="start_end")
    start, end = int(start), int(end)
    if not 0 <= start < end <= num_frames:
        raise SampleError(f"{path}: bad start/end ({start}, {end}): need 0 <= start < end <= "
                          f"{num_frames} (the number of frames)", kind="start_end")
    return start, end


MAX_COORDINATE = 1e30  # beyond this the body box's size overflows float32 (normalisation gives NaN)


def check_finite(values: np.ndarray, key: str, path, first_frame: int = 0) -> None:
    """SampleError when ``values`` (frames first_frame, first_frame + 1, ...) hold NaN or inf."""
    bad = ~np.isfinite(values)
    if bad.any():
        frames = np.flatnonzero(bad.reshape(len(values), -1).any(axis=1))
        raise SampleError(f"{path}: {key} hold {int(bad.sum())} NaN or infinite values in "
                          f"{len(frames)} frames (first: frame {first_frame + int(frames[0])})", kind="non_finite")


def load_pose(path, trust_pickles: bool = False) -> PoseRecord:
    """Read and check the pose file at ``path``; person 0 of every frame."""
    return pose_record(load_pickle(path, trust=trust_pickles, error=SampleError), path)


def pose_record(pose, path) -> PoseRecord:
    """Check the contents of a pose file (``pose``, already in memory: its dict) and keep person 0
    of every frame; ``path`` names it in the errors."""
    if not isinstance(pose, dict):
        raise SampleError(f"{path}: pose file of the wrong type: {type(pose).__name__}, "
                          f"expected a dict with 'keypoints' and 'scores'", kind="type")
    for key in ("keypoints", "scores"):
        if key not in pose:
            have = ", ".join(repr(k) for k in pose) or "nothing"
            raise SampleError(f"{path}: no '{key}' in the pose file (it has {have})", kind="type")
    precision = file_precision(pose["keypoints"])
    keypoints = person0(pose["keypoints"], (NUM_POINTS, 2), "keypoints", path, precision)  # (N, 133, 2)
    file_keypoints = keypoints if precision == np.float64 else None
    with np.errstate(over="ignore"):  # beyond float32's range: inf, reported below as non-finite
        keypoints = keypoints.astype(np.float32, copy=False)
    scores = person0(pose["scores"], (NUM_POINTS,), "scores", path)  # (N, 133)
    if len(keypoints) == 0:
        raise SampleError(f"{path}: the pose file has zero frames", kind="no_frames")
    if len(keypoints) != len(scores):
        raise SampleError(f"{path}: {len(keypoints)} frames of keypoints but {len(scores)} frames of scores",
                          kind="frame_count")
    start, end = check_frame_range(pose, len(keypoints), path)
    check_finite(keypoints[start:end], "keypoints", path, start)
    check_finite(scores[start:end], "scores", path, start)
    huge = np.abs(keypoints[start:end]) > MAX_COORDINATE
    if huge.any():
        frame = start + int(np.flatnonzero(huge.reshape(end - start, -1).any(axis=1))[0])
        raise SampleError(f"{path}: keypoints hold values beyond ±{MAX_COORDINATE:g} (first: frame {frame}): "
                          "too large to normalise in float32", kind="range")
    return PoseRecord(keypoints, scores, start, end, file_keypoints)


def file_precision(frames) -> type:
    """np.float64 when a pose file's keypoints (judged by the first frame) are float64 or integers,
    which Uni-Sign's arithmetic with the float32 scores promotes to float64; else np.float32."""
    try:
        first = frames if isinstance(frames, np.ndarray) else frames[0]
        dtype = np.asarray(first).dtype
    except (TypeError, ValueError, IndexError, KeyError):
        return np.float32  # person0 reports what is wrong with it
    if dtype.kind not in "fiu":
        return np.float32
    return np.float64 if np.result_type(dtype, np.float32) == np.float64 else np.float32
