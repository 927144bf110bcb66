"""Untrusted files: a pickle or checkpoint that would run a command is refused and never runs;
--trust_pickles lifts the restriction only when asked for.

Every test that could run a planted command does so from a temporary current folder (the
corpus's pickles run ``touch <marker>`` there) and checks that the marker never appears.
"""
import gzip
import inspect
import os
import pickletools
from fractions import Fraction

import pytest
import torch

from conftest import BAD_CORPUS as CORPUS, PICKLE_REFUSAL as REFUSAL, TouchMarker, make_label, make_pose, write_pickle
from signfuse import cli
from signfuse.data.check import check_split
from signfuse.data.dataset import SignDataset
from signfuse.data.labels import load_labels
from signfuse.data.pose import load_pose
from signfuse.errors import InputError, SampleError
from signfuse.safe_pickle import load_pickle
from signfuse.training.checkpoint import load_weights, safe_torch_load

EVIL_POSE = CORPUS / "dataset" / "Synthetic" / "pose_format" / "malicious_pickle.pkl"
EVIL_LABELS = CORPUS / "evil_labels" / "labels.test"
CHECKPOINT_REFUSAL = "refused to load: the checkpoint holds objects other than tensors and plain containers ("


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A temporary current folder: where the corpus's planted ``touch`` would create its marker."""
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("signfuse_marker")) == []


def opcodes(data: bytes) -> list:
    return [(op.name, arg) for op, arg, _ in pickletools.genops(data)]


@pytest.mark.parametrize("path, marker", [(EVIL_POSE, "signfuse_marker_pose"),
                                          (EVIL_LABELS, "signfuse_marker_labels")])
def test_corpus_pickles_would_run_a_command(path, marker):
    # read as opcodes, never loaded: a real call of os.system, so that refusing it means something
    data = path.read_bytes()
    data = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    assert opcodes(data) == [("PROTO", 2), ("GLOBAL", "os system"), ("BINUNICODE", f"touch {marker}"),
                             ("TUPLE1", None), ("REDUCE", None), ("STOP", None)]


def test_malicious_pose_file_is_refused_by_every_reader(workdir):
    for read in (lambda: load_pickle(EVIL_POSE), lambda: load_pose(EVIL_POSE)):
        with pytest.raises(SampleError) as info:
            read()
        assert str(info.value) == f"{EVIL_POSE}: refused to unpickle os.system: {REFUSAL}"
    with pytest.raises(InputError) as info:
        load_pickle(EVIL_POSE, error=InputError)
    assert str(info.value) == f"{EVIL_POSE}: refused to unpickle os.system: {REFUSAL}"


def test_malicious_label_file_is_refused_by_every_reader(workdir):
    with pytest.raises(InputError) as info:
        load_labels(EVIL_LABELS)
    assert str(info.value) == f"{EVIL_LABELS}: refused to unpickle os.system: {REFUSAL}"
    with pytest.raises(InputError) as info:
        SignDataset(EVIL_LABELS, CORPUS / "dataset" / "Synthetic" / "pose_format", "Synthetic", "test")
    assert str(info.value) == f"{EVIL_LABELS}: refused to unpickle os.system: {REFUSAL}"


@pytest.mark.parametrize("compress", [False, True])
def test_pickled_call_inside_a_pose_dict_is_refused(tmp_path, compress):
    marker = tmp_path / "marker"
    path = write_pickle(tmp_path / "evil.pkl", {**make_pose(3), "start": TouchMarker(marker)}, compress=compress)
    with pytest.raises(SampleError) as info:
        load_pose(path)
    assert str(info.value) == f"{path}: refused to unpickle {os.system.__module__}.system: {REFUSAL}"
    assert not marker.exists()


# --------------------------------------------------------------------------- checkpoints

def test_malicious_checkpoint_is_refused_by_weights_only_load(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"weight": torch.zeros(2)}, "extra": TouchMarker(marker)}, path)
    with pytest.raises(InputError) as info:
        safe_torch_load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {CHECKPOINT_REFUSAL}")
    assert "signfuse loads checkpoints with weights_only=True and never runs code from a file" in message
    assert "\n" not in message
    with pytest.raises(InputError, match="refused to load"):
        load_weights(torch.nn.Linear(2, 1), path, log=lambda line: None)
    assert not marker.exists()


def test_checkpoint_refusal_names_what_was_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"extra": TouchMarker(tmp_path / "marker")}, path)
    with pytest.raises(InputError) as info:
        safe_torch_load(path)
    assert f"{os.system.__module__}.system" in str(info.value)


def test_truncated_or_empty_checkpoint_is_a_clear_input_error(tmp_path):
    good = tmp_path / "good.pth"
    torch.save({"model": {"weight": torch.arange(1000.0)}}, good)
    assert safe_torch_load(good)["model"]["weight"].shape == (1000,)
    cut, empty = tmp_path / "cut.pth", tmp_path / "empty.pth"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    empty.write_bytes(b"")
    for path in (cut, empty):
        with pytest.raises(InputError) as info:
            safe_torch_load(path)
        message = str(info.value)
        assert message.startswith(f"{path}: not a readable checkpoint (truncated or corrupt?): ")
        assert "\n" not in message
    with pytest.raises(InputError) as info:
        safe_torch_load(tmp_path / "absent.pth")
    assert str(info.value) == f"{tmp_path / 'absent.pth'}: checkpoint not found"


# --------------------------------------------------------------------------- --trust_pickles

def fraction_layout(root):
    """A Synthetic test split whose one pose file and label entry hold a fractions.Fraction:
    harmless, but outside what the restricted unpickler resolves."""
    pose_dir = root / "dataset" / "Synthetic" / "pose_format"
    labels = {"S0": {**make_label("S0"), "fps": Fraction(30000, 1001)}}
    label_file = write_pickle(root / "data" / "Synthetic" / "labels.test", labels, compress=True)
    pose_file = write_pickle(pose_dir / "S0.pkl", {**make_pose(4), "fps": Fraction(30000, 1001)})
    return label_file, pose_dir, pose_file


def test_trust_pickles_lifts_the_restriction_for_a_benign_type(tmp_path):
    label_file, pose_dir, pose_file = fraction_layout(tmp_path)
    with pytest.raises(SampleError) as info:
        load_pose(pose_file)
    assert str(info.value) == f"{pose_file}: refused to unpickle fractions.Fraction: {REFUSAL}"
    with pytest.raises(InputError) as info:
        load_labels(label_file)
    assert str(info.value) == f"{label_file}: refused to unpickle fractions.Fraction: {REFUSAL}"

    assert load_pickle(pose_file, trust=True)["fps"] == Fraction(30000, 1001)
    assert load_pose(pose_file, trust_pickles=True).num_frames == 4
    assert load_labels(label_file, trust_pickles=True)["S0"]["fps"] == Fraction(30000, 1001)
    item = SignDataset(label_file, pose_dir, "Synthetic", "test", trust_pickles=True)[0]
    assert "error" not in item and item["frame_indices"].tolist() == [0, 1, 2, 3]


def test_the_restricted_unpickler_is_every_default(tmp_path, capsys):
    for function in (load_pickle, load_pose, load_labels, SignDataset, check_split):
        parameters = inspect.signature(function).parameters
        name = "trust" if function is load_pickle else "trust_pickles"
        assert parameters[name].default is False, function.__name__
    assert cli.run_parser().parse_args([]).trust_pickles is False

    label_file, _, _ = fraction_layout(tmp_path)
    argv = ["check-data", "--dataset", "Synthetic", "--split", "test", "--data_root", str(tmp_path)]
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 1
    assert (f"  error: labels.test: {label_file}: refused to unpickle fractions.Fraction: {REFUSAL}"
            in capsys.readouterr().out.splitlines())
    assert cli.main(argv + ["--trust_pickles"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "Synthetic test: 1 samples, 1 usable, 0 unusable"

