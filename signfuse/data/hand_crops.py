"""Hand crops for the RGB branch (``--rgb_support``): docs/rgb-pose.md sections 2-7.

For one sample, given its sampled frames (original frame numbers, ``tmp`` in Uni-Sign) and
its pose, per hand (left, then right):

1. ``select_positions``: the confident positions (mean score of the hand's 21 points > 0.3),
   weighted towards low fingertip confidence; k = ceil(0.1 n) of them, drawn at random
   (training, and ``eval_sampling='random'``) or the k with the largest weights (evaluation,
   ``topk``: lowest fingertip minimum first, ties to the earlier frame). Positions index the
   sampled frames (the time axis of the pose features).
2. the video frames of the union of both hands' positions are read (``signfuse.data.video``,
   frame-exact); the video must have at least as many frames as the pose file.
3. ``hand_boxes``: one square side S per sample (1.2 x the largest hand extent, even), a box
   per sampled frame centred on the hand, each bound truncated to int16 on its own.
4. ``cut_hand``: the box cut out of the frame, ``unisign`` (numpy slicing: a negative bound
   counts from the opposite edge, as Uni-Sign's crops do) or ``padded`` (zero fill outside the
   frame, the box stays centred); zero-padded at the bottom and right to S; PIL bicubic resize
   to 112x112; ``normalize_crops``: ToTensor + Normalize (ImageNet mean and std).
5. ``skeletons_norm``: the hand's 21 points in box coordinates, divided by S, clipped to [0, 1].

A hand with no confident frame, or every hand when S = 0, is a *dummy*: index -1, one zero
crop, one zero skeleton. No video is opened when no hand is confident. Outputs are float32,
indices int64.

Randomness: ``rng`` is a ``np.random.Generator`` (ours: ``SignDataset`` derives it from
``(seed, epoch, index)``) or a legacy ``np.random.RandomState``, with which the draw is exactly
Uni-Sign's ``np.random.choice`` (its global generator; used to reproduce its fixture).
Boxes are computed in the dtype of the keypoints given (Uni-Sign: the pose file's, float64 for
rtmlib files), see ``load_hand_crops``'s ``keypoints``.
"""
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from signfuse.config import RGB_CROPS, RGB_EVAL_SAMPLING
from signfuse.data.video import read_frames
from signfuse.errors import InputError

HANDS = ("left", "right")
HAND_POINTS = {"left": slice(91, 112), "right": slice(112, 133)}
FINGERTIPS = {"left": [95, 99, 103, 107, 111], "right": [116, 120, 124, 128, 132]}
CONFIDENCE = 0.3       # a hand is confident in a frame when its mean score is above this (strict)
SAMPLE_FRACTION = 0.1  # k = ceil(0.1 * confident frames)
BOX_SCALE = 1.2        # box side: 1.2 x the largest hand extent of the sample
IMAGE_SIZE = 112
MEAN = (0.485, 0.456, 0.406)  # torchvision's ImageNet normalisation
STD = (0.229, 0.224, 0.225)
DUMMY_INDEX = -1


@dataclass
class RGBSettings:
    """Where the videos are and how crops are made (``--rgb_dir``, ``--rgb_crop``, ``--rgb_eval_sampling``)."""
    video_dir: str
    crop: str = "unisign"          # unisign: numpy-slicing cuts; padded: zero fill outside the frame
    eval_sampling: str = "topk"    # topk: deterministic k best frames; random: Uni-Sign's draw

    def __post_init__(self):
        if self.crop not in RGB_CROPS:
            raise InputError(f"--rgb_crop {self.crop}: expected one of {', '.join(RGB_CROPS)}")
        if self.eval_sampling not in RGB_EVAL_SAMPLING:
            raise InputError(f"--rgb_eval_sampling {self.eval_sampling}: expected one of "
                             f"{', '.join(RGB_EVAL_SAMPLING)}")


# ----------------------------------------------------------------------------- frame selection
def hand_candidates(scores: np.ndarray, hand: str) -> tuple:
    """(confident positions (n,) int64, their draw probabilities (n,), fingertip minima (n,)).

    scores: (T, 133) of the sampled frames (person 0). Probabilities and minima keep the
    scores' dtype, as in Uni-Sign (float32 for real pose files).
    """
    confident = np.flatnonzero(scores[:, HAND_POINTS[hand]].mean(-1) > CONFIDENCE)  # (n,)
    tips = scores[confident][:, FINGERTIPS[hand]].min(-1)  # (n,)
    weights = (tips.max() - tips + 1e-5) if len(tips) else tips  # best fingertips: almost no chance
    return confident.astype(np.int64), weights / weights.sum(), tips


def select_positions(scores: np.ndarray, hand: str, mode: str, rng=None):
    """Positions (k,) int64 sorted of the frames that get a ``hand`` crop; None if the hand is
    never confident. mode: 'random' (draw k without replacement with Uni-Sign's
    probabilities from ``rng``, a Generator or a legacy RandomState) or 'topk'."""
    positions, probabilities, tips = hand_candidates(scores, hand)
    if not len(positions):
        return None
    k = max(1, math.ceil(SAMPLE_FRACTION * len(positions)))
    if mode == "topk":  # largest weight = lowest fingertip minimum; a stable sort keeps ties in frame order
        chosen = positions[np.argsort(tips, kind="stable")[:k]]
    elif mode == "random":
        if rng is None:
            raise ValueError("random hand-frame selection needs a generator (rng)")
        chosen = rng.choice(positions.tolist(), size=k, replace=False, p=probabilities)
    else:
        raise ValueError(f"unknown selection mode {mode!r}: expected 'random' or 'topk'")
    return np.sort(np.asarray(chosen, dtype=np.int64))


# ----------------------------------------------------------------------------- boxes and crops
def hand_boxes(left_points, right_points, width: int, height: int) -> tuple:
    """(left boxes (k_l, 4) int16, right boxes (k_r, 4) int16, side S) as x0, y0, x1, y1 pixels.

    points: (k, 21, 2) fractions of (width, height), or None for an absent hand (one frame at
    (0, 0)). Computed in the points' dtype; each bound truncated to int16 on its own.
    """
    def centres_and_extent(points):
        points = np.zeros((1, 21, 2)) if points is None else points
        low, high = points.min(axis=1), points.max(axis=1)  # (k, 2)
        cx, cy = width * ((high[:, 0] + low[:, 0]) / 2), height * ((high[:, 1] + low[:, 1]) / 2)  # (k,)
        extent = max(max(width * (high[:, 0] - low[:, 0])), max(height * (high[:, 1] - low[:, 1])))
        return cx, cy, extent

    (lx, ly, le), (rx, ry, re) = centres_and_extent(left_points), centres_and_extent(right_points)
    side = max(int(max(le, re) * BOX_SCALE / 2) * 2, 0)

    def boxes(cx, cy):
        return np.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]).astype(np.int16).T  # (k, 4)
    return boxes(lx, ly), boxes(rx, ry), side


def cut_hand(frame: np.ndarray, box, side: int, crop: str = "unisign") -> np.ndarray:
    """The box's pixels of ``frame`` (H, W, 3) uint8, zero-padded at the bottom and right to at
    least side x side. unisign: numpy slicing (negative bounds count from the far edge);
    padded: pixels outside the frame are zeros, the box keeps its place."""
    x0, y0, x1, y1 = (int(v) for v in box)
    if crop == "unisign":
        cut = frame[y0:y1, x0:x1]  # (h, w, 3)
    elif crop == "padded":
        cut = np.zeros((max(y1 - y0, 0), max(x1 - x0, 0), 3), np.uint8)  # (h, w, 3)
        H, W = frame.shape[:2]
        sy0, sy1, sx0, sx1 = max(y0, 0), min(y1, H), max(x0, 0), min(x1, W)
        if sy1 > sy0 and sx1 > sx0:
            cut[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = frame[sy0:sy1, sx0:sx1]
    else:
        raise ValueError(f"unknown crop {crop!r}: expected one of {', '.join(RGB_CROPS)}")
    pad = ((0, max(0, side - cut.shape[0])), (0, max(0, side - cut.shape[1])), (0, 0))
    return np.pad(cut, pad, mode="constant", constant_values=0)


def resize_crop(cut: np.ndarray) -> np.ndarray:
    """(112, 112, 3) uint8: PIL's bicubic resize (Uni-Sign's ``resize`` default for RGB)."""
    image = Image.fromarray(np.ascontiguousarray(cut)).convert("RGB")
    return np.asarray(image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC))


def normalize_crops(crops: np.ndarray) -> torch.Tensor:
    """(k, 112, 112, 3) uint8 -> (k, 3, 112, 112) float32: torchvision's ToTensor then Normalize,
    the same operations in the same order (torchvision is not imported for it)."""
    x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float().div(255)  # (k, 3, 112, 112)
    mean = torch.tensor(MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(STD, dtype=torch.float32).view(1, 3, 1, 1)
    return x.sub_(mean).div_(std)


def skeletons_norm(points: np.ndarray, boxes: np.ndarray, side: int, width: int, height: int) -> np.ndarray:
    """(k, 21, 2) float32: the points in pixels minus their box's (x0, y0), over S, clipped to [0, 1]."""
    pixels = points * np.array([width, height])  # (k, 21, 2) float64, as Uni-Sign's
    return ((pixels - boxes[:, None, :2]) / side).clip(0, 1).astype(np.float32)


@dataclass
class HandCrops:
    """One hand's crops of a sample, before normalisation."""
    indices: np.ndarray     # (k,) int64 positions
    boxes: np.ndarray       # (k, 4) int16
    crops: np.ndarray       # (k, 112, 112, 3) uint8
    skeletons: np.ndarray   # (k, 21, 2) float32


def crop_hands(images: np.ndarray, union: np.ndarray, positions: dict, points: dict, crop: str) -> tuple:
    """({hand: HandCrops or None (absent)}, side S) from the read frames.

    images: (U, H, W, 3) uint8, the frames of positions ``union`` (sorted); positions[hand]:
    (k,) sorted or None; points[hand]: (k, 21, 2) fractions of (W, H) or None.
    """
    height, width = images.shape[1:3]
    left_boxes, right_boxes, side = hand_boxes(points["left"], points["right"], width, height)
    if side == 0:
        return {hand: None for hand in HANDS}, side
    out = {}
    for hand, boxes in zip(HANDS, (left_boxes, right_boxes), strict=True):
        if positions[hand] is None:
            out[hand] = None
            continue
        rows = np.searchsorted(union, positions[hand])  # (k,) rows of ``images``
        crops = np.stack([resize_crop(cut_hand(images[r], box, side, crop)) for r, box in zip(rows, boxes, strict=True)])
        out[hand] = HandCrops(positions[hand], boxes, crops,
                              skeletons_norm(points[hand], boxes, side, width, height))
    return out, side


def dummy_hand(hand: str) -> dict:
    """The keys of an absent hand: index -1, one zero crop, one zero skeleton."""
    return {f"{hand}_sampled_indices": np.array([DUMMY_INDEX], dtype=np.int64),
            f"{hand}_hands": np.zeros((1, 3, IMAGE_SIZE, IMAGE_SIZE), np.float32),
            f"{hand}_skeletons_norm": np.zeros((1, 21, 2), np.float32)}


def hand_item(hand: str, crops) -> dict:
    if crops is None:
        return dummy_hand(hand)
    return {f"{hand}_sampled_indices": crops.indices.astype(np.int64),
            f"{hand}_hands": normalize_crops(crops.crops).numpy(),  # (k, 3, 112, 112) float32
            f"{hand}_skeletons_norm": crops.skeletons}


# ----------------------------------------------------------------------------- one sample
def video_file(settings: RGBSettings, sample_video_path: str) -> Path:
    """A sample's video: ``<video_dir>/<video_path>`` (the label's name, verbatim)."""
    return Path(settings.video_dir) / sample_video_path


def load_hand_crops(pose, frames, video_path, settings: RGBSettings, train: bool, rng=None,
                    keypoints=None, boxes=None) -> dict:
    """The six RGB keys of one sample: ``{left,right}_sampled_indices`` (k,) int64,
    ``_hands`` (k, 3, 112, 112) float32, ``_skeletons_norm`` (k, 21, 2) float32.

    pose: its PoseRecord; frames: (T,) the sampled original frame numbers; train: draw the
    frames from ``rng``, else ``settings.eval_sampling``. keypoints: what the boxes are
    computed from, (N, 133, 2) indexable by frame numbers; default ``pose.exact_keypoints``
    (the file's own precision, which Uni-Sign's boxes use). boxes: a dict that receives, per hand
    with crops, (its original frame numbers (k,), its boxes (k, 4) x0, y0, x1, y1 pixels).
    SampleError when the video is missing, unreadable or shorter than the pose file.
    """
    frames = np.asarray(frames, dtype=np.int64)  # (T,)
    scores = pose.scores[frames]  # (T, 133)
    mode = "random" if train else settings.eval_sampling
    positions = {hand: select_positions(scores, hand, mode, rng) for hand in HANDS}
    present = [p for p in positions.values() if p is not None]
    if not present:  # no confident hand: the video is never opened
        return {**dummy_hand("left"), **dummy_hand("right")}
    union = np.unique(np.concatenate(present))  # (U,) positions
    images = read_frames(video_path, frames[union], min_frames=len(pose.keypoints))  # (U, H, W, 3)
    source = pose.exact_keypoints if keypoints is None else keypoints  # the file's own precision
    points = {hand: None if p is None else np.asarray(source[frames[p]])[:, HAND_POINTS[hand]]
              for hand, p in positions.items()}  # (k, 21, 2)
    crops, _ = crop_hands(images, union, positions, points, settings.crop)
    if boxes is not None:
        boxes.update({hand: (frames[c.indices], c.boxes) for hand, c in crops.items() if c is not None})
    return {**hand_item("left", crops["left"]), **hand_item("right", crops["right"])}

