"""Part splitting and normalisation (transforms.py) against hand-computed and golden numbers."""
import numpy as np
import pytest

from signfuse.data.transforms import PART_NAMES, normalize_parts, split_parts


def small_sample():
    """Two frames; every point at (0, 0) with score 0 unless set here."""
    kp = np.zeros((2, 133, 2), np.float32)
    sc = np.zeros((2, 133), np.float32)

    def put(frame, point, x, y, score):
        kp[frame, point], sc[frame, point] = (x, y), score

    # four confident body points: x in [0.2, 0.6], y in [0.3, 0.5] -> scale 0.4, corner (0.2, 0.2)
    put(0, 0, 0.2, 0.3, 0.9)   # body node 0
    put(0, 3, 0.6, 0.5, 0.9)   # body node 1
    put(1, 4, 0.4, 0.4, 0.9)   # body node 2
    put(1, 5, 0.3, 0.35, 0.8)  # body node 3
    put(0, 6, 0.9, 0.25, 0.2)  # body node 4: not confident, outside the box
    put(1, 10, 5.0, 5.0, 0.3)  # body node 8: exactly the threshold, far away
    # left hand: wrist (reference) not confident, still subtracted
    put(0, 91, 0.5, 0.5, 0.1)
    put(0, 92, 0.6, 0.3, 0.95)
    put(0, 93, 1.0, 0.5, 0.7)  # 0.5 / 0.4 = 1.25: clipped to 1
    # right hand: a score above 1 is clipped to 1, as Uni-Sign clips the whole triple
    put(1, 112, 0.3, 0.3, 0.9)
    put(1, 113, 0.2, 0.4, 1.5)
    # face: reference point 53 is node 17; mouth point 83 is node 9
    put(0, 53, 0.45, 0.2, 0.9)
    put(0, 83, 0.45, 0.3, 0.31)
    put(0, 23, 0.55, 0.1, 0.5)  # node 0
    return kp, sc


def test_split_parts_picks_points_and_reference():
    kp, sc = small_sample()
    parts = split_parts(kp, sc)
    assert list(parts) == list(PART_NAMES)
    assert {k: v.shape for k, v in parts.items()} == {
        "body": (2, 9, 3), "left": (2, 21, 3), "right": (2, 21, 3), "face_all": (2, 18, 3)}
    assert all(v.dtype == np.float32 for v in parts.values())
    np.testing.assert_allclose(parts["body"][0, 1], [0.6, 0.5, 0.9], atol=1e-7)   # raw
    np.testing.assert_allclose(parts["left"][0, 1], [0.1, -0.2, 0.95], atol=1e-7)  # 92 - 91
    np.testing.assert_allclose(parts["left"][0, 0], [0.0, 0.0, 0.1], atol=1e-7)
    np.testing.assert_allclose(parts["face_all"][0, 0], [0.1, -0.1, 0.5], atol=1e-7)  # 23 - 53
    np.testing.assert_allclose(parts["face_all"][0, 9], [0.0, 0.1, 0.31], atol=1e-7)  # 83 - 53
    np.testing.assert_allclose(parts["face_all"][1, 9], [0.0, 0.0, 0.0], atol=0)


def test_normalize_parts_by_hand():
    out = normalize_parts(split_parts(*small_sample()))
    assert all(v.dtype == np.float32 for v in out.values())
    body = np.zeros((2, 9, 3), np.float32)
    body[0, 0] = [-1.0, -0.5, 0.9]    # ((0.2 - 0.2) / 0.4 - 0.5) * 2, ((0.3 - 0.2) / 0.4 - 0.5) * 2
    body[0, 1] = [1.0, 0.5, 0.9]
    body[1, 2] = [0.0, 0.0, 0.9]
    body[1, 3] = [-0.5, -0.25, 0.8]
    np.testing.assert_allclose(out["body"], body, atol=1e-6)  # low-confidence nodes 4 and 8: zeros
    left = np.zeros((2, 21, 3), np.float32)
    left[0, 1] = [0.25, -0.5, 0.95]   # (0.1, -0.2) / 0.4
    left[0, 2] = [1.0, 0.0, 0.7]      # (1.25, 0) clipped
    np.testing.assert_allclose(out["left"], left, atol=1e-6)  # the wrist itself (score 0.1): zeros
    right = np.zeros((2, 21, 3), np.float32)
    right[1, 0] = [0.0, 0.0, 0.9]
    right[1, 1] = [-0.25, 0.25, 1.0]
    np.testing.assert_allclose(out["right"], right, atol=1e-6)
    face = np.zeros((2, 18, 3), np.float32)
    face[0, 0] = [0.25, -0.25, 0.5]
    face[0, 9] = [0.0, 0.25, 0.31]
    face[0, 17] = [0.0, 0.0, 0.9]
    np.testing.assert_allclose(out["face_all"], face, atol=1e-6)


def test_without_body_box_every_part_is_float32_zeros():
    kp, sc = small_sample()
    sc[1, 5] = 0.3  # only 3 confident body points left in the whole sample
    out = normalize_parts(split_parts(kp, sc))
    for name in PART_NAMES:
        assert out[name].dtype == np.float32 and not out[name].any(), name
    kp, sc = small_sample()
    kp[:, [0, 3, 4, 5]] = 0.5  # four confident points, all at one place: a box of size 0
    out = normalize_parts(split_parts(kp, sc))
    assert all(out[n].dtype == np.float32 and not out[n].any() for n in PART_NAMES)
    assert out["left"].shape == (2, 21, 3)


def test_golden_normalisation_matches_unisign(golden_dir):
    inputs = np.load(golden_dir / "inputs.npz")
    expected = np.load(golden_dir / "expected.npz")
    for i in range(4):
        keypoints = inputs[f"sample{i}_keypoints"][:, 0]  # (T, 133, 2), person 0
        scores = inputs[f"sample{i}_scores"][:, 0]  # (T, 133)
        out = normalize_parts(split_parts(keypoints, scores))
        for name in PART_NAMES:
            want = expected[f"sample{i}_{name}"]
            assert out[name].dtype == np.float32 and out[name].shape == want.shape
            np.testing.assert_allclose(out[name], want, atol=1e-5, rtol=0, err_msg=f"sample{i}_{name}")
    assert not any(normalize_parts(split_parts(inputs["sample3_keypoints"][:, 0],
                                               inputs["sample3_scores"][:, 0]))[n].any() for n in PART_NAMES)


@pytest.mark.parametrize("T", [1, 7])
def test_normalize_leaves_its_input_alone(T):
    rng = np.random.default_rng(T)
    kp = rng.uniform(0, 1, (T, 133, 2)).astype(np.float32)
    sc = rng.uniform(0, 1, (T, 133)).astype(np.float32)
    parts = split_parts(kp, sc)
    before = {k: v.copy() for k, v in parts.items()}
    normalize_parts(parts)
    for name in PART_NAMES:
        np.testing.assert_array_equal(parts[name], before[name])
