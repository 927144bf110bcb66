"""``signfuse make-synthetic``: a small sign language in which the descriptions matter.

The generator writes a dataset named ``Synthetic`` in Uni-Sign's layout under ``out_dir``:

    data/Synthetic/labels.{train,dev,test}     gzip pickles {name: {name, text, gloss, video_path}}
    data/Synthetic/lexicon.json                the signs (for reports; no loader reads it)
    dataset/Synthetic/pose_format/<name>.pkl   {"keypoints" (N,1,133,2), "scores" (N,1,133)[, "start", "end"]}
    description/Synthetic/<name>.json          sparse action descriptions (not every sample)
    truth/Synthetic/<name>.json                what was generated, per frame (``truth_content``)

The language. Each word of the lexicon (``lexicon.WORDS``) is one sign: a wrist trajectory
of the right hand, the left hand or both (a ``Motion``) held in a handshape (a
``HANDSHAPES`` entry), over 8-16 frames. The different signs have different
(motion, handshape) patterns, so a pose-only model can tell them apart, except for
``n_pairs`` PAIRS of words (happy/sad, big/small, ...) whose two members share exactly the
same pattern: they differ only by a facial cue ("mouth smiles" / "mouth frowns") that the
keypoints do not show (the face is a static template plus noise, whatever the word; with
``cue_amplitude`` > 0 the cue shows weakly in the face points). The descriptions state that cue, so only a model that reads them can tell the members of a pair
apart. A sentence is 2-5 signs drawn uniformly; its text is the words joined by spaces and
its gloss the word list.

A video (30-90 frames by default) is: rest, then for each sign a short transition and the
sign, then a transition back to rest. The per-sample speed (frames per sign), the length,
the position and size of the signer, a slow body sway, the point noise and a few
low-confidence points vary per sample. Some pose files carry ``start``/``end`` with extra
frames (hands held up, not part of the sample) before and after.

Descriptions are sparse: 1-3 described frames inside each sign's span, keyed by ORIGINAL frame
numbers of the pose file. For a paired sign every one of them states the pair's cue (a facial
cue lasts the whole sign); otherwise the middle one states the motion phrase and the others
the handshape and the contact or motion phrase. A
fraction ``desc_fraction`` of the samples have a file, written as a plain frame map, as
``{"frames": ..., "source": ...}`` or as ``{"segments": [...]}``; ``invalid_files`` of them are
replaced by unusable files (not JSON, a negative frame key, ...) so that the pipeline's
reporting is exercised.

Randomness: the lexicon depends only on ``n_signs`` and ``n_pairs``. Sample ``i`` draws its
sentence from ``default_rng((seed, 0, i))``, its rendering (timing, noise, description
frames) from ``default_rng((seed, 1, i))`` and its file options from ``default_rng((seed, 2, i))``;
the rendering draws the same numbers whatever the words are, so two sentences that differ
only by the member of a pair give identical keypoints. Output files are byte-for-byte
deterministic (fixed pickle protocol, gzip with mtime 0).
"""
import functools
import gzip
import json
import math
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from signfuse.demo.lexicon import WORDS
from signfuse.describe import rules
from signfuse.errors import InputError

DATASET = "Synthetic"
SPLIT_NAMES = ("train", "dev", "test")
PICKLE_PROTOCOL = 4  # fixed: the bytes must not depend on the Python version's default
NUM_POINTS = 133

# Sentences and timing (frames).
SENTENCE_WORDS = (2, 5)    # words per sentence, inclusive
SIGN_FRAMES = (8, 16)      # frames per sign, inclusive
TRANSITION_FRAMES = (2, 4)  # frames between two signs (and into / out of rest)
REST_FRAMES = (3, 6)       # rest frames at the start and at the end of a video
EXTRA_FRAMES = (2, 8)      # frames before ``start`` (after ``end``: 0 .. this)
MIN_MAX_FRAMES = (SENTENCE_WORDS[1] * SIGN_FRAMES[0] + (SENTENCE_WORDS[1] + 1) * TRANSITION_FRAMES[1]
                  + 2 * REST_FRAMES[1])  # the shortest max_frames every sentence fits in

# The pairs: two words with one pose pattern, told apart by a cue the keypoints do not show.
PAIRS = (
    (("happy", "mouth smiles"), ("sad", "mouth frowns")),
    (("big", "cheeks puff out"), ("small", "lips pressed together")),
    (("hot", "eyebrows raised"), ("cold", "eyebrows lowered")),
    (("yes", "head nods"), ("no", "head shakes")),
)
# Words of the signs that have a pattern of their own, in the order they are taken.
UNPAIRED_WORDS = (
    "i", "you", "mother", "friend", "want", "eat", "go", "see", "water", "book", "home", "today",
    "we", "teacher", "like", "drink", "come", "read", "apple", "school", "tomorrow", "they",
    "father", "yesterday", "good", "bad", "not", "very",
)


@dataclass(frozen=True)
class Motion:
    """A sign's movement: wrist keyframes (body units, evenly spaced over the sign) per hand.

    A hand with no path rests during the sign. ``grow`` scales the hand from the first to
    the last keyframe (a hand moving towards the camera looks bigger).
    """
    phrase: str                  # the description of the movement
    contact: str | None          # a second description where the hand touches the body
    right: tuple | None
    left: tuple | None
    handshape: str               # the handshape of its first pattern (see ``pattern_of``)
    grow: float = 1.0


# Body units: origin between the shoulders, x to the image's right, y down, one unit = half
# the shoulder width. The signer's right side is on the image's left (x < 0).
CIRCLE = tuple((round(-0.6 + 0.4 * math.cos(a), 3), round(0.4 + 0.4 * math.sin(a), 3))
               for a in np.linspace(0.0, 2.0 * math.pi, 9))
MOTIONS = (
    Motion("right hand moves up to the chin", "hand touches chin", ((-0.5, 0.9), (-0.1, -0.4)), None, "fist"),
    Motion("right hand moves down to the chest", "hand touches chest", ((-0.3, -0.3), (-0.2, 0.5)), None, "open palm"),
    Motion("left hand moves up to the forehead", "hand touches forehead", None, ((0.5, 0.9), (0.15, -1.0)), "index finger points"),
    Motion("both hands move down", None, ((-0.6, -0.2), (-0.6, 1.0)), ((0.6, -0.2), (0.6, 1.0)), "flat hand"),
    Motion("both hands move up", None, ((-0.6, 1.0), (-0.6, -0.4)), ((0.6, 1.0), (0.6, -0.4)), "bent fingers"),
    Motion("both hands move apart", None, ((-0.15, 0.5), (-1.2, 0.5)), ((0.15, 0.5), (1.2, 0.5)), "fist"),
    Motion("both hands move together", None, ((-1.2, 0.2), (-0.15, 0.2)), ((1.2, 0.2), (0.15, 0.2)), "open palm"),
    Motion("right hand moves in a circle", None, CIRCLE, None, "index finger points"),
    Motion("right hand moves forward", None, ((-0.5, 0.6), (-0.3, 0.8)), None, "flat hand", grow=1.4),
    Motion("right hand moves to the left", None, ((-1.0, 0.4), (0.3, 0.4)), None, "bent fingers"),
    Motion("right hand moves to the right", None, ((0.2, 0.0), (-1.2, 0.0)), None, "fist"),
    Motion("hand taps twice", "hand touches chest", ((-0.3, 0.1), (-0.2, 0.5), (-0.3, 0.1), (-0.2, 0.5)), None, "bent fingers"),
)

# Fingers in hand lengths: (base along the hand, base across it (thumb side +), base angle,
# angle added at full spread (degrees), lengths of the 3 segments). Thumb: CMC, MCP, IP, tip;
# the others: MCP, PIP, DIP, tip (COCO-WholeBody hand points 1-4, 5-8, 9-12, 13-16, 17-20).
FINGERS = (
    (0.08, 0.12, 40.0, 25.0, (0.16, 0.13, 0.11)),
    (0.45, 0.11, 4.0, 12.0, (0.22, 0.13, 0.10)),
    (0.47, 0.03, 0.0, 0.0, (0.24, 0.15, 0.10)),
    (0.45, -0.05, -4.0, -12.0, (0.22, 0.14, 0.10)),
    (0.40, -0.12, -8.0, -24.0, (0.17, 0.11, 0.09)),
)
CURL_DEGREES = 70.0  # bend of each joint of a fully curled finger
# name (= its description phrase): (curl of thumb..pinky in [0, 1], spread)
HANDSHAPES = {
    "fist": ((0.6, 1.0, 1.0, 1.0, 1.0), 0.0),
    "open palm": ((0.0, 0.0, 0.0, 0.0, 0.0), 1.0),
    "index finger points": ((0.7, 0.0, 1.0, 1.0, 1.0), 0.0),
    "flat hand": ((0.1, 0.0, 0.0, 0.0, 0.0), -0.6),
    "bent fingers": ((0.3, 0.5, 0.5, 0.5, 0.5), 0.4),
}
SHAPE_NAMES = tuple(HANDSHAPES)
RELAXED_HAND = ((0.2, 0.25, 0.3, 0.35, 0.4), 0.3)
HAND_LENGTH = 0.9  # body units
# Finger direction (degrees, image coordinates, y down) and thumb side, per hand.
SIGN_ANGLE = {"right": -70.0, "left": -110.0}
REST_ANGLE = {"right": 100.0, "left": 80.0}
THUMB_SIDE = {"right": 1.0, "left": -1.0}
REST_WRIST = {"right": (-0.8, 1.9), "left": (0.8, 1.9)}
HELD_WRIST = {"right": (-0.6, 0.3), "left": (0.6, 0.3)}  # the extra frames outside start/end
SHOULDER = {"right": (-1.0, 0.0), "left": (1.0, 0.0)}
ELBOW_OFFSET = {"right": (-0.25, 0.9), "left": (0.25, 0.9)}
# COCO-WholeBody indices.
WRIST = {"right": 10, "left": 9}
ELBOW = {"right": 8, "left": 7}
HAND = {"right": slice(112, 133), "left": slice(91, 112)}
FACE = slice(23, 91)
LEGS = slice(13, 23)  # knees, ankles, feet: mostly out of the picture, low confidence

# Body points 0-22 (elbows and wrists are placed from the hands).
BODY_TEMPLATE = np.array([
    (0.0, -0.72), (0.15, -0.88), (-0.15, -0.88), (0.32, -0.82), (-0.32, -0.82),  # nose, eyes, ears
    (1.0, 0.0), (-1.0, 0.0), (0.0, 0.0), (0.0, 0.0), (0.0, 0.0), (0.0, 0.0),       # shoulders, (elbows, wrists)
    (0.6, 2.4), (-0.6, 2.4), (0.6, 3.6), (-0.6, 3.6), (0.6, 4.6), (-0.6, 4.6),    # hips, knees, ankles
    (0.7, 4.8), (0.8, 4.8), (0.55, 4.75), (-0.7, 4.8), (-0.8, 4.8), (-0.55, 4.75),  # feet
])


def _ellipse(cx, cy, rx, ry, n) -> np.ndarray:
    a = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    return np.stack([cx - rx * np.cos(a), cy + ry * np.sin(a)], axis=1)


def _face_template() -> np.ndarray:
    """The 68 face landmarks (iBUG order, COCO-WholeBody 23-90) in body units; 53 = nose tip."""
    ellipse = _ellipse
    t = np.linspace(-1.0, 1.0, 17)
    jaw = np.stack([0.3 * t, -0.85 + 0.38 * np.sqrt(1.0 - t ** 2)], axis=1)
    brow_x = np.linspace(0.06, 0.26, 5)
    brow_y = -0.98 - 0.03 * np.sin(np.linspace(0.0, math.pi, 5))
    brows = np.concatenate([np.stack([-brow_x[::-1], brow_y], 1), np.stack([brow_x, brow_y], 1)])
    bridge = np.stack([np.zeros(4), np.linspace(-0.92, -0.72, 4)], axis=1)
    nostrils = np.stack([np.linspace(-0.08, 0.08, 5), [-0.66, -0.655, -0.65, -0.655, -0.66]], axis=1)
    eyes = np.concatenate([ellipse(-0.15, -0.88, 0.06, 0.02, 6), ellipse(0.15, -0.88, 0.06, 0.02, 6)])
    mouth = np.concatenate([ellipse(0.0, -0.56, 0.12, 0.045, 12), ellipse(0.0, -0.56, 0.08, 0.015, 8)])
    return np.concatenate([jaw, brows, bridge, nostrils, eyes, mouth])


FACE_TEMPLATE = _face_template()
MOUTH = slice(71, 91)  # outer lips 71-82 (corners 71, 77), inner lips 83-90 (corners 83, 87)
# The mouth open as when mouthing a word: the lips apart (face points 48-67 of the template).
OPEN_MOUTH = np.concatenate([_ellipse(0.0, -0.56, 0.12, 0.09, 12), _ellipse(0.0, -0.56, 0.08, 0.07, 8)])
HEAD = np.r_[0:5, 23:91]  # nose, eyes, ears and the 68 face points move with the head
MOUTH_CORNERS = (71, 77, 83, 87)
INNER_LIPS = (84, 85, 86, 88, 89, 90)
OUTER_LIPS = (72, 73, 74, 75, 76, 78, 79, 80, 81, 82)
BROWS = slice(40, 50)
JAW = slice(23, 40)
MOUTHING_SPAN = (0.2, 0.9)  # the mouth is open over this part of a mouthed sign


# ----------------------------------------------------------------------------- lexicon
@dataclass(frozen=True)
class Sign:
    word: str
    pattern: int        # signs with the same pattern have identical keypoints
    motion: Motion
    handshape: str
    cue: str | None     # the facial cue of a paired sign (absent from the keypoints)


def pattern_of(k: int) -> tuple:
    """(motion, handshape) of pattern ``k``: patterns k and k + 12 share the motion, not the handshape."""
    motion = MOTIONS[k % len(MOTIONS)]
    shift = 2 * (k // len(MOTIONS))
    return motion, SHAPE_NAMES[(SHAPE_NAMES.index(motion.handshape) + shift) % len(SHAPE_NAMES)]


def build_lexicon(n_signs: int = 16, n_pairs: int = 4) -> dict:
    """``{word: Sign}``: ``n_signs`` words, ``2 * n_pairs`` of which form pairs sharing a pattern."""
    n_unpaired = n_signs - 2 * n_pairs
    if not 0 <= n_pairs <= len(PAIRS):
        raise InputError(f"n_pairs {n_pairs}: expected 0 to {len(PAIRS)}")
    if n_unpaired < 0 or n_signs < 2:
        raise InputError(f"n_signs {n_signs}: expected at least 2 and at least 2 * n_pairs ({2 * n_pairs})")
    if n_unpaired > len(UNPAIRED_WORDS) or n_unpaired + n_pairs > 2 * len(MOTIONS):
        raise InputError(f"n_signs {n_signs}: too many signs (at most "
                         f"{2 * n_pairs + min(len(UNPAIRED_WORDS), 2 * len(MOTIONS) - n_pairs)} "
                         f"with {n_pairs} pairs)")
    assert set(UNPAIRED_WORDS) | {w for pair in PAIRS for w, _ in pair} <= set(WORDS)
    lexicon = {}
    for k, word in enumerate(UNPAIRED_WORDS[:n_unpaired]):
        lexicon[word] = Sign(word, k, *pattern_of(k), cue=None)
    for j, pair in enumerate(PAIRS[:n_pairs]):
        k = n_unpaired + j
        for word, cue in pair:
            lexicon[word] = Sign(word, k, *pattern_of(k), cue=cue)
    return lexicon


# ----------------------------------------------------------------------------- rendering
@functools.lru_cache(maxsize=1024)
def hand_offsets(handshape, angle_deg: float, side: str, size: float = HAND_LENGTH) -> np.ndarray:
    """The 21 hand points minus the wrist (body units) for ``handshape`` = (curls, spread).

    Cached (a few dozen distinct arguments per dataset), so the result is read-only.
    """
    curls, spread = handshape
    a = math.radians(angle_deg)
    along = np.array([math.cos(a), math.sin(a)])
    across = np.array([-math.sin(a), math.cos(a)]) * THUMB_SIDE[side]
    points = np.zeros((21, 2))
    for f, ((base_along, base_across, base_deg, spread_deg, segments), curl) in enumerate(zip(FINGERS, curls, strict=True)):
        phi = math.radians(base_deg + spread * spread_deg)
        direction = math.cos(phi) * along + math.sin(phi) * across
        sideways = -math.sin(phi) * along + math.cos(phi) * across
        p = base_along * along + base_across * across
        points[1 + 4 * f] = p
        for j, length in enumerate(segments, start=1):
            theta = math.radians(curl * CURL_DEGREES * j)  # the joints bend towards the palm
            p = p + length * (math.cos(theta) * direction - 0.3 * math.sin(theta) * sideways)
            points[1 + 4 * f + j] = p
    points *= size
    points.setflags(write=False)
    return points


def _state(wrist, offsets) -> np.ndarray:
    """One hand's state as a flat vector: wrist (2) then the 21 offsets (42)."""
    return np.concatenate([np.asarray(wrist, dtype=float), offsets.ravel()])


def _interpolate(times: np.ndarray, values: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Smooth (smoothstep) interpolation of ``values`` (A, D) given at increasing ``times``."""
    i = np.clip(np.searchsorted(times, frames, side="right") - 1, 0, len(times) - 2)
    u = np.clip((frames - times[i]) / (times[i + 1] - times[i]), 0.0, 1.0)
    u = u * u * (3.0 - 2.0 * u)
    return values[i] + u[:, None] * (values[i + 1] - values[i])


def _layout(n_words: int, rng, min_frames: int, max_frames: int):
    """(lead rest, transitions (n+1,), sign frames (n,), tail rest) of one video, drawn then fitted."""
    speed = rng.integers(SIGN_FRAMES[0], SIGN_FRAMES[1] + 1)
    sign_frames = np.clip(speed + rng.integers(-2, 3, size=n_words), *SIGN_FRAMES)
    transitions = rng.integers(TRANSITION_FRAMES[0], TRANSITION_FRAMES[1] + 1, size=n_words + 1)
    lead, tail = (int(x) for x in rng.integers(REST_FRAMES[0], REST_FRAMES[1] + 1, size=2))
    total = lead + tail + int(transitions.sum() + sign_frames.sum())
    while total > max_frames and sign_frames.max() > SIGN_FRAMES[0]:  # slow signers of long sentences
        sign_frames[np.argmax(sign_frames)] -= 1
        total -= 1
    if total < min_frames:  # short sentences rest longer
        lead += (min_frames - total) // 2
        tail += (min_frames - total) - (min_frames - total) // 2
    return lead, transitions, sign_frames, tail


def _hand_track(side: str, signs, starts, sign_frames, lead: int, tail: int, total: int) -> np.ndarray:
    """(total, 44) states of one hand: rest, each sign's keyframes, rest; smooth in between."""
    rest = _state(REST_WRIST[side], hand_offsets(RELAXED_HAND, REST_ANGLE[side], side))
    times, values = [0.0, lead - 1.0], [rest, rest]
    for sign, start, frames in zip(signs, starts, sign_frames, strict=True):
        path = getattr(sign.motion, side)
        if path is None:  # this hand is not used: it rests during the sign
            times += [float(start), float(start + frames - 1)]
            values += [rest, rest]
            continue
        k = np.arange(len(path)) / (len(path) - 1)
        times += list(start + (frames - 1) * k)
        values += [_state(wrist, hand_offsets(HANDSHAPES[sign.handshape], SIGN_ANGLE[side], side,
                                              HAND_LENGTH * (1.0 + (sign.motion.grow - 1.0) * f)))
                   for wrist, f in zip(path, k, strict=True)]
    times += [float(total - tail), total - 1.0]
    values += [rest, rest]
    return _interpolate(np.array(times), np.array(values), np.arange(total, dtype=float))


def _describe(signs, starts, sign_frames, n_described, late_side, offset: int) -> dict:
    """Sparse descriptions ``{original frame: text}``: 1-3 frames inside each sign's span."""
    descriptions = {}
    for sign, start, frames, k, late in zip(signs, starts, sign_frames, n_described, late_side, strict=True):
        early = start + round(0.15 * (frames - 1))
        middle = start + (frames - 1) // 2
        last = start + round(0.85 * (frames - 1))
        texts = {middle: sign.cue or sign.motion.phrase}
        if k == 3 or (k == 2 and not late):
            texts[early] = sign.cue or sign.handshape
        if k == 3 or (k == 2 and late):
            texts[last] = sign.cue or sign.motion.contact or sign.motion.phrase
        descriptions.update({int(f) + offset: t for f, t in texts.items()})
    return dict(sorted(descriptions.items()))


@dataclass
class RenderedSample:
    keypoints: np.ndarray  # (N, 1, 133, 2) float32, image coordinates in [0, 1]
    scores: np.ndarray     # (N, 1, 133) float32
    start: int             # frames [start, end) belong to the sample
    end: int
    spans: list            # [(word, first frame, stop frame)], original frame numbers
    descriptions: dict     # {original frame: text}, whether or not a file is written
    truth: dict = None     # true_attributes of the frames [start, end) (lists over those frames)
    cues: list = None      # [(first frame, stop frame, cue)] of the signs whose cue shows (cue_amplitude > 0)


# ----------------------------------------------------------------------------- face events and truth
def _show_cue(head: np.ndarray, cue: str, amplitude: float) -> None:
    """Move the face points of one sign's frames ``head`` (n, 133, 2), in place, to show ``cue``."""
    if cue in ("mouth smiles", "mouth frowns"):
        head[:, MOUTH_CORNERS, 1] += -amplitude if cue == "mouth smiles" else amplitude
    elif cue in ("eyebrows raised", "eyebrows lowered"):
        head[:, BROWS, 1] += -amplitude if cue == "eyebrows raised" else amplitude
    elif cue == "cheeks puff out":
        head[:, JAW, 0] += amplitude * np.sign(head[:, JAW, 0] - head[:, 31:32, 0])
    elif cue == "lips pressed together":
        lips = list(INNER_LIPS + OUTER_LIPS)
        centre = head[:, MOUTH, 1].mean(axis=1, keepdims=True)  # (n, 1)
        offset = head[:, lips, 1] - centre
        head[:, lips, 1] = centre + np.sign(offset) * np.maximum(np.abs(offset) - amplitude, 0.0)
    elif cue in ("head nods", "head shakes"):
        u = np.arange(len(head)) / len(head)
        axis = 1 if cue == "head nods" else 0
        head[:, HEAD, axis] += amplitude * np.sin(4.0 * math.pi * u)[:, None]  # two nods / shakes


def _face_events(xy, signs, starts, sign_frames, before: int, mouthing: float, cue_amplitude: float,
                 rng) -> list:
    """Open the mouth during a share ``mouthing`` of the signs and show the paired signs' cues at
    ``cue_amplitude`` (body units), in place in ``xy``; return the cues shown. ``rng`` is drawn
    from only when ``mouthing`` > 0, and the same way whatever the words are."""
    mouthed = rng.random(len(signs)) < mouthing if mouthing > 0 else np.zeros(len(signs), dtype=bool)
    opened = xy[0, MOUTH] + (OPEN_MOUTH - FACE_TEMPLATE[MOUTH.start - 23:MOUTH.stop - 23])
    cues = []
    for sign, start, n, open_mouth in zip(signs, starts, sign_frames, mouthed, strict=True):
        first = before + int(start)
        if open_mouth:
            xy[first + round(MOUTHING_SPAN[0] * (n - 1)):first + round(MOUTHING_SPAN[1] * (n - 1)) + 1, MOUTH] = opened
        if cue_amplitude > 0 and sign.cue:
            _show_cue(xy[first:first + n], sign.cue, cue_amplitude)
            cues.append((first, first + int(n), sign.cue))
    return cues


def true_attributes(xy: np.ndarray, fps: float = rules.DEFAULT_FPS) -> dict:
    """The describer's vocabulary (docs/describe.md) measured on noise-free keypoints.

    ``xy`` (N, 133, 2): the generator's points in body units (shoulders at x = -1 and 1, y = 0),
    before noise, sway, scaling and clipping, every point confident. Per frame: each hand's
    ``location`` (palm centre against the chin, the head top and the chest depth) and
    ``movement`` (velocity of the palm centre by central differences at ``fps``: hold under the
    hold speed, else its dominant direction), and ``mouth`` (inner-lip gap over the mouth
    width). Returns ``{"right_hand": {"location": [...], "movement": [...]}, "left_hand": ...,
    "mouth": [...]}``.
    """
    t = rules.THRESHOLDS
    p = xy / 2.0  # (N, 133, 2) shoulder widths from the shoulder centre
    chin = p[:, rules.CHIN, 1]
    brows = p[:, list(rules.BROWS), 1].mean(axis=1)
    top = brows - t["head_top"] * (chin - brows)
    truth = {}
    for name, first in rules.HAND_FIRST.items():
        centre = p[:, [first + k for k in rules.PALM]].mean(axis=1)  # (N, 2)
        v = np.gradient(centre, axis=0) * fps  # (N, 2) sw/s
        y = centre[:, 1]
        location = np.select([y < top, y < chin, y <= t["chest_depth"]], ["above_head", "face", "chest"], "low")
        direction = np.where(np.abs(v[:, 0]) > np.abs(v[:, 1]), np.where(v[:, 0] > 0, "right", "left"),
                             np.where(v[:, 1] > 0, "down", "up"))
        movement = np.where(np.linalg.norm(v, axis=1) < t["hold_speed"], "hold", direction)
        truth[name] = {"location": location.tolist(), "movement": movement.tolist()}
    a, b = p[:, rules.MOUTH_CORNERS[0]], p[:, rules.MOUTH_CORNERS[1]]
    width, normal = rules.normal_of(a, b)
    gap = np.abs(((p[:, list(rules.LIP_TWO)].mean(axis=1) - p[:, list(rules.LIP_ONE)].mean(axis=1))
                  * normal).sum(axis=1)) / width
    truth["mouth"] = np.where(gap > t["mouth_open"], "open", "closed").tolist()
    return truth


def render_sample(lexicon: dict, words, rng, extra=(0, 0), min_frames: int = 30,
                  max_frames: int = 90, mouthing: float = 0.0, cue_amplitude: float = 0.0,
                  face_rng=None) -> RenderedSample:
    """Keypoints, scores, descriptions and true attributes of one signed sentence.

    ``extra`` = (frames before ``start``, frames after ``end``). The numbers drawn from ``rng``
    do not depend on which words are signed, only on how many. ``mouthing``: the share of the
    signs during which the mouth opens (drawn from ``face_rng``); ``cue_amplitude``: how far
    (body units) the paired signs' facial cue moves the face points (0: the cue is absent
    from the keypoints). With both at 0 the keypoints are those of earlier versions.
    """
    signs = [lexicon[w] for w in words]
    lead, transitions, sign_frames, tail = _layout(len(signs), rng, min_frames, max_frames)
    starts = lead + np.cumsum(transitions[:-1]) + np.concatenate([[0], np.cumsum(sign_frames)[:-1]])
    length = lead + tail + int(transitions.sum() + sign_frames.sum())
    before, after = extra
    frames = before + length + after

    centre = np.array([0.5, 0.4]) + rng.uniform(-0.04, 0.04, size=2)
    unit = 0.1 * rng.uniform(0.9, 1.1)
    face = FACE_TEMPLATE + rng.normal(0.0, 0.01, size=FACE_TEMPLATE.shape)
    n_described = rng.choice([1, 2, 3], size=len(signs), p=[0.4, 0.4, 0.2])
    late_side = rng.random(len(signs)) < 0.5

    xy = np.empty((frames, NUM_POINTS, 2))
    xy[:, :23] = BODY_TEMPLATE
    xy[:, FACE] = face
    cues = _face_events(xy, signs, starts, sign_frames, before, mouthing, cue_amplitude,
                        face_rng if face_rng is not None else np.random.default_rng(0))
    for side in ("right", "left"):
        held = _state(HELD_WRIST[side], hand_offsets(HANDSHAPES["open palm"], SIGN_ANGLE[side], side))
        track = np.concatenate([np.tile(held, (before, 1)),
                                _hand_track(side, signs, starts, sign_frames, lead, tail, length),
                                np.tile(held, (after, 1))])
        wrist = track[:, :2]
        xy[:, WRIST[side]] = wrist
        shoulder = np.array(SHOULDER[side])
        xy[:, ELBOW[side]] = shoulder + 0.35 * (wrist - shoulder) + np.array(ELBOW_OFFSET[side])
        xy[:, HAND[side]] = wrist[:, None] + track[:, 2:].reshape(-1, 21, 2)

    sway = np.cumsum(rng.normal(0.0, 0.0006, size=(frames, 2)), axis=0)
    noise = rng.normal(0.0, rng.uniform(0.001, 0.003), size=(frames, NUM_POINTS, 2))
    keypoints = centre + unit * xy + (sway - sway.mean(axis=0))[:, None] + noise

    scores = rng.uniform(0.85, 1.0, size=(frames, NUM_POINTS))
    scores[:, LEGS] = rng.uniform(0.05, 0.4, size=(frames, LEGS.stop - LEGS.start))
    low = rng.random((frames, NUM_POINTS)) < rng.uniform(0.0, 0.03)
    scores = np.where(low, rng.uniform(0.05, 0.3, size=(frames, NUM_POINTS)), scores)

    return RenderedSample(
        keypoints=np.clip(keypoints, 0.0, 1.0).astype(np.float32)[:, None],
        scores=scores.astype(np.float32)[:, None],
        start=before, end=before + length,
        spans=[(s.word, before + int(b), before + int(b + n)) for s, b, n in zip(signs, starts, sign_frames, strict=True)],
        descriptions=_describe(signs, starts, sign_frames, n_described, late_side, before),
        truth=true_attributes(xy[before:before + length]), cues=cues)


# ----------------------------------------------------------------------------- files
DESCRIPTION_FORMS = ("frames", "frames+source", "segments")
INVALID_KINDS = ("not JSON", "negative frame key", "text not a string", "not UTF-8", "not an object")


def description_content(descriptions: dict, spans, form: str, rng) -> dict:
    """The JSON object of a description file in one of ``DESCRIPTION_FORMS``."""
    frame_map = {str(f): t for f, t in descriptions.items()}
    if form == "frames":
        return frame_map
    if form == "frames+source":
        return {"frames": frame_map, "source": "synthetic annotator"}
    widths = rng.integers(1, 3, size=len(descriptions))  # 1 or 2 frames, inside the sign's span
    described = list(descriptions)
    segments = []
    for i, (f, text) in enumerate(descriptions.items()):
        stop = next(stop for _, first, stop in spans if first <= f < stop)
        if i + 1 < len(described):
            stop = min(stop, described[i + 1])
        segments.append({"start": f, "end": min(f + int(widths[i]), stop), "text": text})
    return {"segments": segments, "source": "synthetic vision-language model"}


def invalid_content(kind: str, valid: bytes) -> bytes:
    """The bytes of an unusable description file of the given kind."""
    if kind == "not JSON":
        return valid[: len(valid) // 2]
    if kind == "negative frame key":
        return json.dumps({"-3": "hand touches chin", "4": "fist"}).encode()
    if kind == "text not a string":
        return json.dumps({"2": "open palm", "5": 7}).encode()
    if kind == "not UTF-8":
        return b'{"3": "flat hand \xe9"}'
    return json.dumps(["fist", "open palm"]).encode()  # not an object


def _json_bytes(obj) -> bytes:
    return (json.dumps(obj, ensure_ascii=True) + "\n").encode("utf-8")


def _split_counts(samples: int, split) -> dict:
    dev = max(1, round(samples * split[1]))
    test = max(1, round(samples * split[2]))
    return {"train": samples - dev - test, "dev": dev, "test": test}


def _prepare_dirs(out_dir: Path, overwrite: bool) -> tuple:
    label_dir = out_dir / "data" / DATASET
    pose_dir = out_dir / "dataset" / DATASET / "pose_format"
    desc_dir = out_dir / "description" / DATASET
    truth_dir = out_dir / "truth" / DATASET
    for folder in (label_dir, pose_dir, desc_dir, truth_dir):
        if folder.exists() and any(folder.iterdir()):
            if not overwrite:
                raise InputError(f"{folder}: already exists and is not empty; choose another output "
                                 f"folder or overwrite it (overwrite=True, --overwrite)")
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
    return label_dir, pose_dir, desc_dir, truth_dir


def truth_content(sample: RenderedSample, fps: float = rules.DEFAULT_FPS) -> dict:
    """The truth file of a sample: its frames [start, end), per frame each hand's true location
    and movement and the mouth (``true_attributes``), the signs' spans and the cues shown."""
    return {"start": sample.start, "end": sample.end, "fps": fps, **sample.truth,
            "spans": [list(span) for span in sample.spans], "cues": [list(cue) for cue in sample.cues]}


@dataclass
class _Plan:
    """What sample ``i`` is, drawn before anything is rendered or written."""
    name: str
    sentence: list
    has_description: bool
    trim: bool
    extra: tuple   # frames before start, after end ((0, 0) unless trim)
    form: str      # one of DESCRIPTION_FORMS
    rng: np.random.Generator  # continues with the file's own draws (segment widths)


def _plan(i: int, seed: int, words: list, desc_fraction: float, trim_fraction: float) -> _Plan:
    sentence_rng = np.random.default_rng((seed, 0, i))
    n_words = sentence_rng.integers(SENTENCE_WORDS[0], SENTENCE_WORDS[1] + 1)
    sentence = [words[j] for j in sentence_rng.integers(len(words), size=n_words)]
    rng = np.random.default_rng((seed, 2, i))
    has_description = bool(rng.random() < desc_fraction)
    trim = bool(rng.random() < trim_fraction)
    extra = (int(rng.integers(EXTRA_FRAMES[0], EXTRA_FRAMES[1] + 1)), int(rng.integers(0, EXTRA_FRAMES[1] + 1)))
    form = DESCRIPTION_FORMS[rng.choice(len(DESCRIPTION_FORMS), p=[0.5, 0.25, 0.25])]
    return _Plan(f"synth_{i:05d}", sentence, has_description, trim, extra if trim else (0, 0), form, rng)


def make_synthetic(out_dir, samples: int = 600, seed: int = 0, n_signs: int = 16, n_pairs: int = 4,
                   desc_fraction: float = 0.8, invalid_files: int = 3, trim_fraction: float = 0.3,
                   min_frames: int = 30, max_frames: int = 90, split=(0.8, 0.1, 0.1),
                   overwrite: bool = False, mouthing: float = 0.0, cue_amplitude: float = 0.0) -> dict:
    """Write the Synthetic dataset under ``out_dir``; return a summary (counts, folders, files).

    ``samples`` videos (split ``split`` into train/dev/test, in name order); ``n_signs`` words,
    ``n_pairs`` pairs of which share a pose pattern; ``desc_fraction`` of the samples get a
    description file; ``invalid_files`` of those are replaced by unusable files;
    ``trim_fraction`` of the pose files have extra frames outside ``start``/``end``; each
    video has ``min_frames`` to ``max_frames`` frames between start and end. ``mouthing``: the
    share of the signs during which the mouth opens; ``cue_amplitude``: how far (body units,
    half a shoulder width) the paired signs' facial cue moves the face points (a weak cue in
    the keypoints; 0: none). Both draw from their own random numbers ``(seed, 4, i)``, so with
    both at 0 every file is the same as before they existed. ``truth/Synthetic/<name>.json``
    records per frame what was generated (``truth_content``), to score a describer.
    """
    if samples < 3:
        raise InputError(f"samples {samples}: expected at least 3 (one per split)")
    if not (0.0 <= desc_fraction <= 1.0 and 0.0 <= trim_fraction <= 1.0):
        raise InputError(f"desc_fraction {desc_fraction}, trim_fraction {trim_fraction}: expected 0 to 1")
    if max_frames < MIN_MAX_FRAMES or not 1 <= min_frames <= max_frames:
        raise InputError(f"min_frames {min_frames}, max_frames {max_frames}: expected "
                         f"1 <= min_frames <= max_frames and max_frames >= {MIN_MAX_FRAMES}")
    if len(split) != 3 or min(split) < 0:
        raise InputError(f"split {split}: expected three fractions (train, dev, test)")
    if invalid_files < 0:
        raise InputError(f"invalid_files {invalid_files}: expected 0 or more")
    if not (0.0 <= mouthing <= 1.0 and cue_amplitude >= 0.0):
        raise InputError(f"mouthing {mouthing}, cue_amplitude {cue_amplitude}: expected 0 to 1 and 0 or more")
    lexicon = build_lexicon(n_signs, n_pairs)
    counts = _split_counts(samples, split)
    if counts["train"] < 1:
        raise InputError(f"samples {samples}, split {split}: no training sample left")
    plans = [_plan(i, seed, list(lexicon), desc_fraction, trim_fraction) for i in range(samples)]
    described = sorted(plan.name for plan in plans if plan.has_description)
    if invalid_files > len(described):
        raise InputError(f"invalid_files {invalid_files}: only {len(described)} of the {samples} samples "
                         f"have descriptions")
    invalid = sorted(np.random.default_rng((seed, 3)).choice(described, size=invalid_files, replace=False).tolist())
    invalid_kind = {name: INVALID_KINDS[j % len(INVALID_KINDS)] for j, name in enumerate(invalid)}
    label_dir, pose_dir, desc_dir, truth_dir = _prepare_dirs(Path(out_dir), overwrite)

    labels = {name: {} for name in SPLIT_NAMES}
    lengths = []
    split_of = np.repeat(SPLIT_NAMES, [counts[s] for s in SPLIT_NAMES])
    for i, plan in enumerate(plans):
        sample = render_sample(lexicon, plan.sentence, np.random.default_rng((seed, 1, i)),
                               extra=plan.extra, min_frames=min_frames, max_frames=max_frames,
                               mouthing=mouthing, cue_amplitude=cue_amplitude,
                               face_rng=np.random.default_rng((seed, 4, i)))
        pose = {"keypoints": sample.keypoints, "scores": sample.scores}
        if plan.trim:
            pose.update(start=sample.start, end=sample.end)
        (pose_dir / f"{plan.name}.pkl").write_bytes(pickle.dumps(pose, protocol=PICKLE_PROTOCOL))
        (truth_dir / f"{plan.name}.json").write_bytes(_json_bytes(truth_content(sample)))
        if plan.has_description:
            content = _json_bytes(description_content(sample.descriptions, sample.spans, plan.form, plan.rng))
            if plan.name in invalid_kind:
                content = invalid_content(invalid_kind[plan.name], content)
            (desc_dir / f"{plan.name}.json").write_bytes(content)
        labels[split_of[i]][plan.name] = {"name": plan.name, "text": " ".join(plan.sentence),
                                          "gloss": plan.sentence, "video_path": f"{plan.name}.mp4"}
        lengths.append(sample.end - sample.start)

    label_files = []
    for split_name in SPLIT_NAMES:
        path = label_dir / f"labels.{split_name}"
        path.write_bytes(gzip.compress(pickle.dumps(labels[split_name], protocol=PICKLE_PROTOCOL), mtime=0))
        label_files.append(str(path))
    lexicon_file = label_dir / "lexicon.json"
    lexicon_file.write_bytes(_json_bytes({
        "signs": {s.word: {"pattern": s.pattern, "motion": s.motion.phrase, "handshape": s.handshape,
                           "cue": s.cue} for s in lexicon.values()},
        "pairs": [[word for word, _ in pair] for pair in PAIRS[:n_pairs]]}))

    def per_split(selected) -> dict:
        return {s: sum(name in selected for name in labels[s]) for s in SPLIT_NAMES}

    pairs = [[word for word, _ in pair] for pair in PAIRS[:n_pairs]]
    return {
        "out_dir": str(out_dir), "dataset": DATASET, "seed": seed,
        "splits": counts,
        "with_descriptions": per_split(set(described) - set(invalid)),
        "invalid_descriptions": per_split(set(invalid)),
        "without_descriptions": per_split({plan.name for plan in plans} - set(described)),
        "trimmed": sum(plan.trim for plan in plans),
        "frames": {"min": int(min(lengths)), "max": int(max(lengths)), "mean": float(np.mean(lengths))},
        "words": list(lexicon),
        "pairs": pairs,
        "files": {"labels": label_files, "lexicon": str(lexicon_file),
                  "pose_dir": str(pose_dir), "pose": samples,
                  "description_dir": str(desc_dir), "descriptions": len(described), "truth_dir": str(truth_dir),
                  "invalid": [str(desc_dir / f"{name}.json") for name in invalid]},
    }
