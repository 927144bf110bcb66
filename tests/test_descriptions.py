"""Description files (docs/descriptions.md sections 1 and 3): DescriptionLoader for every file
shape and every kind of bad file, Describer, collate_descriptions, describe_stats."""
import json
import logging

import numpy as np
import pytest
import torch

from signfuse.commands.describe_stats import describe_stats_command
from signfuse.data.description_stats import describe_stats, format_describe_stats
from signfuse.data.descriptions import DescriptionLoader, Describer, collate_descriptions, read_description_file
from signfuse.errors import InputError, SampleError


def write(directory, sample_id, content):
    """Write ``content`` (bytes as is, anything else as JSON) to <directory>/<sample_id>.json."""
    path = directory / f"{sample_id}.json"
    path.write_bytes(content if isinstance(content, bytes)
                     else json.dumps(content, ensure_ascii=False).encode("utf-8"))
    return path


def loader_with_reports(directory, strict=False):
    """A DescriptionLoader whose reports are collected in the returned list."""
    reports = []
    return DescriptionLoader(directory, strict=strict, report=reports.append), reports


# --- the three file shapes -------------------------------------------------------------

def test_frame_map(tmp_path):
    write(tmp_path, "S000196_P0000_T00",
          {"0": "person moves hand to left", "2": " hand touches chin ", "5": "both hands move down"})
    loader, reports = loader_with_reports(tmp_path)
    descriptions, metadata = loader.load("S000196_P0000_T00")
    assert descriptions == {0: "person moves hand to left", 2: "hand touches chin",
                            5: "both hands move down"}
    assert metadata == {}
    counts = loader.counts()
    assert (counts.described, counts.missing, counts.invalid, counts.described_frames) == (1, 0, 0, 3)
    assert reports == []


def test_frames_with_metadata(tmp_path):
    write(tmp_path, "a", {"frames": {"3": "fist", "007": "open palm"}, "source": "vlm", "fps": 25})
    descriptions, metadata = DescriptionLoader(tmp_path).load("a")
    assert descriptions == {3: "fist", 7: "open palm"}
    assert metadata == {"source": "vlm", "fps": 25}


def test_segments_expand_to_half_open_frame_ranges(tmp_path):
    write(tmp_path, "a", {"segments": [{"start": 10, "end": 13, "text": "fist"},
                                       {"start": 13, "end": 14, "text": "open palm"},
                                       {"start": 20, "end": 22, "text": "  "}],
                          "annotator": "p1"})
    descriptions, metadata = DescriptionLoader(tmp_path).load("a")
    assert descriptions == {10: "fist", 11: "fist", 12: "fist", 13: "open palm"}
    assert metadata == {"annotator": "p1"}


def test_overlapping_segments_with_the_same_text_are_fine(tmp_path):
    write(tmp_path, "a", {"segments": [{"start": 0, "end": 3, "text": "fist"},
                                       {"start": 2, "end": 4, "text": "fist"}]})
    assert DescriptionLoader(tmp_path).load("a")[0] == {0: "fist", 1: "fist", 2: "fist", 3: "fist"}


def test_missing_file_is_a_sample_without_descriptions_not_an_error(tmp_path):
    loader, reports = loader_with_reports(tmp_path, strict=True)
    assert loader.load("absent") == ({}, {})
    counts = loader.counts()
    assert (counts.samples, counts.missing, counts.invalid) == (1, 1, 0)
    assert reports == []


def test_only_empty_texts_is_a_sample_without_descriptions_not_an_invalid_file(tmp_path):
    write(tmp_path, "a", {"0": "", "4": "   \n"})
    loader, reports = loader_with_reports(tmp_path, strict=True)
    assert loader.load("a") == ({}, {})
    counts = loader.counts()
    assert (counts.described, counts.empty, counts.invalid) == (0, 1, 0)
    assert reports == []


def test_utf8_with_byte_order_mark_is_accepted(tmp_path):
    write(tmp_path, "a", b"\xef\xbb\xbf" + '{"1": "手指"}'.encode("utf-8"))
    assert DescriptionLoader(tmp_path).load("a") == ({1: "手指"}, {})


# --- bad files -------------------------------------------------------------------------

BAD_FILES = [
    ("invalid_json", b'{"0": "a"', "invalid JSON (Expecting ',' delimiter at line 1 column 10)"),
    ("empty_file", b"", "invalid JSON (Expecting value at line 1 column 1)"),
    ("not_utf8", b'{"0": "caf\xe9"}', "not UTF-8 text (byte 0xe9 at offset 10)"),
    ("list_top", ["a", "b"], "top level is an array, expected a JSON object"),
    ("string_top", "fist", "top level is a string, expected a JSON object"),
    ("negative_key", {"0": "a", "-3": "b"}, "frame key '-3' is not a non-negative integer"),
    ("non_numeric_key", {"one": "a"}, "frame key 'one' is not a non-negative integer"),
    ("float_key", {"1.5": "a"}, "frame key '1.5' is not a non-negative integer"),
    ("same_frame_twice", {"3": "a", "03": "b"}, "frame keys '3' and '03' name the same frame"),
    ("number_text", {"0": 5}, "text of frame '0' is a number, expected a string"),
    ("null_text", {"frames": {"2": None}}, "text of frame '2' is null, expected a string"),
    ("frames_list", {"frames": ["a"]}, "'frames' is an array, expected an object"),
    ("both_shapes", {"frames": {}, "segments": []},
     "has both 'frames' and 'segments' (use one of them)"),
    ("segments_object", {"segments": {"start": 0}}, "'segments' is an object, expected an array"),
    ("segment_not_object", {"segments": ["fist"]}, "segment 0 is a string, expected an object"),
    ("segment_end_before_start", {"segments": [{"start": 0, "end": 2, "text": "a"},
                                               {"start": 18, "end": 10, "text": "b"}]},
     "segment 1: end (10) must be greater than start (18)"),
    ("segment_empty", {"segments": [{"start": 5, "end": 5, "text": "a"}]},
     "segment 0: end (5) must be greater than start (5)"),
    ("segment_no_end", {"segments": [{"start": 5, "text": "a"}]}, "segment 0 has no 'end'"),
    ("segment_no_text", {"segments": [{"start": 5, "end": 6}]}, "segment 0 has no 'text'"),
    ("segment_float_bound", {"segments": [{"start": 1.5, "end": 6, "text": "a"}]},
     "segment 0: 'start' must be a non-negative integer, got 1.5"),
    ("segment_bool_bound", {"segments": [{"start": 0, "end": True, "text": "a"}]},
     "segment 0: 'end' must be a non-negative integer, got true"),
    ("segment_negative_bound", {"segments": [{"start": -2, "end": 3, "text": "a"}]},
     "segment 0: 'start' must be a non-negative integer, got -2"),
    ("segment_text_list", {"segments": [{"start": 0, "end": 3, "text": ["a"]}]},
     "segment 0: 'text' is an array, expected a string"),
    ("segments_conflict", {"segments": [{"start": 0, "end": 5, "text": "a"},
                                        {"start": 4, "end": 8, "text": "b"}]},
     "segments 0 and 1 overlap at frame 4 with different texts"),
    ("segments_huge", {"segments": [{"start": 0, "end": 10 ** 9, "text": "a"}]},
     "segments cover 1000000000 frames (at most 1000000)"),
]


@pytest.mark.parametrize("sample_id, content, reason", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_file_gives_no_descriptions_and_is_reported_once(tmp_path, sample_id, content, reason):
    path = write(tmp_path, sample_id, content)
    loader, reports = loader_with_reports(tmp_path)
    assert loader.load(sample_id) == ({}, {})
    assert loader.load(sample_id) == ({}, {})  # a second read: not reported nor counted again
    assert reports == [f"{path}: {reason}"]
    counts = loader.counts()
    assert (counts.samples, counts.described, counts.invalid) == (1, 0, 1)
    assert loader.invalid_files == [f"{path}: {reason}"]


@pytest.mark.parametrize("sample_id, content, reason", BAD_FILES[:6], ids=[b[0] for b in BAD_FILES[:6]])
def test_strict_mode_raises_input_error_with_the_message(tmp_path, sample_id, content, reason):
    path = write(tmp_path, sample_id, content)
    with pytest.raises(InputError) as err:
        DescriptionLoader(tmp_path, strict=True).load(sample_id)
    assert str(err.value) == f"{path}: {reason}"


def test_default_report_is_one_logging_warning(tmp_path, caplog):
    path = write(tmp_path, "a", [1])
    loader = DescriptionLoader(tmp_path)
    with caplog.at_level(logging.WARNING, logger="signfuse.data.descriptions"):
        loader.load("a")
        loader.load("a")
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: top level is an array, expected a JSON object"]


def test_read_description_file_raises_sample_error_on_a_missing_file(tmp_path):
    with pytest.raises(SampleError) as err:
        read_description_file(tmp_path / "x.json")
    assert str(err.value) == f"{tmp_path / 'x.json'}: file not found"


def test_counts_over_a_mix_of_samples(tmp_path):
    write(tmp_path, "a", {"0": "x", "1": "y"})
    write(tmp_path, "b", {"segments": [{"start": 0, "end": 4, "text": "z"}]})
    write(tmp_path, "bad", {"0": 1})
    write(tmp_path, "empty", {})
    loader, _ = loader_with_reports(tmp_path)
    for sample_id in ["a", "b", "bad", "empty", "gone"]:
        loader.load(sample_id)
    counts = loader.counts()
    assert (counts.samples, counts.described, counts.missing, counts.invalid, counts.empty) == (
        5, 2, 1, 1, 1)
    assert counts.described_frames == 6
    assert counts.frames_per_sample == [2, 4]
    assert counts.mean_described_frames == 3.0
    sub = loader.counts(["a", "gone", "never-loaded"])
    assert (sub.samples, sub.described, sub.missing, sub.described_frames) == (2, 1, 1, 2)


# --- Describer -------------------------------------------------------------------------

def test_describer_aligns_original_frame_numbers(tmp_path):
    write(tmp_path, "vid", {"0": "a", "102": "b", "110": "c"})
    describer = Describer(tmp_path)
    aligned, has = describer.describe("vid", np.array([100, 102, 106], dtype=np.int64))
    assert aligned == [[("a", 0.0196078431372549), ("b", 0.9803921568627451)],
                       [("b", 1.0)], [("b", 0.5), ("c", 0.5)]]
    assert has.dtype == np.float32 and has.tolist() == [0.0, 1.0, 0.0]


def test_describer_passes_strategy_and_max_gap(tmp_path):
    write(tmp_path, "vid", {"10": "a", "20": "b"})
    describer = Describer(tmp_path, strategy="nearest", max_gap=3)
    aligned, has = describer.describe("vid", [5, 8, 14, 16, 23])
    assert aligned == [[], [("a", 1.0)], [], [], [("b", 1.0)]]
    assert has.tolist() == [0.0] * 5


def test_describer_reads_each_file_once(tmp_path):
    path = write(tmp_path, "vid", {"0": "a"})
    describer = Describer(tmp_path)
    describer.describe("vid", [0])
    path.unlink()
    assert describer.describe("vid", [0, 1])[0] == [[("a", 1.0)], [("a", 1.0)]]
    assert describer.loader.counts().described == 1


def test_describer_without_description_file(tmp_path):
    aligned, has = Describer(tmp_path).describe("none", [0, 1, 2])
    assert aligned == [[], [], []]
    assert has.dtype == np.float32 and has.tolist() == [0.0, 0.0, 0.0]


def test_describer_needs_an_existing_directory(tmp_path):
    with pytest.raises(InputError) as err:
        Describer(tmp_path / "CSL_Daily")
    assert str(err.value) == f"{tmp_path / 'CSL_Daily'}: description directory not found"


def test_describer_summary_per_split(tmp_path):
    write(tmp_path, "a", {"0": "x", "1": "y", "2": "z"})
    write(tmp_path, "b", {"5": "x"})
    bad = write(tmp_path, "c", b"\xff")
    write(tmp_path, "d", {"3": ""})
    reports = []
    describer = Describer(tmp_path, report=reports.append)
    summary = describer.summary("dev", ["a", "b", "c", "d", "e", "f"])
    assert summary == (
        "descriptions (dev): 2 of 6 samples have descriptions; 2 files missing, 1 invalid, "
        "1 with only empty texts; 2.0 described frames per described sample\n"
        f"  invalid: {bad}: not UTF-8 text (byte 0xff at offset 0)")
    assert reports == [f"{bad}: not UTF-8 text (byte 0xff at offset 0)"]
    assert describer.invalid_files == reports
    # Another split's samples are counted on their own.
    assert describer.summary("test", ["b", "z"]).startswith(
        "descriptions (test): 1 of 2 samples have descriptions; 1 files missing, 0 invalid")


def test_describer_summary_lists_at_most_max_listed_invalid_files(tmp_path):
    for i in range(3):
        write(tmp_path, f"bad{i}", [i])
    summary = Describer(tmp_path, report=lambda m: None).summary(
        "train", ["bad0", "bad1", "bad2"], max_listed=1)
    assert summary.splitlines()[1:] == [
        f"  invalid: {tmp_path / 'bad0.json'}: top level is an array, expected a JSON object",
        "  ... and 2 more invalid files"]


def test_describer_strict_summary_stops_at_the_bad_file(tmp_path):
    path = write(tmp_path, "b", {"x": "fist"})
    with pytest.raises(InputError) as err:
        Describer(tmp_path, strict=True).summary("train", ["a", "b"])
    assert str(err.value) == f"{path}: frame key 'x' is not a non-negative integer"


# --- collate_descriptions --------------------------------------------------------------

def test_collate_two_samples_of_different_lengths_one_without_a_file(tmp_path):
    write(tmp_path, "s1", {"0": "a", "2": "b", "3": "b"})
    describer = Describer(tmp_path)
    aligned_1, _ = describer.describe("s1", [0, 1, 2, 3])  # a | a .5 b .5 | b | b
    aligned_2, _ = describer.describe("s2", [0, 1])        # no description file
    texts, index, weight = collate_descriptions([aligned_1, aligned_2], T=5)
    assert texts == ["a", "b"]
    assert index.dtype == torch.int64 and weight.dtype == torch.float32
    assert index.shape == weight.shape == (2, 5, 2)
    assert index.tolist() == [
        [[0, -1], [0, 1], [1, -1], [1, -1], [-1, -1]],
        [[-1, -1], [-1, -1], [-1, -1], [-1, -1], [-1, -1]]]
    assert weight.tolist() == [
        [[1.0, 0.0], [0.5, 0.5], [1.0, 0.0], [1.0, 0.0], [0.0, 0.0]],
        [[0.0, 0.0]] * 5]


def test_collate_keeps_each_text_once_in_first_appearance_order():
    aligned = [
        [[("c", 1.0)], [("c", 0.75), ("a", 0.25)]],
        [[], [("a", 1.0)], [("b", 1.0)]],
        None,
    ]
    texts, index, weight = collate_descriptions(aligned, T=3)
    assert texts == ["c", "a", "b"]
    assert index.tolist() == [
        [[0, -1], [0, 1], [-1, -1]],
        [[-1, -1], [1, -1], [2, -1]],
        [[-1, -1]] * 3]
    assert weight[0, 1].tolist() == [0.75, 0.25]


def test_collate_empty_batch():
    texts, index, weight = collate_descriptions([], T=4)
    assert texts == [] and index.shape == (0, 4, 2) and weight.shape == (0, 4, 2)


def test_collate_rejects_a_sample_longer_than_T():
    with pytest.raises(ValueError) as err:
        collate_descriptions([[[], [], []]], T=2)
    assert str(err.value) == "collate_descriptions: sample 0 has 3 frames, more than T=2"


# --- describe_stats --------------------------------------------------------------------

class CharTokenizer:
    """A stand-in for a Hugging Face tokenizer: one token per character, plus </s>."""

    def __call__(self, texts):
        return {"input_ids": [list(range(len(text) + 1)) for text in texts]}


def make_stats_dir(root):
    directory = root / "Synthetic"
    directory.mkdir()
    write(directory, "a", {"0": "fist", "1": "open palm", "2": "fist"})
    write(directory, "b", {"segments": [{"start": 0, "end": 5, "text": "both hands move down"}]})
    write(directory, "c", {"0": 3})
    write(directory, "d", {"0": ""})
    return directory


def test_describe_stats_over_every_file_with_a_tokenizer(tmp_path):
    directory = make_stats_dir(tmp_path)
    stats = describe_stats(tmp_path, "Synthetic", tokenizer=CharTokenizer(), max_tokens=10)
    assert stats == {
        "directory": str(directory),
        "samples": 4, "described": 2, "missing": 0, "invalid": 1, "empty": 1,
        "frames_per_sample": {"mean": 4.0, "min": 3, "max": 5},
        "distinct_texts": 3,
        "text_length": {"mean": (5 + 10 + 21) / 3, "min": 5, "max": 21, "unit": "tokens",
                        "over_max_tokens": 1, "max_tokens": 10},
        "invalid_files": [f"{directory / 'c.json'}: text of frame '0' is a number, "
                          "expected a string"],
    }
    assert format_describe_stats(stats) == "\n".join([
        f"description directory: {directory}",
        "samples: 4",
        "  with descriptions: 2",
        "  file missing: 0",
        "  file invalid: 1",
        "  only empty texts: 1",
        "described frames per described sample: mean 4.0, min 3, max 5",
        "distinct texts: 3",
        "text length (tokens): mean 12.0, min 5, max 21; 1 longer than 10 tokens",
        "invalid files: 1",
        f"  {directory / 'c.json'}: text of frame '0' is a number, expected a string",
    ])


def test_describe_stats_for_given_samples_counts_words(tmp_path):
    make_stats_dir(tmp_path)
    stats = describe_stats(tmp_path, "Synthetic", sample_ids=["a", "x", "y"])
    assert (stats["samples"], stats["described"], stats["missing"], stats["invalid"]) == (3, 1, 2, 0)
    assert stats["text_length"] == {"mean": 1.5, "min": 1, "max": 2, "unit": "words"}
    assert "text length (words): mean 1.5, min 1, max 2" in format_describe_stats(stats)


def test_describe_stats_without_descriptions(tmp_path):
    (tmp_path / "WLASL").mkdir()
    stats = describe_stats(tmp_path, "WLASL", sample_ids=["x"])
    assert stats["frames_per_sample"] is None and stats["text_length"] is None
    assert "described frames per described sample: none" in format_describe_stats(stats)


def test_describe_stats_needs_the_dataset_directory(tmp_path):
    with pytest.raises(InputError) as err:
        describe_stats(tmp_path, "How2Sign")
    assert str(err.value) == f"{tmp_path / 'How2Sign'}: description directory not found"


def test_describe_stats_command_with_a_split_reads_the_label_file(tmp_path):
    import argparse
    import gzip
    import pickle
    (tmp_path / "description").mkdir()
    make_stats_dir(tmp_path / "description")
    labels = {name: {"name": name, "text": "t", "gloss": "", "video_path": f"{vid}.mp4"}
              for name, vid in [("n1", "a"), ("n2", "b"), ("n3", "zz")]}
    label_dir = tmp_path / "labels"
    label_dir.mkdir()
    with gzip.open(label_dir / "labels.dev", "wb") as f:
        pickle.dump(labels, f)
    args = argparse.Namespace(desc_dir=str(tmp_path / "description"), dataset="Synthetic",
                              split="dev", data_root=".", label_dir=str(label_dir),
                              mt5_model=None, trust_pickles=False)
    lines = describe_stats_command(args).splitlines()
    assert lines[0] == "dataset: Synthetic (split dev)"
    assert lines[2:7] == ["samples: 3", "  with descriptions: 2", "  file missing: 1",
                          "  file invalid: 0", "  only empty texts: 0"]
