"""``signfuse describe`` (signfuse.describe.write) and the on-the-fly ``PoseDescriber``."""
import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from signfuse.data import paths
from signfuse.data.dataset import SignDataset
from signfuse.data.descriptions import DescriptionLoader, Describer
from signfuse.describe.describer import PoseDescriber
from signfuse.data.labels import load_labels
from signfuse.data.pose import load_pose
from signfuse.demo.synthetic import make_synthetic
from signfuse.commands import describe as describe_command
from signfuse.describe import write
from signfuse.describe.rules import RULES_VERSION, rules_settings
from signfuse.errors import InputError

SAMPLES = 14


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A synthetic dataset whose first two pose files (in name order) are unusable: one is
    not a pickle, the other is missing."""
    root = tmp_path_factory.mktemp("describe")
    make_synthetic(root, samples=SAMPLES, seed=2, mouthing=0.5, trim_fraction=0.5)
    pose_dir = root / "dataset/Synthetic/pose_format"
    (pose_dir / "synth_00000.pkl").write_bytes(b"not a pickle")
    (pose_dir / "synth_00001.pkl").unlink()
    return root


def parse(*argv):
    parser = argparse.ArgumentParser()
    describe_command.register(parser.add_subparsers())
    return parser.parse_args(["describe", *map(str, argv)])


def run(data, out, *flags):
    return write.describe_dataset(parse("--dataset", "Synthetic", "--data_root", data, "--desc_dir", out, *flags),
                                    progress=False)


def files(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.json"))}


def test_writes_one_file_per_sample_and_names_the_bad_pose_files(data, tmp_path):
    summary = run(data, tmp_path)
    assert (summary.samples, summary.written, summary.up_to_date) == (SAMPLES, SAMPLES - 2, 0)
    assert len(summary.skipped) == 2
    assert summary.skipped[0].startswith("synth_00000: ") and "synth_00000.pkl: not a readable pickle" in summary.skipped[0]
    assert summary.skipped[1].startswith("synth_00001: ") and "file not found" in summary.skipped[1]
    text = summary.format()
    assert f"{SAMPLES - 2} written, 0 up to date, 2 skipped" in text and "synth_00001" in text
    written = files(tmp_path / "Synthetic")
    assert len(written) == SAMPLES - 2 and "synth_00000.json" not in written
    assert not list((tmp_path / "Synthetic").glob(".*"))  # no temporary file left


def test_files_follow_the_spec_and_the_loader_reads_them(data, tmp_path):
    run(data, tmp_path)
    loader = DescriptionLoader(tmp_path / "Synthetic", strict=True)
    pose_dir = data / "dataset/Synthetic/pose_format"
    for path in sorted((tmp_path / "Synthetic").glob("*.json")):
        content = json.loads(path.read_text("utf-8"))
        pose_file = pose_dir / f"{path.stem}.pkl"
        pose = load_pose(pose_file)
        assert content["pose_sha256"] == hashlib.sha256(pose_file.read_bytes()).hexdigest()
        generator = content["generator"]
        assert generator["name"] == "signfuse-rules" and generator["version"] == RULES_VERSION
        assert {"language", "frame_size", "fps", "max_tokens", "thresholds"} <= set(generator["parameters"])
        segments = content["segments"]
        assert segments[0]["start"] == pose.start and segments[-1]["end"] == pose.end
        assert all(a["end"] == b["start"] for a, b in zip(segments[:-1], segments[1:], strict=True))
        for s in segments:
            assert set(s) == {"start", "end", "text", "attributes"} and s["text"]
            for hand in ("right_hand", "left_hand"):
                assert s["attributes"][hand]["location"] in ("absent", "low", "chest", "face", "above_head")
                assert s["attributes"][hand]["movement"] in ("absent", "hold", "up", "down", "left", "right")
            assert s["attributes"]["mouth"] in ("absent", "closed", "open")
        descriptions, metadata = loader.load(path.stem)
        assert sorted(descriptions) == list(range(pose.start, pose.end))
        assert metadata["generator"] == generator
    assert loader.counts().invalid == 0


def test_two_runs_and_one_or_two_workers_write_the_same_bytes(data, tmp_path):
    run(data, tmp_path / "a")
    run(data, tmp_path / "b", "--workers", 2)
    first, second = files(tmp_path / "a/Synthetic"), files(tmp_path / "b/Synthetic")
    assert len(first) == SAMPLES - 2 and first == second
    again = run(data, tmp_path / "a", "--overwrite")
    assert again.written == SAMPLES - 2 and files(tmp_path / "a/Synthetic") == first


def test_rerun_skips_files_up_to_date_and_rewrites_changed_ones(data, tmp_path):
    run(data, tmp_path)
    folder = tmp_path / "Synthetic"
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.json")}
    summary = run(data, tmp_path)
    assert (summary.written, summary.up_to_date, len(summary.skipped)) == (0, SAMPLES - 2, 2)
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("*.json")} == stamps
    # other settings: every file is rewritten; a damaged file is rewritten
    (folder / "synth_00005.json").write_text("{truncated")
    summary = run(data, tmp_path, "--language", "zh")
    assert summary.written == SAMPLES - 2
    content = json.loads((folder / "synth_00005.json").read_text("utf-8"))
    assert content["generator"]["parameters"]["language"] == "zh"
    assert any("\u4e00" <= ch <= "\u9fff" for ch in content["segments"][0]["text"])
    assert "右手" in (folder / "synth_00005.json").read_text("utf-8")  # UTF-8, not \\u escapes
    assert run(data, tmp_path, "--language", "zh").written == 0


def test_one_split_and_bad_flags(data, tmp_path):
    summary = run(data, tmp_path, "--split", "test")
    test_ids = {Path(s["video_path"]).stem for s in load_labels(data / "data/Synthetic/labels.test").values()}
    assert summary.samples == len(test_ids) and set(p.stem for p in (tmp_path / "Synthetic").glob("*.json")) == test_ids
    with pytest.raises(InputError, match="--workers 0"):
        run(data, tmp_path, "--workers", 0)
    with pytest.raises(InputError, match="label file not found"):
        run(tmp_path, tmp_path)


@pytest.mark.parametrize("train", [False, True])
def test_on_the_fly_texts_equal_the_files_byte_for_byte(data, tmp_path, train):
    """SignDataset with PoseDescriber (--describe rules) gives the very texts and alignment that
    the files written by ``signfuse describe`` give through Describer (--describe files)."""
    run(data, tmp_path, "--language", "zh", "--desc_max_tokens", 20)
    settings = rules_settings("Synthetic", language="zh", max_tokens=20)
    label = paths.label_path("Synthetic", "train", data)
    pose_dir = paths.pose_dir("Synthetic", "train", data)

    def items(describer):
        ds = SignDataset(label, pose_dir, "Synthetic", "train", max_length=24, train=train, seed=5,
                         describer=describer)
        return [ds[i] for i in range(len(ds))]

    from_files = items(Describer(tmp_path / "Synthetic"))
    on_the_fly = items(PoseDescriber(settings))
    usable = [a for a in from_files if "error" not in a]
    assert len(usable) >= SAMPLES - 4
    for a, b in zip(from_files, on_the_fly, strict=True):
        assert a.keys() == b.keys()
        if "error" in a:
            assert a == b
            continue
        assert a["desc_aligned"] == b["desc_aligned"]
        assert [[text.encode() for text, _ in pairs] for pairs in a["desc_aligned"]] == \
            [[text.encode() for text, _ in pairs] for pairs in b["desc_aligned"]]
        assert np.array_equal(a["has_description"], b["has_description"]) and a["has_description"].all()


def test_pose_describer_reports_itself_and_needs_the_pose(data, tmp_path):
    d = PoseDescriber(rules_settings("Synthetic"))
    assert "rules describer" in d.summary("train") and d.invalid_files == []
    with pytest.raises(ValueError, match="pose is needed"):
        d.describe("synth_00002", [0, 1])
    # with the pose files known it reads them itself (to encode every text up front); an
    # unusable pose file gives no descriptions there
    run(data, tmp_path)
    pose_dir = data / "dataset/Synthetic/pose_format"
    d.set_pose_files({name: pose_dir / f"{name}.pkl" for name in ("synth_00000", "synth_00002")})
    assert d.descriptions("synth_00000") == {}
    expected, _ = DescriptionLoader(tmp_path / "Synthetic").load("synth_00002")
    assert d.descriptions("synth_00002") == expected
    assert d.describe("synth_00002", [min(expected)])[1].tolist() == [1.0]
