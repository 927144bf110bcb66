"""From the 133 COCO-WholeBody points of a sample to Uni-Sign's four normalised parts.

Two steps, each over the whole sample at once (Uni-Sign loops over frames):
1. ``split_parts``: pick each part's points, make hands and face relative to their
   reference point, attach the confidences -> (T, V, 3) per part.
2. ``normalize_parts``: one body box for the whole sample gives the scale; the body maps
   into that box, hands and face are divided by its size; everything is clipped to
   [-1, 1]; points of confidence <= 0.3 become (0, 0, 0).
See ../shared/spec/unisign-compat.md section 3.
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


def split_parts(keypoints: np.ndarray, scores: np.ndarray) -> dict:
    """Split the points of a sample into its four parts.

    Reads: keypoints (T, 133, 2), scores (T, 133) of person 0.
    Writes: part -> (T, V, 3) float32 (x, y, confidence), in PART_NAMES order; hands and
    face relative to their reference point (whatever its confidence), the body raw.
    """
    parts = {}
    for name in PART_NAMES:
        xy = keypoints[:, PART_POINTS[name]]  # (T, V, 2)
        if name in REFERENCE_NODE:
            node = REFERENCE_NODE[name]
            xy = xy - xy[:, node:node + 1]  # (T, V, 2)
        conf = scores[:, PART_POINTS[name], None]  # (T, V, 1)
        parts[name] = np.concatenate([xy, conf], axis=-1).astype(np.float32, copy=False)  # (T, V, 3)
    return parts


def body_box(body: np.ndarray, thr: float = THRESHOLD):
    """The sample's body box: (corner (2,), scale), or None when there is none.

    Reads: body (T, 9, 3). The box bounds the body points of all frames together whose
    confidence > thr; scale = max(width, height); the corner is that of the square of side
    scale centred on the box. None: fewer than 4 such points, or a box of size 0.
    """
    confident = body[..., :2][body[..., 2] > thr]  # (M, 2)
    if len(confident) < 4:
        return None
    low, high = confident.min(axis=0), confident.max(axis=0)  # (2,), (2,)
    scale = (high - low).max()
    if scale == 0:
        return None
    corner = (low + high - scale) / 2  # (2,)
    return corner, scale


def normalize_parts(parts: dict, thr: float = THRESHOLD) -> dict:
    """Normalise the parts of ``split_parts`` as Uni-Sign does.

    Reads: part -> (T, V, 3). Writes: part -> (T, V, 3) float32 with
    body xy -> ((xy - corner) / scale - 0.5) * 2, hands and face xy -> xy / scale,
    then (x, y, confidence) clipped to [-1, 1] (the confidence too, as in Uni-Sign), then
    (0, 0, 0) wherever confidence <= thr. Without a body box every part is all zeros.
    """
    box = body_box(parts["body"], thr)
    if box is None:
        return {name: np.zeros(part.shape, np.float32) for name, part in parts.items()}
    corner, scale = box
    out = {}
    for name, part in parts.items():
        part = part.astype(np.float32, copy=True)  # (T, V, 3)
        if name == "body":
            part[..., :2] = ((part[..., :2] - corner) / scale - 0.5) * 2
        else:
            part[..., :2] = part[..., :2] / scale
        np.clip(part, -1, 1, out=part)
        part[part[..., 2] <= thr] = 0
        out[name] = part
    return out
