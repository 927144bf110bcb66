"""SignDataset and collate_fn (dataset.py)."""

import numpy as np
import pytest
import torch
from conftest import make_pose, write_pickle

from signfuse.data import dataset as dataset_module
from signfuse.data.dataset import SignDataset, collate_fn
from signfuse.data.paths import label_path, pose_dir
from signfuse.data.pose import load_pose
from signfuse.data.transforms import PART_NAMES, normalize_parts, split_parts
from signfuse.errors import InputError

SIZES = {"body": 9, "left": 21, "right": 21, "face_all": 18}


def dataset_of(layout, **kw):
    return SignDataset(layout.label_path, layout.pose_dir, "CSL_Daily", "test", **kw)


def test_item_is_the_normalised_pose_of_the_sample(unisign_layout):
    layout = unisign_layout(lengths=(30, 12))
    data = dataset_of(layout)
    assert len(data) == 2
    item = data[1]
    assert set(item) == {"name", "text", "gloss", "target", "frame_indices", *PART_NAMES}
    assert (item["name"], item["text"], item["gloss"], item["target"]) == (
        layout.names[1], "sentence 1", "g1 w", "sentence 1")
    assert item["frame_indices"].dtype == np.int64 and item["frame_indices"].tolist() == list(range(12))
    pose = layout.poses[1]
    want = normalize_parts(split_parts(np.stack(pose["keypoints"])[:, 0], np.stack(pose["scores"])[:, 0]))
    for name in PART_NAMES:
        assert item[name].shape == (12, SIZES[name], 3) and item[name].dtype == np.float32
        np.testing.assert_array_equal(item[name], want[name])
    assert dataset_of(layout, task="CSLR")[0]["target"] == "g0 w"
    assert dataset_of(layout, task="ISLR")[0]["target"] == "sentence 0"


def test_paths_find_the_layout_the_fixture_writes(unisign_layout):
    layout = unisign_layout(lengths=(5,), dataset="WLASL", split="train", split_subdir=True)
    assert pose_dir("WLASL", "train", data_root=layout.root) == layout.pose_dir
    layout = unisign_layout(lengths=(5,), split="dev")
    assert label_path("CSL_Daily", "dev", data_root=layout.root) == layout.label_path


def test_long_samples_start_end_and_sampling_randomness(unisign_layout):
    layout = unisign_layout(poses=[make_pose(40, seed=0, start=5, end=35), make_pose(50, seed=1)])
    evaluation = dataset_of(layout, max_length=8)
    first = evaluation[0]["frame_indices"]
    assert first.tolist() == [5, 9, 13, 17, 22, 26, 30, 34]  # 5 + round(k * 29 / 7), k = 0..7
    want = normalize_parts(split_parts(*pose_frames(layout.pose_dir, layout.names[0], first)))
    np.testing.assert_array_equal(evaluation[0]["body"], want["body"])

    train = dataset_of(layout, max_length=8, train=True, seed=7)
    a = train[1]["frame_indices"]
    assert len(a) == 8 and np.all(np.diff(a) > 0) and 0 <= a[0] and a[-1] < 50
    want = np.sort(np.random.default_rng((7, 0, 1)).choice(50, 8, replace=False))
    np.testing.assert_array_equal(a, want)  # drawn from (seed, epoch, index) only
    np.testing.assert_array_equal(train[1]["frame_indices"], a)
    train.set_epoch(1)
    assert not np.array_equal(train[1]["frame_indices"], a)
    train.set_epoch(0)
    np.testing.assert_array_equal(train[1]["frame_indices"], a)


def pose_frames(folder, name, frames):
    record = load_pose(folder / f"{name}.pkl")
    return record.keypoints[frames], record.scores[frames]


def test_collate_pads_by_repeating_the_last_frame(unisign_layout):
    layout = unisign_layout(lengths=(5, 3))
    data = dataset_of(layout)
    a, b = data[0], data[1]
    batch = collate_fn([a, b])
    assert batch["attention_mask"].dtype == torch.int64
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert batch["frame_indices"].dtype == torch.int64
    assert batch["frame_indices"].tolist() == [[0, 1, 2, 3, 4], [0, 1, 2, -1, -1]]
    for name in PART_NAMES:
        x = batch[name]
        assert x.dtype == torch.float32 and tuple(x.shape) == (2, 5, SIZES[name], 3)
        np.testing.assert_array_equal(x[0].numpy(), a[name])
        np.testing.assert_array_equal(x[1, :3].numpy(), b[name])
        np.testing.assert_array_equal(x[1, 3].numpy(), b[name][2])  # padding: copies of frame 2
        np.testing.assert_array_equal(x[1, 4].numpy(), b[name][2])
    assert batch["names"] == layout.names
    assert batch["sentences"] == ["sentence 0", "sentence 1"] == batch["targets"]
    assert batch["glosses"] == ["g0 w", "g1 w"]
    assert batch["skipped"] == []
    assert "desc_texts" not in batch and "has_description" not in batch


def test_broken_sample_gives_error_dict_and_is_skipped(unisign_layout):
    layout = unisign_layout(lengths=(4, 6, 3))
    bad = layout.pose_dir / f"{layout.names[1]}.pkl"
    nan = make_pose(6)
    nan["keypoints"][2][0, 0, 0] = np.nan
    write_pickle(bad, nan)
    (layout.pose_dir / f"{layout.names[2]}.pkl").unlink()
    data = dataset_of(layout)
    assert data[1] == {"name": layout.names[1],
                       "error": f"{bad}: keypoints hold 1 NaN or infinite values in 1 frames (first: frame 2)"}
    missing = layout.pose_dir / f"{layout.names[2]}.pkl"
    assert data[2] == {"name": layout.names[2], "error": f"{missing}: file not found"}
    batch = collate_fn([data[0], data[1], data[2]])
    assert batch["names"] == [layout.names[0]]
    assert batch["skipped"] == [(layout.names[1], data[1]["error"]), (layout.names[2], data[2]["error"])]
    assert tuple(batch["body"].shape) == (1, 4, 9, 3)
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1]]


def test_batch_of_only_failures_is_empty(unisign_layout):
    batch = collate_fn([{"name": "x", "error": "x.pkl: file not found"}])
    assert batch["skipped"] == [("x", "x.pkl: file not found")]
    assert tuple(batch["body"].shape) == (0, 0, 9, 3) and tuple(batch["face_all"].shape) == (0, 0, 18, 3)
    assert tuple(batch["attention_mask"].shape) == (0, 0) and batch["attention_mask"].dtype == torch.int64
    assert batch["names"] == batch["targets"] == []


def test_bad_label_file_stops_the_dataset(tmp_path):
    path = write_pickle(tmp_path / "labels.test", ["not", "a", "dict"], compress=True)
    with pytest.raises(InputError, match=r"labels\.test: label file of the wrong type: a list"):
        SignDataset(path, tmp_path, "CSL_Daily", "test")
    with pytest.raises(InputError, match=r"^--task SLR: unknown task, expected one of SLT, ISLR, CSLR$"):
        SignDataset(path, tmp_path, "CSL_Daily", "test", task="SLR")


class FakeDescriber:
    def __init__(self):
        self.calls = []

    def describe(self, sample_id, frame_indices):
        self.calls.append((sample_id, list(frame_indices)))
        aligned = [[("hand up", 1.0)] if f % 2 == 0 else [] for f in frame_indices]
        return aligned, np.array([f % 2 == 0 for f in frame_indices], np.float32)


def test_descriptions_flow_through_collate(unisign_layout, monkeypatch):
    layout = unisign_layout(lengths=(3, 2))
    describer = FakeDescriber()
    data = dataset_of(layout, describer=describer)
    a, b = data[0], data[1]
    assert describer.calls == [(layout.names[0], [0, 1, 2]), (layout.names[1], [0, 1])]
    assert a["desc_aligned"] == [[("hand up", 1.0)], [], [("hand up", 1.0)]]
    assert a["has_description"].dtype == np.float32 and a["has_description"].tolist() == [1, 0, 1]

    seen = {}

    def collate_descriptions(aligned_per_sample, T):
        seen["args"] = (aligned_per_sample, T)
        index = np.full((len(aligned_per_sample), T, 2), -1, np.int64)
        index[0, 0, 0] = 0
        return ["hand up"], index, np.zeros((len(aligned_per_sample), T, 2), np.float32)

    monkeypatch.setattr(dataset_module, "collate_descriptions", collate_descriptions)
    batch = collate_fn([a, b])
    assert seen["args"] == ([a["desc_aligned"], b["desc_aligned"]], 3)
    assert batch["desc_texts"] == ["hand up"]
    assert batch["desc_index"].dtype == torch.int64 and tuple(batch["desc_index"].shape) == (2, 3, 2)
    assert batch["desc_index"][0, 0, 0].item() == 0
    assert batch["desc_weight"].dtype == torch.float32
    assert batch["has_description"].dtype == torch.float32
    assert batch["has_description"][..., 0].tolist() == [[1, 0, 1], [1, 0, 0]]  # 0 on padding


def test_golden_pose_files_through_the_dataset(golden_dir, tmp_path):
    inputs = np.load(golden_dir / "inputs.npz")
    expected = np.load(golden_dir / "expected.npz")
    labels = {}
    for i in range(4):
        name = f"golden{i}"
        labels[name] = {"name": name, "text": "t", "gloss": "", "video_path": f"{name}.mp4"}
        write_pickle(tmp_path / "poses" / f"{name}.pkl",  # as pose files hold them: a list over frames
                     {"keypoints": list(inputs[f"sample{i}_keypoints"]), "scores": list(inputs[f"sample{i}_scores"])})
    path = write_pickle(tmp_path / "labels.test", labels, compress=True)
    data = SignDataset(path, tmp_path / "poses", "CSL_Daily", "test")
    batch = collate_fn([data[i] for i in range(4)])
    np.testing.assert_array_equal(batch["attention_mask"].numpy(), expected["batch_attention_mask"])
    for i in range(4):
        length = int(expected["batch_attention_mask"][i].sum())
        for name in PART_NAMES:
            np.testing.assert_allclose(batch[name][i, :length].numpy(), expected[f"sample{i}_{name}"], atol=1e-5)


def test_real_describer_and_collate(unisign_layout, tmp_path):
    from signfuse.data import descriptions
    layout = unisign_layout(lengths=(3, 2))
    desc_dir = tmp_path / "description"
    desc_dir.mkdir()
    (desc_dir / f"{layout.names[0]}.json").write_text('{"0": "hand up", "2": "hand down"}')
    data = dataset_of(layout, describer=descriptions.Describer(desc_dir))
    a, b = data[0], data[1]  # b has no description file: normal, no descriptions
    assert a["desc_aligned"] == [[("hand up", 1.0)], [("hand up", 0.5), ("hand down", 0.5)], [("hand down", 1.0)]]
    batch = collate_fn([a, b])
    assert batch["desc_texts"] == ["hand up", "hand down"]
    assert batch["desc_index"].tolist() == [[[0, -1], [0, 1], [1, -1]], [[-1, -1], [-1, -1], [-1, -1]]]
    assert batch["desc_weight"][0].tolist() == [[1.0, 0.0], [0.5, 0.5], [1.0, 0.0]]
    assert batch["has_description"][..., 0].tolist() == [[1, 0, 1], [0, 0, 0]]
