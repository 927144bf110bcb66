import collections
import gzip
import os
import pickle

import numpy as np
import pytest

from conftest import PICKLE_REFUSAL as REFUSAL, TouchMarker
from signfuse.errors import InputError, SampleError
from signfuse.safe_pickle import load_pickle


class CallEval:
    def __reduce__(self):
        return (eval, ("1 + 1",))


@pytest.mark.parametrize("compress", [False, True])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, compress):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pkl"
    data = pickle.dumps({"keypoints": [TouchMarker(marker)]})
    path.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(SampleError) as info:
        load_pickle(path)
    assert str(info.value) == f"{path}: refused to unpickle {os.system.__module__}.system: {REFUSAL}"
    assert not marker.exists()


def test_refusal_uses_the_given_error_class_and_names_builtins_eval(tmp_path):
    path = tmp_path / "labels.test"
    path.write_bytes(gzip.compress(pickle.dumps(CallEval())))
    with pytest.raises(InputError) as info:
        load_pickle(path, error=InputError)
    assert str(info.value) == f"{path}: refused to unpickle builtins.eval: {REFUSAL}"


def test_trust_uses_plain_pickle(tmp_path):
    # the restriction is what protects: trusted, the same file does run its code
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(TouchMarker(marker)))
    assert load_pickle(path, trust=True) == 0
    assert marker.exists()


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
@pytest.mark.parametrize("compress", [False, True])
def test_numpy_arrays_and_containers_round_trip(tmp_path, protocol, compress):
    arrays = {
        "float32": np.arange(12, dtype=np.float32).reshape(2, 3, 2) / 7,
        "float64": np.array([1.5, -2.25, np.pi]),
        "float16": np.array([0.5, 65504.0], dtype=np.float16),
        "int64": np.array([-(2 ** 40), 3], dtype=np.int64),
        "int32": np.array([[7, -8]], dtype=np.int32),
        "uint8": np.array([0, 255], dtype=np.uint8),
        "bool": np.array([True, False]),
        "str": np.array(["S000020", "x"]),
        "fortran": np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)),
        "empty": np.zeros((0, 133, 2), dtype=np.float32),
    }
    obj = {"arrays": arrays, "frames": [arrays["float32"][0], arrays["float32"][1]],
           "scalars": (np.float32(0.25), np.int64(5), 3, 2.5, True, None, "text", b"\x00\xff"),
           "ordered": collections.OrderedDict([("b", 1), ("a", 2)]), "set": {1, 2}, "frozen": frozenset("ab"),
           "gloss": ["他", "今天"], "complex": 1 + 2j}
    path = tmp_path / "data.pkl"
    data = pickle.dumps(obj, protocol=protocol)
    path.write_bytes(gzip.compress(data) if compress else data)

    out = load_pickle(path)

    for key, array in arrays.items():
        assert out["arrays"][key].dtype == array.dtype, key
        assert out["arrays"][key].shape == array.shape, key
        np.testing.assert_array_equal(out["arrays"][key], array)
    np.testing.assert_array_equal(out["frames"][1], arrays["float32"][1])
    assert out["scalars"] == obj["scalars"]
    assert type(out["scalars"][0]) is np.float32 and type(out["scalars"][1]) is np.int64
    assert list(out["ordered"].items()) == [("b", 1), ("a", 2)]
    assert (out["set"], out["frozen"], out["gloss"], out["complex"]) == ({1, 2}, frozenset("ab"), ["他", "今天"], 1 + 2j)


def test_gzip_is_detected_by_content_not_name(tmp_path):
    obj = {"keypoints": [np.ones((1, 133, 2), np.float32)]}
    plain, packed = tmp_path / "a.gz", tmp_path / "b.pkl"
    plain.write_bytes(pickle.dumps(obj))
    packed.write_bytes(gzip.compress(pickle.dumps(obj)))
    for path in (plain, packed):
        np.testing.assert_array_equal(load_pickle(path)["keypoints"][0], obj["keypoints"][0])


def test_missing_empty_and_directory(tmp_path):
    missing = tmp_path / "nope.pkl"
    with pytest.raises(SampleError, match=r"^.*nope\.pkl: file not found$"):
        load_pickle(missing)
    empty = tmp_path / "empty.pkl"
    empty.write_bytes(b"")
    with pytest.raises(SampleError) as info:
        load_pickle(empty)
    assert str(info.value) == f"{empty}: empty file, expected a pickle"
    with pytest.raises(InputError) as info:
        load_pickle(tmp_path, error=InputError)
    assert str(info.value) == f"{tmp_path}: is a directory, expected a pickle file"


def test_truncated_and_corrupt_files(tmp_path):
    data = pickle.dumps({"keypoints": np.zeros((5, 133, 2))})
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(SampleError) as info:
        load_pickle(truncated)
    assert str(info.value) == f"{truncated}: not a readable pickle (pickle data was truncated)"

    packed = gzip.compress(data)
    bad_gzip = tmp_path / "bad.pkl"
    bad_gzip.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(SampleError) as info:
        load_pickle(bad_gzip)
    assert str(info.value).startswith(f"{bad_gzip}: corrupt or truncated gzip data (")

    text = tmp_path / "text.pkl"
    text.write_bytes(b"hello, this is not a pickle")
    with pytest.raises(SampleError) as info:
        load_pickle(text)
    assert str(info.value).startswith(f"{text}: not a readable pickle (")


def test_pickles_written_by_numpy_1_load(tmp_path):
    # numpy 1 names numpy.core.multiarray where numpy 2 names numpy._core.multiarray
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    data = pickle.dumps({"scores": [array, np.float32(2.5)]}, protocol=2)
    old = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray\n_reconstruct" in old  # protocol 2 names globals as text
    path = tmp_path / "old.pkl"
    path.write_bytes(old)
    out = load_pickle(path)
    np.testing.assert_array_equal(out["scores"][0], array)
    assert out["scores"][1] == np.float32(2.5)
