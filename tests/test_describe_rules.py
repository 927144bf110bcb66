"""The rules describer (signfuse.describe.rules, templates) on hand-built keypoints.

The signer: synthetic.py's body and face templates (body units: half a shoulder width, origin
between the shoulders, y down) placed at centre (0.5, 0.4) with 0.1 image units per body unit
(x / W and y / H of a square frame). The vocabulary's levels for this face, in body units:
chin -0.47, brows -0.992, head top = brows - 0.6 * (chin - brows) = -1.305, chest bottom 2.0
(one shoulder width). All 21 points of a hand sit at its palm centre unless said otherwise.
"""
import numpy as np
import pytest

from conftest import attribute_per_frame
from signfuse.demo.synthetic import BODY_TEMPLATE, FACE_TEMPLATE, OPEN_MOUTH
from signfuse.describe import rules, templates
from signfuse.describe.rules import RulesDescriber, rules_settings
from signfuse.errors import InputError

RIGHT, LEFT = slice(112, 133), slice(91, 112)  # COCO-WholeBody: the person's right / left hand


def signer(T: int, right=(-0.8, 2.6), left=(0.8, 2.6)):
    """(keypoints (T, 133, 2), scores (T, 133)): hands at fixed body-unit positions, or per-frame
    (T, 2) arrays."""
    xy = np.zeros((T, 133, 2))
    xy[:, :23] = BODY_TEMPLATE
    xy[:, 23:91] = FACE_TEMPLATE
    xy[:, RIGHT] = np.broadcast_to(np.asarray(right, float), (T, 2))[:, None]
    xy[:, LEFT] = np.broadcast_to(np.asarray(left, float), (T, 2))[:, None]
    return (np.array([0.5, 0.4]) + 0.1 * xy).astype(np.float32), np.full((T, 133), 0.9, np.float32)


def describer(**settings):
    return RulesDescriber(rules_settings("Synthetic", **settings))


@pytest.mark.parametrize("y, location", [(-1.6, "above_head"), (-1.2, "face"), (-0.6, "face"),
                                         (-0.3, "chest"), (1.9, "chest"), (2.2, "low")])
def test_location_levels_in_shoulder_widths(y, location):
    segments = describer().describe(*signer(20, right=(-0.5, y)))
    assert attribute_per_frame(segments, "right_hand", "location") == [location] * 20
    assert attribute_per_frame(segments, "left_hand", "location") == ["low"] * 20
    assert attribute_per_frame(segments, "right_hand", "movement") == ["hold"] * 20


def test_aspect_ratio_comes_from_frame_size():
    """y = 1.8 body units (0.9 sw: chest) on a square frame; at W/H = 2 the shoulders are twice as
    wide in frame heights, so the same keypoints put the hand at 0.45 sw; at W/H = 0.8, 1.125 sw
    (low)."""
    pose = signer(10, right=(-0.5, 1.8))
    assert attribute_per_frame(describer().describe(*pose), "right_hand", "location") == ["chest"] * 10
    assert attribute_per_frame(describer(frame_size=(1024, 512)).describe(*pose), "right_hand", "location") == ["chest"] * 10
    assert attribute_per_frame(describer(frame_size=(400, 500)).describe(*pose), "right_hand", "location") == ["low"] * 10


@pytest.mark.parametrize("step, movement", [((0.0, -0.1), "up"), ((0.0, 0.1), "down"), ((-0.1, 0.0), "left"),
                                            ((0.1, 0.03), "right"), ((0.01, 0.0), "hold")])
def test_movement_is_the_dominant_direction_in_image_coordinates(step, movement):
    """0.1 body units per frame at 25 fps is 1.25 shoulder widths per second; 0.01 is 0.125 (a hold)."""
    track = np.array([-0.5, 0.5]) + np.arange(16)[:, None] * np.array(step)
    segments = describer().describe(*signer(16, right=track))
    assert attribute_per_frame(segments, "right_hand", "movement") == [movement] * 16
    assert attribute_per_frame(segments, "left_hand", "movement") == ["hold"] * 16
    expected = {"hold": "both_hold", "up": "right_dominant"}.get(movement, "right_dominant")
    assert {s["attributes"]["hands"]["relation"] for s in segments} == {expected}


def test_fps_scales_speed():
    """0.03 body units per frame: 0.375 sw/s at 25 fps (hold), 0.75 sw/s at 50 fps (moves)."""
    track = np.array([-0.5, 0.5]) + np.arange(16)[:, None] * np.array([0.0, -0.03])
    assert attribute_per_frame(describer().describe(*signer(16, right=track)), "right_hand", "movement") == ["hold"] * 16
    assert attribute_per_frame(describer(fps=50).describe(*signer(16, right=track)), "right_hand", "movement") == ["up"] * 16


def test_right_hand_is_cocos_right_hand_and_the_signers():
    """Points 112..132 are the person's right hand; moving only them moves "right_hand"."""
    keypoints, scores = signer(12, right=np.array([-0.5, 1.0]) + np.arange(12)[:, None] * [0.0, -0.12])
    segments = describer().describe(keypoints, scores)
    assert set(attribute_per_frame(segments, "right_hand", "movement")) == {"up"}
    assert set(attribute_per_frame(segments, "left_hand", "movement")) == {"hold"}
    assert segments[0]["text"].startswith("right hand moves up")


def test_low_confidence_gives_absent_never_a_guess():
    """The right hand is confident on frames 0-9 and 20-29 only; in between it is absent, even
    though its (wrong) points there sit at the face."""
    keypoints, scores = signer(30, right=(-0.5, 0.5))
    keypoints[10:20, RIGHT] = (0.5 - 0.05, 0.4 - 0.08)  # a guess would say "face"
    scores[10:20, RIGHT] = 0.2
    segments = describer().describe(keypoints, scores, offset=100)
    location = attribute_per_frame(segments, "right_hand", "location")
    assert location == ["chest"] * 10 + ["absent"] * 10 + ["chest"] * 10
    assert attribute_per_frame(segments, "right_hand", "movement")[10:20] == ["absent"] * 10
    absent = [s for s in segments if s["attributes"]["right_hand"]["location"] == "absent"]
    assert [(s["start"], s["end"]) for s in absent] == [(110, 120)]
    assert absent[0]["text"].startswith("right hand not visible; left hand holds below the chest")


def test_no_confident_shoulders_gives_one_absent_segment():
    keypoints, scores = signer(8)
    scores[:, [5, 6]] = 0.1
    segments = describer().describe(keypoints, scores, offset=3)
    assert [(s["start"], s["end"]) for s in segments] == [(3, 11)]
    assert segments[0]["attributes"] == rules.absent_attributes()
    assert segments[0]["text"] == "right hand not visible; left hand not visible"


def test_mouth_open_and_closed():
    keypoints, scores = signer(30)
    opened = np.array([0.5, 0.4]) + 0.1 * OPEN_MOUTH  # points 71..90
    keypoints[10:22, 71:91] = opened
    segments = describer().describe(keypoints, scores)
    assert attribute_per_frame(segments, "mouth") == ["closed"] * 10 + ["open"] * 12 + ["closed"] * 8
    assert any(s["text"].endswith("mouth open") or "mouth open;" in s["text"] for s in segments)
    scores[:, 71] = 0.1  # a mouth corner is never confident: the mouth is absent
    assert set(attribute_per_frame(describer().describe(keypoints, scores), "mouth")) == {"absent"}


def test_segments_cover_every_frame_and_split_where_an_attribute_changes():
    track = np.concatenate([np.tile([-0.5, 1.5], (10, 1)),  # hold at the chest, up at 3.75 sw/s, hold at the face
                            np.array([-0.5, 1.5]) + np.arange(1, 9)[:, None] * [0.0, -0.3],
                            np.tile([-0.5, -0.9], (12, 1))])
    segments = describer().describe(*signer(30, right=track), offset=7)
    assert segments[0]["start"] == 7 and segments[-1]["end"] == 37
    assert all(a["end"] == b["start"] for a, b in zip(segments[:-1], segments[1:], strict=True))
    assert all(s["start"] < s["end"] for s in segments)
    keys = [(s["attributes"]["right_hand"]["location"], s["attributes"]["right_hand"]["movement"]) for s in segments]
    assert all(a != b for a, b in zip(keys[:-1], keys[1:], strict=True))
    assert keys[0] == ("chest", "hold") and keys[-1] == ("face", "hold") and ("face", "up") in keys
    moving_to_face = next(s for s in segments if s["attributes"]["right_hand"]["movement"] == "up"
                          and s["attributes"]["right_hand"]["location"] == "face")
    assert moving_to_face["text"].startswith("right hand moves up quickly to the face")


def test_templates_phrase_attributes_in_english_and_chinese():
    attributes = rules.absent_attributes()
    attributes["right_hand"].update(location="face", movement="up", speed="normal", path="straight")
    attributes["left_hand"].update(location="chest", movement="hold")
    attributes.update(mouth="open", mouth_corners="neutral", eyebrows="neutral",
                      head={"movement": "still", "tilt": "none"})
    ends = {"right_hand": True, "left_hand": True}
    assert templates.render(attributes, ends, "en", 64) == \
        "right hand moves up to the face; left hand holds at the chest; mouth open"
    assert templates.render(attributes, ends, "zh", 64) == "右手向上移到面部；左手停在胸前；嘴张开"
    assert templates.render(attributes, {"right_hand": False, "left_hand": True}, "en", 64) == \
        "right hand moves up at the face; left hand holds at the chest; mouth open"
    # the budget drops the last clauses first, then cuts
    assert templates.render(attributes, ends, "en", 14) == "right hand moves up to the face; left hand holds at the chest"
    assert templates.render(attributes, ends, "en", 12) == "right hand moves up to the face"
    assert templates.render(attributes, ends, "en", 4) == "right hand moves up"
    assert templates.render(attributes, ends, "zh", 15) == "右手向上移到面部；左手停在胸前"
    assert templates.render(attributes, ends, "zh", 14) == "右手向上移到面部"
    assert templates.count_units("右手向上 移到", "zh") == 6 and templates.count_units("a b;  c", "en") == 3


@pytest.mark.parametrize("language, max_tokens", [("en", 10), ("zh", 12), ("en", 64)])
def test_every_text_fits_the_budget(language, max_tokens):
    rng = np.random.default_rng(0)
    track = np.cumsum(rng.normal(0.0, 0.15, size=(60, 2)), axis=0) + [-0.5, 0.5]
    segments = describer(language=language, max_tokens=max_tokens).describe(*signer(60, right=track, left=-track))
    assert len(segments) > 3
    assert all(0 < templates.count_units(s["text"], language) <= max_tokens for s in segments)


def test_same_input_same_output_and_float_types_do_not_matter():
    keypoints, scores = signer(40, right=np.array([-0.5, 1.0]) + np.sin(np.arange(40) / 3.0)[:, None] * [0.3, 0.6])
    one = describer().describe(keypoints, scores)
    assert one == describer().describe(keypoints.copy(), scores.copy())
    assert one == describer().describe(keypoints.astype(np.float64), scores.astype(np.float64))


def test_settings_defaults_and_bad_values():
    s = rules_settings("CSL_Daily")
    assert s == {"describer": "rules", "version": rules.RULES_VERSION, "language": "zh",
                 "frame_size": [512, 512], "fps": 25.0, "max_tokens": 64, "clauses": "all"}
    assert rules_settings("How2Sign")["language"] == "en" and rules_settings("How2Sign")["frame_size"] == [1280, 720]
    with pytest.raises(InputError, match="--frame_size"):
        rules_settings("WLASL", frame_size=(0, 480))
    with pytest.raises(InputError, match="--fps"):
        rules_settings("WLASL", fps=0)
    with pytest.raises(InputError, match="--desc_max_tokens"):
        rules_settings("WLASL", max_tokens=0)
    with pytest.raises(InputError, match="--rules_clauses nose: expected one of all, face, hands"):
        rules_settings("WLASL", clauses="nose")
    warned = []
    d = rules.rules_describer_from_settings({**s, "version": "0.old"}, warn=warned.append)
    assert d.settings["version"] == rules.RULES_VERSION and "version 0.old" in warned[0]


def test_rules_clauses_keep_the_face_or_the_hands():
    attributes = rules.absent_attributes()
    attributes["right_hand"].update(location="face", movement="up", speed="normal", path="straight")
    attributes["left_hand"].update(location="chest", movement="hold", handshape="closed")
    attributes.update(mouth="open", mouth_corners="up", eyebrows="raised", head={"movement": "nod", "tilt": "none"})
    ends = {"right_hand": True, "left_hand": True}
    assert templates.render(attributes, ends, "en", 64, "all") == templates.render(attributes, ends, "en", 64) == (
        "right hand moves up to the face; left hand holds at the chest; mouth open; mouth corners up; "
        "eyebrows raised; head nods; left hand seems closed")
    assert templates.render(attributes, ends, "en", 64, "face") == \
        "mouth open; mouth corners up; eyebrows raised; head nods"
    assert templates.render(attributes, ends, "zh", 64, "face") == "嘴张开；嘴角上扬；眉毛上扬；点头"
    assert templates.render(attributes, ends, "en", 64, "hands") == \
        "right hand moves up to the face; left hand holds at the chest; left hand seems closed"
    attributes.update(mouth="closed", mouth_corners="neutral", eyebrows="neutral", head={"movement": "still"})
    assert templates.render(attributes, ends, "en", 64, "face") == ""  # a resting face: no text


def test_face_clauses_describe_only_where_the_face_moves_and_files_record_the_choice():
    keypoints, scores = signer(30)
    keypoints[10:22, 71:91] = np.array([0.5, 0.4]) + 0.1 * OPEN_MOUTH  # the mouth opens at frames 10-21
    every = describer().describe(keypoints, scores)
    face = describer(clauses="face").describe(keypoints, scores)
    assert [(s["start"], s["end"]) for s in face] == [(s["start"], s["end"]) for s in every]  # same segments
    assert [s["attributes"] for s in face] == [s["attributes"] for s in every]
    said = {i for s in face if s["text"] for i in range(s["start"], s["end"])}
    assert said == set(range(10, 22)) and {s["text"] for s in face if s["text"]} == {"mouth open"}
    assert "clauses" not in describer().generator()["parameters"]  # files of the default stay up to date
    assert describer(clauses="face").generator()["parameters"]["clauses"] == "face"
