"""``make-synthetic --videos``: videos for the Synthetic benchmark, showing the hands where the pose puts them.

For every sample of the given splits, the pose file written by ``synthetic.py`` is drawn
frame by frame: on a plain dark background, each hand's finger bones as 1-pixel lines between
its 21 keypoints, one colour per finger (the left and right palettes differ), 3 x 3 dots on
the fingertips and a white 3 x 3 wrist. Frame k
of the video is pose frame k, for every frame of the pose file (``start``/``end`` included),
so the RGB branch's crops land on the drawn hands. Nothing else is drawn (no body, no face):
the videos exercise the RGB path end to end, they carry no information the pose lacks.

Videos are lossless H.264 (PyAV's libx264rgb, qp 0: every decoder returns exactly the drawn
pixels), 25 fps, 128 x 128 by default, in Uni-Sign's layout: ``paths.default_rgb_dir``
(``dataset/Synthetic/rgb_format/<split>/<video_path>``). Deterministic: the same pose files
give the same pixels.
"""
import shutil
from pathlib import Path

import av
import numpy as np

from signfuse.data import paths
from signfuse.data.labels import load_labels
from signfuse.data.pose import load_pose, pose_path
from signfuse.errors import InputError

FRAME_SIZE = (128, 128)  # (W, H)
FPS = 25
BACKGROUND = (40, 44, 52)
WRIST_COLOUR = (255, 255, 255)
PALETTES = {  # thumb, index, middle, ring, little
    "left": ((255, 80, 80), (255, 160, 40), (255, 230, 60), (230, 90, 200), (255, 130, 170)),
    "right": ((60, 140, 255), (60, 220, 220), (80, 230, 120), (150, 110, 255), (40, 200, 160)),
}
HAND_START = {"left": 91, "right": 112}
# the 20 bones of a COCO-WholeBody hand (0 = wrist; fingers 1-4, 5-8, 9-12, 13-16, 17-20)
BONE_PARENT = np.array([0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 0, 13, 14, 15, 0, 17, 18, 19])
BONE_CHILD = np.arange(1, 21)
BONE_SAMPLES = np.linspace(0.0, 1.0, 7)  # points stamped along each bone
FINGERTIPS = np.array([4, 8, 12, 16, 20])
PIXEL = np.array([(0, 0)])  # stamps: offsets (dy, dx)
DOT = np.array([(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)])  # 3 x 3


def stamp(frames: np.ndarray, points: np.ndarray, colours: np.ndarray, shape: np.ndarray) -> None:
    """Paint ``shape`` (offsets (O, 2) as dy, dx) at every point. points: (N, P, 2) pixel (x, y);
    colours: (P, 3) uint8. Points outside the frame are clipped away."""
    N, P = points.shape[:2]
    H, W = frames.shape[1:3]
    xy = np.floor(points + 0.5).astype(np.int64)  # (N, P, 2)
    y = xy[:, :, None, 1] + shape[None, None, :, 0]  # (N, P, O)
    x = xy[:, :, None, 0] + shape[None, None, :, 1]  # (N, P, O)
    n = np.broadcast_to(np.arange(N)[:, None, None], y.shape)
    c = np.broadcast_to(np.arange(P)[None, :, None], y.shape)
    inside = (y >= 0) & (y < H) & (x >= 0) & (x < W)
    frames[n[inside], y[inside], x[inside]] = colours[c[inside]]


def render_frames(keypoints: np.ndarray, size=FRAME_SIZE) -> np.ndarray:
    """(N, H, W, 3) uint8 frames drawing both hands of ``keypoints`` (N, 133, 2), fractions of (W, H)."""
    W, H = size
    frames = np.empty((len(keypoints), H, W, 3), np.uint8)
    frames[:] = BACKGROUND
    for hand in ("left", "right"):
        points = keypoints[:, HAND_START[hand]:HAND_START[hand] + 21] * np.array([W, H])  # (N, 21, 2) px
        parent, child = points[:, BONE_PARENT], points[:, BONE_CHILD]  # (N, 20, 2)
        along = parent[:, :, None] + BONE_SAMPLES[None, None, :, None] * (child - parent)[:, :, None]  # (N, 20, S, 2)
        colours = np.repeat(np.asarray(PALETTES[hand], np.uint8), 4, axis=0)  # (20, 3): 4 bones per finger
        stamp(frames, along.reshape(len(points), -1, 2), np.repeat(colours, len(BONE_SAMPLES), axis=0), PIXEL)
        stamp(frames, points[:, FINGERTIPS], np.asarray(PALETTES[hand], np.uint8), DOT)
        stamp(frames, points[:, :1], np.asarray([WRIST_COLOUR], np.uint8), DOT)
    return frames


def write_video(path, frames: np.ndarray, fps: int = FPS) -> Path:
    """Write ``frames`` (N, H, W, 3) uint8 RGB as a lossless H.264 video (libx264rgb, qp 0)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264rgb", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "rgb24"
        stream.options = {"qp": "0", "preset": "ultrafast"}
        stream.codec_context.thread_count = 1  # the same bytes on every machine
        for image in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())
    return path


def write_videos(out_dir, dataset: str = "Synthetic", splits=("train", "dev", "test"), size=FRAME_SIZE,
                 fps: int = FPS, overwrite: bool = False) -> dict:
    """Render the video of every sample of ``splits`` of the dataset under ``out_dir`` (written
    by ``make_synthetic``). Returns {"videos": {split: count}, "frames": total, "dirs": {split: folder}}."""
    out_dir = Path(out_dir)
    summary = {"videos": {}, "frames": 0, "dirs": {}}
    for split in splits:
        labels = load_labels(paths.label_path(dataset, split, out_dir))
        pose_folder = paths.pose_dir(dataset, split, out_dir)
        folder = paths.default_rgb_dir(dataset, split, out_dir)
        if folder.exists() and any(folder.iterdir()):
            if not overwrite:
                raise InputError(f"{folder}: already exists and is not empty; choose another output folder "
                                 f"or overwrite it (overwrite=True, --overwrite)")
            shutil.rmtree(folder)
        for sample in labels.values():
            pose = load_pose(pose_path(pose_folder, sample["video_path"]))
            frames = render_frames(pose.keypoints, size)  # every frame of the pose file
            write_video(folder / sample["video_path"], frames, fps)
            summary["frames"] += len(frames)
        summary["videos"][split] = len(labels)
        summary["dirs"][split] = str(folder)
    return summary
