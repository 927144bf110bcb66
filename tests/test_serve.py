"""`signfuse serve`: what the page's requests return (the same text as translate and predict),
untrusted uploads (size, duration, neither video nor pose file, planted pickles), the temporary
folder, and requests queueing for the one worker. The browser test is test_serve_browser.py."""
import json
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import TouchMarker, one_error_line, write_pickle
from seeing import FAST, post, running_server, signfuse, tiny_checkpoints
from test_pose_extraction import make_detector, make_pose_model, one_person_frames, write_video


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    ckpts = tiny_checkpoints(root)
    models = ["--det", make_detector(root / "det.onnx"), "--pose", make_pose_model(root / "pose.onnx")]
    frames, _ = one_person_frames(12)
    video = write_video(root / "videos" / "sign.mp4", frames)
    return SimpleNamespace(root=root, ckpts=ckpts, models=models, video=video,
                           server=["--finetune", ckpts.pose_only, ckpts.gated, *models, *FAST])


def translated(capsys, setup, ckpt) -> str:
    status, out, err = signfuse(capsys, "translate", setup.video, "--finetune", ckpt, *setup.models, *FAST)
    assert status == 0, err
    return out.rstrip("\n")


def test_video_and_pose_uploads_give_translate_and_predict(setup, capsys):
    expected = [translated(capsys, setup, c) for c in (setup.ckpts.pose_only, setup.ckpts.gated)]
    pose_file = setup.video.with_name("sign.pose.pkl")  # translate's cache: the extracted pose
    status, predicted, err = signfuse(capsys, "predict", "--finetune", setup.ckpts.gated, "--pose", pose_file, *FAST)
    assert status == 0, err
    with running_server(*setup.server) as (url, app):
        results = [post(f"{url}/api/translate", setup.video.read_bytes(), checkpoint=i, filename="sign.mp4")
                   for i in (0, 1)]
        for (status, result), text, name in zip(results, expected, ("pose_only.pth", "gated.pth"), strict=True):
            assert status == 200, result
            assert result["translation"] == text and result["checkpoint"] == name and result["kind"] == "video"
            assert result["frames"] == 12 and result["video"]
        assert results[0][1]["gate_plot"] is None and results[1][1]["gate_plot"]  # a pose-only model has no gate
        timeline = results[1][1]["timeline"]
        assert [f["frame"] for f in timeline] == list(range(12)) and all(f["gate"] is not None for f in timeline)
        status, result = post(f"{url}/api/translate", pose_file.read_bytes(), checkpoint=1, filename="sign.pkl")
        assert status == 200 and result["kind"] == "pose" and result["translation"] + "\n" == predicted
        assert list(app.state.temp_root.iterdir()) == []  # every request's folder removed after its response
        assert app.state.counts == {"waiting": 0, "served": 3}


def test_a_description_file_with_the_upload(setup, tmp_path, capsys):
    """The page's optional description file: what translate --description gives, its texts in the
    timeline; a bad one gets one message naming it."""
    description = tmp_path / "sign.json"
    description.write_text(json.dumps({"0": "right hand moves up", "6": "hand touches chin", "11": "hands rest"}))
    status, expected, err = signfuse(capsys, "translate", setup.video, "--finetune", setup.ckpts.gated,
                                     *setup.models, *FAST, "--description", description)
    assert status == 0, err
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    with running_server(*setup.server) as (url, app):
        body = description.read_bytes() + setup.video.read_bytes()
        status, result = post(f"{url}/api/translate", body, checkpoint=1, filename="sign.mp4",
                              description_bytes=len(description.read_bytes()), description_name="sign.json")
        assert status == 200 and result["translation"] + "\n" == expected, result
        texts = {f["frame"]: f["texts"] for f in result["timeline"]}
        assert texts[0] == [["right hand moves up", 1.0]] and texts[11] == [["hands rest", 1.0]]
        status, result = post(f"{url}/api/translate", bad.read_bytes() + setup.video.read_bytes(), checkpoint=1,
                              filename="sign.mp4", description_bytes=len(bad.read_bytes()), description_name="bad.json")
        assert status == 422 and result["error"].startswith("bad.json: ") and "\n" not in result["error"], result
        # the checkpoint's own describer is back for the next request (no description: every frame masked)
        status, result = post(f"{url}/api/translate", setup.video.read_bytes(), checkpoint=1, filename="sign.mp4")
        assert status == 200 and all(f["texts"] == [] for f in result["timeline"])
        assert list(app.state.temp_root.iterdir()) == []


def test_untrusted_uploads(setup, tmp_path):
    marker = tmp_path / "planted"
    planted = write_pickle(tmp_path / "planted.pkl", {"keypoints": TouchMarker(marker), "scores": []})
    pose_seconds = write_pickle(tmp_path / "long.pkl", {"keypoints": list(np.full((60, 1, 133, 2), 0.5, np.float32)),
                                                        "scores": list(np.ones((60, 1, 133), np.float32))})
    with running_server(*setup.server, "--max_upload_mb", "0.5", "--max_seconds", "2") as (url, app):
        cases = [  # (body, filename, checkpoint, status, words of the message)
            (b"GIF89a but not really" * 30, "cat.gif", 0, 422, "cat.gif: neither a video nor a pose file"),
            (b"", "empty.mp4", 0, 400, "empty.mp4: an empty file"),
            (b"\0" * 600_000, "big.mp4", 0, 413, "big.mp4: larger than this server's limit (0.5 MiB"),
            (setup.video.read_bytes(), "sign.mp4", 7, 400, "checkpoint 7: not one of this server's"),
            (planted.read_bytes(), "evil.pkl", 0, 422, "evil.pkl: refused to unpickle posix.system: pose and label files hold only"),
            (pose_seconds.read_bytes(), "long.pkl", 0, 422, "long.pkl: 2.4 s of poses, longer than this server's "
                                                             "limit (2 s"),
        ]
        for body, name, checkpoint, code, words in cases:
            status, result = post(f"{url}/api/translate", body, checkpoint=checkpoint, filename=name)
            assert status == code and words in result["error"], (name, status, result)
            assert "\n" not in result["error"] and str(app.state.temp_root) not in result["error"]
            assert "--trust_pickles" not in result["error"]
        assert not marker.exists()  # the planted call never ran: the restricted unpickler refused it
        assert list(app.state.temp_root.iterdir()) == []
    with running_server(*setup.server, "--max_seconds", "0.2") as (url, _):
        status, result = post(f"{url}/api/translate", setup.video.read_bytes(), filename="sign.mp4")
        assert status == 422 and "sign.mp4: a video of 0.5 s, longer than this server's limit (0.2 s" in result["error"]


class HeldTranslator:
    """Stands in for the model: each request waits until the test releases it, and the most that
    ever ran at once is recorded."""
    names = ["held.pth"]

    def __init__(self):
        self.running, self.most, self.lock, self.release = 0, 0, threading.Lock(), threading.Event()

    def translate(self, path, name, index, limits, description=None):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        assert self.release.wait(60)
        with self.lock:
            self.running -= 1
        return {"translation": path.read_bytes().decode()}


def test_requests_queue_for_the_one_worker(setup):
    """--max_queue 2: with the worker busy, one request runs, two wait, the other three are refused
    at once (server busy); the waiting ones are served in turn, one at a time."""
    translator = HeldTranslator()
    with running_server(*setup.server, "--max_queue", "2", translator=translator) as (url, app):
        answers = [None] * 6

        def client(i):
            answers[i] = post(f"{url}/api/translate", f"request {i}".encode(), filename=f"{i}.bin")
        threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        deadline = time.time() + 60
        while sum(a is not None for a in answers) < 3 or app.state.counts["waiting"] < 3:
            assert time.time() < deadline, (answers, app.state.counts)
            time.sleep(0.02)
        translator.release.set()
        for t in threads:
            t.join(60)
    assert translator.most == 1  # one at a time
    served = [i for i, (status, _) in enumerate(answers) if status == 200]
    busy = [i for i, (status, result) in enumerate(answers) if status == 503 and "server busy" in result["error"]]
    assert len(served) == 3 and len(busy) == 3 and sorted(served + busy) == list(range(6)), answers
    assert all(answers[i][1]["translation"] == f"request {i}" for i in served)


def test_missing_checkpoint_stops_before_serving(setup, tmp_path, capsys):
    missing = tmp_path / "none.pth"
    status, out, err = signfuse(capsys, "serve", "--finetune", setup.ckpts.pose_only, missing, "--port", "0")
    assert status == 2 and out == "" and one_error_line(err, missing, "checkpoint not found")
