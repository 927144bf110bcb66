"""`signfuse check-data` and SignDataset over the bad-input corpus tests/data/bad/.

The corpus (tools/make_bad_corpus.py) has one sample per kind of problem: the train split the
broken pose files, dev two good samples, test good poses with every kind of description file.
"""
import gzip
import importlib.util

import numpy as np
import pytest

from conftest import BAD_CORPUS as CORPUS, REPO, make_pose, write_pickle
from signfuse import cli
from signfuse.data import check
from signfuse.data.check import check_split
from signfuse.data.dataset import SignDataset, collate_fn
from signfuse.data.descriptions import Describer
from signfuse.data.pose import load_pose
from signfuse.data.transforms import PART_NAMES
from signfuse.errors import InputError, SampleError

POSES = CORPUS / "dataset" / "Synthetic" / "pose_format"
LABELS = CORPUS / "data" / "Synthetic"
DESCRIPTIONS = CORPUS / "description" / "Synthetic"
REFUSED = ("refused to unpickle os.system: pose and label files hold only dicts, lists, numbers, strings "
           "and numpy arrays; pass --trust_pickles if you trust this file")

# train split: sample -> (kind, reason) of its problem, in label-file order; None: usable
TRAIN = {
    "good_train": None,
    "missing_pose": ("missing pose file", "file not found"),
    "truncated_pickle": ("unreadable pose file", "truncated pickle (the data ends before the object does)"),
    "not_a_pickle": ("unreadable pose file", "not a readable pickle (invalid load key, 'k'.)"),
    "empty_file": ("unreadable pose file", "empty file, expected a pickle"),
    "malicious_pickle": ("refused pickle", REFUSED),
    "not_a_dict": ("wrong shape or type",
                   "pose file of the wrong type: list, expected a dict with 'keypoints' and 'scores'"),
    "zero_frames": ("no frames", "the pose file has zero frames"),
    "nan_keypoints": ("non-finite values", "keypoints hold 2 NaN or infinite values in 2 frames (first: frame 3)"),
    "inf_scores": ("non-finite values", "scores hold 1 NaN or infinite values in 1 frames (first: frame 2)"),
    "wrong_keypoint_shape": ("wrong shape or type",
                             "'keypoints' of frame 0 has shape (1, 133, 3), expected (persons, 133, 2)"),
    "length_mismatch": ("frame count mismatch", "6 frames of keypoints but 5 frames of scores"),
    "start_not_before_end": ("bad start/end",
                             "bad start/end (4, 4): need 0 <= start < end <= 6 (the number of frames)"),
    "end_beyond_frames": ("bad start/end",
                          "bad start/end (1, 20): need 0 <= start < end <= 6 (the number of frames)"),
    "huge_coordinates": ("coordinates out of range",
                         "keypoints hold values beyond ±1e+30 (first: frame 0): too large to normalise in float32"),
}
BROKEN = {name: problem for name, problem in TRAIN.items() if problem is not None}
# load_pose itself rejects every one of them
REJECTED_BY_LOAD_POSE = list(BROKEN)

# test split: sample -> reason of its description file's problem (all are warnings)
INVALID_DESCRIPTIONS = {
    "desc_invalid_json": "invalid JSON (Expecting value at line 1 column 32)",
    "desc_not_utf8": "not UTF-8 text (byte 0xe9 at offset 17)",
    "desc_list": "top level is an array, expected a JSON object",
    "desc_negative_key": "frame key '-3' is not a non-negative integer",
    "desc_non_numeric_key": "frame key 'three' is not a non-negative integer",
    "desc_non_string_text": "text of frame '5' is a number, expected a string",
    "desc_segment_end_before_start": "segment 0: end (2) must be greater than start (4)",
}
OUT_OF_RANGE = ("described frames 40, 41 are at or beyond the end of the pose file, which has 6 frames "
                "(0 to 5): no sampled frame can be one of them (a description of another video, or frames "
                "counted from another origin?)")


def load_tool():
    spec = importlib.util.spec_from_file_location("make_bad_corpus", REPO / "tools" / "make_bad_corpus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def files_of(folder) -> dict:
    return {path.relative_to(folder).as_posix(): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def same_content(a: bytes, b: bytes) -> bool:
    """Equal bytes; gzip members compare by content (another zlib may deflate differently)."""
    if a == b:
        return True
    return a[:2] == b[:2] == b"\x1f\x8b" and gzip.decompress(a) == gzip.decompress(b)


def test_committed_corpus_is_what_the_tool_generates(tmp_path):
    tool = load_tool()
    tool.make_bad_corpus(tmp_path / "bad")
    generated, committed = files_of(tmp_path / "bad"), files_of(CORPUS)
    assert sorted(committed) == sorted(generated)
    assert [name for name in generated if not same_content(generated[name], committed[name])] == []
    assert sum(len(data) for data in committed.values()) < 200_000
    tool.make_bad_corpus(tmp_path / "bad")  # regenerating over its own output is allowed ...
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit, match="refusing to replace it"):
        tool.make_bad_corpus(tmp_path / "other")  # ... over another folder is not
    assert (tmp_path / "other" / "keep.txt").read_text() == "mine"


# --------------------------------------------------------------------------- check_split

def test_train_split_reports_every_broken_pose_file():
    report = check_split("Synthetic", "train", data_root=CORPUS)
    assert (report.label_path, report.pose_dir) == (str(LABELS / "labels.train"), str(POSES))
    assert (report.samples, report.usable, report.unusable, report.ok) == (15, 1, 14, False)
    assert report.entries == [(name, str(POSES / f"{name}.pkl"), reason) for name, (_, reason) in BROKEN.items()]
    assert [p.kind for p in report.problems] == [kind for kind, _ in BROKEN.values()]
    assert {p.severity for p in report.problems} == {"error"}
    assert report.counts == {"missing pose file": 1, "unreadable pose file": 3, "refused pickle": 1,
                             "wrong shape or type": 2, "no frames": 1, "non-finite values": 2,
                             "frame count mismatch": 1, "bad start/end": 2, "coordinates out of range": 1}
    assert report.descriptions is None


def test_good_split_has_no_problem():
    report = check_split("Synthetic", "dev", data_root=CORPUS, use_descriptions=True)
    assert (report.samples, report.usable, report.unusable, report.ok) == (2, 2, 0, True)
    assert report.problems == [] and report.counts == {}
    assert report.descriptions == {"described": 0, "missing": 2, "invalid": 0, "empty": 0}
    assert report.format().splitlines() == [
        "Synthetic dev: 2 samples, 2 usable, 0 unusable",
        f"  labels: {LABELS / 'labels.dev'}", f"  poses: {POSES}", f"  descriptions: {DESCRIPTIONS}",
        "  descriptions: 0 of 2 samples described; 2 description files missing, 0 invalid, 0 with only empty texts"]


def test_description_files_are_warnings_and_counted():
    report = check_split("Synthetic", "test", data_root=CORPUS, use_descriptions=True)
    assert (report.samples, report.usable, report.unusable, report.ok) == (12, 12, 0, True)
    assert report.descriptions == {"described": 3, "missing": 1, "invalid": 7, "empty": 1}
    want = [(name, str(DESCRIPTIONS / f"{name}.json"), reason) for name, reason in INVALID_DESCRIPTIONS.items()]
    want.append(("desc_frame_out_of_range", str(DESCRIPTIONS / "desc_frame_out_of_range.json"), OUT_OF_RANGE))
    assert report.entries == want
    assert report.counts == {"invalid description file": 7, "described frames beyond the pose file": 1}
    assert {p.severity for p in report.problems} == {"warning"}
    # without --use_descriptions the description files are not looked at
    plain = check_split("Synthetic", "test", data_root=CORPUS)
    assert (plain.problems, plain.descriptions, plain.usable) == ([], None, 12)


def test_description_folder_defaults_to_data_root_and_desc_dir_overrides_it(tmp_path):
    report = check_split("Synthetic", "test", data_root=CORPUS, desc_dir=tmp_path, use_descriptions=True)
    assert report.entries == [("test descriptions", str(tmp_path / "Synthetic"),
                               "description folder not found: set --desc_dir to the folder that holds "
                               "<dataset>/<sample_id>.json")]
    assert (report.ok, report.usable, report.descriptions) == (False, 12, None)
    moved = check_split("Synthetic", "test", label_dir=LABELS, pose_dir=POSES, desc_dir=CORPUS / "description",
                        use_descriptions=True)
    assert moved.descriptions == {"described": 3, "missing": 1, "invalid": 7, "empty": 1}


def test_an_unusable_label_file_is_one_entry_for_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where the malicious label file would create its marker
    wrong = check_split("Synthetic", "test", label_dir=CORPUS / "wrong_labels", pose_dir=POSES)
    path = str(CORPUS / "wrong_labels" / "labels.test")
    assert wrong.entries == [("labels.test", path, "label file of the wrong type: a list, expected a dict "
                                                   "{name: sample}")]
    assert (wrong.counts, wrong.samples, wrong.ok, wrong.label_path) == ({"label file": 1}, 0, False, path)
    evil = check_split("Synthetic", "test", label_dir=CORPUS / "evil_labels", pose_dir=POSES)
    assert evil.entries == [("labels.test", str(CORPUS / "evil_labels" / "labels.test"), REFUSED)]
    assert not (tmp_path / "signfuse_marker_labels").exists()
    missing = check_split("Synthetic", "dev", data_root=tmp_path)
    assert missing.entries == [("labels.dev", str(tmp_path / "data" / "Synthetic" / "labels.dev"),
                                "label file not found: the Synthetic dev labels; set --data_root (it must hold "
                                "data/Synthetic/) or --label_dir to the folder that holds it")]


def test_a_missing_pose_folder_makes_every_sample_unusable(tmp_path):
    report = check_split("Synthetic", "dev", label_dir=LABELS, pose_dir=tmp_path / "nowhere")
    assert report.entries == [("dev poses", str(tmp_path / "nowhere"),
                               "pose directory not found: the Synthetic pose files; set --pose_dir to the "
                               "folder that holds them")]
    assert (report.samples, report.usable, report.unusable, report.ok) == (2, 0, 2, False)


def test_unknown_split_or_max_length_is_an_input_error():
    with pytest.raises(InputError, match=r"--dataset How2Sign: no 'dev' split \(its splits: train, test\)"):
        check_split("How2Sign", "dev", data_root=CORPUS)
    with pytest.raises(InputError, match="--max_length 0: must be at least 1"):
        check_split("Synthetic", "dev", data_root=CORPUS, max_length=0)


def test_problem_kinds_come_from_the_error_not_its_message(tmp_path):
    (tmp_path / "a_directory.pkl").mkdir()
    (tmp_path / "bad_gzip.pkl").write_bytes(b"\x1f\x8b not gzip")
    write_pickle(tmp_path / "no_scores.pkl", {"keypoints": np.zeros((2, 1, 133, 2), np.float32)})
    write_pickle(tmp_path / "float_start.pkl", make_pose(4, start=1.5))
    expected = {"a_directory": ("missing", "missing pose file"), "bad_gzip": ("unpicklable", "unreadable pose file"),
                "no_scores": ("type", "wrong shape or type"), "float_start": ("start_end", "bad start/end")}
    for name, (kind, problem) in expected.items():
        with pytest.raises(SampleError) as err:
            load_pose(tmp_path / f"{name}.pkl")
        assert err.value.kind == kind and check.pose_problem_kind(err.value) == problem, name
    # the message is never read: only the kind counts
    assert check.pose_problem_kind(SampleError("x.pkl: file not found", kind="shape")) == "wrong shape or type"
    assert check.pose_problem_kind(SampleError("x.pkl: file not found")) == "unusable pose file"  # kind "other"


# --------------------------------------------------------------------------- the command

def run_cli(argv, capsys):
    """(exit status, stdout, stderr) of ``signfuse.cli.main(argv)``."""
    try:
        status = cli.main(argv)
    except SystemExit as exit_:
        status = exit_.code
    out, err = capsys.readouterr()
    return status, out, err


def test_command_prints_every_split_and_fails_on_unusable_samples(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, out, err = run_cli(["check-data", "--dataset", "Synthetic", "--data_root", str(CORPUS),
                                "--use_descriptions"], capsys)
    assert (status, err) == (1, "")
    reports = [check_split("Synthetic", split, data_root=CORPUS, use_descriptions=True)
               for split in ("train", "dev", "test")]
    assert out == "\n".join(r.format() for r in reports) + (
        "\ncheck-data Synthetic: 15 usable, 14 unusable samples; splits with problems: train\n")
    lines = out.splitlines()
    assert lines[0] == "Synthetic train: 15 samples, 1 usable, 14 unusable"
    assert f"  error: missing_pose: {POSES / 'missing_pose.pkl'}: file not found" in lines
    assert f"  error: malicious_pickle: {POSES / 'malicious_pickle.pkl'}: {REFUSED}" in lines
    assert (f"  warning: desc_not_utf8: {DESCRIPTIONS / 'desc_not_utf8.json'}: not UTF-8 text "
            f"(byte 0xe9 at offset 17)") in lines
    assert sum(line.startswith("  error: ") for line in lines) == 14
    assert sum(line.startswith("  warning: ") for line in lines) == 8
    assert not (tmp_path / "signfuse_marker_pose").exists()


def test_command_succeeds_when_every_sample_is_usable(capsys):
    status, out, err = run_cli(["check-data", "--dataset", "Synthetic", "--split", "test",
                                "--data_root", str(CORPUS), "--use_descriptions"], capsys)
    assert (status, err) == (0, "")
    assert out.splitlines()[0] == "Synthetic test: 12 samples, 12 usable, 0 unusable"
    assert out.splitlines()[-1] == "check-data Synthetic: 12 usable, 0 unusable samples; every sample is usable"


def test_command_fails_on_a_bad_label_file(capsys):
    status, out, _ = run_cli(["check-data", "--dataset", "Synthetic", "--split", "test",
                              "--label_dir", str(CORPUS / "wrong_labels"), "--pose_dir", str(POSES)], capsys)
    assert status == 1
    assert (f"  error: labels.test: {CORPUS / 'wrong_labels' / 'labels.test'}: label file of the wrong type: "
            f"a list, expected a dict {{name: sample}}") in out.splitlines()
    assert out.splitlines()[-1] == "check-data Synthetic: 0 usable, 0 unusable samples; splits with problems: test"


def test_command_rejects_an_unknown_split_with_one_line(capsys):
    status, out, err = run_cli(["check-data", "--dataset", "How2Sign", "--split", "dev",
                                "--data_root", str(CORPUS)], capsys)
    assert (status, out) == (2, "")
    assert err == "signfuse: error: --dataset How2Sign: no 'dev' split (its splits: train, test)\n"


# --------------------------------------------------------------------------- SignDataset

@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")  # huge_coordinates
def test_dataset_gives_the_error_of_each_broken_sample_and_collate_skips_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = SignDataset(LABELS / "labels.train", POSES, "Synthetic", "train")
    items = {item["name"]: item for item in (data[i] for i in range(len(data)))}
    assert list(items) == list(TRAIN)
    for name in REJECTED_BY_LOAD_POSE:
        assert items[name] == {"name": name, "error": f"{POSES / name}.pkl: {BROKEN[name][1]}"}
    good = items["good_train"]
    assert good["frame_indices"].tolist() == list(range(8))
    assert {name: good[name].shape for name in PART_NAMES} == {
        "body": (8, 9, 3), "left": (8, 21, 3), "right": (8, 21, 3), "face_all": (8, 18, 3)}
    assert all(np.isfinite(good[name]).all() and good[name].any() for name in PART_NAMES)
    batch = collate_fn([items[name] for name in TRAIN])
    assert batch["names"] == ["good_train"] and batch["sentences"] == ["sentence 0"]
    assert batch["body"].shape == (1, 8, 9, 3)
    assert batch["skipped"] == [(name, f"{POSES / name}.pkl: {BROKEN[name][1]}") for name in REJECTED_BY_LOAD_POSE]
    assert not (tmp_path / "signfuse_marker_pose").exists()


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_a_sample_that_normalises_to_nan_never_reaches_a_batch():
    data = SignDataset(LABELS / "labels.train", POSES, "Synthetic", "train")
    item = data[list(TRAIN).index("huge_coordinates")]
    assert "error" in item or all(np.isfinite(item[name]).all() for name in PART_NAMES)


def test_good_samples_of_dev_load_with_their_frame_numbers():
    data = SignDataset(LABELS / "labels.dev", POSES, "Synthetic", "dev", max_length=4)
    trimmed, two_persons = data[0], data[1]
    assert trimmed["name"] == "good_dev_trimmed" and trimmed["frame_indices"].tolist() == [2, 4, 7, 9]
    assert two_persons["name"] == "good_dev_two_persons" and two_persons["frame_indices"].tolist() == [0, 1, 3, 4]
    batch = collate_fn([trimmed, two_persons])
    assert batch["names"] == ["good_dev_trimmed", "good_dev_two_persons"] and batch["skipped"] == []


def test_describer_reads_the_description_files_as_check_data_does():
    reported = []
    describer = Describer(DESCRIPTIONS, report=reported.append)
    data = SignDataset(LABELS / "labels.test", POSES, "Synthetic", "test", describer=describer)
    items = {item["name"]: item for item in (data[i] for i in range(len(data)))}
    assert all("error" not in item for item in items.values())
    described = {name for name, item in items.items() if item["has_description"].any()}
    assert described == {"desc_frame_map", "desc_segments", "desc_frame_out_of_range"}
    assert items["desc_frame_map"]["has_description"].tolist() == [1, 0, 0, 1, 0, 0]
    assert reported == [f"{DESCRIPTIONS / name}.json: {reason}" for name, reason in INVALID_DESCRIPTIONS.items()]
    batch = collate_fn(list(items.values()))
    assert batch["skipped"] == [] and len(batch["names"]) == 12
    assert batch["has_description"].sum().item() == 2 + 6 + 1


HUGE_KEY = '{"2": "fist", "99999999999999999999999": "open palm"}'


def test_a_frame_key_beyond_int64_is_an_invalid_file_not_a_crash(tmp_path):
    (tmp_path / "S0.json").write_text(HUGE_KEY)
    reported = []
    _, has_description = Describer(tmp_path, report=reported.append).describe("S0", np.arange(4))
    assert has_description.tolist() == [0, 0, 0, 0]
    assert len(reported) == 1 and reported[0].startswith(f"{tmp_path / 'S0.json'}: ")


def test_check_data_reports_descriptions_that_would_stop_training(unisign_layout):
    layout = unisign_layout(lengths=(6,), dataset="Synthetic")
    desc_dir = layout.root / "description" / "Synthetic"
    desc_dir.mkdir(parents=True)
    (desc_dir / f"{layout.names[0]}.json").write_text(HUGE_KEY)
    report = check_split("Synthetic", "test", data_root=layout.root, use_descriptions=True)
    path = str(desc_dir / f"{layout.names[0]}.json")
    if report.counts == {"invalid description file": 1}:  # once descriptions.py rejects such keys
        assert (report.usable, report.ok) == (1, True)
        assert report.entries[0][1] == path
        return
    assert report.entries == [
        (layout.names[0], path, "described frame 99999999999999999999999 is at or beyond the end of the pose "
                                "file, which has 6 frames (0 to 5): no sampled frame can be one of them (a "
                                "description of another video, or frames counted from another origin?)"),
        (layout.names[0], path, "the descriptions cannot be aligned to the sampled frames (OverflowError: "
                                "Python int too large to convert to C long); training with descriptions would "
                                "stop here")]
    assert (report.usable, report.unusable, report.ok) == (0, 1, False)
