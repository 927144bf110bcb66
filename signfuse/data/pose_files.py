"""Pose files with what they record of their video (``read_pose_file``: frame size and rate, for
``signfuse render`` and ``serve``), and as pose-format ``.pose`` files (``signfuse export-pose
--format pose``).

pose-format (the sign.mt ecosystem's pose library) opens, views and augments ``.pose`` files.
The header is pose-format's own COCO-WholeBody one (``cocowholebody_components``: BODY, the 17
body and 6 foot points; FACE, 68; LEFT_HAND and RIGHT_HAND, 21 each: the 133 points in
COCO-WholeBody's order, as signfuse's pose files hold them). The body holds person 0 of every
frame of the file (the person signfuse reads), in pixels: the file's keypoints are fractions
of the frame size, which the file records when ``signfuse extract-pose`` made it (else
``frame_size``); the scores are the confidences (a point of score 0 is masked, pose-format's
convention); the frame rate is the file's (else ``fps``).
"""
from pathlib import Path

import numpy as np
from pose_format import Pose
from pose_format.numpy.pose_body import NumPyPoseBody
from pose_format.pose_header import PoseHeader, PoseHeaderDimensions
from pose_format.utils.cocowholebody133_header import cocowholebody_components

from signfuse.data.pose import pose_record
from signfuse.errors import InputError, SampleError
from signfuse.safe_pickle import load_pickle

DEFAULT_SIZE = (512, 512)
DEFAULT_FPS = 25.0
VERSION = 0.2  # the pose-format file version written


def read_pose_file(path, trust_pickles: bool = False) -> tuple:
    """(PoseRecord, frame size (W, H) or None, fps or None) of a pose file (restricted unpickling
    unless ``trust_pickles``); the size and rate are those its ``extraction`` block records."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: pose file not found")
    try:
        data = load_pickle(path, trust=trust_pickles, error=SampleError)
        record = pose_record(data, path)
    except SampleError as e:
        raise InputError(str(e)) from None
    made = data.get("extraction") if isinstance(data.get("extraction"), dict) else {}
    size = made.get("frame_size")
    size = tuple(int(v) for v in size) if isinstance(size, (list, tuple)) and len(size) == 2 else None
    fps = made.get("fps") if isinstance(made.get("fps"), (int, float)) and made.get("fps") > 0 else None
    return record, size, fps


def to_pose_format(record, frame_size, fps):
    """A pose-format ``Pose`` of a PoseRecord: (N, 1, 133, 2) pixels, (N, 1, 133) confidences."""
    width, height = frame_size
    header = PoseHeader(VERSION, PoseHeaderDimensions(width=width, height=height, depth=0), cocowholebody_components())
    pixels = (record.keypoints * np.array([width, height], np.float32)).astype(np.float32)  # (N, 133, 2)
    body = NumPyPoseBody(fps=float(fps), data=pixels[:, None], confidence=record.scores[:, None].astype(np.float32))
    return Pose(header, body)


def export_pose_file(path, out_path, trust_pickles: bool = False, frame_size=None, fps=None) -> dict:
    """Write ``out_path`` (.pose) from the pose file ``path``; returns what was written."""
    record, size, file_fps = read_pose_file(path, trust_pickles)
    size, fps = size or frame_size or DEFAULT_SIZE, file_fps or fps or DEFAULT_FPS
    pose = to_pose_format(record, size, fps)
    out_path = Path(out_path)
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with open(out_path, "wb") as f:
            pose.write(f)
    except OSError as e:
        raise InputError(f"{out_path}: cannot write the .pose file ({e.strerror or e})") from None
    return {"pose_file": str(path), "out": str(out_path), "frames": len(record.keypoints),
            "frame_size": list(size), "fps": fps}
