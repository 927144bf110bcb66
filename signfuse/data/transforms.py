"""From the 133 COCO-WholeBody points of a sample to Uni-Sign's four normalised parts.

Two steps, each over the whole sample at once (Uni-Sign loops over frames):
1. ``split_parts``: pick each part's points, make hands and face relative to their
   reference point, attach the confidences -> (T, V, 3) per part.
2. ``normalize_parts``: one body box for the whole sample gives the scale; the body maps
   into that box, hands and face are divided by its size; everything is clipped to
   [-1, 1]; points of confidence <= 0.3 become (0, 0, 0).
See docs/unisign-compat.md section 3.

Precision: both steps compute in the keypoints' dtype, as Uni-Sign's numpy does, and give
float32. Keypoints of a float64 file (rtmlib's: ``PoseRecord.exact_keypoints``) are computed
with in float64, so a confidence of exactly float32(0.3) counts as above 0.3 there (0.3 in
float64 is smaller), while with float32 keypoints it is masked, as in Uni-Sign.
"""
import numpy as np

PART_NAMES = ("body", "left", "right", "face_all")
PART_POINTS = {
    "body": [0, 3, 4, 5, 6, 7, 8, 9, 10],         # nose, ears, shoulders, elbows, wrists
    "left": list(range(91, 112)),                  # left hand, wrist first
    "right": list(range(112, 133)),                # right hand, wrist first
    "face_all": list(range(23, 40, 2)) + list(range(83, 91)) + [53],  # jaw, mouth, nose last
}
# node of each part its coordinates are taken relative to (the body is not)
REFERENCE_NODE = {"left": 0, "right": 0, "face_all": 17}
THRESHOLD = 0.3


def part_ranges(sizes: dict) -> list:
    """(name, first node, end node) of each part (name -> V) in all the nodes side by side."""
    ranges, first = [], 0
    for name, size in sizes.items():
        ranges.append((name, first, first + size))
        first += size
    return ranges


def to_planes(parts: dict) -> np.ndarray:
    """part -> (T, V, 3) to one channel-first array (3, T, sum V), a copy, in the parts' dtype
    (at least float32).

    Channel-first keeps every array operation below on contiguous memory (the (T, V, 3)
    layout makes numpy step through innermost loops of length 2 or 3, several times slower).
    """
    nodes = np.concatenate(list(parts.values()), axis=1)  # (T, sum V, 3)
    dtype = np.result_type(nodes.dtype, np.float32)
    return np.ascontiguousarray(nodes.transpose(2, 0, 1), dtype=dtype)  # (3, T, sum V)


def from_planes(planes: np.ndarray, ranges: list, dtype=None) -> dict:
    """The inverse of ``to_planes``: (3, T, sum V) -> part -> contiguous (T, V, 3), in ``dtype``
    (default the planes')."""
    nodes = np.stack(list(planes), axis=-1)  # (T, sum V, 3)
    return {name: np.array(nodes[:, first:end], dtype=dtype or nodes.dtype) for name, first, end in ranges}


def split_parts(keypoints: np.ndarray, scores: np.ndarray) -> dict:
    """Split the points of a sample into its four parts.

    Reads: keypoints (T, 133, 2), scores (T, 133) of person 0.
    Writes: part -> (T, V, 3) (x, y, confidence) in the inputs' dtype (float32, or float64 for
    float64 keypoints), in PART_NAMES order; hands and face relative to their reference point
    (whatever its confidence), the body raw.
    """
    points = np.concatenate([PART_POINTS[name] for name in PART_NAMES])  # (69,)
    dtype = np.result_type(keypoints.dtype, scores.dtype, np.float32)
    planes = np.empty((3, len(keypoints), len(points)), dtype)  # (3, T, 69)
    planes[0] = keypoints[:, points, 0]  # x
    planes[1] = keypoints[:, points, 1]  # y
    planes[2] = scores[:, points]  # confidence
    ranges = part_ranges({name: len(PART_POINTS[name]) for name in PART_NAMES})
    for name, first, end in ranges:
        if name in REFERENCE_NODE:
            ref = first + REFERENCE_NODE[name]
            planes[:2, :, first:end] -= planes[:2, :, ref:ref + 1].copy()  # (2, T, 1)
    return from_planes(planes, ranges)


def body_box(body: np.ndarray, thr: float = THRESHOLD):
    """The sample's body box: (corner (2,), scale) in ``body``'s dtype, or None when there is none.

    Reads: body (T, 9, 3). The box bounds the body points of all frames together whose
    confidence > thr; scale = max(width, height); the corner is that of the square of side
    scale centred on the box. None: fewer than 4 such points, or a box of size 0.
    """
    confident = body[..., 2] > thr  # (T, 9)
    if np.count_nonzero(confident) < 4:
        return None
    x, y = body[..., 0][confident], body[..., 1][confident]  # (M,), (M,)
    low = np.array([x.min(), y.min()], x.dtype)
    high = np.array([x.max(), y.max()], x.dtype)
    scale = (high - low).max()
    if scale == 0:
        return None
    corner = (low + high - scale) / 2  # (2,)
    return corner, scale


def normalize_parts(parts: dict, thr: float = THRESHOLD) -> dict:
    """Normalise the parts of ``split_parts`` as Uni-Sign does.

    Reads: part -> (T, V, 3), 'body' among them (computed in their dtype, see the module doc).
    Writes: part -> (T, V, 3) float32 with
    body xy -> ((xy - corner) / scale - 0.5) * 2, hands and face xy -> xy / scale,
    then (x, y, confidence) clipped to [-1, 1] (the confidence too, as in Uni-Sign), then
    (0, 0, 0) wherever confidence <= thr. Without a body box every part is all zeros.
    """
    box = body_box(parts["body"], thr)
    if box is None:
        return {name: np.zeros(part.shape, np.float32) for name, part in parts.items()}
    corner, scale = box
    ranges = part_ranges({name: part.shape[1] for name, part in parts.items()})
    planes = to_planes(parts)  # (3, T, sum V)
    body = next(slice(first, end) for name, first, end in ranges if name == "body")
    xy = planes[:2]  # (2, T, sum V), a view
    xy[:, :, body] -= corner[:, None, None]
    xy /= scale
    xy[:, :, body] -= 0.5
    xy[:, :, body] *= 2
    np.clip(planes, -1, 1, out=planes)
    keep = (planes[2] > thr).astype(np.float32)  # (T, sum V): 0 where confidence <= thr
    planes *= keep  # (numpy's boolean-mask assignment is several times slower)
    planes += 0.0  # -0.0 (negative x times 0) -> +0.0; other values unchanged
    return from_planes(planes, ranges, np.float32)
