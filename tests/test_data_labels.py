"""Dataset layouts (paths.py) and label files (labels.py)."""
import gzip
import os
import pickle

import pytest
from conftest import make_label, write_pickle

from signfuse.data.labels import gloss_text, load_labels
from signfuse.data.paths import label_path, pose_dir, splits
from signfuse.errors import InputError


def test_label_path_follows_unisign_layout(tmp_path):
    for dataset, name in [("CSL_Daily", "labels.dev"), ("WLASL", "labels-2000.dev"),
                          ("OpenASL", "labels.dev"), ("Synthetic", "labels.dev")]:
        write_pickle(tmp_path / "data" / dataset / name, {}, compress=True)
        assert label_path(dataset, "dev", data_root=tmp_path) == tmp_path / "data" / dataset / name


def test_label_path_with_label_dir_and_wlasl_fallback(tmp_path):
    write_pickle(tmp_path / "mine" / "labels.test", {}, compress=True)
    assert label_path("CSL_Daily", "test", label_dir=tmp_path / "mine") == tmp_path / "mine" / "labels.test"
    # WLASL: Uni-Sign's labels-2000.<split> first, plain labels.<split> when it is absent
    assert label_path("WLASL", "test", label_dir=tmp_path / "mine") == tmp_path / "mine" / "labels.test"
    write_pickle(tmp_path / "mine" / "labels-2000.test", {}, compress=True)
    assert label_path("WLASL", "test", label_dir=tmp_path / "mine") == tmp_path / "mine" / "labels-2000.test"


def test_missing_label_file_names_path_and_flags(tmp_path):
    with pytest.raises(InputError) as info:
        label_path("CSL_Daily", "train", data_root=tmp_path)
    assert str(info.value) == (f"{tmp_path}/data/CSL_Daily/labels.train: label file not found: the CSL_Daily "
                               f"train labels; set --data_root (it must hold data/CSL_Daily/) or --label_dir "
                               f"to the folder that holds it")
    with pytest.raises(InputError) as info:
        label_path("WLASL", "dev", label_dir=tmp_path)
    assert str(info.value) == (f"{tmp_path}/labels-2000.dev: label file not found (nor labels.dev): the WLASL "
                               f"dev labels; set --label_dir to the folder that holds it")


def test_splits_and_unknown_names():
    assert splits("How2Sign") == ("train", "test")
    assert splits("CSL_Daily") == ("train", "dev", "test")
    with pytest.raises(InputError, match=r"^--dataset How2Sign: no 'dev' split \(its splits: train, test\)$"):
        label_path("How2Sign", "dev")
    with pytest.raises(InputError, match=r"^--dataset Nope: unknown dataset, expected one of CSL_News, "):
        pose_dir("Nope", "test")


def test_pose_dir_uses_split_subfolder_when_present(tmp_path):
    base = tmp_path / "dataset" / "WLASL" / "pose_format"
    (base / "train").mkdir(parents=True)
    assert pose_dir("WLASL", "train", data_root=tmp_path) == base / "train"
    assert pose_dir("WLASL", "test", data_root=tmp_path) == base  # no test/ folder
    (tmp_path / "elsewhere").mkdir()
    assert pose_dir("WLASL", "train", pose_dir=tmp_path / "elsewhere") == tmp_path / "elsewhere"
    with pytest.raises(InputError) as info:
        pose_dir("CSL_Daily", "test", data_root=tmp_path)
    assert str(info.value) == (f"{tmp_path}/dataset/CSL_Daily/pose_format: pose directory not found: the "
                               f"CSL_Daily pose files; set --data_root (it must hold "
                               f"dataset/CSL_Daily/pose_format/) or --pose_dir to the folder that holds them")


def test_real_csl_daily_label_files_load(csl_daily_labels):
    folder = csl_daily_labels
    test = load_labels(folder / "labels.test")
    assert len(test) == 1176
    sample = test["S000020_P0004_T00"]
    assert sample == {"name": "S000020_P0004_T00", "gloss": ["他", "今天", "年龄", "4"],
                      "text": "他今年四岁。", "video_path": "S000020_P0004_T00.mp4"}
    assert gloss_text(sample["gloss"]) == "他 今天 年龄 4"
    for split in ("train", "dev"):
        labels = load_labels(folder / f"labels.{split}")
        assert len(labels) > 0 and all(s["video_path"].endswith(".mp4") for s in labels.values())


def test_label_file_of_the_wrong_type(tmp_path):
    path = write_pickle(tmp_path / "labels.test", [make_label("a")], compress=True)
    with pytest.raises(InputError) as info:
        load_labels(path)
    assert str(info.value) == f"{path}: label file of the wrong type: a list, expected a dict {{name: sample}}"


@pytest.mark.parametrize("bad, message", [
    ("just a string", "entry 'b' is a str, expected a dict with name, text, gloss, video_path"),
    ({"name": "b", "text": "t", "gloss": []},
     "entry 'b' has no 'video_path' (a sample needs name, text, gloss, video_path)"),
    ({"name": "b", "text": 3, "gloss": [], "video_path": "b.mp4"}, "entry 'b': 'text' is an int, expected a str"),
    ({"name": "b", "text": "t", "gloss": [1, 2], "video_path": "b.mp4"},
     "entry 'b': 'gloss' is a list, expected a list of str (or '' when there is none)"),
])
def test_first_bad_entry_is_named(tmp_path, bad, message):
    path = write_pickle(tmp_path / "labels.dev", {"a": make_label("a"), "b": bad, "c": "also bad"}, compress=True)
    with pytest.raises(InputError) as info:
        load_labels(path)
    assert str(info.value) == f"{path}: {message}"


def test_labels_keep_order_plain_pickles_and_missing_gloss(tmp_path):
    labels = {"z": make_label("z", 0), "a": {"name": "a", "text": "hi", "video_path": "a.mp4"}}
    path = write_pickle(tmp_path / "labels.train", labels)  # not compressed: also accepted
    out = load_labels(path)
    assert list(out) == ["z", "a"]
    assert out["a"]["gloss"] == "" and gloss_text(out["a"]["gloss"]) == ""


def test_empty_json_malicious_and_missing_label_files(tmp_path):
    empty = write_pickle(tmp_path / "labels.test", {}, compress=True)
    with pytest.raises(InputError, match=r"labels\.test: label file holds no samples$"):
        load_labels(empty)
    json_file = tmp_path / "CSL_News_Labels.json"
    json_file.write_text("[]")
    with pytest.raises(InputError, match=r"CSL_News_Labels\.json: a JSON label file .* is not supported"):
        load_labels(json_file)
    evil = tmp_path / "labels.dev"
    marker = tmp_path / "marker"
    evil.write_bytes(gzip.compress(pickle.dumps({"a": Touch(marker)})))
    with pytest.raises(InputError, match=r"labels\.dev: refused to unpickle .*system: .*--trust_pickles"):
        load_labels(evil)
    assert not marker.exists()
    with pytest.raises(InputError, match=r"labels\.train: file not found$"):
        load_labels(tmp_path / "labels.train")


class Touch:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))
