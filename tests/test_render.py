"""`signfuse render`: the skeleton lands on the known pixels of a lossless video, one output frame
per pose frame, and what the model saw (sampled frames, descriptions, gate, crop boxes) is the
prediction's own."""
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import one_error_line, write_pickle
from seeing import FAST, decode, signfuse, tiny_checkpoints, write_rgb_video
from signfuse import cli
from signfuse.config import ModelConfig
from signfuse.data.hand_crops import RGBSettings, load_hand_crops
from signfuse.data.pose import load_pose
from signfuse.data.sampler import sample_frames
from signfuse.demo.synthetic_video import render_frames
from signfuse.inference import predict, render
from signfuse.models.uni_sign import build_model
from signfuse.training import model_setup

W, H = 160, 120  # the video; render scales it by 3 (to 480 x 360)
SCALE = 3
# confident points: (index, x, y) as fractions of (W, H) in frame 0 (frame k: x + 0.01 k); two pairs
# are linked in the COCO-WholeBody skeleton (91-92 left hand, 119-120 right hand), the others not
CONFIDENT = [(0, 0.25, 0.25), (10, 0.6, 0.5), (40, 0.5, 0.2), (91, 0.15, 0.6), (92, 0.15, 0.8),
             (119, 0.85, 0.6), (120, 0.85, 0.8)]


def known_pose(frames: int, seed: int = 0) -> dict:
    """One person; the CONFIDENT points score 0.9, every other point 0.1 at a random place."""
    rng = np.random.default_rng(seed)
    keypoints = rng.uniform(0.05, 0.95, (frames, 1, 133, 2)).astype(np.float32)
    scores = np.full((frames, 1, 133), 0.1, np.float32)
    for k in range(frames):
        for i, x, y in CONFIDENT:
            keypoints[k, 0, i] = (x + 0.01 * k, y)
            scores[k, 0, i] = 0.9
    return {"keypoints": list(keypoints), "scores": list(scores)}


def noise_video(path, frames: int):
    """A lossless video of (frames, H, W, 3) seeded noise; returns (path, the frames)."""
    pictures = np.random.default_rng(1).integers(0, 120, (frames, H, W, 3), dtype=np.uint8)
    return write_rgb_video(path, pictures), pictures


def near_segment(points: np.ndarray, a: np.ndarray, b: np.ndarray, distance: float) -> np.ndarray:
    """(P,) bool: points (P, 2) within ``distance`` of the segment a-b."""
    ab = b - a
    t = np.clip(((points - a) @ ab) / max(ab @ ab, 1e-9), 0, 1)  # (P,)
    return np.linalg.norm(points - (a + t[:, None] * ab), axis=1) <= distance


def test_skeleton_on_the_known_pixels_of_a_lossless_video(tmp_path, capsys):
    pose = write_pickle(tmp_path / "v.pkl", known_pose(6))
    video, pictures = noise_video(tmp_path / "v.mp4", 9)  # more video frames than pose frames
    out = tmp_path / "out.mp4"
    status, stdout, err = signfuse(capsys, "render", "--video", video, "--pose", pose, "--out", out, "--lossless")
    assert status == 0, err
    summary = json.loads(stdout)
    assert summary["scale"] == SCALE and summary["frames"] == 6
    frames = decode(out)
    assert len(frames) == 6  # one per pose frame, not per video frame
    _, colours = render.skeleton()
    radius = max(2, W * SCALE // 160)
    for k, frame in enumerate(frames):
        picture = frame[:H * SCALE, :W * SCALE]  # (360, 480, 3)
        source = np.repeat(np.repeat(pictures[k], SCALE, axis=0), SCALE, axis=1)
        xy = {i: np.floor(np.array([(x + 0.01 * k) * W * SCALE, y * H * SCALE]) + 0.5) for i, x, y in CONFIDENT}
        for i, (x, y) in xy.items():  # every confident point: its part's colour at its pixel
            assert picture[int(y), int(x)].tolist() == colours[i].tolist(), (k, i)
        for a, b in ((91, 92), (119, 120)):  # the linked pairs: the hand's colour half-way
            mid = np.floor((xy[a] + xy[b]) / 2).astype(int)
            assert picture[mid[1], mid[0]].tolist() == colours[a].tolist()
        assert (colours[91] != colours[119]).any() and (colours[40] != colours[91]).any()  # hands, face apart
        # nothing drawn elsewhere: every changed pixel is on a confident point or a linked pair
        changed = np.argwhere((picture != source).any(-1))[:, ::-1].astype(float)  # (P, 2) x, y
        near = np.zeros(len(changed), bool)
        for x, y in xy.values():
            near |= np.abs(changed - (x, y)).max(axis=1) <= radius + 1
        for a, b in ((91, 92), (119, 120)):
            near |= near_segment(changed, xy[a], xy[b], radius)
        assert len(changed) > 0 and near.all(), changed[~near][:5]


def test_frame_count_and_bad_inputs(tmp_path, capsys):
    pose = write_pickle(tmp_path / "p.pkl", known_pose(7))
    out = tmp_path / "plain.mp4"
    status, stdout, err = signfuse(capsys, "render", "--pose", pose, "--out", out, "--gif", "--lossless")
    assert status == 0, err
    assert len(decode(out)) == 7 and len(decode(tmp_path / "plain.gif")) == 7
    frame = decode(out)[0]
    assert json.loads(stdout)["size"] == [frame.shape[1], frame.shape[0]] == [512, 512 + frame.shape[0] - 512]
    # plain background where nothing is drawn (the pose file records no frame size: 512 x 512)
    assert frame[5, 5].tolist() == list(render.BACKGROUND)
    # --video alone: the pose file translate keeps next to the video (<stem>.pose.pkl)
    video, _ = noise_video(tmp_path / "v.mp4", 8)
    write_pickle(tmp_path / "v.pose.pkl", known_pose(7))
    status, stdout, err = signfuse(capsys, "render", "--video", video, "--out", tmp_path / "v_seen.mp4")
    assert status == 0 and json.loads(stdout)["frames"] == 7 and len(decode(tmp_path / "v_seen.mp4")) == 7, err
    short, _ = noise_video(tmp_path / "short.mp4", 5)
    status, stdout, err = signfuse(capsys, "render", "--video", short, "--pose", pose, "--out", tmp_path / "x.mp4")
    assert status == 2 and stdout == "" and "fewer than its pose file's 7" in one_error_line(err, short)
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"neither a pickle nor a video")
    status, _, err = signfuse(capsys, "render", "--pose", bad, "--out", tmp_path / "y.mp4")
    assert status == 2 and one_error_line(err, bad)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    return tiny_checkpoints(tmp_path_factory.mktemp("ckpts"))


def test_what_the_model_saw(ckpts, tmp_path, capsys):
    """A gated checkpoint with a description file, 12 frames of which 6 are sampled: the translation
    is predict's, "SAMPLED" is written on exactly the sampled frames, the gate bar is as long as the
    gate the model computed for that frame."""
    pose = write_pickle(tmp_path / "v.pkl", {**known_pose(12), "extraction": {"frame_size": [W, H], "fps": 25.0}})
    description = tmp_path / "v.json"
    description.write_text(json.dumps({"0": "right hand moves up", "6": "hand touches chin", "11": "hands rest"}))
    flags = ["--finetune", ckpts.gated, "--description", description, "--max_length", "6", *FAST]
    out = tmp_path / "out.mp4"
    status, stdout, err = signfuse(capsys, "render", "--pose", pose, "--out", out, "--lossless", *flags)
    assert status == 0, err
    status, expected, err2 = signfuse(capsys, "predict", "--pose", pose, *flags)
    assert status == 0 and json.loads(stdout)["translation"] + "\n" == expected, err2
    # what the model saw, from the prediction's details
    argv = ["predict", "--pose", str(pose), *map(str, flags)]
    parser = cli.build_parser()
    args = parser.parse_args(argv)
    args.given_flags = cli.given_flags(parser, argv)
    details = {}
    predict.predict_file(args, details=details)
    seen = details["seen"]
    assert seen["frame_indices"] == sample_frames(12, 6, False, None, 0).tolist()
    summary = details["gates"]["text"]
    assert summary["mean"] == pytest.approx(np.mean(seen["gate"]), abs=1e-6)
    assert (summary["min"], summary["max"]) == pytest.approx((min(seen["gate"]), max(seen["gate"])), abs=1e-6)
    assert summary["described_share"] == pytest.approx(np.mean(seen["has_description"]))
    aligned = dict(zip(seen["frame_indices"], seen["aligned"], strict=True))
    assert aligned[0] == [("right hand moves up", 1.0)] and aligned[11] == [("hands rest", 1.0)]
    frames = decode(out)
    assert len(frames) == 12
    top = H * SCALE  # the panel under the picture
    for k, frame in enumerate(frames):
        head = frame[top:top + 18, 240:]  # the right half of the panel's first line (the timeline under it)
        assert (head == render.SAMPLED).all(-1).any() == (k in seen["frame_indices"]), k
        # the gate bar: the gate of frame k (else of the last sampled frame before it)
        position = max(i for i, f in enumerate(seen["frame_indices"]) if f <= k)
        green = np.argwhere((frame[top:] == (80, 200, 120)).all(-1))[:, 1]  # columns of the bar's fill
        x0, x1 = green.min(), frame.shape[1] - 8
        assert green.max() - x0 == int((x1 - x0) * seen["gate"][position]), k


def test_crop_boxes_of_an_rgb_pose_model(tmp_path, capsys):
    """An RGB-pose checkpoint: the crop boxes of the prediction are drawn on exactly the frames they
    were cut from, where load_hand_crops puts them."""
    data = known_pose(20, seed=2)
    rng = np.random.default_rng(3)
    for k in range(20):  # both hands confident, around (0.3, 0.5) and (0.7, 0.5)
        for start, cx in ((91, 0.3), (112, 0.7)):
            data["keypoints"][k][0, start:start + 21] = rng.normal((cx, 0.5), 0.04, (21, 2))
            data["scores"][k][0, start:start + 21] = rng.uniform(0.5, 1.0, 21)
    pose_file = write_pickle(tmp_path / "v.pkl", data)
    pose = load_pose(pose_file)
    video = write_rgb_video(tmp_path / "v.mp4", render_frames(pose.keypoints, (W, H)))
    model = build_model(ModelConfig(dataset="Synthetic", rgb_support=True, rgb_gate_init="small"), "tiny", seed=0)
    ckpt = tmp_path / "rgb.pth"
    torch.save(model_setup.checkpoint_dict(model.eval(), model.cfg, SimpleNamespace(mt5_model="tiny", dataset="Synthetic",
                                                                            rgb_support=True), epoch=1), ckpt)
    out = tmp_path / "out.mp4"
    status, stdout, err = signfuse(capsys, "render", "--video", video, "--pose", pose_file, "--finetune", ckpt,
                                   "--out", out, "--lossless", *FAST)
    assert status == 0, err
    boxes = {}
    load_hand_crops(pose, sample_frames(20, 256, False, None, 0), video, RGBSettings(video_dir=str(tmp_path)),
                    train=False, rng=np.random.default_rng(0), keypoints=pose.exact_keypoints, boxes=boxes)
    assert set(boxes) == {"left", "right"}
    frames = decode(out)
    assert len(frames) == 20
    for hand, (crop_frames, hand_boxes) in boxes.items():
        colour = list(render.CROP_COLOURS[hand])
        cut = dict(zip(crop_frames.tolist(), hand_boxes.tolist(), strict=True))

        def drawn(frame, box, colour=colour):  # the box's four corners in the hand's colour
            x0, y0, x1, y1 = (v * SCALE for v in box)
            return all(frame[y, x].tolist() == colour for y, x in ((y0, x0), (y0, x1 - 1), (y1 - 1, x0),
                                                                     (y1 - 1, x1 - 1)))
        for k, frame in enumerate(frames):
            assert drawn(frame, cut.get(k, hand_boxes[0])) == (k in cut), (hand, k)
    assert 0 < len(cut) < 20
