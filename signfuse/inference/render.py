"""``signfuse render``: a video of what the model saw and said.

Frame k of the pose file is drawn on frame k of the video (or, from a pose file alone, on a
plain background of the pose file's frame size), scaled up by a whole factor when the video is
small (nearest neighbour: a source pixel becomes a square of pixels). On the picture:

- the COCO-WholeBody skeleton of the points whose score is at least ``--kpt_thr`` (rtmlib's
  skeleton and body colours; the face in white dots, the left hand yellow, the right hand cyan,
  so that hands and face are told apart). rtmlib's own ``draw_skeleton`` is not called: it
  gives both hands the same colours and draws the links over the points;
- the boxes of an RGB-pose model's hand crops, on the frames they were cut from, each with the
  RGB fusion gate of that crop.

Under the picture, a panel: the frame number and a timeline of the video with a tick per frame
the model sampled (the current frame as a white cursor; "SAMPLED" on a sampled frame), the
description text(s) aligned to the frame with their weights, the description gate as a bar, and
the translation as a caption. A frame that was not sampled shows, in grey, what the last
sampled frame before it got.

What the model saw comes from the prediction itself (``Predictor.predict``'s ``details["seen"]``:
the sampled frame numbers, the aligned descriptions, the gate per frame, the crop boxes), not
from a second computation. Written with PyAV: H.264 (yuv420p; ``lossless``: libx264rgb, qp 0,
the drawn pixels exactly) and, on request, a GIF.
"""
import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from signfuse.data.video import open_video
from signfuse.errors import InputError, SampleError

FACE, LEFT_HAND, RIGHT_HAND = range(23, 91), range(91, 112), range(112, 133)
PART_COLOURS = {"face": (255, 255, 255), "left": (255, 210, 0), "right": (0, 200, 255)}
BACKGROUND = (24, 24, 28)  # the plain background of a pose file without its video
PANEL = (16, 16, 20)
SAMPLED = (255, 64, 64)
DIM = (140, 140, 140)
MIN_WIDTH = 480  # a smaller video is scaled up by a whole factor to at least this width
DEFAULT_SIZE = (512, 512)  # (W, H) of a pose file that records no frame size
DEFAULT_FPS = 25.0
CROP_COLOURS = {"left": PART_COLOURS["left"], "right": PART_COLOURS["right"]}


# ----------------------------------------------------------------------------- the skeleton

def skeleton() -> tuple:
    """(links [(a, b, colour)], point colours (133, 3) uint8): rtmlib's COCO-WholeBody skeleton,
    with its colours for body and feet, and one colour each for the face and the two hands."""
    try:
        from rtmlib.visualization.skeleton import coco133
    except ImportError:
        raise InputError("render draws rtmlib's COCO-WholeBody skeleton: install it (pip install "
                         "'signfuse[pose]', or bash tools/setup.sh)") from None
    info = coco133["keypoint_info"]
    ids = {point["name"]: i for i, point in info.items()}
    colours = np.array([info[i]["color"] for i in range(133)], np.uint8)  # (133, 3)
    for part, points in (("face", FACE), ("left", LEFT_HAND), ("right", RIGHT_HAND)):
        colours[points.start:points.stop] = PART_COLOURS[part]
    links = []
    for link in coco133["skeleton_info"].values():
        a, b = ids[link["link"][0]], ids[link["link"][1]]
        hand = next((part for part, points in (("left", LEFT_HAND), ("right", RIGHT_HAND)) if a in points), None)
        links.append((a, b, tuple(int(v) for v in (PART_COLOURS[hand] if hand else link["color"]))))
    return links, colours


def pixel(points: np.ndarray) -> np.ndarray:
    """(..., 2) pixel coordinates -> the (x, y) int64 pixel each lands on (rounded half up)."""
    return np.floor(points + 0.5).astype(np.int64)


def draw_skeleton(draw: ImageDraw.ImageDraw, points: np.ndarray, scores: np.ndarray, threshold: float,
                  radius: int, links: list, colours: np.ndarray) -> np.ndarray:
    """Draw the confident points (score >= threshold) of one frame, links first, then the points
    on top (face points smaller). points: (133, 2) pixels. Returns the (133,) bool drawn mask."""
    confident = (scores >= threshold) & np.isfinite(points).all(axis=1)  # (133,)
    xy = pixel(np.nan_to_num(points))  # (133, 2)
    width = max(1, radius // 2)
    for a, b, colour in links:
        if confident[a] and confident[b]:
            draw.line([tuple(xy[a]), tuple(xy[b])], fill=colour, width=width)
    for i in np.flatnonzero(confident):
        r = max(1, radius // 2) if i in FACE else radius
        x, y = xy[i]
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(v) for v in colours[i]))
    return confident


# ----------------------------------------------------------------------------- what the model saw

@dataclass
class Seen:
    """The prediction's ``details["seen"]`` and translation, looked up by original frame number."""
    frames: list = field(default_factory=list)      # sampled original frame numbers (T,)
    aligned: list | None = None                     # per sampled frame: [(text, weight)]
    gate: list | None = None                        # per sampled frame: the description gate
    crops: dict | None = None                       # {hand: {"frames", "boxes", "gate"}}
    text: str | None = None                         # the translation (None: no model)

    @classmethod
    def of(cls, details: dict, text: str) -> "Seen":
        seen = details["seen"]
        return cls(seen["frame_indices"], seen["aligned"], seen["gate"], seen["crops"], text)

    def position(self, k: int) -> tuple:
        """(position of the last sampled frame <= k (or the first), whether k itself is sampled)."""
        if not self.frames:
            return None, False
        i = max(int(np.searchsorted(self.frames, k, side="right")) - 1, 0)
        return i, self.frames[i] == k

    def crops_at(self, k: int) -> list:
        """[(hand, box, gate)] of the crops cut from frame k."""
        out = []
        for hand, crops in (self.crops or {}).items():
            for f, box, g in zip(crops["frames"], crops["boxes"], crops["gate"], strict=True):
                if f == k:
                    out.append((hand, box, g))
        return out


# ----------------------------------------------------------------------------- one frame

def font(size: int) -> ImageFont.FreeTypeFont:
    """DejaVu Sans (shipped with matplotlib) at ``size`` pixels."""
    from matplotlib import font_manager
    return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)


@dataclass
class Layout:
    """Sizes of the output frames: the picture scaled by ``scale``, the panel under it."""
    width: int   # W of the source picture
    height: int  # H of the source picture
    scale: int
    line: int    # panel line height (pixels)

    @classmethod
    def for_size(cls, width: int, height: int) -> "Layout":
        scale = max(1, math.ceil(MIN_WIDTH / width))
        return cls(width, height, scale, max(16, min(28, width * scale // 30)))

    @property
    def out_width(self) -> int:
        return self.width * self.scale + (self.width * self.scale) % 2  # even, for yuv420p

    @property
    def panel_height(self) -> int:
        height = 6 * self.line + 8
        return height + (self.height * self.scale + height) % 2

    @property
    def out_height(self) -> int:
        return self.height * self.scale + self.panel_height


class Painter:
    """Draws the output frames of one pose file (and what the model saw of it)."""

    def __init__(self, layout: Layout, pose, seen: Seen | None, threshold: float):
        self.layout, self.pose, self.seen, self.threshold = layout, pose, seen, threshold
        self.links, self.colours = skeleton()
        self.font, self.small = font(int(layout.line * 0.72)), font(int(layout.line * 0.6))
        self.radius = max(2, layout.width * layout.scale // 160)

    def frame(self, k: int, picture: np.ndarray) -> np.ndarray:
        """Output frame k (out_height, out_width, 3) uint8 from the source picture (H, W, 3)."""
        L = self.layout
        image = Image.new("RGB", (L.out_width, L.out_height), PANEL)
        big = np.repeat(np.repeat(picture, L.scale, axis=0), L.scale, axis=1)  # (H s, W s, 3)
        image.paste(Image.fromarray(big), (0, 0))
        draw = ImageDraw.Draw(image)
        points = self.pose.keypoints[k].astype(np.float64) * np.array([L.width * L.scale, L.height * L.scale])
        draw_skeleton(draw, points, self.pose.scores[k], self.threshold, self.radius, self.links, self.colours)
        if self.seen is not None:
            self.crop_boxes(draw, k)
        self.panel(draw, k, top=L.height * L.scale)
        return np.asarray(image)

    def crop_boxes(self, draw, k: int) -> None:
        s = self.layout.scale
        for hand, (x0, y0, x1, y1), gate in self.seen.crops_at(k):
            colour = CROP_COLOURS[hand]
            draw.rectangle([x0 * s, y0 * s, x1 * s - 1, y1 * s - 1], outline=colour, width=max(1, s // 2))
            draw.text((x0 * s + 2, y0 * s + 1), f"{hand[0].upper()} crop, RGB gate {gate:.2f}", fill=colour,
                      font=self.small)

    def panel(self, draw, k: int, top: int) -> None:
        L, seen = self.layout, self.seen
        x, line = 8, L.line
        position, sampled = seen.position(k) if seen else (None, False)
        head = f"frame {k} / {len(self.pose.keypoints)}"
        if seen is not None and seen.frames:
            head += f"   sampled frames: {len(seen.frames)}"
        draw.text((x, top + 4), head, fill=(230, 230, 230), font=self.font)
        if sampled:
            draw.text((L.out_width - 8, top + 4), f"SAMPLED {position + 1}/{len(seen.frames)}", fill=SAMPLED,
                      font=self.font, anchor="ra")
        self.timeline(draw, k, top + line + 6)
        if seen is None:
            draw.text((x, top + 2 * line + 12), "no model: the pose file's keypoints only", fill=DIM, font=self.font)
            return
        colour = (240, 240, 240) if sampled else DIM
        draw.text((x, top + 2 * line + 12), "description: " + self.description(position), fill=colour,
                  font=self.font)
        self.gate_bar(draw, position, top + 3 * line + 14, colour)
        for i, text in enumerate(wrap(draw, f"translation: {seen.text}", self.font, L.out_width - 2 * x)[:2]):
            draw.text((x, top + (4 + i) * line + 16), text, fill=(255, 255, 255), font=self.font)

    def timeline(self, draw, k: int, y: int) -> None:
        """A bar over the video's frames: a red tick per sampled frame, a white cursor at k."""
        L, n = self.layout, len(self.pose.keypoints)
        x0, x1 = 8, L.out_width - 8

        def at(f):
            return x0 + (x1 - x0) * (f + 0.5) / n
        draw.rectangle([x0, y + 4, x1, y + 8], fill=(60, 60, 66))
        for f in (self.seen.frames if self.seen else []):
            draw.line([(at(f), y), (at(f), y + 12)], fill=SAMPLED, width=1)
        draw.rectangle([at(k) - 2, y - 2, at(k) + 2, y + 14], fill=(255, 255, 255))

    def description(self, position) -> str:
        aligned = self.seen.aligned
        if aligned is None:
            return "(the model takes no descriptions)"
        pairs = aligned[position] if position is not None else []
        if not pairs:
            return "(none: mask embedding)"
        return " | ".join(text if len(pairs) == 1 else f"{text} ({weight:.2f})" for text, weight in pairs)

    def gate_bar(self, draw, position, y: int, colour) -> None:
        L, x = self.layout, 8
        if self.seen.gate is None or position is None:
            draw.text((x, y), "gate: (none: pose-only fusion)", fill=DIM, font=self.font)
            return
        value = float(self.seen.gate[position])
        label = f"gate {value:.2f}"
        draw.text((x, y), label, fill=colour, font=self.font)
        bx0 = x + int(draw.textlength("gate 0.00  ", font=self.font))
        bx1, h = L.out_width - 8, int(L.line * 0.6)
        draw.rectangle([bx0, y + 2, bx1, y + 2 + h], outline=(120, 120, 120))
        draw.rectangle([bx0, y + 2, bx0 + int((bx1 - bx0) * min(max(value, 0.0), 1.0)), y + 2 + h],
                       fill=(80, 200, 120))


def wrap(draw, text: str, font, width: int) -> list:
    """``text`` in lines of at most ``width`` pixels (words kept whole; a long word cut)."""
    lines, current = [], ""
    for word in " ".join(text.split()).split(" "):
        trial = f"{current} {word}".strip()
        if draw.textlength(trial, font=font) <= width or not current:
            current = trial
        else:
            lines.append(current)
            current = word
    return lines + [current]


# ----------------------------------------------------------------------------- sources and writers

def video_frames(path, count: int):
    """The first ``count`` frames of a video (H, W, 3) uint8 RGB, in presentation order; the video
    must have at least ``count`` frames (one line naming it otherwise)."""
    try:
        container, stream = open_video(path)
    except SampleError as e:
        raise InputError(str(e)) from None
    n = 0
    with container:
        try:
            for frame in container.decode(stream):
                if n == count:
                    break
                yield frame.to_ndarray(format="rgb24")
                n += 1
        except av.error.FFmpegError as e:
            raise InputError(f"{path}: cannot decode the video at frame {n} ({e})") from None
    if n < count:
        raise InputError(f"{path}: the video has {n} frames, fewer than its pose file's {count} "
                         "(frame k of the pose file is drawn on frame k of the video)")


def video_info(path) -> tuple:
    """((W, H), frames per second) of a video."""
    try:
        container, stream = open_video(path)
    except SampleError as e:
        raise InputError(str(e)) from None
    with container:
        rate = stream.average_rate or stream.guessed_rate
        return (stream.codec_context.width, stream.codec_context.height), float(rate) if rate else DEFAULT_FPS


class Writer:
    """Writes frames to an MP4 (H.264) and, optionally, a GIF, with PyAV."""

    def __init__(self, out, size: tuple, fps: float, gif=None, lossless: bool = False):
        rate = Fraction(fps).limit_denominator(1001)
        self.outputs = []
        codec, pix_fmt, options = ("libx264rgb", "rgb24", {"qp": "0", "preset": "ultrafast"}) if lossless else \
            ("libx264", "yuv420p", {"crf": "20", "preset": "veryfast"})
        self.open(out, codec, pix_fmt, rate, size, options)
        if gif:
            self.open(gif, "gif", "rgb8", rate, size, {})

    def open(self, path, codec, pix_fmt, rate, size, options) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            container = av.open(str(path), "w")
        except (OSError, av.error.FFmpegError) as e:
            raise InputError(f"{path}: cannot write the video ({e})") from None
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], pix_fmt
        stream.options = options
        stream.codec_context.thread_count = 1
        self.outputs.append((container, stream))

    def write(self, image: np.ndarray) -> None:
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        for container, stream in self.outputs:
            container.mux(stream.encode(frame))

    def close(self) -> None:
        for container, stream in self.outputs:
            container.mux(stream.encode())
            container.close()


# ----------------------------------------------------------------------------- the whole video

def render(pose, out, video=None, seen: Seen | None = None, frame_size=None, fps=None, gif=None,
           lossless: bool = False, threshold: float = 0.3) -> dict:
    """Write the rendered video of ``pose`` (a PoseRecord: every frame of its file) to ``out``
    (and ``gif``): on the frames of ``video``, else on a plain background of ``frame_size``
    ((W, H), default DEFAULT_SIZE). ``seen``: what a model saw and said (None: skeleton only).
    Returns {"frames", "size" (W, H out), "fps", "scale"}."""
    count = len(pose.keypoints)
    if video is not None:
        (width, height), video_fps = video_info(video)
        pictures = video_frames(video, count)
    else:
        width, height = frame_size or DEFAULT_SIZE
        video_fps, plain = None, np.empty((height, width, 3), np.uint8)
        plain[:] = BACKGROUND
        pictures = (plain for _ in range(count))
    fps = fps or video_fps or DEFAULT_FPS
    layout = Layout.for_size(width, height)
    painter = Painter(layout, pose, seen, threshold)
    writer = Writer(out, (layout.out_width, layout.out_height), fps, gif=gif, lossless=lossless)
    written = 0
    try:
        for k, picture in enumerate(pictures):
            writer.write(painter.frame(k, picture))
            written += 1
    finally:
        writer.close()
    return {"frames": written, "size": [layout.out_width, layout.out_height], "fps": fps, "scale": layout.scale}


# ----------------------------------------------------------------------------- inputs

def seen_by(predictor, pose, name: str, video=None) -> Seen:
    """Translate ``pose`` with ``predictor`` (a ``signfuse.predict.Predictor``) and keep what its
    model saw (``details["seen"]``) with the translation."""
    details = {}
    text = predictor.predict(pose, name, video=video, details=details)
    return Seen.of(details, text)
