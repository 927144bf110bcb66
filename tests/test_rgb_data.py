"""The RGB branch's data side (hand frames, boxes, crops, skeletons, collate) against Uni-Sign's
own numbers (tests/data/golden-rgb, see its README), and our fixes of its defects."""
import hashlib
import pickle
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_label, make_pose, write_pickle
from signfuse.data import hand_crops as hc
from signfuse.data import paths
from signfuse.data.dataset import SignDataset, collate_fn, make_item, pose_parts
from signfuse.data.labels import load_labels
from signfuse.data.pose import load_pose
from signfuse.data.video import read_frames
from signfuse.errors import InputError, SampleError

GOLDEN = Path(__file__).parent / "data" / "golden-rgb"
POSE_DIR = GOLDEN / "dataset" / "CSL_Daily" / "pose_format"
VIDEO_DIR = GOLDEN / "dataset" / "CSL_Daily" / "sentence-crop"
LABELS = GOLDEN / "data" / "CSL_Daily" / "labels.test"
MAX_LENGTH = 48  # the fixture's --max_length


@pytest.fixture(scope="module")
def expected():
    return dict(np.load(GOLDEN / "data_expected.npz"))


@pytest.fixture(scope="module")
def names():
    return list(load_labels(LABELS))


def unisign_frames(i: int, pose) -> np.ndarray:
    """Uni-Sign's pose sampler for fixture sample i: Python's random seeded with 1234 + i."""
    random.seed(1234 + i)
    n = pose.num_frames
    tmp = sorted(random.sample(range(n), k=MAX_LENGTH)) if n > MAX_LENGTH else list(range(n))
    return np.asarray(tmp, dtype=np.int64) + pose.start


def golden_sample(i, names):
    """(pose, Uni-Sign's frames, pose file, video file) of fixture sample i."""
    pose_file = POSE_DIR / f"{names[i]}.pkl"
    pose = load_pose(pose_file)
    return pose, unisign_frames(i, pose), pose_file, VIDEO_DIR / f"{names[i]}.mp4"


def expected_positions(expected, i, hand):
    indices = expected[f"s{i}_{hand}_sampled_indices"]
    return None if indices[0] == -1 else indices


@pytest.mark.parametrize("i", range(5))
def test_golden_intermediates(expected, names, i):
    """Given Uni-Sign's numpy draws: positions, frames read, boxes, side, uint8 crops and
    skeletons exactly Uni-Sign's (skeletons: its float64 values, ours float32)."""
    pose, frames, pose_file, video = golden_sample(i, names)
    np.testing.assert_array_equal(frames, expected[f"s{i}_tmp"])
    rs = np.random.RandomState(1234 + i)  # np.random.seed(1234 + i) before Uni-Sign's dataset[i]
    positions = {h: hc.select_positions(pose.scores[frames], h, "random", rs) for h in hc.HANDS}
    for hand in hc.HANDS:
        want = expected_positions(expected, i, hand)
        if want is None and f"s{i}_box_hw" in expected and expected[f"s{i}_box_hw"] == 0:
            continue  # S = 0 (sample 4): drawn, read (checked below), then returned as dummies
        assert (positions[hand] is None) == (want is None)
        if want is not None:
            np.testing.assert_array_equal(positions[hand], want)
            assert positions[hand].dtype == np.int64
    present = [p for p in positions.values() if p is not None]
    if not present:
        assert f"s{i}_frame_numbers_read" not in expected  # Uni-Sign read nothing
        return
    union = np.unique(np.concatenate(present))
    np.testing.assert_array_equal(frames[union], expected[f"s{i}_frame_numbers_read"])
    images = read_frames(video, frames[union])
    assert [hashlib.md5(x.tobytes()).hexdigest() for x in images] == list(expected[f"s{i}_frames_read_md5"])
    assert pose.float64_file  # rtmlib's float64 keypoints, kept at that precision for the boxes
    points = {h: None if p is None else pose.exact_keypoints[frames[p]][:, hc.HAND_POINTS[h]]
              for h, p in positions.items()}
    left_boxes, right_boxes, side = hc.hand_boxes(points["left"], points["right"], images.shape[2], images.shape[1])
    np.testing.assert_array_equal(left_boxes, expected[f"s{i}_left_boxes"])
    np.testing.assert_array_equal(right_boxes, expected[f"s{i}_right_boxes"])
    assert left_boxes.dtype == np.int16 and side == expected[f"s{i}_box_hw"]
    crops, _ = hc.crop_hands(images, union, positions, points, "unisign")
    for hand in hc.HANDS:
        if f"s{i}_{hand}_crops_u8" not in expected:
            assert crops[hand] is None
            continue
        np.testing.assert_array_equal(crops[hand].crops, expected[f"s{i}_{hand}_crops_u8"])
        skeletons = expected[f"s{i}_{hand}_skeletons_norm"]
        assert crops[hand].skeletons.dtype == np.float32
        np.testing.assert_array_equal(crops[hand].skeletons, skeletons.astype(np.float32))


def golden_items(names, settings=None):
    """The five fixture samples with Uni-Sign's frames (``pose_parts``) and its draws (``load_hand_crops``)."""
    settings = settings or hc.RGBSettings(VIDEO_DIR, eval_sampling="random")
    items = []
    for i in range(5):
        pose, frames, pose_file, video = golden_sample(i, names)
        item = {**make_item(pose, names[i]), **pose_parts(pose, frames), "frame_indices": frames}
        item.update(hc.load_hand_crops(pose, frames, video, settings, train=False,
                                       rng=np.random.RandomState(1234 + i), keypoints=pose.exact_keypoints))
        items.append(item)
    return items


def test_golden_collate(expected, names):
    """The collated tensors equal Uni-Sign's exactly (its float64 ones as float32), dtypes ours:
    the pose parts too (computed in float64 from rtmlib's float64 keypoints, as Uni-Sign does:
    sample 2 has hand scores of exactly float32(0.3), kept there)."""
    batch = collate_fn(golden_items(names))
    for part in ("body", "left", "right", "face_all"):
        assert batch[part].dtype == torch.float32
        np.testing.assert_array_equal(batch[part].numpy(), expected[f"batch_{part}"].astype(np.float32), err_msg=part)
    for hand in hc.HANDS:
        indices, hands = batch[f"{hand}_sampled_indices"], batch[f"{hand}_hands"]
        skeletons = batch[f"{hand}_skeletons_norm"]
        assert indices.dtype == torch.int64 and hands.dtype == torch.float32 and skeletons.dtype == torch.float32
        np.testing.assert_array_equal(indices.numpy(), expected[f"batch_{hand}_sampled_indices"])
        np.testing.assert_array_equal(hands.numpy(), expected[f"batch_{hand}_hands"])
        np.testing.assert_array_equal(skeletons.numpy(), expected[f"batch_{hand}_skeletons_norm"].astype(np.float32))
        assert batch[f"{hand}_rgb_len"] == expected[f"batch_{hand}_rgb_len"].tolist()
    np.testing.assert_array_equal(batch["attention_mask"].numpy(), expected["batch_attention_mask"])


def test_golden_crops_are_uint8_crops_normalised(expected):
    """ToTensor + Normalize of the uint8 crops gives Uni-Sign's tensors (sample 0's rows)."""
    left = hc.normalize_crops(expected["s0_left_crops_u8"])
    np.testing.assert_array_equal(left.numpy(), expected["batch_left_hands"][:5])


def test_video_not_opened_without_confident_hand(names, monkeypatch):
    """Sample 3 has no confident hand and no video file: two dummies, no error, no read."""
    pose, frames, _, video = golden_sample(3, names)
    assert not video.exists()

    def no_read(*args, **kwargs):
        raise AssertionError("the video was opened")
    monkeypatch.setattr(hc, "read_frames", no_read)
    for sampling in ("topk", "random"):
        item = hc.load_hand_crops(pose, frames, video, hc.RGBSettings(VIDEO_DIR, eval_sampling=sampling),
                                  train=False, rng=np.random.default_rng(0))
        for hand in hc.HANDS:
            assert item[f"{hand}_sampled_indices"].tolist() == [-1]
            assert item[f"{hand}_hands"].shape == (1, 3, 112, 112) and not item[f"{hand}_hands"].any()
            assert item[f"{hand}_skeletons_norm"].dtype == np.float32 and not item[f"{hand}_skeletons_norm"].any()


def scores_with_tips(tips: list, hand: str = "right", score: float = 0.9) -> np.ndarray:
    """(T, 133) float32 scores: the hand confident in every frame, its fingertips at ``tips``."""
    scores = np.full((len(tips), 133), score, np.float32)
    scores[:, hc.FINGERTIPS[hand]] = np.asarray(tips, np.float32)[:, None]
    return scores


def test_topk_takes_lowest_fingertips_ties_earlier():
    # 12 confident frames -> k = 2; the lowest minimum is 0.5 (frames 3, 7, 9): 3 and 7
    tips = [0.9, 0.8, 0.7, 0.5, 0.9, 0.6, 0.9, 0.5, 0.9, 0.5, 0.9, 0.9]
    scores = scores_with_tips(tips)
    assert hc.select_positions(scores, "right", "topk").tolist() == [3, 7]
    assert hc.select_positions(scores, "left", "topk") is not None  # the rest of the scores are 0.9
    scores[5, hc.HAND_POINTS["right"]] = 0.2  # frame 5 no longer confident: 11 frames, k = 2
    assert hc.select_positions(scores, "right", "topk").tolist() == [3, 7]
    scores[:, hc.HAND_POINTS["left"]] = 0.25  # mean 0.25: never confident
    assert hc.select_positions(scores, "left", "topk") is None


def test_random_selection_weights_and_generators():
    """k = ceil(n / 10) distinct sorted positions; the frame with the best fingertips is
    (almost) never drawn; the same generator state gives the same draw."""
    tips = [0.95] + [0.4] * 20  # position 0 has weight 1e-5 against 0.55 for the others
    scores = scores_with_tips(tips)
    draws = [hc.select_positions(scores, "right", "random", np.random.default_rng((7, 0, i))) for i in range(200)]
    assert all(len(d) == 3 and len(set(d.tolist())) == 3 and (np.diff(d) > 0).all() for d in draws)
    assert not any(0 in d for d in draws)
    again = hc.select_positions(scores, "right", "random", np.random.default_rng((7, 0, 5)))
    np.testing.assert_array_equal(again, draws[5])
    with pytest.raises(ValueError, match="generator"):
        hc.select_positions(scores, "right", "random", None)


def test_boxes_hand_computed():
    """S = int(1.2 x largest extent / 2) x 2; bounds truncated toward zero; absent hand at 0."""
    left = np.zeros((2, 21, 2))  # in a 128 x 128 frame
    left[0, :, 0], left[0, :, 1] = np.linspace(0.125, 0.3125, 21), np.linspace(0.5, 0.625, 21)  # x 16..40, y 64..80
    left[1, :, 0], left[1, :, 1] = np.linspace(0.0, 0.0703125, 21), np.linspace(0.0, 0.1875, 21)  # x 0..9, y 0..24
    lb, rb, side = hc.hand_boxes(left, None, 128, 128)
    assert side == 28  # int(24 * 1.2 / 2) * 2
    np.testing.assert_array_equal(lb, [[14, 58, 42, 86], [-9, -2, 18, 26]])  # 4.5 - 14 = -9.5 -> -9
    np.testing.assert_array_equal(rb, [[-14, -14, 14, 14]])  # absent hand: one frame at (0, 0)


@pytest.fixture
def frame():
    """A 40 x 60 frame whose every pixel is distinct (value = 3 * (y * 60 + x) + channel, mod 256)."""
    return (np.arange(40 * 60 * 3).reshape(40, 60, 3) % 251).astype(np.uint8)


def test_padded_crop_never_wraps(frame):
    # a box left of and above the frame: unisign wraps to the far edge, padded keeps zeros
    box, side = (-10, -4, 6, 12), 16
    unisign = hc.cut_hand(frame, box, side, "unisign")
    padded = hc.cut_hand(frame, box, side, "padded")
    assert unisign.shape == padded.shape == (16, 16, 3)
    assert not unisign.any()  # rows -4..12 are rows 36..12: an empty cut, padded black
    np.testing.assert_array_equal(padded[4:, 10:], frame[0:12, 0:6])  # the frame's pixels at their place
    assert not padded[:4].any() and not padded[:, :10].any()
    # both x bounds negative: unisign shows the strip from the right edge, padded nothing
    box = (-20, 5, -4, 21)
    np.testing.assert_array_equal(hc.cut_hand(frame, box, side, "unisign"), frame[5:21, 40:56])
    assert not hc.cut_hand(frame, box, side, "padded").any()
    # beyond the bottom-right: both clip and pad at the bottom and right, identically
    box = (50, 30, 66, 46)
    np.testing.assert_array_equal(hc.cut_hand(frame, box, side, "unisign"), hc.cut_hand(frame, box, side, "padded"))
    np.testing.assert_array_equal(hc.cut_hand(frame, box, side, "padded")[:10, :10], frame[30:, 50:])


def test_padded_on_golden_sample(expected, names):
    """Fixture sample 2's box x -55..-5 shows the other hand in Uni-Sign's crop; padded: zeros."""
    pose, frames, pose_file, video = golden_sample(2, names)
    settings = hc.RGBSettings(VIDEO_DIR, crop="padded", eval_sampling="random")
    item = hc.load_hand_crops(pose, frames, video, settings, train=False, rng=np.random.RandomState(1236),
                              keypoints=pose.exact_keypoints)
    boxes = expected["s2_right_boxes"]
    wrapped = int(np.flatnonzero(boxes[:, 2] < 0)[0])  # the box left of the frame
    zero = hc.normalize_crops(np.zeros((1, 112, 112, 3), np.uint8)).numpy()[0]
    np.testing.assert_array_equal(item["right_hands"][wrapped], zero)
    assert expected["s2_right_crops_u8"][wrapped].any()  # Uni-Sign's crop is not black
    inside = int(np.flatnonzero((boxes >= 0).all(axis=1))[0])  # a box inside the frame: same crop
    np.testing.assert_array_equal(item["right_hands"][inside],
                                  hc.normalize_crops(expected["s2_right_crops_u8"][inside:inside + 1]).numpy()[0])


def golden_dataset(train: bool, rgb=None, seed: int = 3) -> SignDataset:
    rgb = rgb or hc.RGBSettings(VIDEO_DIR)
    return SignDataset(LABELS, POSE_DIR, "CSL_Daily", "test", max_length=MAX_LENGTH, train=train,
                       seed=seed, rgb=rgb)


def hand_draws(batches) -> list:
    return [(b["names"], b["left_sampled_indices"].tolist(), b["right_sampled_indices"].tolist(),
             b["left_hands"].sum().item()) for b in batches]


def test_train_draws_depend_on_seed_epoch_index_only():
    ds = golden_dataset(train=True)
    loaders = [torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=collate_fn, num_workers=w)
               for w in (0, 2)]
    runs = [hand_draws(loader) for loader in loaders]
    assert runs[0] == runs[1]
    assert [b[0] for b in runs[0]] == [list(load_labels(LABELS))[i:i + 2] for i in (0, 2, 4)]
    first = [ds[i] for i in (0, 2)]
    for item, again in zip(first, [golden_dataset(train=True)[i] for i in (0, 2)], strict=True):
        np.testing.assert_array_equal(item["right_sampled_indices"], again["right_sampled_indices"])
    epochs = []
    for epoch in range(4):
        ds.set_epoch(epoch)
        epochs.append(tuple(ds[0]["left_sampled_indices"].tolist() + ds[0]["right_sampled_indices"].tolist()))
    assert len(set(epochs)) > 1  # 5 of 43 and 5 of 48 frames: four epochs drawing the same is ~impossible


def test_eval_topk_is_deterministic_and_random_is_seeded():
    topk = [golden_dataset(train=False, seed=s)[0] for s in (1, 2)]
    for hand in hc.HANDS:
        np.testing.assert_array_equal(topk[0][f"{hand}_sampled_indices"], topk[1][f"{hand}_sampled_indices"])
        np.testing.assert_array_equal(topk[0][f"{hand}_hands"], topk[1][f"{hand}_hands"])
    rgb = hc.RGBSettings(VIDEO_DIR, eval_sampling="random")
    a, b = golden_dataset(False, rgb, seed=1)[0], golden_dataset(False, rgb, seed=1)[0]
    np.testing.assert_array_equal(a["left_sampled_indices"], b["left_sampled_indices"])
    item = golden_dataset(train=False)[3]  # no confident hand, no video file: dummies, no error
    assert "error" not in item and item["left_sampled_indices"].tolist() == [-1]


def rgb_layout(tmp_path, extra_pose_frames=0, video=True):
    """Fixture sample 0 copied to tmp_path; its pose file longer by ``extra_pose_frames``."""
    pose = pickle.loads((POSE_DIR / "S000001_P0000_T00.pkl").read_bytes())
    for key in ("keypoints", "scores"):
        pose[key] = list(pose[key]) + [pose[key][-1]] * extra_pose_frames
    name = "S000001_P0000_T00"
    write_pickle(tmp_path / "pose" / f"{name}.pkl", pose)
    label = write_pickle(tmp_path / "labels.test", {name: make_label(name)}, compress=True)
    (tmp_path / "video").mkdir()
    if video:
        shutil.copy(VIDEO_DIR / f"{name}.mp4", tmp_path / "video" / f"{name}.mp4")
    return SignDataset(label, tmp_path / "pose", "CSL_Daily", "test", max_length=MAX_LENGTH,
                       rgb=hc.RGBSettings(tmp_path / "video"))


def test_missing_video_is_a_sample_error(tmp_path):
    item = rgb_layout(tmp_path, video=False)[0]
    assert set(item) == {"name", "error"}
    assert str(tmp_path / "video" / "S000001_P0000_T00.mp4") in item["error"] and "not found" in item["error"]
    batch = collate_fn([item])
    assert batch["skipped"] == [(item["name"], item["error"])] and "left_hands" not in batch


def test_video_shorter_than_pose_is_a_sample_error(tmp_path):
    item = rgb_layout(tmp_path, extra_pose_frames=12)[0]  # 60 pose frames, 48 video frames
    assert "error" in item
    assert "S000001_P0000_T00.mp4: the video has 48 frames, fewer than the 60 frames" in item["error"]


def test_video_not_a_video_is_a_sample_error(tmp_path):
    ds = rgb_layout(tmp_path)
    (tmp_path / "video" / "S000001_P0000_T00.mp4").write_bytes(b"not a video at all" * 10)
    item = ds[0]
    assert "S000001_P0000_T00.mp4: cannot read the video" in item["error"]


def test_collate_without_rgb_unchanged_and_empty_batch():
    ds = SignDataset(LABELS, POSE_DIR, "CSL_Daily", "test", max_length=MAX_LENGTH)
    batch = collate_fn([ds[0], ds[1]])
    assert not any(k.startswith(("left_s", "right_s", "left_h", "right_h")) or k.endswith("rgb_len") for k in batch)
    item = golden_dataset(train=False)[4]  # S = 0 after reading: both hands dummies
    batch = collate_fn([item, golden_dataset(train=False)[3]])
    assert batch["left_rgb_len"] == [1, 1] and batch["right_sampled_indices"].tolist() == [-1, -1]
    assert batch["left_hands"].shape == (2, 3, 112, 112) and batch["left_skeletons_norm"].shape == (2, 21, 2)


def test_pose_record_keeps_float64_keypoints_of_person0(tmp_path):
    """Boxes use the file's own precision (float64 for rtmlib files), person 0 of ragged frames."""
    kp = [np.full((2, 133, 2), 0.25), np.zeros((0, 133, 2)), np.full((1, 133, 2), 0.5)]  # ragged persons
    kp[0][1] = 0.9
    path = write_pickle(tmp_path / "p.pkl", {"keypoints": kp, "scores": [np.ones((len(k), 133)) for k in kp]})
    points = load_pose(path).exact_keypoints
    assert points.shape == (3, 133, 2) and points.dtype == np.float64
    np.testing.assert_array_equal(points[:, 0, 0], [0.25, 0.0, 0.5])


def test_rgb_dir_layouts(tmp_path):
    root = tmp_path
    (root / "dataset/CSL_Daily/sentence-crop").mkdir(parents=True)
    assert paths.rgb_dir("CSL_Daily", "test", root) == root / "dataset/CSL_Daily/sentence-crop"
    (root / "dataset/WLASL/rgb_format/train").mkdir(parents=True)
    (root / "dataset/WLASL/rgb_format/val").mkdir()
    assert paths.rgb_dir("WLASL", "train", root) == root / "dataset/WLASL/rgb_format/train"
    assert paths.rgb_dir("WLASL", "dev", root) == root / "dataset/WLASL/rgb_format/val"  # the docs' name
    (root / "dataset/WLASL/rgb_format/dev").mkdir()
    assert paths.rgb_dir("WLASL", "dev", root) == root / "dataset/WLASL/rgb_format/dev"  # the code's name first
    assert paths.default_rgb_dir("OpenASL", "test", root) == root / "dataset/OpenASL/rgb_format/test"
    assert paths.default_rgb_dir("CSL_News", "train", root) == root / "dataset/CSL_News/rgb_format"
    (root / "videos/test").mkdir(parents=True)
    assert paths.rgb_dir("CSL_Daily", "test", root, rgb_dir=root / "videos") == root / "videos/test"
    assert paths.rgb_dir("CSL_Daily", "dev", root, rgb_dir=root / "videos") == root / "videos"
    with pytest.raises(InputError, match="dataset/How2Sign/rgb_format: video directory not found.*--rgb_dir"):
        paths.rgb_dir("How2Sign", "test", root)
    with pytest.raises(InputError, match="no 'dev' split"):
        paths.rgb_dir("How2Sign", "dev", root)
    with pytest.raises(InputError, match="elsewhere: video directory not found: .*set --rgb_dir"):
        paths.rgb_dir("WLASL", "test", root, rgb_dir=root / "elsewhere")


def test_settings_checked():
    with pytest.raises(InputError, match="--rgb_crop wrapped"):
        hc.RGBSettings("v", crop="wrapped")
    with pytest.raises(InputError, match="--rgb_eval_sampling best"):
        hc.RGBSettings("v", eval_sampling="best")


def test_read_frames_errors_name_file_frame_and_count(tmp_path):
    video = VIDEO_DIR / "S000005_P0004_T00.mp4"  # 20 frames
    with pytest.raises(SampleError, match=r"S000005_P0004_T00.mp4: frame 20 wanted but the video has 20 frames"):
        read_frames(video, [3, 20])
    with pytest.raises(SampleError, match=r"nothing.mp4: video file not found"):
        read_frames(tmp_path / "nothing.mp4", [0])


def test_synthetic_videos_show_the_hands_and_feed_the_dataset(tmp_path):
    from signfuse.demo.synthetic import make_synthetic
    from signfuse.demo import synthetic_video as sv
    from signfuse.data.video import count_frames

    make_synthetic(tmp_path, samples=6, seed=1, trim_fraction=0.5)
    summary = sv.write_videos(tmp_path, splits=("dev", "test"))
    assert summary["videos"] == {"dev": 1, "test": 1}
    folder = paths.rgb_dir("Synthetic", "test", tmp_path)
    assert folder == tmp_path / "dataset/Synthetic/rgb_format/test" and str(folder) == summary["dirs"]["test"]
    name = next(iter(load_labels(paths.label_path("Synthetic", "test", tmp_path))))
    pose = load_pose(paths.pose_dir("Synthetic", "test", tmp_path) / f"{name}.pkl")
    video = folder / f"{name}.mp4"
    assert count_frames(video) == len(pose.keypoints)  # every frame of the pose file, start/end included
    k = len(pose.keypoints) // 2
    frame = read_frames(video, [k])[0]
    np.testing.assert_array_equal(frame, sv.render_frames(pose.keypoints[k:k + 1])[0])  # lossless
    x, y = np.floor(pose.keypoints[k, 112] * 128 + 0.5).astype(int)  # the right wrist, drawn last
    assert tuple(frame[y, x]) == sv.WRIST_COLOUR and tuple(frame[0, 0]) == sv.BACKGROUND
    first = video.read_bytes()
    with pytest.raises(InputError, match="rgb_format/dev: already exists"):
        sv.write_videos(tmp_path, splits=("dev",))
    sv.write_videos(tmp_path, splits=("test",), overwrite=True)
    assert video.read_bytes() == first  # deterministic
    ds = SignDataset(paths.label_path("Synthetic", "test", tmp_path), paths.pose_dir("Synthetic", "test", tmp_path),
                     "Synthetic", "test", rgb=hc.RGBSettings(folder))
    batch = collate_fn([ds[0]])
    assert batch["skipped"] == [] and batch["right_sampled_indices"].min() >= 0  # real crops
    assert batch["right_hands"].shape[0] == batch["right_rgb_len"][0] >= 3  # ceil(0.1 x 30+ frames)


@pytest.mark.parametrize("precision", [np.float64, np.float32])
def test_threshold_parity_follows_the_file_precision(tmp_path, precision):
    """Uni-Sign compares confidences after concatenating them with the keypoints: in float64 for
    rtmlib's float64 keypoints (float32(0.3) > 0.3 there: kept), in float32 otherwise (masked)."""
    pose = make_pose(6, seed=4)
    edge = np.float32(0.3)
    for frame in pose["scores"]:
        frame[0, 95] = edge  # a left fingertip at exactly float32(0.3)
        frame[0, 3] = edge  # a body point (an ear) too: it counts in the body box only when kept
    pose["keypoints"] = [k.astype(precision) for k in pose["keypoints"]]
    record = load_pose(write_pickle(tmp_path / "p.pkl", pose))
    assert record.float64_file == (precision == np.float64) and record.keypoints.dtype == np.float32
    assert record.exact_keypoints.dtype == precision
    parts = pose_parts(record, np.arange(6))
    kept = precision == np.float64
    assert all(p.dtype == np.float32 for p in parts.values())
    assert (parts["left"][:, 95 - 91, 2] == edge).all() == kept and (parts["left"][:, 95 - 91, 2] == 0).all() != kept
    assert (parts["body"][:, 1, 2] == edge).all() == kept
    # the float64 pipeline's values are its float64 results rounded once to float32
    k64 = np.stack(pose["keypoints"])[:, 0].astype(np.float64)
    if kept:
        span = k64[:, [0, 3, 4, 5, 6, 7, 8, 9, 10]].reshape(-1, 2)
        scale = (span.max(0) - span.min(0)).max()
        want = ((k64[:, 92] - k64[:, 91]) / scale).clip(-1, 1).astype(np.float32)  # (6, 2)
        np.testing.assert_array_equal(parts["left"][:, 1, :2], want)
