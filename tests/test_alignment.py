"""TemporalAligner (docs/descriptions.md section 2): the rules, the worked example, a brute-force
reference on a long video, and hypothesis properties."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from signfuse.data.descriptions import TemporalAligner
from signfuse.errors import InputError

WORKED = {0: "person moves hand to left", 2: "hand touches chin", 5: "both hands move down"}


def reference(descriptions, frames, strategy="interpolate", max_gap=None):
    """The rules of section 2 written the slow way: scan every described frame per frame."""
    aligned, has = [], []
    for f in frames:
        if f in descriptions:
            aligned.append([(descriptions[f], 1.0)])
            has.append(1)
            continue
        has.append(0)
        before = [d for d in descriptions if d < f]
        after = [d for d in descriptions if d > f]
        left = max(before) if before else None
        right = min(after) if after else None
        if strategy == "exact" or (left is None and right is None):
            aligned.append([])
        elif strategy == "interpolate" and left is not None and right is not None:
            if descriptions[left] == descriptions[right]:
                aligned.append([(descriptions[left], 1.0)])
            else:
                aligned.append([(descriptions[left], (right - f) / (right - left)),
                                (descriptions[right], (f - left) / (right - left))])
        else:
            candidates = [(f - left, 0, left)] if left is not None else []
            candidates += [(right - f, 1, right)] if right is not None else []
            gap, _, nearest = min(candidates)  # ties: the 0 of L sorts first
            if max_gap is not None and gap > max_gap:
                aligned.append([])
            else:
                aligned.append([(descriptions[nearest], 1.0)])
    return aligned, has


def test_worked_example_of_the_spec():
    aligned, has = TemporalAligner(WORKED, [0, 1, 2, 4, 5]).align()
    d0, d2, d5 = WORKED[0], WORKED[2], WORKED[5]
    assert [[text for text, _ in pairs] for pairs in aligned] == [
        [d0], [d0, d2], [d2], [d2, d5], [d5]]
    assert [[w for _, w in pairs] for pairs in aligned] == [
        [1.0], [0.5, 0.5], [1.0], [pytest.approx(1 / 3), pytest.approx(2 / 3)], [1.0]]
    assert has == [1, 0, 1, 0, 1]


def test_frames_before_the_first_and_after_the_last_description_take_the_nearest():
    aligned, has = TemporalAligner({10: "a", 20: "b"}, [0, 5, 15, 25, 400]).align()
    assert aligned == [[("a", 1.0)], [("a", 1.0)], [("a", 0.5), ("b", 0.5)],
                       [("b", 1.0)], [("b", 1.0)]]
    assert has == [0, 0, 0, 0, 0]


def test_equal_neighbouring_texts_give_one_pair_of_weight_one():
    aligned, has = TemporalAligner({0: "same", 10: "same", 20: "other"}, [3, 12]).align()
    assert aligned == [[("same", 1.0)], [("same", 0.8), ("other", 0.2)]]
    assert has == [0, 0]


def test_max_gap_limits_the_one_sided_neighbour_but_not_interpolation():
    descriptions = {10: "a", 30: "b"}
    aligned, _ = TemporalAligner(descriptions, [4, 5, 20, 35, 36], max_gap=5).align()
    assert aligned == [[], [("a", 1.0)], [("a", 0.5), ("b", 0.5)], [("b", 1.0)], []]


def test_max_gap_zero_keeps_only_described_frames():
    aligned, has = TemporalAligner({10: "a"}, [9, 10, 11], max_gap=0).align()
    assert aligned == [[], [("a", 1.0)], []]
    assert has == [0, 1, 0]


def test_nearest_takes_the_nearer_neighbour_with_ties_to_the_left():
    aligned, has = TemporalAligner({0: "a", 4: "b"}, [1, 2, 3, 4], strategy="nearest").align()
    assert aligned == [[("a", 1.0)], [("a", 1.0)], [("b", 1.0)], [("b", 1.0)]]
    assert has == [0, 0, 0, 1]


def test_nearest_respects_max_gap():
    aligned, _ = TemporalAligner({0: "a", 10: "b"}, [2, 5, 8], strategy="nearest",
                                 max_gap=2).align()
    assert aligned == [[("a", 1.0)], [], [("b", 1.0)]]


def test_exact_keeps_only_described_frames():
    aligned, has = TemporalAligner(WORKED, [0, 1, 2, 4, 5, 9], strategy="exact").align()
    assert aligned == [[(WORKED[0], 1.0)], [], [(WORKED[2], 1.0)], [], [(WORKED[5], 1.0)], []]
    assert has == [1, 0, 1, 0, 1, 0]


def test_no_descriptions_gives_nothing_for_every_frame():
    assert TemporalAligner({}, [0, 3, 7]).align() == ([[], [], []], [0, 0, 0])
    assert TemporalAligner(WORKED, []).align() == ([], [])


def test_whitespace_only_texts_count_as_not_described():
    aligned, has = TemporalAligner({0: "a", 1: "  ", 2: "b"}, [1]).align()
    assert aligned == [[("a", 0.5), ("b", 0.5)]]
    assert has == [0]


def test_original_frame_numbers_with_a_start_offset():
    # The pose file's sample starts at frame 100: sampled frame numbers include it.
    frames = np.arange(100, 104, dtype=np.int64)
    aligned, has = TemporalAligner({101: "a", 103: "b"}, frames).align()
    assert aligned == [[("a", 1.0)], [("a", 1.0)], [("a", 0.5), ("b", 0.5)], [("b", 1.0)]]
    assert has == [0, 1, 0, 1]


@pytest.mark.parametrize("kwargs, message", [
    ({"strategy": "linear"},
     "--desc_alignment: unknown strategy 'linear' (choose from interpolate, nearest, exact)"),
    ({"max_gap": -1}, "--max_gap: must be a non-negative number of frames, got -1"),
])
def test_bad_options_raise_input_error(kwargs, message):
    with pytest.raises(InputError) as err:
        TemporalAligner(WORKED, [0], **kwargs)
    assert str(err.value) == message


@pytest.mark.parametrize("strategy, max_gap", [
    ("interpolate", None), ("interpolate", 10), ("nearest", None), ("nearest", 7),
    ("exact", None)])
def test_long_video_matches_the_brute_force_reference(strategy, max_gap):
    rng = np.random.default_rng(3)
    texts = [f"text {i}" for i in range(12)]  # few texts: equal neighbours happen
    described = rng.choice(5000, size=300, replace=False)
    descriptions = {int(f): texts[rng.integers(len(texts))] for f in described}
    frames = np.sort(rng.choice(5000, size=200, replace=False))
    aligned, has = TemporalAligner(descriptions, frames, strategy=strategy,
                                   max_gap=max_gap).align()
    expected_aligned, expected_has = reference(descriptions, frames.tolist(), strategy, max_gap)
    assert aligned == expected_aligned
    assert has == expected_has
    assert sum(has) == len(set(frames.tolist()) & set(descriptions))


descriptions_st = st.dictionaries(st.integers(0, 300), st.sampled_from(["a", "b", "c"]),
                                  max_size=30)
frames_st = st.lists(st.integers(0, 320), max_size=40).map(sorted)
gap_st = st.none() | st.integers(0, 50)


@settings(max_examples=150, deadline=None)
@given(descriptions_st, frames_st, gap_st)
def test_interpolate_properties(descriptions, frames, max_gap):
    aligned, has = TemporalAligner(descriptions, frames, max_gap=max_gap).align()
    assert len(aligned) == len(has) == len(frames)
    for f, pairs, h in zip(frames, aligned, has, strict=True):
        assert h == (1 if f in descriptions else 0)
        assert len(pairs) <= 2
        assert all(0.0 <= w <= 1.0 for _, w in pairs)
        if pairs:
            assert sum(w for _, w in pairs) == pytest.approx(1.0)
        if len(pairs) == 2:
            assert pairs[0][0] != pairs[1][0]
        if descriptions and max_gap is None:
            assert pairs  # with descriptions and no limit every frame gets a text
    assert (aligned, has) == reference(descriptions, frames, "interpolate", max_gap)


@settings(max_examples=150, deadline=None)
@given(descriptions_st, frames_st, gap_st)
def test_nearest_properties(descriptions, frames, max_gap):
    aligned, has = TemporalAligner(descriptions, frames, strategy="nearest",
                                   max_gap=max_gap).align()
    for f, pairs, h in zip(frames, aligned, has, strict=True):
        assert h == (1 if f in descriptions else 0)
        assert len(pairs) <= 1 and all(w == 1.0 for _, w in pairs)
        if pairs and max_gap is not None:
            assert any(abs(d - f) <= max_gap and t == pairs[0][0]
                       for d, t in descriptions.items())
    assert (aligned, has) == reference(descriptions, frames, "nearest", max_gap)


@settings(max_examples=100, deadline=None)
@given(descriptions_st, frames_st)
def test_exact_properties(descriptions, frames):
    aligned, has = TemporalAligner(descriptions, frames, strategy="exact").align()
    assert aligned == [[(descriptions[f], 1.0)] if f in descriptions else [] for f in frames]
    assert has == [int(f in descriptions) for f in frames]
