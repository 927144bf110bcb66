"""The rules describer against the synthetic benchmark's ground truth, and that ground truth.

``make-synthetic`` records per frame the true hand locations, movements and mouth state of
what it generated (``truth/Synthetic/<name>.json``: the vocabulary measured on the noise-free
points). ``signfuse describe`` sees only the noisy, scaled, partly low-confidence keypoints.
"""
import argparse
import json

import numpy as np
import pytest

from conftest import attribute_per_frame
from signfuse.demo.synthetic import PAIRS, build_lexicon, make_synthetic, render_sample
from signfuse.commands import describe as describe_command
from signfuse.describe import write

ATTRIBUTES = ("location", "movement", "mouth")


@pytest.fixture(scope="module")
def described(tmp_path_factory):
    root = tmp_path_factory.mktemp("truth")
    make_synthetic(root, samples=40, seed=7, mouthing=0.5, trim_fraction=0.5, invalid_files=0)
    parser = argparse.ArgumentParser()
    describe_command.register(parser.add_subparsers())
    args = parser.parse_args(["describe", "--dataset", "Synthetic", "--data_root", str(root),
                              "--desc_dir", str(root / "rules")])
    summary = write.describe_dataset(args, progress=False)
    assert summary.written == 40 and not summary.skipped
    return root


def test_rules_agree_with_the_truth_on_95_percent_of_frames(described, capsys):
    agree = {a: 0 for a in ATTRIBUTES}
    total = {a: 0 for a in ATTRIBUTES}
    values = {a: set() for a in ATTRIBUTES}
    for truth_file in sorted((described / "truth/Synthetic").glob("*.json")):
        truth = json.loads(truth_file.read_text())
        segments = json.loads((described / "rules/Synthetic" / truth_file.name).read_text("utf-8"))["segments"]
        assert segments[0]["start"] == truth["start"] and segments[-1]["end"] == truth["end"]
        pairs = [(attribute_per_frame(segments, hand, a), truth[hand][a])
                 for hand in ("right_hand", "left_hand") for a in ("location", "movement")]
        pairs.append((attribute_per_frame(segments, "mouth"), truth["mouth"]))
        for (predicted, true), name in zip(pairs, ("location", "movement", "location", "movement", "mouth"), strict=True):
            assert len(predicted) == len(true) == truth["end"] - truth["start"]
            agree[name] += sum(p == t for p, t in zip(predicted, true, strict=True))
            total[name] += len(true)
            values[name].update(true)
    shares = {a: agree[a] / total[a] for a in ATTRIBUTES}
    with capsys.disabled():
        print("\nrules vs truth, share of frames: " + ", ".join(f"{a} {shares[a]:.4f} ({total[a]} frames)"
                                                                 for a in ATTRIBUTES))
    # the truth is varied enough for the figures to mean something
    assert values["location"] >= {"low", "chest", "face"} and values["mouth"] == {"open", "closed"}
    assert values["movement"] == {"hold", "up", "down", "left", "right"}
    assert all(share >= 0.95 for share in shares.values()), shares


def test_truth_files_record_what_was_generated(described):
    truth = json.loads((described / "truth/Synthetic/synth_00003.json").read_text())
    n = truth["end"] - truth["start"]
    assert all(len(truth[h][a]) == n for h in ("right_hand", "left_hand") for a in ("location", "movement"))
    assert len(truth["mouth"]) == n and truth["fps"] == 25.0 and truth["cues"] == []
    lexicon = build_lexicon()
    for word, first, stop in truth["spans"]:
        assert truth["start"] <= first < stop <= truth["end"]
        motion = lexicon[word].motion
        middle = (first + stop - 1) // 2 - truth["start"]
        if motion.phrase == "right hand moves up to the chin":  # a known movement, mid-sign
            assert truth["right_hand"]["movement"][middle] == "up"


def test_the_weak_cue_moves_only_face_points_during_the_paired_sign():
    lexicon = build_lexicon()
    (a, cue_a), (b, cue_b) = PAIRS[0]  # happy / sad: mouth smiles / frowns
    one = render_sample(lexicon, ["i", a, "go"], np.random.default_rng(3), cue_amplitude=0.05)
    two = render_sample(lexicon, ["i", b, "go"], np.random.default_rng(3), cue_amplitude=0.05)
    plain = render_sample(lexicon, ["i", a, "go"], np.random.default_rng(3))
    (first, stop, cue), = one.cues
    assert cue == cue_a and two.cues == [(first, stop, cue_b)] and plain.cues == []
    differ = np.argwhere(np.abs(one.keypoints - two.keypoints).max(axis=-1)[:, 0] > 0)  # (frame, point)
    assert set(differ[:, 0]) == set(range(first, stop))
    assert set(differ[:, 1]) == {71, 77, 83, 87}  # the mouth corners
    corners_up = (plain.keypoints[first:stop, 0, [71, 77], 1] - one.keypoints[first:stop, 0, [71, 77], 1]).mean()
    assert corners_up == pytest.approx(0.005, rel=0.15)  # 0.05 body units of 0.09-0.11 image units
    mask = np.ones(len(one.keypoints), bool)
    mask[first:stop] = False
    assert np.array_equal(one.keypoints[mask], plain.keypoints[mask])
