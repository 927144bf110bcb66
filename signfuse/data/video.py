"""Frame-exact reading of a few frames of a video (PyAV), for the RGB branch's hand crops.

Frame k of a video is the k-th frame in presentation order, as a sequential decode returns
them: pose frame k must be video frame k (docs/rgb-pose.md section 1). The RGB branch reads about
10% of a sample's frames, scattered and sorted; ``read_frames`` decodes in order, converts
only the wanted frames to RGB and stops after the last one. A wanted frame far ahead of the
decoder, past a keyframe, is reached by seeking to the keyframe before it (``SEEK_GAP``).

Exactness. Before decoding, the video's packets are demuxed once (no decoding) for their
presentation timestamps (pts): sorted, they give every frame's pts, so frame k is the decoded
frame whose pts is the k-th smallest, whether it was reached sequentially or after a seek,
and the frame count is known without decoding. A decoded frame whose pts is not in that
list, or a seek that lands past the wanted frame, makes the read start again from the
beginning, decoding sequentially and counting frames. Streams without usable timestamps are
always read that way. Single-threaded decoding (this runs inside DataLoader workers).

Errors are ``SampleError``s naming the file: missing or unreadable video, a wanted frame
beyond its end, fewer frames than its pose file.
"""
from pathlib import Path

import av
import numpy as np

from signfuse.errors import SampleError

# Seek to the keyframe before the next wanted frame when it lies more than this many frames
# ahead of the last decoded frame: the frames in between need not be decoded (a seek costs
# about as much as refilling the decoder's reorder delay, a few frames).
SEEK_GAP = 8


def video_error(message: str, kind: str = "video") -> SampleError:
    """A SampleError about a video: kind "missing", "video" (cannot be opened or decoded) or
    "frame_count" (fewer frames than wanted)."""
    return SampleError(message, kind=kind)


def open_video(path):
    """(container, video stream) of ``path``, decoding on one thread; SampleError when unusable."""
    path = Path(path)
    if not path.is_file():
        raise video_error(f"{path}: video file not found" + (" (it is a directory)" if path.is_dir() else ""),
                          kind="missing")
    try:
        container = av.open(str(path))
    except (OSError, av.error.FFmpegError) as e:
        raise video_error(f"{path}: cannot read the video ({e})") from None
    if not container.streams.video:
        container.close()
        raise video_error(f"{path}: no video stream in the file")
    stream = container.streams.video[0]
    stream.thread_type = "NONE"
    stream.codec_context.thread_count = 1
    return container, stream


def frame_pts(container, stream, path):
    """(N,) int64 sorted presentation timestamps of the stream's frames, and the frame numbers
    of its keyframes; (None, None) when some packet has no pts or two share one."""
    pts, keyframe = [], []
    try:
        for packet in container.demux(stream):
            if packet.size == 0 or packet.is_discard:  # the flush packet; frames an edit list drops
                continue
            if packet.pts is None:
                return None, None
            pts.append(packet.pts)
            keyframe.append(packet.is_keyframe)
    except (OSError, av.error.FFmpegError) as e:
        raise video_error(f"{path}: cannot read the video ({e})") from None
    pts, keyframe = np.asarray(pts, dtype=np.int64), np.asarray(keyframe, dtype=bool)
    order = np.argsort(pts, kind="stable")  # decode order -> presentation order
    pts, keyframe = pts[order], keyframe[order]
    if len(pts) > 1 and not (np.diff(pts) > 0).all():
        return None, None
    return pts, np.flatnonzero(keyframe)


def decode_sequential(path, wanted: np.ndarray, stop=None) -> tuple:
    """Decode ``path`` from its start, counting frames: ({frame number: RGB array} of the
    ``wanted`` ones (sorted, distinct), frames counted). Stops after ``stop`` frames (None: at
    the end of the video)."""
    container, stream = open_video(path)
    got, count, wanted_set = {}, 0, set(wanted.tolist())
    try:
        with container:
            for frame in container.decode(stream):
                if count in wanted_set:
                    got[count] = frame.to_ndarray(format="rgb24")  # (H, W, 3) uint8
                count += 1
                if stop is not None and count >= stop:
                    break
    except (OSError, av.error.FFmpegError) as e:
        raise video_error(f"{path}: cannot decode the video ({e})") from None
    return got, count


class Inexact(Exception):
    """The timestamps do not identify the decoded frames: read sequentially instead."""


def decode_by_pts(container, stream, pts: np.ndarray, keyframes: np.ndarray, wanted: np.ndarray,
                  seek_gap: int) -> dict:
    """{frame number: RGB array} of ``wanted`` (sorted, distinct), frames identified by pts."""
    number_of = {int(p): k for k, p in enumerate(pts)}
    got, position, frames = {}, -1, None  # position: frame number of the last decoded frame
    for k in wanted.tolist():
        before = np.searchsorted(keyframes, k, side="right") - 1  # the last keyframe at or before k
        key = int(keyframes[before]) if before >= 0 else -1
        if frames is None or key > position + seek_gap:
            try:
                container.seek(int(pts[max(key, 0)]), stream=stream, backward=True)  # flushes the decoder
            except av.error.FFmpegError:
                raise Inexact from None
            frames, position = container.decode(stream), -1
        for frame in frames:
            j = number_of.get(frame.pts)
            if j is None:
                raise Inexact
            position = j
            if j == k:
                got[k] = frame.to_ndarray(format="rgb24")  # (H, W, 3) uint8
                break
            if j > k:
                raise Inexact  # landed past the frame (a seek to a later keyframe)
        if k not in got:
            raise Inexact  # the stream ended before a frame its packets announced
    return got


def read_video(path, frame_numbers, min_frames: int = 0, seek_gap: int = SEEK_GAP,
               full_count: bool = False) -> tuple:
    """(frames (N, H, W, 3) uint8 RGB in the order of ``frame_numbers``, frame count).

    SampleError when the video is missing or unreadable, has fewer than ``min_frames`` frames,
    or ends before a wanted frame. ``seek_gap``: see SEEK_GAP (0 seeks whenever it can). The
    count is the video's when its timestamps are usable or ``full_count``; else decoding stops
    after the frames needed and the count is at least ``max(min_frames, last wanted + 1)``.
    """
    numbers = np.asarray(frame_numbers, dtype=np.int64).reshape(-1)  # (N,)
    if len(numbers) and numbers.min() < 0:
        raise ValueError(f"frame numbers must be >= 0, got {numbers.min()}")
    wanted = np.unique(numbers)  # sorted, distinct
    got = None
    container, stream = open_video(path)
    with container:
        pts, keyframes = frame_pts(container, stream, path)
        if pts is not None:
            check_count(path, len(pts), wanted, min_frames)
            try:
                got, count = decode_by_pts(container, stream, pts, keyframes, wanted, seek_gap), len(pts)
            except Inexact:
                pass
            except (OSError, av.error.FFmpegError) as e:
                raise video_error(f"{path}: cannot decode the video ({e})") from None
    if got is None:
        stop = None if full_count else max(int(wanted[-1]) + 1 if len(wanted) else 0, min_frames, 1)
        got, count = decode_sequential(path, wanted, stop)
        check_count(path, count, wanted, min_frames)
    if not len(numbers):
        return np.zeros((0, 0, 0, 3), np.uint8), count
    shapes = {got[k].shape for k in got}
    if len(shapes) > 1:
        raise video_error(f"{path}: frames of different sizes {sorted(shapes)}")
    frames = np.stack([got[k] for k in wanted.tolist()])  # (distinct, H, W, 3)
    return frames[np.searchsorted(wanted, numbers)], count  # (N, H, W, 3)


def check_count(path, count: int, wanted: np.ndarray, min_frames: int) -> None:
    if count < min_frames:
        raise video_error(f"{path}: the video has {count} frames, fewer than the {min_frames} frames "
                          f"of its pose file", kind="frame_count")
    if len(wanted) and wanted[-1] >= count:
        raise video_error(f"{path}: frame {int(wanted[-1])} wanted but the video has {count} frames",
                          kind="frame_count")


def read_frames(path, frame_numbers, min_frames: int = 0, seek_gap: int = SEEK_GAP) -> np.ndarray:
    """Frames ``frame_numbers`` of the video at ``path``: (N, H, W, 3) uint8 RGB (see read_video)."""
    return read_video(path, frame_numbers, min_frames, seek_gap)[0]


def count_frames(path) -> int:
    """The number of frames of the video at ``path`` (what a sequential decode returns)."""
    return read_video(path, [], full_count=True)[1]


def check_video(path, min_frames: int) -> int:
    """The frame count of the video at ``path``; SampleError when it is missing, unreadable or
    has fewer than ``min_frames`` frames (those of its pose file). Decodes nothing when the
    video's timestamps are usable."""
    count = count_frames(path)
    check_count(path, count, np.zeros(0, np.int64), min_frames)
    return count
