"""Pose files (pose.py) and frame sampling (sampler.py)."""
import ast
import pickle
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, make_pose, write_pickle
from hypothesis import given, settings
from hypothesis import strategies as st

from signfuse.data.pose import load_pose, pose_path
from signfuse.data.sampler import sample_frames
from signfuse.errors import SAMPLE_ERROR_KINDS, SampleError


def test_pose_path_replaces_mp4():
    assert pose_path("poses", "S000020_P0004_T00.mp4") == Path("poses/S000020_P0004_T00.pkl")
    assert pose_path("poses", "train/abc.mp4") == Path("poses/train/abc.pkl")
    assert pose_path("poses", "abc") == Path("poses/abc.pkl")


@pytest.mark.parametrize("stacked", [False, True])
def test_load_pose_takes_person_0(tmp_path, stacked):
    pose = make_pose(6, persons=2, seed=3, stacked=stacked)
    record = load_pose(write_pickle(tmp_path / "p.pkl", pose))
    assert record.keypoints.shape == (6, 133, 2) and record.keypoints.dtype == np.float32
    assert record.scores.shape == (6, 133) and record.scores.dtype == np.float32
    np.testing.assert_array_equal(record.keypoints, np.stack(pose["keypoints"])[:, 0])
    np.testing.assert_array_equal(record.scores, np.stack(pose["scores"])[:, 0])
    assert (record.start, record.end, record.num_frames) == (0, 6, 6)


def test_frame_without_person_gives_zeros_and_person_count_may_vary(tmp_path):
    pose = make_pose(4, persons=2, seed=1)
    pose["keypoints"][1] = np.zeros((0, 133, 2), np.float32)  # nobody detected in frame 1
    pose["scores"][1] = np.zeros((0, 133), np.float32)
    pose["keypoints"][2], pose["scores"][2] = pose["keypoints"][2][:1], pose["scores"][2][:1]  # one person
    record = load_pose(write_pickle(tmp_path / "p.pkl", pose))
    assert not record.keypoints[1].any() and not record.scores[1].any()
    np.testing.assert_array_equal(record.keypoints[2], pose["keypoints"][2][0])
    np.testing.assert_array_equal(record.scores[3], pose["scores"][3][0])


def test_start_and_end_are_kept(tmp_path):
    record = load_pose(write_pickle(tmp_path / "p.pkl", make_pose(10, start=np.int64(3), end=8)))
    assert (record.start, record.end, record.num_frames) == (3, 8, 5)
    assert len(record.keypoints) == 10  # the whole file: frame numbers stay the file's


def pose_error(tmp_path, pose) -> tuple:
    """(message with the path as <path>, kind) of load_pose's SampleError."""
    path = write_pickle(tmp_path / "bad.pkl", pose)
    with pytest.raises(SampleError) as info:
        load_pose(path)
    return str(info.value).replace(f"{path}: ", "<path>: "), info.value.kind


def test_missing_and_unreadable_pose_files(tmp_path):
    with pytest.raises(SampleError) as info:
        load_pose(tmp_path / "S1.pkl")
    assert str(info.value) == f"{tmp_path / 'S1.pkl'}: file not found" and info.value.kind == "missing"
    broken = tmp_path / "broken.pkl"
    broken.write_bytes(b"\x80\x04\x95garbage")
    with pytest.raises(SampleError, match=r"^.*broken\.pkl: not a readable pickle \(") as info:
        load_pose(broken)
    assert info.value.kind == "unpicklable"
    (tmp_path / "empty.pkl").write_bytes(b"")
    with pytest.raises(SampleError, match="empty file") as info:
        load_pose(tmp_path / "empty.pkl")
    assert info.value.kind == "empty"


def test_bad_pose_contents_each_with_its_message_and_kind(tmp_path):
    good = make_pose(5, seed=2)
    nan = make_pose(5, seed=2)
    nan["keypoints"][3][0, 10, 1] = np.nan
    nan["keypoints"][3][0, 11] = np.inf
    nan["keypoints"][4][1:] = np.nan  # person 1 only: not used, not counted
    cases = [
        ([good], "<path>: pose file of the wrong type: list, expected a dict with 'keypoints' and 'scores'", "type"),
        ({"keypoints": good["keypoints"]}, "<path>: no 'scores' in the pose file (it has 'keypoints')", "type"),
        ({"keypoints": [], "scores": []}, "<path>: the pose file has zero frames", "no_frames"),
        ({"keypoints": np.zeros((0, 1, 133, 2)), "scores": np.zeros((0, 1, 133))},
         "<path>: the pose file has zero frames", "no_frames"),
        ({"keypoints": good["keypoints"], "scores": good["scores"][:4]},
         "<path>: 5 frames of keypoints but 4 frames of scores", "frame_count"),
        ({"keypoints": [np.zeros((1, 17, 2))] * 5, "scores": good["scores"]},
         "<path>: 'keypoints' of frame 0 has shape (1, 17, 2), expected (persons, 133, 2)", "shape"),
        ({"keypoints": good["keypoints"], "scores": good["scores"][:2] + [np.zeros((1, 134))] * 3},
         "<path>: 'scores' of frame 2 has shape (1, 134), expected (persons, 133)", "shape"),
        ({"keypoints": [np.zeros((1, 133, 2))] * 4 + [["a"]], "scores": good["scores"]},
         "<path>: 'keypoints' of frame 4 is not an array of numbers", "shape"),
        ({"keypoints": None, "scores": good["scores"]},
         "<path>: 'keypoints' is NoneType, expected a sequence over frames", "type"),
        (nan, "<path>: keypoints hold 3 NaN or infinite values in 1 frames (first: frame 3)", "non_finite"),
        ({**good, "start": 2, "end": 2},
         "<path>: bad start/end (2, 2): need 0 <= start < end <= 5 (the number of frames)", "start_end"),
        ({**good, "start": 0, "end": 6},
         "<path>: bad start/end (0, 6): need 0 <= start < end <= 5 (the number of frames)", "start_end"),
        ({**good, "start": "0"}, "<path>: 'start' is str, expected an int", "start_end"),
        ({"keypoints": [np.full((1, 133, 2), 1e31, np.float32)] * 2, "scores": good["scores"][:2]},
         "<path>: keypoints hold values beyond ±1e+30 (first: frame 0): too large to normalise in float32", "range"),
    ]
    for pose, message, kind in cases:
        assert pose_error(tmp_path, pose) == (message, kind)


def test_sample_error_kinds():
    err = SampleError("x.pkl: file not found", kind="missing")
    assert (str(err), err.kind) == ("x.pkl: file not found", "missing") and "missing" in SAMPLE_ERROR_KINDS
    again = pickle.loads(pickle.dumps(err))  # crosses process boundaries with its kind
    assert (type(again), str(again), again.kind) == (SampleError, str(err), "missing")
    with pytest.raises(ValueError, match="'lost' is not one of missing, unreadable"):
        SampleError("x.pkl: gone", kind="lost")
    assert SampleError("x.pkl: something").kind == "other"


def test_every_sample_error_raised_in_signfuse_names_its_kind():
    """A SampleError raised without a kind would be counted as "other" by check-data."""
    unnamed, unknown = [], []
    for path in sorted((REPO / "signfuse").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "SampleError"):
                continue
            kinds = node.args[1:2] + [k.value for k in node.keywords if k.arg == "kind"]
            where = f"{path.relative_to(REPO)}:{node.lineno}"
            if not kinds:
                unnamed.append(where)
            elif isinstance(kinds[0], ast.Constant) and kinds[0].value not in SAMPLE_ERROR_KINDS:
                unknown.append(f"{where} ({kinds[0].value!r})")
    assert unnamed == [] and unknown == [], f"without a kind: {unnamed}; unknown kinds: {unknown}"


def test_nan_outside_start_end_is_not_the_sample_s_problem(tmp_path):
    pose = make_pose(6, seed=0, start=1, end=4)
    pose["scores"][5][0, 0] = np.nan
    assert load_pose(write_pickle(tmp_path / "p.pkl", pose)).num_frames == 3
    pose["scores"][2][0, :4] = np.nan
    assert pose_error(tmp_path, pose) == ("<path>: scores hold 4 NaN or infinite values in 1 frames (first: frame 2)",
                                         "non_finite")


# ---- sampler ----

def test_short_samples_keep_every_frame_plus_start():
    for train in (False, True):
        out = sample_frames(5, 8, train, np.random.default_rng(0), start=7)
        assert out.dtype == np.int64
        assert out.tolist() == [7, 8, 9, 10, 11]
    assert sample_frames(8, 8, False).tolist() == list(range(8))


def test_eval_sampling_is_evenly_spaced_by_hand():
    assert sample_frames(10, 4, train=False).tolist() == [0, 3, 6, 9]   # 0, 3, 6, 9
    assert sample_frames(11, 4, train=False).tolist() == [0, 3, 7, 10]  # 0, 3.33, 6.67, 10
    assert sample_frames(11, 4, train=False, start=100).tolist() == [100, 103, 107, 110]
    assert sample_frames(9, 1, train=False).tolist() == [0]


def test_train_sampling_is_random_distinct_sorted_and_seeded():
    a = sample_frames(300, 256, True, np.random.default_rng((42, 0, 5)), start=10)
    b = sample_frames(300, 256, True, np.random.default_rng((42, 0, 5)), start=10)
    c = sample_frames(300, 256, True, np.random.default_rng((42, 1, 5)), start=10)
    assert a.dtype == np.int64 and len(a) == 256
    assert np.all(np.diff(a) > 0) and a[0] >= 10 and a[-1] <= 309
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 2000), st.integers(1, 300), st.integers(0, 50), st.booleans())
def test_sampling_properties(num_frames, max_length, start, train):
    out = sample_frames(num_frames, max_length, train, np.random.default_rng(0), start=start)
    assert len(out) == min(num_frames, max_length)
    assert np.all(np.diff(out) > 0)  # distinct and sorted
    assert out[0] >= start and out[-1] <= start + num_frames - 1
    if not train and max_length > 1:
        assert out[0] == start and out[-1] == start + num_frames - 1
        np.testing.assert_array_equal(out, sample_frames(num_frames, max_length, False, start=start))
