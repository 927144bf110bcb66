"""`signfuse extract-pose`: videos -> Uni-Sign's pose files, with rtmlib's real pre- and post-processing.

Nothing is downloaded: the tests build tiny ONNX models with the signatures rtmlib expects, whose
outputs are computed from the image:
- the detector (YOLOX/RTMDet end2end: input (1, 3, H, W) raw BGR pixels -> dets (1, N, 5),
  labels (1, N)) returns, per colour channel 0 (blue) and 2 (red), the bounding box of the pixels
  brighter than 200 with score 1 (0 when there are none: filtered out by rtmlib);
- the pose model (RTMPose/RTMW SimCC: input (1, 3, H, W) -> simcc_x (1, 133, 2W), simcc_y (1, 133,
  2H)) puts keypoint k at the brightest column / row of the green channel of its crop, plus a
  fixed offset ``OFFSETS[k]`` (input pixels; keypoint 0 has none).
A "person" in the synthetic videos is a blue or red rectangle (what the detector finds) with a
green marker (where its keypoint 0 lands). Videos are lossless (libx264rgb, qp 0): the decoded
frames are the drawn ones.
"""
import pickle
from pathlib import Path

import numpy as np
import pytest

import av
import onnx
from onnx import TensorProto, helper, numpy_helper

from conftest import one_error_line
from signfuse import cli
from signfuse.inference import pose_extraction
from signfuse.data.pose import load_pose
from signfuse.inference.pose_extraction import CARRIED, DETECTED, WHOLE_FRAME, Person, box_iou, choose_signer, person_score

DET_SIZE_HW = (96, 128)   # detector input (H, W)
POSE_SIZE_WH = (48, 64)   # pose model input (W, H)
BLUE, RED = 0, 2          # BGR channels of the two persons
BACKGROUND = 20


# ----------------------------------------------------------------------------- tiny ONNX models

def _const(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def _save(nodes, inits, inputs, outputs, path):
    model = helper.make_model(helper.make_graph(nodes, Path(path).stem, inputs, outputs, inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return Path(path)


def make_detector(path, size_hw=DET_SIZE_HW, channels=(BLUE, RED), threshold=200.0):
    """dets[0, i] = (x0, y0, x1, y1, score) of the pixels of channel ``channels[i]`` above ``threshold``."""
    nodes, inits, dets = [], [_const("thr", np.float32(threshold)), _const("one", np.float32(1.0)),
                              _const("axis1", np.array([1], np.int64))], []
    for c in channels:
        p = f"c{c}_"
        inits += [_const(p + "from", np.array([c], np.int64)), _const(p + "to", np.array([c + 1], np.int64))]
        nodes += [helper.make_node("Slice", ["input", p + "from", p + "to", "axis1"], [p + "ch"]),  # (1, 1, H, W)
                  helper.make_node("Greater", [p + "ch", "thr"], [p + "gt"]),
                  helper.make_node("Cast", [p + "gt"], [p + "mask"], to=TensorProto.FLOAT),
                  helper.make_node("ReduceMax", [p + "mask"], [p + "cols"], axes=[2], keepdims=0),  # (1, 1, W)
                  helper.make_node("ReduceMax", [p + "mask"], [p + "rows"], axes=[3], keepdims=0),  # (1, 1, H)
                  helper.make_node("ReduceMax", [p + "cols"], [p + "score"], axes=[2], keepdims=1)]  # (1, 1, 1)
        ends = {}
        for profile in ("cols", "rows"):
            for last in (0, 1):  # first and last index above the threshold
                o = f"{p}{profile}{last}"
                nodes += [helper.make_node("ArgMax", [p + profile], [o + "i"], axis=2, keepdims=1,
                                           select_last_index=last),
                          helper.make_node("Cast", [o + "i"], [o + "f"], to=TensorProto.FLOAT)]  # (1, 1, 1)
                if last:
                    nodes.append(helper.make_node("Add", [o + "f", "one"], [o + "end"]))
                ends[profile, last] = o + ("end" if last else "f")
        nodes.append(helper.make_node("Concat", [ends["cols", 0], ends["rows", 0], ends["cols", 1], ends["rows", 1],
                                                 p + "score"], [p + "det"], axis=2))  # (1, 1, 5)
        dets.append(p + "det")
    nodes += [helper.make_node("Concat", dets, ["dets"], axis=1),  # (1, N, 5)
              helper.make_node("Identity", ["labels_const"], ["labels"])]
    inits.append(_const("labels_const", np.zeros((1, len(channels)), np.int64)))
    h, w = size_hw
    return _save(nodes, inits, [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, h, w])],
                 [helper.make_tensor_value_info("dets", TensorProto.FLOAT, [1, len(channels), 5]),
                  helper.make_tensor_value_info("labels", TensorProto.INT64, [1, len(channels)])], path)


OFFSETS = np.random.default_rng(0).integers(-4, 5, size=(133, 2))  # input pixels, per keypoint
OFFSETS[0] = 0


def make_pose_model(path, size_wh=POSE_SIZE_WH, channel=1):
    """SimCC (split ratio 2): keypoint k at the brightest column / row of ``channel`` plus OFFSETS[k]."""
    nodes = [helper.make_node("Slice", ["input", "from", "to", "axis1"], ["ch"])]  # (1, 1, H, W)
    inits = [_const("from", np.array([channel], np.int64)), _const("to", np.array([channel + 1], np.int64)),
             _const("axis1", np.array([1], np.int64)), _const("axis3", np.array([3], np.int64))]
    outputs = []
    for name, axis, n, offset in (("simcc_x", 2, size_wh[0], OFFSETS[:, 0]), ("simcc_y", 3, size_wh[1], OFFSETS[:, 1])):
        shift = np.clip(np.arange(2 * n)[None, :] - 2 * offset[:, None], 0, 2 * n - 1)  # (133, 2n)
        inits += [_const(name + "_shift", shift.astype(np.int64)),
                  _const(name + "_flat", np.array([1, 1, 2 * n], np.int64)),
                  _const(name + "_out", np.array([1, len(offset), 2 * n], np.int64))]
        nodes += [helper.make_node("ReduceMax", ["ch"], [name + "_p"], axes=[axis], keepdims=0),  # (1, 1, n)
                  helper.make_node("Unsqueeze", [name + "_p", "axis3"], [name + "_u"]),  # (1, 1, n, 1)
                  helper.make_node("Concat", [name + "_u", name + "_u"], [name + "_2"], axis=3),  # (1, 1, n, 2)
                  helper.make_node("Reshape", [name + "_2", name + "_flat"], [name + "_up"]),  # (1, 1, 2n)
                  helper.make_node("Gather", [name + "_up", name + "_shift"], [name + "_g"], axis=2),  # (1, 1, 133, 2n)
                  helper.make_node("Reshape", [name + "_g", name + "_out"], [name])]  # (1, 133, 2n)
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, len(offset), 2 * n]))
    w, h = size_wh
    return _save(nodes, inits, [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, h, w])], outputs, path)


# ----------------------------------------------------------------------------- synthetic videos

def draw(width, height, persons):
    """A BGR frame; persons: (channel or None, box (x0, y0, x1, y1), marker (x, y))."""
    img = np.full((height, width, 3), BACKGROUND, np.uint8)
    for channel, box, _ in persons:
        if channel is not None:
            img[box[1]:box[3], box[0]:box[2], channel] = 255
    for _, _, (x, y) in persons:
        img[y - 1:y + 2, x - 1:x + 2] = (0, 255, 0)  # 3x3 green marker centred on (x, y)
    return img


def write_video(path, frames_bgr, fps=25):
    """Lossless H.264 (libx264rgb, qp 0): every decoded frame equals the written one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264rgb", rate=fps, options={"qp": "0", "preset": "ultrafast"})
        stream.height, stream.width = frames_bgr[0].shape[:2]
        stream.pix_fmt = "rgb24"
        for img in frames_bgr:
            rgb = np.ascontiguousarray(img[..., ::-1])
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())
    return path


W, H = 160, 120  # landscape: x / W and y / H differ


def one_person_frames(n=8):
    """One signer (blue) whose marker moves 4 px right per frame: frame k's keypoint 0 is at x = 70 + 4k."""
    return [draw(W, H, [(BLUE, (50, 20, 120, 110), (70 + 4 * k, 60))]) for k in range(n)], \
        [(70 + 4 * k, 60) for k in range(n)]


def two_person_frames():
    """Signer A (blue, central, large); B (red, small, at the left) grows larger than A in frames 3-4;
    in frame 5 A is not detected (no blue body, its marker stays)."""
    frames, markers = [], []
    for k in range(8):
        a_box = (60, 15, 120, 115)
        b_box = (2, 10, 30, 45) if k not in (3, 4) else (2, 2, 58, 118)
        a_marker, b_marker = (85 + k, 60), (15, 25)
        frames.append(draw(W, H, [(None if k == 5 else BLUE, a_box, a_marker), (RED, b_box, b_marker)]))
        markers.append(a_marker)
    return frames, markers


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx")
    return make_detector(root / "det.onnx"), make_pose_model(root / "pose.onnx")


def wholebody(models):
    """rtmlib's own Wholebody on the same models (what Uni-Sign's demo calls per frame)."""
    from rtmlib import Wholebody
    return Wholebody(det=str(models[0]), det_input_size=DET_SIZE_HW, pose=str(models[1]), pose_input_size=POSE_SIZE_WH)


def run(capsys, monkeypatch, *argv):
    """(exit status, stdout, stderr) of `signfuse extract-pose ...` through signfuse.cli.main."""
    try:
        status = cli.main(["extract-pose", *map(str, argv)])
    except SystemExit as e:
        status = e.code
    out, err = capsys.readouterr()
    return status, out, err


def read(path):
    with open(path, "rb") as f:
        return pickle.load(f)


def count_frames(path):
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


# ----------------------------------------------------------------------------- the signer (no model)

def test_person_score_and_iou_by_hand():
    # 100x100 frame, box 50x50 at the centre: size sqrt(2500 / 10000) = 0.5, centrality 1, confidence 0.8
    assert person_score(np.array([25., 25., 75., 75.]), np.full(133, 0.8, np.float32), 100, 100) == pytest.approx(0.4)
    # same box moved right by 25 (centre at distance 25, half diagonal 70.71): 0.5 * (1 - 25 / 70.71) * 0.8;
    # scores above 1 count as 1, below 0 as 0 (half of each: confidence 0.5)
    scores = np.array([3.0, -1.0] * 66 + [3.0], np.float32)
    expected = 0.5 * (1 - 25 / np.hypot(100, 100) * 2) * (67 / 133)
    assert person_score(np.array([50., 25., 100., 75.]), scores, 100, 100) == pytest.approx(expected)
    # a box half outside the frame counts only its part inside for its size
    assert person_score(np.array([-50., 0., 50., 100.]), np.ones(133), 100, 100) == \
        pytest.approx(np.sqrt(0.5) * (1 - 50 / np.hypot(100, 100) * 2))
    assert box_iou(np.array([0., 0., 10., 10.]), np.array([5., 0., 15., 10.])) == pytest.approx(50 / 150)
    assert box_iou(np.array([0., 0., 10., 10.]), np.array([20., 20., 30., 30.])) == 0.0


def _person(box, score):
    return Person(np.array(box, float), np.zeros((133, 2)), np.ones(133, np.float32), score)


def test_signer_is_the_best_track_not_the_best_frame():
    # A: steady 0.5 per frame in 6 frames (3.0); B: 0.9 in 3 frames (2.7), jumping to another place in
    # frame 4 (IoU 0 with its previous box: a new track). Per-frame best would pick B in frames 0-2.
    a, b = [0, 0, 10, 10], [50, 50, 60, 60]
    persons = [[_person(a, 0.5), _person(b, 0.9)] for _ in range(3)] + [[_person(a, 0.5)]] + \
              [[_person(a, 0.5), _person([80, 0, 90, 10], 0.9)] for _ in range(2)]
    signer, tracks = choose_signer(persons)
    assert len(tracks) == 3 and signer.total == pytest.approx(3.0)
    assert signer.frames == {t: 0 for t in range(6)}
    assert choose_signer([[], []]) == (None, [])


# ----------------------------------------------------------------------------- extract-pose

def test_pose_file_is_unisign_demo_output(models, tmp_path, capsys, monkeypatch):
    frames, markers = one_person_frames()
    video = write_video(tmp_path / "videos" / "S000001_P0000_T00.mp4", frames)
    status, out, err = run(capsys, monkeypatch, "--videos", video, "--out", tmp_path / "pose",
                           "--det", models[0], "--pose", models[1])
    assert status == 0, err
    assert out.strip() == "extract-pose: 1 written, 0 skipped (pose file already there; --overwrite to redo), 0 failed"
    target = tmp_path / "pose" / "S000001_P0000_T00.pkl"
    data = read(target)
    # Uni-Sign's structure and dtypes, one entry per decoded frame, no start/end
    assert set(data) == {"keypoints", "scores", "person_selection", "extraction"}
    assert type(data["keypoints"]) is list and type(data["scores"]) is list
    assert len(data["keypoints"]) == len(data["scores"]) == count_frames(video) == len(frames)
    assert np.array(data["keypoints"]).shape == (8, 1, 133, 2) and np.array(data["scores"]).shape == (8, 1, 133)
    for kp, sc in zip(data["keypoints"], data["scores"], strict=True):
        assert type(kp) is np.ndarray and kp.dtype == np.float64 and kp.shape == (1, 133, 2)
        assert type(sc) is np.ndarray and sc.dtype == np.float32 and sc.shape == (1, 133)
    # frame k is the k-th frame, divided by its (W, H): what rtmlib's Wholebody gives on that frame (BGR),
    # divided the way Uni-Sign's demo divides it
    body = wholebody(models)
    for k, frame in enumerate(frames):
        keypoints, scores = body(frame)
        np.testing.assert_array_equal(data["keypoints"][k], keypoints / np.array([W, H])[None, None])
        np.testing.assert_array_equal(data["scores"][k], scores)
    # the RGB branch's reader numbers the frames the same way: its frame k is the picture of pose frame k
    from signfuse.data.video import count_frames as rgb_count, read_frames
    assert rgb_count(video) == len(frames)
    np.testing.assert_array_equal(read_frames(video, np.arange(len(frames)))[..., ::-1], np.stack(frames))
    # keypoint 0 lands on the marker (x / W, y / H; within the pose input's pixel, 1.7 px here)
    found = np.array([kp[0, 0] * (W, H) for kp in data["keypoints"]])  # (N, 2) pixels
    np.testing.assert_allclose(found, np.array(markers, float), atol=1.5)
    assert np.all(np.diff(found[:, 0]) > 2)  # in frame order
    # the metadata
    selection, extraction = data["person_selection"], data["extraction"]
    assert selection["source"] == [DETECTED] * 8 and selection["persons"] == [1] * 8 and selection["tracks"] == 1
    assert extraction["frames"] == 8 and extraction["frame_size"] == [W, H] and extraction["channel_order"] == "BGR"
    assert extraction["det_input_size_hw"] == list(DET_SIZE_HW)
    assert extraction["pose_input_size_wh"] == list(POSE_SIZE_WH)
    assert (extraction["det"], extraction["pose"]) == ("det.onnx", "pose.onnx")
    # signfuse's loader (check-data, training) takes it with the restricted unpickler
    record = load_pose(target)
    assert (record.start, record.end) == (0, 8)
    np.testing.assert_array_equal(record.keypoints, np.concatenate(data["keypoints"])[:, :, :].astype(np.float32))
    assert list(tmp_path.joinpath("pose").iterdir()) == [target]  # no temporary file left


def test_the_signer_is_kept_across_frames(models, tmp_path, capsys, monkeypatch):
    frames, markers = two_person_frames()
    video = write_video(tmp_path / "two.mp4", frames)
    status, _, err = run(capsys, monkeypatch, "--videos", video, "--out", tmp_path, "--det", models[0],
                         "--pose", models[1])
    assert status == 0, err
    data = read(tmp_path / "two.pkl")
    found = np.array([kp[0, 0] * (W, H) for kp in data["keypoints"]])
    np.testing.assert_allclose(found, np.array(markers, float), atol=1.5)  # A in every frame
    selection = data["person_selection"]
    assert selection["persons"] == [2, 2, 2, 2, 2, 1, 2, 2]
    assert selection["source"] == [DETECTED] * 5 + [CARRIED] + [DETECTED] * 2
    # in frames 3-4 B's box is the largest: the largest-box rule of Uni-Sign's rtmlib would take B there
    body = wholebody(models)
    boxes = body.det_model(frames[3])
    largest = boxes[np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))]
    assert largest[0] < 10  # B's box (at the left edge)


def test_nobody_detected_gives_the_whole_frame(models, tmp_path, capsys, monkeypatch):
    frames = [draw(W, H, [(None, (0, 0, 0, 0), (40 + 3 * k, 30))]) for k in range(4)]
    video = write_video(tmp_path / "empty.mp4", frames)
    status, _, err = run(capsys, monkeypatch, "--videos", video, "--out", tmp_path, "--det", models[0],
                         "--pose", models[1])
    assert status == 0, err
    data = read(tmp_path / "empty.pkl")
    assert data["person_selection"]["source"] == [WHOLE_FRAME] * 4 and data["person_selection"]["tracks"] == 0
    body = wholebody(models)
    for k, frame in enumerate(frames):  # rtmlib without a box: the pose model on the whole frame
        keypoints, scores = body(frame)
        np.testing.assert_array_equal(data["keypoints"][k], keypoints / np.array([W, H])[None, None])
        np.testing.assert_array_equal(data["scores"][k], scores)


def test_folders_skip_overwrite_workers_and_failures(models, tmp_path, capsys, monkeypatch):
    frames, _ = one_person_frames(4)
    videos = tmp_path / "rgb_format"
    write_video(videos / "a.mp4", frames)
    write_video(videos / "test" / "b.mp4", frames[::-1])
    (videos / "broken.mp4").write_bytes(b"not a video" * 50)
    (videos / "notes.txt").write_text("not a video file: ignored")
    out = tmp_path / "pose_format"
    flags = ["--videos", videos, "--out", out, "--det", models[0], "--pose", models[1]]
    status, stdout, _ = run(capsys, monkeypatch, *flags)
    assert status == 1
    lines = stdout.strip().splitlines()
    assert lines[0] == "extract-pose: 2 written, 0 skipped (pose file already there; --overwrite to redo), 1 failed"
    assert len(lines) == 2 and lines[1].startswith(f"  failed: {videos / 'broken.mp4'}: cannot open the video")
    a, b = out / "a.pkl", out / "test" / "b.pkl"  # the sub-folder is mirrored
    assert sorted(p for p in out.rglob("*") if p.is_file()) == [a, b]
    np.testing.assert_array_equal(read(b)["keypoints"], read(a)["keypoints"][::-1])
    stamps = {p: p.stat().st_mtime_ns for p in (a, b)}
    status, stdout, _ = run(capsys, monkeypatch, *flags)
    assert status == 1 and stdout.startswith("extract-pose: 0 written, 2 skipped")
    assert {p: p.stat().st_mtime_ns for p in (a, b)} == stamps
    first = {p: p.read_bytes() for p in (a, b)}
    a.write_bytes(b"stale")
    status, stdout, _ = run(capsys, monkeypatch, *flags, "--overwrite", "--workers", "2")
    assert status == 1 and stdout.startswith("extract-pose: 2 written, 0 skipped")
    assert {p: p.read_bytes() for p in (a, b)} == first  # the same bytes with 2 workers


def test_bad_inputs_stop_with_one_line(models, tmp_path, capsys, monkeypatch):
    frames, _ = one_person_frames(2)
    video = write_video(tmp_path / "v.mp4", frames)
    missing = tmp_path / "nowhere"
    status, _, err = run(capsys, monkeypatch, "--videos", missing, "--out", tmp_path / "o", "--det", models[0],
                         "--pose", models[1])
    assert status == 2 and one_error_line(err, missing)
    status, _, err = run(capsys, monkeypatch, "--videos", video, "--out", tmp_path / "o", "--det", missing,
                         "--pose", models[1])
    assert status == 2 and "file not found (--det)" in one_error_line(err, missing)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not onnx")
    status, _, err = run(capsys, monkeypatch, "--videos", video, "--out", tmp_path / "o", "--det", models[0],
                         "--pose", garbage)
    assert status == 2 and "onnxruntime cannot load" in one_error_line(err, garbage)
    monkeypatch.setattr("onnxruntime.get_available_providers", lambda: ["CPUExecutionProvider"])
    status, _, err = run(capsys, monkeypatch, "--videos", video, "--out", tmp_path / "o", "--det", models[0],
                         "--pose", models[1], "--device", "cuda")
    assert status == 2 and "no CUDA support" in one_error_line(err, "--device cuda")
    assert not (tmp_path / "o").exists()


def test_offline_download_is_one_line(tmp_path, capsys, monkeypatch):
    """Without --det/--pose, rtmlib downloads its models; offline that is one line saying what to do."""
    from urllib.error import URLError

    import rtmlib.tools.file as rtm_file

    def no_network(*args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "cache"))  # rtmlib's cache: empty
    monkeypatch.setattr(rtm_file, "urlopen", no_network)  # also its mirror fallback
    frames, _ = one_person_frames(2)
    video = write_video(tmp_path / "v.mp4", frames)
    status, out, err = run(capsys, monkeypatch, "--videos", video, "--out", tmp_path / "o", "--mode", "lightweight")
    assert status == 2 and out == ""
    lines = err.strip().splitlines()
    assert lines[0].startswith("extract-pose: downloading rtmlib's lightweight det model")
    assert one_error_line("\n".join(lines[1:]), "yolox_tiny", "Temporary failure in name resolution",
                          "--det FILE.onnx --pose FILE.onnx")


def test_rtmlib_missing_says_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "rtmlib", None)  # import rtmlib -> ImportError
    frames, _ = one_person_frames(2)
    video = write_video(tmp_path / "v.mp4", frames)
    status, _, err = run(capsys, monkeypatch, "--videos", video, "--out", tmp_path / "o")
    assert status == 2 and one_error_line(err, "rtmlib", "pip install 'signfuse[pose]'")


def test_pose_file_permissions_follow_the_umask(tmp_path):
    import os
    target = tmp_path / "p.pkl"
    pose_extraction.write_pose_file(target, {"keypoints": [], "scores": []})
    assert (target.stat().st_mode & 0o777) == 0o666 & ~pose_extraction.UMASK
    assert os.listdir(tmp_path) == ["p.pkl"] and read(target) == {"keypoints": [], "scores": []}
