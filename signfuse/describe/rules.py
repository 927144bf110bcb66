"""The rules describer: deterministic action descriptions computed from the pose keypoints.

It reads one video's COCO-WholeBody keypoints (x/W, y/H) and scores, and returns segments
``{"start", "end", "text", "attributes"}`` covering every frame of the sample. The file
reads top to bottom:

1. Vocabulary and thresholds (documented in docs/describe.md; any change here changes
   ``RULES_VERSION``).
2. Settings: ``rules_settings(dataset, language, frame_size, fps, max_tokens)`` fills in the
   per-dataset defaults; the dict is what a checkpoint records.
3. Geometry: keypoints in shoulder widths, relative to the shoulder centre, image axes.
4. Per-frame features: each hand's palm centre, location, velocity, movement, speed,
   repetition, circling and openness; the mouth, its corners, the eyebrows and the head.
5. Events: per-frame labels smoothed (majority over a short window, then blips shorter than
   the window between two runs of one label removed); a frame whose keypoints are not
   confident stays "absent" whatever its neighbours say.
6. Segments: a new segment wherever a segmenting label changes; the other attributes are
   summarised over the segment (majority; speed over the whole movement); texts from
   ``templates``.
7. ``RulesDescriber``: ``describe(keypoints, scores, start)`` -> segments, ``generator``.

"right_hand" is the SIGNER's right hand: COCO-WholeBody points 112..132 (and body points
6, 8, 10); "left_hand" is points 91..111. Directions (up/down/left/right) are the frame's:
"left" is towards the left edge of the image, which for a signer facing the camera is the
signer's right. Movements are measured relative to the shoulder centre, so a swaying body
or a shaking camera does not move the hands.

Everything is NumPy array operations over the frames (the only Python loops run over runs
and segments), float64, deterministic: the same input gives the same bytes.
"""
import numpy as np

from signfuse.config import DATASETS
from signfuse.describe import templates
from signfuse.errors import InputError

RULES_VERSION = f"1.t{templates.TEMPLATE_VERSION}"
GENERATOR_NAME = "signfuse-rules"

# ---------------------------------------------------------------------------------------
# 1. Vocabulary and thresholds
# ---------------------------------------------------------------------------------------
LOCATIONS = ("absent", "low", "chest", "face", "above_head")
MOVEMENTS = ("absent", "hold", "up", "down", "left", "right")
MOUTH = ("absent", "closed", "open")
CORNERS = ("absent", "neutral", "up", "down")
EYEBROWS = ("absent", "neutral", "raised", "lowered")
HEAD_MOVES = ("absent", "still", "nod", "shake")
TILTS = ("absent", "none", "left", "right")
SHAPES = ("unknown", "open", "bent", "closed")
HAND_NAMES = ("right_hand", "left_hand")


def codes(words: tuple) -> dict:
    """{word: its label code}: a frame's label is the index of its word in the vocabulary."""
    return {word: code for code, word in enumerate(words)}


# The label codes the feature functions write, by name (never by position in the tuples above).
LOCATION, MOVEMENT, MOUTH_STATE = codes(LOCATIONS), codes(MOVEMENTS), codes(MOUTH)
CORNER, EYEBROW, HEAD_MOVE, TILT = codes(CORNERS), codes(EYEBROWS), codes(HEAD_MOVES), codes(TILTS)
ABSENT = 0  # "absent" is the first word of every vocabulary but SHAPES
assert all(words[ABSENT] == "absent" for words in (LOCATIONS, MOVEMENTS, MOUTH, CORNERS, EYEBROWS, HEAD_MOVES, TILTS))

# COCO-WholeBody indices.
L_SHOULDER, R_SHOULDER = 5, 6
HAND_FIRST = {"right_hand": 112, "left_hand": 91}  # the wrist; the hand's 21 points follow
PALM = (0, 5, 9, 13, 17)                             # wrist and finger bases, within a hand
FINGERS = ((5, 6, 7, 8), (9, 10, 11, 12), (13, 14, 15, 16), (17, 18, 19, 20))
CHIN = 31
BROWS = tuple(range(40, 50))
EYE_RIGHT, EYE_LEFT = tuple(range(59, 65)), tuple(range(65, 71))  # the signer's right / left eye
MOUTH_CORNERS = (71, 77)
LIP_ONE, LIP_TWO = (84, 85, 86), (88, 89, 90)       # the inner lips, upper and lower

# Thresholds. Lengths in shoulder widths (sw), times in seconds, speeds in sw per second.
THRESHOLDS = {
    "score": 0.3,            # a point is confident above this (Uni-Sign's threshold)
    "palm_points": 3,        # a hand is present when this many of its 5 palm points are confident
    "head_top": 0.6,         # top of the head: brows - head_top * (chin - brows)
    "chest_depth": 1.0,      # chest: from the chin down to this far below the shoulders' line
    "fallback_chin": -0.35,  # chin and head top (sw below the shoulders' line) when the face
    "fallback_top": -0.95,   # is never confident in the whole video
    "smooth": 0.04,          # palm positions are averaged over this window (1 frame at 25 fps: none)
    "body_smooth": 0.5,      # the shoulder centre (the origin) is averaged over this window
    "hold_speed": 0.5,       # slower than this: the hand holds
    "hold_distance": 0.1,    # a movement that covers less than this in total is a hold
    "slow_speed": 1.0,       # mean speed of a movement below this: slow
    "fast_speed": 3.0,       # at or above this: fast
    "event": 0.08,           # hand events: majority window; shorter blips are removed
    "face_event": 0.2,       # face events: median / majority window; shorter blips are removed
    "window": 0.6,           # window of repetition, circles and head movements
    "reversals": 2,          # direction reversals in the window that make a repetition / nod / shake
    "circle_turn": 4.7,      # radians the direction of movement turns in the window for a circle
    "close": 0.6,            # palm centres closer than this: hands close together
    "open_extension": 0.85,  # finger extension (tip distance / finger length) of an open hand
    "closed_extension": 0.65,  # ... and of a closed one (in between: bent)
    "mouth_open": 0.25,      # inner-lip gap / mouth width above this: open
    "mouth_wide": 0.6,       # ... above this: wide open
    "corners": 0.09,         # corner height change (mouth widths) from the video's median
    "brows_raised": 1.15,    # brow-to-eye distance / the video's median, above: raised
    "brows_lowered": 0.87,   # ... below: lowered
    "head_amplitude": 0.03,  # a nod or shake moves the eyes at least this much in the window
    "head_speed": 0.15,      # ... and at least this fast between its reversals
    "tilt": 10.0,            # degrees of roll away from the video's median
}

# ---------------------------------------------------------------------------------------
# 2. Settings
# ---------------------------------------------------------------------------------------
# Frame size (W, H) of each dataset's videos: only the ratio W / H matters (pose files keep
# x / W and y / H). Pass --frame_size when your videos differ.
DEFAULT_FRAME_SIZE = {
    "CSL_Daily": (512, 512),    # the released CSL-Daily frames
    "CSL_News": (1280, 720),    # broadcast news, 16:9
    "WLASL": (640, 480),        # web videos of mixed sizes, 4:3 the most common: check yours
    "How2Sign": (1280, 720),    # the front-view videos
    "OpenASL": (1280, 720),     # YouTube, 16:9
    "YouTube_ASL": (1280, 720),  # YouTube, 16:9
    "Synthetic": (512, 512),    # make-synthetic draws x and y in the same units
}
DEFAULT_FPS = 25.0
DEFAULT_MAX_TOKENS = 64
SETTING_KEYS = ("describer", "version", "language", "frame_size", "fps", "max_tokens")


def default_language(dataset: str) -> str:
    """Chinese for the CSL datasets, English for the others (as the translation prompt)."""
    return "zh" if "CSL" in dataset else "en"


def rules_settings(dataset: str, language=None, frame_size=None, fps=None,
                   max_tokens: int = DEFAULT_MAX_TOKENS, clauses: str = "all") -> dict:
    """The complete settings of the rules describer, defaults filled in from ``dataset``.

    Returns ``{"describer": "rules", "version", "language", "frame_size": [W, H], "fps",
    "max_tokens", "clauses"}`` (plain data: a checkpoint records it). Raises InputError on bad values.
    """
    if dataset not in DATASETS:
        raise InputError(f"--dataset {dataset}: unknown dataset, expected one of {', '.join(DATASETS)}")
    settings = {"describer": "rules", "version": RULES_VERSION,
                "language": language or default_language(dataset),
                "frame_size": list(frame_size or DEFAULT_FRAME_SIZE[dataset]),
                "fps": float(fps if fps is not None else DEFAULT_FPS), "max_tokens": max_tokens,
                "clauses": clauses}
    check_settings(settings)
    return settings


def check_settings(settings: dict) -> None:
    """InputError naming the flag when a value of ``settings`` cannot be used."""
    missing = [k for k in SETTING_KEYS if k not in settings]
    if missing:
        raise InputError(f"describer settings {settings}: missing {', '.join(missing)}")
    if settings["language"] not in templates.LANGUAGES:
        raise InputError(f"--language {settings['language']}: expected one of {', '.join(templates.LANGUAGES)}")
    size = settings["frame_size"]
    if len(size) != 2 or not all(isinstance(v, (int, float)) and v > 0 for v in size):
        raise InputError(f"--frame_size {size}: expected two positive numbers W H")
    if not settings["fps"] > 0:
        raise InputError(f"--fps {settings['fps']}: expected a positive frame rate")
    if isinstance(settings["max_tokens"], bool) or not isinstance(settings["max_tokens"], int) \
            or settings["max_tokens"] < 1:
        raise InputError(f"--desc_max_tokens {settings['max_tokens']}: expected a positive integer")
    if settings.get("clauses", "all") not in templates.CLAUSE_SETS:
        raise InputError(f"--rules_clauses {settings['clauses']}: expected one of {', '.join(templates.CLAUSE_SETS)}")


def frames_of(seconds: float, fps: float, odd: bool = False) -> int:
    """A duration in frames (at least 1; an odd count when ``odd``, for centred windows)."""
    n = max(1, int(round(seconds * fps)))
    return n + (odd and n % 2 == 0)


# ---------------------------------------------------------------------------------------
# 3. Geometry
# ---------------------------------------------------------------------------------------

def body_units(keypoints: np.ndarray, scores: np.ndarray, aspect: float, fps: float):
    """``(xy, confident)``: points in shoulder widths from the shoulder centre, image axes.

    keypoints (T, 133, 2) as x/W, y/H; scores (T, 133). The shoulder width is the median over
    the frames with both shoulders confident; the shoulder centre is the frame's own, linearly
    interpolated over frames where a shoulder is not confident. ``xy`` is None when no frame
    has both shoulders confident (nothing can be measured: everything is absent).
    """
    xy = keypoints.astype(np.float64) * np.array([aspect, 1.0])  # (T, 133, 2) in frame heights
    confident = scores > THRESHOLDS["score"]  # (T, 133)
    ok = confident[:, L_SHOULDER] & confident[:, R_SHOULDER]  # (T,)
    if not ok.any():
        return None, confident
    width = float(np.median(np.linalg.norm(xy[ok, L_SHOULDER] - xy[ok, R_SHOULDER], axis=-1)))
    if not width > 1e-6:
        return None, confident
    centre = 0.5 * (xy[:, L_SHOULDER] + xy[:, R_SHOULDER])  # (T, 2)
    t = np.arange(len(xy))
    centre = np.stack([np.interp(t, t[ok], centre[ok, k]) for k in range(2)], axis=1)  # (T, 2)
    centre = moving_mean(centre, frames_of(THRESHOLDS["body_smooth"], fps, odd=True))  # (T, 2)
    return (xy - centre[:, None]) / width, confident


def mean_points(xy: np.ndarray, confident: np.ndarray, points, need: int):
    """Mean (T, 2) of the confident ones of ``points`` per frame; NaN where fewer than ``need``."""
    idx = list(points)
    w = confident[:, idx].astype(np.float64)  # (T, P)
    n = w.sum(axis=1)  # (T,)
    mean = (xy[:, idx] * w[..., None]).sum(axis=1) / np.maximum(n, 1.0)[:, None]  # (T, 2)
    mean[n < need] = np.nan
    return mean


def moving_mean(x: np.ndarray, width: int, bridge: bool = False) -> np.ndarray:
    """Centred mean over ``width`` frames (odd) of ``x`` (T, D), ignoring NaN. A NaN frame stays
    NaN; with ``bridge`` it gets the mean of the window's other frames when it has any."""
    valid = ~np.isnan(x).any(axis=1)  # (T,)
    k, T = width // 2, len(x)
    sums = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(np.where(valid[:, None], x, 0.0), axis=0)])
    counts = np.concatenate([[0], np.cumsum(valid)])  # (T + 1,)
    lo, hi = np.clip(np.arange(T) - k, 0, T), np.clip(np.arange(T) + k + 1, 0, T)
    n = counts[hi] - counts[lo]  # (T,)
    out = (sums[hi] - sums[lo]) / np.maximum(n, 1)[:, None]  # (T, D)
    out[(n == 0) if bridge else ~valid] = np.nan
    return out


def velocity(x: np.ndarray, fps: float) -> np.ndarray:
    """Per-second velocity (T, D): central difference, one-sided next to a gap, 0 when isolated."""
    step = np.diff(x, axis=0)  # (T - 1, D)
    nan = np.full((1, x.shape[1]), np.nan)
    forward, backward = np.concatenate([step, nan]), np.concatenate([nan, step])  # (T, D)
    both = np.stack([forward, backward])  # (2, T, D)
    n = (~np.isnan(both)).sum(axis=0)  # (T, D)
    return np.where(n > 0, np.nansum(both, axis=0) / np.maximum(n, 1), 0.0) * fps


def window_sum(x: np.ndarray, width: int) -> np.ndarray:
    """Sum of ``x`` (T,) over the centred window of ``width`` frames (clipped at the ends)."""
    T, k = len(x), width // 2
    sums = np.concatenate([[0.0], np.cumsum(x, dtype=np.float64)])
    lo, hi = np.clip(np.arange(T) - k, 0, T), np.clip(np.arange(T) + k + 1, 0, T)
    return sums[hi] - sums[lo]


def window_range(x: np.ndarray, width: int) -> np.ndarray:
    """max - min of ``x`` (T,) over the centred window, ignoring NaN (0 where all are NaN)."""
    k = width // 2
    padded = np.concatenate([np.full(k, np.nan), x, np.full(k, np.nan)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, width)  # (T, width)
    valid = ~np.isnan(windows)
    high = np.where(valid, windows, -np.inf).max(axis=1)
    low = np.where(valid, windows, np.inf).min(axis=1)
    return np.where(valid.any(axis=1), high - low, 0.0)


def reversals(v: np.ndarray, floor: float) -> np.ndarray:
    """(T,) 1.0 at frames where the sign of ``v`` flips against the last clear movement."""
    sign = np.where(np.abs(v) > floor, np.sign(v), 0.0)  # (T,)
    moving = np.flatnonzero(sign)
    out = np.zeros(len(v))
    if len(moving) > 1:
        flips = sign[moving[1:]] != sign[moving[:-1]]
        out[moving[1:][flips]] = 1.0
    return out


def normal_of(a: np.ndarray, b: np.ndarray) -> tuple:
    """Length (T,) of b - a and its unit normal (T, 2), pointing down for a left-to-right a->b."""
    d = b - a  # (T, 2)
    length = np.linalg.norm(d, axis=-1)
    normal = np.stack([-d[:, 1], d[:, 0]], axis=1) / np.maximum(length, 1e-9)[:, None]
    return length, normal


# ---------------------------------------------------------------------------------------
# 4. Per-frame features
# ---------------------------------------------------------------------------------------

def face_levels(xy: np.ndarray, confident: np.ndarray) -> tuple:
    """(chin, head top) heights (T,) in sw: the frame's own where the chin and the brows are
    confident, else the video's median, else the fallback constants."""
    chin = np.where(confident[:, CHIN], xy[:, CHIN, 1], np.nan)  # (T,)
    brows = mean_points(xy, confident, BROWS, 5)[:, 1]  # (T,)
    ok = ~np.isnan(chin) & ~np.isnan(brows)
    if not ok.any():
        T = len(xy)
        return np.full(T, THRESHOLDS["fallback_chin"]), np.full(T, THRESHOLDS["fallback_top"])
    chin = np.where(ok, chin, np.median(chin[ok]))
    brows = np.where(ok, brows, np.median(brows[ok]))
    return chin, brows - THRESHOLDS["head_top"] * (chin - brows)


def palm_centre(xy: np.ndarray, confident: np.ndarray, first: int) -> tuple:
    """(centre (T, 2) with NaN where the hand is absent, present (T,)) of one hand's palm.

    The palm centre is the mean of the wrist and the four finger bases. When some of them are
    not confident, the others are shifted by their median offset from the centre (measured
    on the frames where all five are confident), so that a dropped point does not move it.
    """
    idx = [first + p for p in PALM]
    points, conf = xy[:, idx], confident[:, idx]  # (T, 5, 2), (T, 5)
    present = conf.sum(axis=1) >= THRESHOLDS["palm_points"]  # (T,)
    full = conf.all(axis=1)
    offsets = np.zeros((len(PALM), 2))
    if full.any():
        offsets = np.median(points[full] - points[full].mean(axis=1, keepdims=True), axis=0)  # (5, 2)
    w = conf.astype(np.float64)
    centre = ((points - offsets) * w[..., None]).sum(axis=1) / np.maximum(w.sum(axis=1), 1.0)[:, None]
    centre[~present] = np.nan
    return centre, present


def handshape(xy: np.ndarray, confident: np.ndarray, first: int) -> np.ndarray:
    """(T,) index into SHAPES from finger extension: tip distance from the wrist over the
    finger's length (wrist, base and three joints), averaged over the four fingers whose
    points are all confident (at least three of them, else unknown)."""
    fingers = first + np.array(FINGERS)  # (4, 4)
    chain = np.concatenate([np.repeat(xy[:, first][:, None, None], 4, axis=1), xy[:, fingers]], axis=2)  # (T, 4, 5, 2)
    length = np.linalg.norm(np.diff(chain, axis=2), axis=-1).sum(axis=-1)  # (T, 4)
    reach = np.linalg.norm(chain[:, :, -1] - chain[:, :, 0], axis=-1)  # (T, 4)
    ok = confident[:, first][:, None] & confident[:, fingers].all(axis=-1)  # (T, 4)
    n = ok.sum(axis=1)
    extension = np.where(ok, reach / np.maximum(length, 1e-9), 0.0).sum(axis=1) / np.maximum(n, 1)  # (T,)
    shape = np.where(extension >= THRESHOLDS["open_extension"], 1,
                     np.where(extension <= THRESHOLDS["closed_extension"], 3, 2))
    return np.where(n >= 3, shape, 0)


def turning(v: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """(T,) signed turn (radians) of the direction of movement since the previous frame, where
    both frames move; reversals (turns over 120 degrees) count 0."""
    angle = np.arctan2(v[:, 1], v[:, 0])  # (T,)
    turn = np.angle(np.exp(1j * (angle[1:] - angle[:-1])))  # (T - 1,) wrapped to (-pi, pi]
    turn = np.where(moving[1:] & moving[:-1] & (np.abs(turn) < 2.0 * np.pi / 3.0), turn, 0.0)
    return np.concatenate([[0.0], turn])


def hand_features(xy: np.ndarray, confident: np.ndarray, name: str, levels: tuple, fps: float) -> dict:
    """Per-frame labels and measures of one hand: location, movement (indices into LOCATIONS,
    MOVEMENTS), speed (sw/s), repeated, circle, shape, present, centre (smoothed)."""
    first = HAND_FIRST[name]
    centre, present = palm_centre(xy, confident, first)
    centre = moving_mean(centre, frames_of(THRESHOLDS["smooth"], fps, odd=True))  # (T, 2)
    v = velocity(centre, fps)  # (T, 2) sw/s
    speed = np.linalg.norm(v, axis=1)  # (T,)
    chin, top = levels
    y = centre[:, 1]
    location = np.select([y < top, y < chin, y <= THRESHOLDS["chest_depth"]],
                         [LOCATION["above_head"], LOCATION["face"], LOCATION["chest"]], LOCATION["low"])
    horizontal = np.abs(v[:, 0]) > np.abs(v[:, 1])
    movement = np.where(horizontal, np.where(v[:, 0] > 0, MOVEMENT["right"], MOVEMENT["left"]),
                        np.where(v[:, 1] > 0, MOVEMENT["down"], MOVEMENT["up"]))  # image y grows downward
    moving = present & (speed >= THRESHOLDS["hold_speed"])
    movement = np.where(moving, movement, MOVEMENT["hold"])
    window = frames_of(THRESHOLDS["window"], fps, odd=True)
    floor = THRESHOLDS["hold_speed"]
    flips = np.maximum(window_sum(reversals(np.where(present, v[:, 0], 0.0), floor), window),
                       window_sum(reversals(np.where(present, v[:, 1], 0.0), floor), window))
    circle = np.abs(window_sum(turning(v, moving), window)) >= THRESHOLDS["circle_turn"]
    return {"location": np.where(present, location, ABSENT), "movement": np.where(present, movement, ABSENT),
            "speed": np.where(present, speed, 0.0), "repeated": flips >= THRESHOLDS["reversals"],
            "circle": circle & present, "shape": handshape(xy, confident, first),
            "present": present, "centre": centre}


def moving_median(x: np.ndarray, width: int) -> np.ndarray:
    """Centred median over ``width`` frames (odd) of ``x`` (T, D), ignoring NaN; NaN only where
    the whole window is NaN."""
    k = width // 2
    pad = np.full((k, x.shape[1]), np.nan)
    windows = np.lib.stride_tricks.sliding_window_view(np.concatenate([pad, x, pad]), width, axis=0)  # (T, D, width)
    valid = ~np.isnan(windows)
    n = valid.sum(axis=2)  # (T, D)
    ordered = np.sort(np.where(valid, windows, np.inf), axis=2)  # NaN last
    low = np.take_along_axis(ordered, np.maximum((n - 1) // 2, 0)[..., None], axis=2)[..., 0]
    high = np.take_along_axis(ordered, np.maximum(n // 2, 0)[..., None], axis=2)[..., 0]
    return np.where(n > 0, 0.5 * (low + high), np.nan)


def face_smooth(values: np.ndarray, fps: float) -> np.ndarray:
    """Face measures (T, D): the median over the face event, bridging frames without a measure."""
    return moving_median(values, frames_of(THRESHOLDS["face_event"], fps, odd=True))


def mouth_features(xy: np.ndarray, confident: np.ndarray, fps: float) -> dict:
    """Per-frame mouth (index into MOUTH), wide (bool) and corners (index into CORNERS).

    Face measures are averaged over the face event (``face_smooth``): a frame whose own points
    are not confident takes the mean of the confident frames within that window, and is
    absent only when there are none (a mouth does not change within 0.1 s).

    Open: the gap between the inner lips, across the line of the corners, over the mouth's
    width (corner to corner). Corners: their height against the inner lips' centre, in mouth
    widths, compared with the video's median (a smile lifts them, a frown lowers them).
    """
    a, b = xy[:, MOUTH_CORNERS[0]], xy[:, MOUTH_CORNERS[1]]  # (T, 2)
    width, normal = normal_of(a, b)
    one, two = mean_points(xy, confident, LIP_ONE, 2), mean_points(xy, confident, LIP_TWO, 2)
    ok = confident[:, MOUTH_CORNERS[0]] & confident[:, MOUTH_CORNERS[1]] & (width > 1e-9)
    ok &= ~np.isnan(one[:, 0]) & ~np.isnan(two[:, 0])
    safe = np.maximum(width, 1e-9)
    gap = np.abs(((two - one) * normal).sum(axis=1)) / safe  # (T,)
    lift = ((0.5 * (a + b) - 0.5 * (one + two)) * normal).sum(axis=1) / safe  # (T,) > 0: corners lower
    values = face_smooth(np.where(ok[:, None], np.stack([gap, lift], axis=1), np.nan), fps)  # (T, 2)
    gap, lift = values[:, 0], values[:, 1]
    ok = ~np.isnan(gap)
    mouth = np.where(ok, np.where(gap > THRESHOLDS["mouth_open"], MOUTH_STATE["open"], MOUTH_STATE["closed"]), ABSENT)
    corners = np.full(len(xy), ABSENT, dtype=np.int64)
    if ok.any():
        shift = lift - np.median(lift[ok])
        corners = np.where(ok, np.select([shift < -THRESHOLDS["corners"], shift > THRESHOLDS["corners"]],
                                         [CORNER["up"], CORNER["down"]], CORNER["neutral"]), ABSENT)
    return {"mouth": mouth, "wide": ok & (gap > THRESHOLDS["mouth_wide"]), "corners": corners}


def eye_line(xy: np.ndarray, confident: np.ndarray) -> tuple:
    """(right eye centre, left eye centre) (T, 2), NaN where fewer than 4 of 6 points are confident."""
    return mean_points(xy, confident, EYE_RIGHT, 4), mean_points(xy, confident, EYE_LEFT, 4)


def brow_features(xy: np.ndarray, confident: np.ndarray, fps: float) -> np.ndarray:
    """(T,) index into EYEBROWS: the brows' height above the eyes (across the eye line, in
    eye distances) against the video's median."""
    right, left = eye_line(xy, confident)
    brows = mean_points(xy, confident, BROWS, 6)
    distance, normal = normal_of(right, left)
    height = ((0.5 * (right + left) - brows) * normal).sum(axis=1) / np.maximum(distance, 1e-9)  # (T,)
    height = face_smooth(np.where(distance > 1e-9, height, np.nan)[:, None], fps)[:, 0]
    ok = ~np.isnan(height)
    if not ok.any() or not np.median(height[ok]) > 0:
        return np.where(ok, EYEBROW["neutral"], ABSENT)
    ratio = height / np.median(height[ok])
    labels = np.select([ratio > THRESHOLDS["brows_raised"], ratio < THRESHOLDS["brows_lowered"]],
                       [EYEBROW["raised"], EYEBROW["lowered"]], EYEBROW["neutral"])
    return np.where(ok, labels, ABSENT)


def head_features(xy: np.ndarray, confident: np.ndarray, fps: float) -> dict:
    """Per-frame head movement (index into HEAD_MOVES: nod, shake) and tilt (into TILTS).

    Nod / shake: the eyes' centre goes up and down / side to side, reversing its direction at
    least ``reversals`` times within ``window`` and over at least ``head_amplitude``. Tilt:
    the eye line's angle differs from the video's median by more than ``tilt`` degrees,
    towards the frame's right edge (positive, clockwise on screen) or its left.
    """
    right, left = eye_line(xy, confident)
    eyes = moving_mean(np.concatenate([right, left], axis=1), frames_of(THRESHOLDS["event"], fps, odd=True),
                       bridge=True)  # (T, 4): a mean keeps a quick nod that a median would flatten
    right, left = eyes[:, :2], eyes[:, 2:]
    ok = ~np.isnan(eyes).any(axis=1)
    centre = 0.5 * (right + left)  # (T, 2)
    v = velocity(centre, fps)  # (T, 2)
    window = frames_of(THRESHOLDS["window"], fps, odd=True)
    floor = THRESHOLDS["head_speed"]
    moves = []
    for axis in (1, 0):  # nod (vertical), then shake (horizontal)
        flips = window_sum(reversals(v[:, axis], floor), window)
        moves.append((flips >= THRESHOLDS["reversals"])
                     & (window_range(centre[:, axis], window) >= THRESHOLDS["head_amplitude"]))
    movement = np.where(ok, np.where(moves[1], HEAD_MOVE["shake"], np.where(moves[0], HEAD_MOVE["nod"], HEAD_MOVE["still"])),
                        ABSENT)
    d = left - right
    angle = np.degrees(np.arctan2(d[:, 1], d[:, 0]))  # (T,)
    tilt = np.full(len(xy), ABSENT, dtype=np.int64)
    if ok.any():
        turn = (angle - np.median(angle[ok]) + 180.0) % 360.0 - 180.0
        tilt = np.where(ok, np.select([turn > THRESHOLDS["tilt"], turn < -THRESHOLDS["tilt"]],
                                      [TILT["right"], TILT["left"]], TILT["none"]), ABSENT)
    return {"movement": movement, "tilt": tilt}


def frame_features(keypoints: np.ndarray, scores: np.ndarray, aspect: float, fps: float):
    """Every per-frame feature of one video (a dict), or None when no body frame exists."""
    xy, confident = body_units(keypoints, scores, aspect, fps)
    if xy is None:
        return None
    levels = face_levels(xy, confident)
    features = {name: hand_features(xy, confident, name, levels, fps) for name in HAND_NAMES}
    features["mouth"] = mouth_features(xy, confident, fps)
    features["eyebrows"] = brow_features(xy, confident, fps)
    features["head"] = head_features(xy, confident, fps)
    return features


# ---------------------------------------------------------------------------------------
# 5. Events
# ---------------------------------------------------------------------------------------

def runs(labels: np.ndarray) -> tuple:
    """(starts, ends) of the runs of equal consecutive labels."""
    starts = np.concatenate([[0], np.flatnonzero(np.diff(labels)) + 1])
    ends = np.concatenate([starts[1:], [len(labels)]])
    return starts, ends


def majority(labels: np.ndarray, n_values: int, width: int) -> np.ndarray:
    """The most frequent label in the centred window of ``width`` frames (ties: the frame's own)."""
    onehot = np.eye(n_values)[labels]  # (T, C)
    T, k = len(labels), width // 2
    sums = np.concatenate([np.zeros((1, n_values)), np.cumsum(onehot, axis=0)])  # (T + 1, C)
    lo, hi = np.clip(np.arange(T) - k, 0, T), np.clip(np.arange(T) + k + 1, 0, T)
    return np.argmax(sums[hi] - sums[lo] + 0.5 * onehot, axis=1)


def merge_short_runs(labels: np.ndarray, shortest: int) -> np.ndarray:
    """Blips go: a run shorter than ``shortest`` frames between two runs of one same label takes
    that label (shortest blip first, until none is left). A short run between two different
    labels is a transition (a hand stopping between up and down) and stays."""
    labels = labels.copy()
    while True:
        starts, ends = runs(labels)
        lengths = ends - starts
        inner = np.arange(1, len(starts) - 1)
        blips = inner[(lengths[inner] < shortest) & (labels[starts[inner - 1]] == labels[starts[inner + 1]])]
        if not len(blips):
            return labels
        i = blips[np.argmin(lengths[blips])]
        labels[starts[i]:ends[i]] = labels[starts[i - 1]]


def events(labels: np.ndarray, n_values: int, fps: float, seconds: float) -> np.ndarray:
    """Per-frame labels smoothed into events: the majority over ``seconds``, then blips shorter
    than ``seconds`` removed; label 0 (absent) is kept wherever it was: smoothing never
    invents what the keypoints do not show."""
    width = frames_of(seconds, fps, odd=True)
    smooth = merge_short_runs(majority(labels, n_values, width), frames_of(seconds, fps))
    return np.where(labels == 0, 0, smooth)


def short_moves_hold(movement: np.ndarray, speed: np.ndarray, fps: float) -> np.ndarray:
    """Movement runs whose path (sum of speed over the run) is under ``hold_distance`` become holds."""
    starts, ends = runs(movement)
    travelled = np.add.reduceat(speed / fps, starts)  # (runs,) sw
    out = movement.copy()
    for s, e, d in zip(starts, ends, travelled, strict=True):
        if movement[s] >= 2 and d < THRESHOLDS["hold_distance"]:
            out[s:e] = 1
    return out


def frame_labels(features: dict, fps: float) -> dict:
    """The segmenting labels of every frame, smoothed into events (name -> (T,) int)."""
    labels = {}
    for name in HAND_NAMES:
        hand = features[name]
        location = events(hand["location"], len(LOCATIONS), fps, THRESHOLDS["event"])
        movement = short_moves_hold(events(hand["movement"], len(MOVEMENTS), fps, THRESHOLDS["event"]),
                                    hand["speed"], fps)
        absent = (location == 0) | (movement == 0)  # smoothing may drop a frame from one, never add
        labels[f"{name}.location"] = np.where(absent, 0, location)
        labels[f"{name}.movement"] = np.where(absent, 0, movement)
    face = THRESHOLDS["face_event"]
    labels["mouth"] = events(features["mouth"]["mouth"], len(MOUTH), fps, face)
    labels["mouth_corners"] = events(features["mouth"]["corners"], len(CORNERS), fps, face)
    labels["eyebrows"] = events(features["eyebrows"], len(EYEBROWS), fps, face)
    labels["head.movement"] = events(features["head"]["movement"], len(HEAD_MOVES), fps, face)
    return labels


# ---------------------------------------------------------------------------------------
# 6. Segments
# ---------------------------------------------------------------------------------------

def segment_bounds(labels: dict, T: int) -> tuple:
    """(starts, ends) of the segments: a new one wherever any segmenting label changes."""
    stacked = np.stack(list(labels.values()), axis=1)  # (T, K)
    change = np.flatnonzero((np.diff(stacked, axis=0) != 0).any(axis=1)) + 1
    starts = np.concatenate([[0], change])
    return starts, np.concatenate([starts[1:], [T]])


def mean_over(values: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Mean of ``values`` (T,) over each segment."""
    return np.add.reduceat(values.astype(np.float64), starts) / (ends - starts)


def vote(codes: np.ndarray, n_values: int, starts: np.ndarray, skip_zero: bool) -> np.ndarray:
    """The most frequent code of each segment (the lower code on ties; code 0 only when
    nothing else occurs, with ``skip_zero``)."""
    counts = np.add.reduceat(np.eye(n_values)[codes], starts, axis=0)  # (S, C)
    if skip_zero:
        counts[:, 0] = np.where(counts[:, 1:].sum(axis=1) > 0, -1.0, counts[:, 0])
    return np.argmax(counts, axis=1)


def run_means(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(T,) the mean of ``values`` over each frame's run of equal ``labels``."""
    starts, ends = runs(labels)
    return np.repeat(mean_over(values, starts, ends), ends - starts)


def hand_summary(hand: dict, movement: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> dict:
    """Per-segment speed class (the mean speed of the whole movement the segment is part of),
    repetition, circling and handshape of one hand."""
    speed = run_means(hand["speed"], movement)[starts]
    speed_class = np.where(speed < THRESHOLDS["slow_speed"], "slow",
                           np.where(speed >= THRESHOLDS["fast_speed"], "fast", "normal"))
    return {"speed": speed_class, "repeated": mean_over(hand["repeated"], starts, ends) > 0.5,
            "circle": mean_over(hand["circle"], starts, ends) > 0.5,
            "shape": vote(hand["shape"], len(SHAPES), starts, skip_zero=True)}


def relation(right: str, left: str) -> str:
    """How the two hands' movements relate (both given as MOVEMENTS words)."""
    if "absent" in (right, left):
        return "none"
    if right == left:
        return "both_hold" if right == "hold" else "symmetric"
    if "hold" in (right, left):
        return "right_dominant" if left == "hold" else "left_dominant"
    if {right, left} == {"left", "right"}:
        return "mirrored"
    return "independent"


def hand_attributes(name: str, labels: dict, summary: dict, i: int) -> dict:
    """The ``right_hand`` / ``left_hand`` attributes of segment ``i``."""
    location = LOCATIONS[labels[f"{name}.location"]]
    movement = MOVEMENTS[labels[f"{name}.movement"]]
    moving = movement not in ("absent", "hold")
    return {"location": location, "movement": movement,
            "speed": str(summary["speed"][i]) if moving else "none",
            "repeated": bool(summary["repeated"][i]) and moving,
            "path": ("circle" if summary["circle"][i] else "straight") if moving else "none",
            "handshape": SHAPES[summary["shape"][i]] if location != "absent" else "unknown"}


def absent_attributes() -> dict:
    """The attributes of frames where nothing can be measured."""
    hand = {"location": "absent", "movement": "absent", "speed": "none", "repeated": False,
            "path": "none", "handshape": "unknown"}
    return {"right_hand": dict(hand), "left_hand": dict(hand), "hands": {"relation": "none", "close": False},
            "mouth": "absent", "mouth_wide": False, "mouth_corners": "absent", "eyebrows": "absent",
            "head": {"movement": "absent", "tilt": "absent"}}


def segment_attributes(features: dict, labels: dict, starts: np.ndarray, ends: np.ndarray) -> list:
    """The ``attributes`` dict of each segment (docs/describe.md)."""
    summaries = {name: hand_summary(features[name], labels[f"{name}.movement"], starts, ends) for name in HAND_NAMES}
    right, left = features["right_hand"], features["left_hand"]
    distance = np.linalg.norm(right["centre"] - left["centre"], axis=1)  # (T,) NaN unless both present
    close = mean_over(np.nan_to_num(distance, nan=np.inf) < THRESHOLDS["close"], starts, ends) > 0.5
    wide = mean_over(features["mouth"]["wide"], starts, ends) > 0.5
    tilt = vote(features["head"]["tilt"], len(TILTS), starts, skip_zero=True)
    out = []
    for i, s in enumerate(starts):
        at = {key: int(values[s]) for key, values in labels.items()}
        hands = {name: hand_attributes(name, at, summaries[name], i) for name in HAND_NAMES}
        link = relation(hands["right_hand"]["movement"], hands["left_hand"]["movement"])
        mouth = MOUTH[at["mouth"]]
        head = HEAD_MOVES[at["head.movement"]]
        out.append({**hands, "hands": {"relation": link, "close": bool(close[i]) and link != "none"},
                    "mouth": mouth, "mouth_wide": bool(wide[i]) and mouth == "open",
                    "mouth_corners": CORNERS[at["mouth_corners"]], "eyebrows": EYEBROWS[at["eyebrows"]],
                    "head": {"movement": head, "tilt": TILTS[tilt[i]] if head != "absent" else "absent"}})
    return out


def movement_ends(labels: dict, starts: np.ndarray) -> list:
    """Per segment, per hand: True when the hand's movement changes after this segment."""
    out = []
    for i, s in enumerate(starts):
        nxt = starts[i + 1] if i + 1 < len(starts) else None
        out.append({name: nxt is None or labels[f"{name}.movement"][nxt] != labels[f"{name}.movement"][s]
                    for name in HAND_NAMES})
    return out


# ---------------------------------------------------------------------------------------
# 7. The describer
# ---------------------------------------------------------------------------------------

class RulesDescriber:
    """Segments of a video from its pose, with the settings of ``rules_settings``.

    ``describe(keypoints (T, 133, 2), scores (T, 133), offset)`` -> list of
    ``{"start", "end", "text", "attributes"}`` with ``start``/``end`` = frame index + ``offset``
    (the original frame numbers), covering frames offset .. offset + T - 1.
    ``describe_pose(pose)`` does it for the frames [start, end) of a ``PoseRecord``.
    """

    def __init__(self, settings: dict):
        check_settings(settings)
        self.settings = dict(settings)
        width, height = settings["frame_size"]
        self.aspect = float(width) / float(height)
        self.fps = float(settings["fps"])
        self.language = settings["language"]
        self.max_tokens = int(settings["max_tokens"])
        self.clauses = settings.get("clauses", "all")  # absent in settings recorded before --rules_clauses

    def generator(self) -> dict:
        """The ``generator`` object of a description file: name, version, every parameter."""
        parameters = {"language": self.language, "frame_size": list(self.settings["frame_size"]),
                      "fps": self.fps, "max_tokens": self.max_tokens,
                      "templates": templates.TEMPLATE_VERSION, "thresholds": dict(THRESHOLDS)}
        if self.clauses != "all":  # only then: the files written before --rules_clauses stay up to date
            parameters["clauses"] = self.clauses
        return {"name": GENERATOR_NAME, "version": RULES_VERSION, "parameters": parameters}

    def describe(self, keypoints: np.ndarray, scores: np.ndarray, offset: int = 0) -> list:
        T = len(keypoints)
        features = frame_features(keypoints, scores, self.aspect, self.fps)
        if features is None:
            starts, ends = np.array([0]), np.array([T])
            attributes, ends_of = [absent_attributes()], [{name: True for name in HAND_NAMES}]
        else:
            labels = frame_labels(features, self.fps)
            starts, ends = segment_bounds(labels, T)
            attributes = segment_attributes(features, labels, starts, ends)
            ends_of = movement_ends(labels, starts)
        return [{"start": int(s) + offset, "end": int(e) + offset,
                 "text": templates.render(a, flags, self.language, self.max_tokens, self.clauses),
                 "attributes": a}
                for s, e, a, flags in zip(starts, ends, attributes, ends_of, strict=True)]

    def describe_pose(self, pose) -> list:
        """Segments of the sample's frames [pose.start, pose.end), in original frame numbers."""
        return self.describe(pose.keypoints[pose.start:pose.end], pose.scores[pose.start:pose.end], pose.start)


def rules_describer_from_settings(settings: dict, warn=None) -> RulesDescriber:
    """The describer a checkpoint's recorded settings ask for.

    When they were recorded by another version of the rules, ``warn(message)`` is called (the
    texts may differ from those the model was trained on) and the current rules are used.
    """
    if settings.get("describer", "rules") != "rules":
        raise InputError(f"describer settings {settings}: not the rules describer")
    if warn is not None and settings.get("version") != RULES_VERSION:
        warn(f"the descriptions were made by rules version {settings.get('version')}; this signfuse "
             f"makes version {RULES_VERSION}: the texts may differ from those the model was trained on")
    return RulesDescriber({**settings, "version": RULES_VERSION})
