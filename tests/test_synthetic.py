"""The synthetic benchmark generator (signfuse.demo.synthetic)."""
import gzip
import hashlib
import io
import itertools
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from signfuse.demo import lexicon as lexicon_words
from signfuse.demo.synthetic import (DESCRIPTION_FORMS, HAND, build_lexicon, make_synthetic,
                                     render_sample)
from signfuse.errors import InputError

SAMPLES = 40
INVALID = 4


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    summary = make_synthetic(out, samples=SAMPLES, seed=3, invalid_files=INVALID, trim_fraction=0.5)
    return out, summary


def file_hashes(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Refuses every global except numpy's array reconstruction (what a restricted loader allows)."""

    def find_class(self, module, name):
        if module.split(".")[0] == "numpy" and name in ("_reconstruct", "ndarray", "dtype", "Float32DType"):
            return super().find_class(module, name)
        raise AssertionError(f"pickle names {module}.{name}")


def restricted_load(data: bytes):
    return NumpyOnlyUnpickler(io.BytesIO(data)).load()


def read_description(path: Path) -> dict:
    """``{frame: text}`` of a description file; ValueError when the file is unusable (spec section 1)."""
    try:
        content = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(str(e)) from None
    if not isinstance(content, dict):
        raise ValueError("not an object")
    if "segments" in content:
        frames = {}
        for seg in content["segments"]:
            if not (isinstance(seg["text"], str) and 0 <= seg["start"] < seg["end"]):
                raise ValueError(f"bad segment {seg}")
            frames.update({f: seg["text"] for f in range(seg["start"], seg["end"])})
        return frames
    frame_map = content.get("frames", content)
    if not all(isinstance(t, str) for t in frame_map.values()):
        raise ValueError("text not a string")
    if not all(k.isdigit() for k in frame_map):
        raise ValueError("key not a non-negative integer")
    return {int(k): t for k, t in frame_map.items()}


def test_same_seed_gives_the_same_bytes_and_another_seed_other_data(tmp_path):
    def generate(name, seed):
        make_synthetic(tmp_path / name, samples=12, seed=seed)
        return file_hashes(tmp_path / name)

    first, again, other = generate("a", 5), generate("b", 5), generate("c", 6)
    pose = [k for k in first if k.endswith(".pkl")]
    assert len(pose) == 12 and sum(k.startswith("data/Synthetic/labels.") for k in first) == 3
    assert first == again
    assert all(other[k] != first[k] for k in pose)
    assert all(other[f"data/Synthetic/labels.{s}"] != first[f"data/Synthetic/labels.{s}"]
               for s in ("train", "dev", "test"))


def test_label_files_have_uni_signs_structure(dataset):
    out, summary = dataset
    names = []
    for split, count in summary["splits"].items():
        labels = restricted_load(gzip.decompress((out / "data/Synthetic" / f"labels.{split}").read_bytes()))
        assert len(labels) == count
        for name, sample in labels.items():
            assert set(sample) == {"name", "text", "gloss", "video_path"}
            assert sample["name"] == name and sample["video_path"] == f"{name}.mp4"
            assert isinstance(sample["gloss"], list) and 2 <= len(sample["gloss"]) <= 5
            assert sample["text"] == " ".join(sample["gloss"])
            assert set(sample["gloss"]) <= set(summary["words"]) <= set(lexicon_words.WORDS)
            assert (out / "dataset/Synthetic/pose_format" / f"{name}.pkl").is_file()
        names += labels
    assert summary["splits"] == {"train": 32, "dev": 4, "test": 4}
    assert len(set(names)) == SAMPLES


def test_pose_files_hold_normalised_keypoints_and_scores(dataset):
    out, summary = dataset
    all_scores, trimmed = [], 0
    for path in sorted((out / "dataset/Synthetic/pose_format").glob("*.pkl")):
        pose = restricted_load(path.read_bytes())
        keypoints, scores = pose["keypoints"], pose["scores"]
        n = len(keypoints)
        assert keypoints.dtype == np.float32 and keypoints.shape == (n, 1, 133, 2)
        assert scores.dtype == np.float32 and scores.shape == (n, 1, 133)
        assert keypoints.min() >= 0.0 and keypoints.max() <= 1.0
        assert set(pose) <= {"keypoints", "scores", "start", "end"}
        start, end = pose.get("start", 0), pose.get("end", n)
        assert type(start) is int and type(end) is int and 0 <= start < end <= n
        assert 30 <= end - start <= 90
        trimmed += "start" in pose and start > 0
        all_scores.append(scores.ravel())
    assert trimmed == summary["trimmed"] > 0
    scores = np.concatenate(all_scores)
    assert np.median(scores) > 0.85 and 0 < np.mean(scores < 0.3) < 0.15


def test_members_of_a_pair_have_identical_keypoints_and_different_descriptions():
    lexicon = build_lexicon(n_signs=16, n_pairs=4)
    (a, b), (c, d) = [[w for w in lexicon if lexicon[w].cue and lexicon[w].pattern == k]
                      for k in sorted({s.pattern for s in lexicon.values() if s.cue})][:2]
    one = render_sample(lexicon, ["i", a, "go", c], np.random.default_rng(7), extra=(3, 2))
    two = render_sample(lexicon, ["i", b, "go", d], np.random.default_rng(7), extra=(3, 2))
    np.testing.assert_array_equal(one.keypoints, two.keypoints)
    np.testing.assert_array_equal(one.scores, two.scores)
    assert one.descriptions.keys() == two.descriptions.keys()
    differ = {f: (one.descriptions[f], two.descriptions[f]) for f in one.descriptions
              if one.descriptions[f] != two.descriptions[f]}
    assert set(differ.values()) == {(lexicon[a].cue, lexicon[b].cue), (lexicon[c].cue, lexicon[d].cue)}
    # the cue is what every described frame of a paired sign states, and only there
    for (word, first, stop), frame in itertools.product(one.spans, one.descriptions):
        if first <= frame < stop:
            assert (frame in differ) == (word in (a, c))
    # and the words that are not paired do change the keypoints
    three = render_sample(lexicon, ["you", a, "go", c], np.random.default_rng(7), extra=(3, 2))
    assert not np.array_equal(one.keypoints, three.keypoints)


def test_signs_of_different_patterns_are_clearly_distinguishable():
    """Different motions move a wrist differently; signs sharing a motion differ in handshape.

    Distance: the mean over the sign's frames of a point's displacement, for the point that
    differs most (image units; the point noise is at most 0.003).
    """
    lexicon = build_lexicon(n_signs=24, n_pairs=4)
    one_per_pattern = {s.pattern: s for s in lexicon.values()}
    wrists, shapes = {}, {}
    for pattern, sign in one_per_pattern.items():
        sample = render_sample(lexicon, [sign.word], np.random.default_rng(0))
        _, first, stop = sample.spans[0]
        points = sample.keypoints[first:stop, 0]
        wrists[pattern] = points[:, [9, 10]]
        shapes[pattern] = np.concatenate([points[:, HAND[side]] - points[:, HAND[side]][:, :1]
                                          for side in ("left", "right")], axis=1)
    assert len(one_per_pattern) == 20 and len(set(s.pattern for s in build_lexicon().values())) == 12
    for p, q in itertools.combinations(one_per_pattern, 2):
        same_motion = one_per_pattern[p].motion == one_per_pattern[q].motion
        tracks = shapes if same_motion else wrists
        assert np.abs(tracks[p] - tracks[q]).mean(axis=0).max() > 0.02, (p, q)


def test_descriptions_are_sparse_and_inside_the_spans_of_signs():
    lexicon = build_lexicon()
    words = list(lexicon)
    rng = np.random.default_rng(11)
    for i in range(30):
        sentence = list(rng.choice(words, size=rng.integers(2, 6)))
        before = int(rng.integers(0, 9))
        sample = render_sample(lexicon, sentence, np.random.default_rng(i), extra=(before, 2))
        assert sample.start == before and sample.end == len(sample.keypoints) - 2
        assert all(sample.start <= first < stop <= sample.end for _, first, stop in sample.spans)
        for word, first, stop in sample.spans:
            inside = {f: t for f, t in sample.descriptions.items() if first <= f < stop}
            assert 1 <= len(inside) <= 3
            if lexicon[word].cue:
                assert set(inside.values()) == {lexicon[word].cue}
            else:
                assert lexicon[word].motion.phrase in inside.values()
            assert all(t in lexicon_words.DESCRIPTION_PHRASES for t in inside.values())
        assert all(any(first <= f < stop for _, first, stop in sample.spans) for f in sample.descriptions)
        assert len(sample.descriptions) <= 0.5 * (sample.end - sample.start)


def test_description_files_on_disk(dataset):
    out, summary = dataset
    desc_dir = out / "description/Synthetic"
    forms, valid, invalid, trimmed_described = set(), 0, [], 0
    for path in sorted(desc_dir.glob("*.json")):
        try:
            frames = read_description(path)
        except ValueError:
            invalid.append(str(path))
            continue
        content = json.loads(path.read_text())
        forms.add("segments" if "segments" in content else "frames+source" if "frames" in content else "frames")
        pose = pickle.loads((out / "dataset/Synthetic/pose_format" / f"{path.stem}.pkl").read_bytes())
        start, end = pose.get("start", 0), pose.get("end", len(pose["keypoints"]))
        assert frames and all(start <= f < end for f in frames)
        # described frames show a sign: a wrist is away from where it rests at the first frame
        wrists = pose["keypoints"][:, 0, [9, 10]]
        moved = np.linalg.norm(wrists[sorted(frames)] - wrists[start], axis=-1).max(axis=-1)
        assert moved.min() > 0.04, path
        trimmed_described += start > 0
        valid += 1
    assert forms == set(DESCRIPTION_FORMS) and trimmed_described > 0
    assert invalid == summary["files"]["invalid"] and len(invalid) == INVALID
    assert valid == sum(summary["with_descriptions"].values())
    without = sum(summary["without_descriptions"].values())
    assert without > 0 and valid + INVALID + without == SAMPLES
    assert len(list(desc_dir.iterdir())) == summary["files"]["descriptions"] == valid + INVALID


def test_bad_arguments_and_existing_output(tmp_path):
    with pytest.raises(InputError, match="n_pairs 5"):
        make_synthetic(tmp_path, samples=10, n_pairs=5)
    with pytest.raises(InputError, match="samples 2"):
        make_synthetic(tmp_path, samples=2)
    with pytest.raises(InputError, match="invalid_files 9"):
        make_synthetic(tmp_path / "few", samples=5, invalid_files=9)
    make_synthetic(tmp_path / "out", samples=6, seed=1)
    with pytest.raises(InputError, match="not empty"):
        make_synthetic(tmp_path / "out", samples=6, seed=2)
    summary = make_synthetic(tmp_path / "out", samples=5, seed=2, overwrite=True)
    assert len(list((tmp_path / "out/dataset/Synthetic/pose_format").iterdir())) == 5
    assert summary["splits"] == {"train": 3, "dev": 1, "test": 1}
