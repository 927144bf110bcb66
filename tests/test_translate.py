"""`signfuse translate VIDEO --finetune CKPT`: video -> pose file -> the same text as `signfuse predict`.

The pose models are the tiny ONNX models of test_pose_extraction (rtmlib's real pre- and
post-processing run; nothing is downloaded); the checkpoint a tiny pose-only model trained a
few steps in this process (so that it generates words).
"""
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import one_error_line, pinned_batch, train_on
from signfuse import cli, pose_extraction, translate
from signfuse.config import ModelConfig
from signfuse.models.uni_sign import attach_text_source, build_model
from signfuse.training import run
from test_pose_extraction import BLUE, H, W, draw, make_detector, make_pose_model, one_person_frames, read, write_video

FAST = ["--mt5_model", "tiny", "--device", "cpu", "--num_beams", "1", "--max_new_tokens", "8"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("translate")
    det, pose = make_detector(root / "det.onnx"), make_pose_model(root / "pose.onnx")
    model = train_on(build_model(ModelConfig(dataset="Synthetic"), "tiny", seed=0), pinned_batch())
    ckpt = root / "pose_only.pth"
    torch.save(run.checkpoint_dict(model, model.cfg, SimpleNamespace(mt5_model="tiny"), epoch=1), ckpt)
    gated = build_model(ModelConfig(dataset="Synthetic", use_descriptions=True), "tiny", seed=0)
    attach_text_source(gated, SimpleNamespace(mt5_model="tiny"))
    gated.load_state_dict(model.state_dict(), strict=False)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # fusion weights that change the features
        for name, p in gated.text_fusion.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (3.0 if name.startswith("fusion.proj") else 0.02))
    gated_ckpt, rules_ckpt = root / "gated.pth", root / "rules.pth"
    torch.save(run.checkpoint_dict(gated, gated.cfg, SimpleNamespace(mt5_model="tiny", use_descriptions=True),
                                   epoch=1), gated_ckpt)
    # the same weights, trained (so says the checkpoint) with the rules describer
    torch.save(run.checkpoint_dict(gated, gated.cfg, SimpleNamespace(mt5_model="tiny", use_descriptions=True,
                                                                     describe="rules"), epoch=1), rules_ckpt)
    frames, _ = one_person_frames(12)
    # a second signer: the marker moves down instead of right
    other = [draw(W, H, [(BLUE, (50, 20, 120, 110), (85, 40 + 4 * k))]) for k in range(12)]
    return SimpleNamespace(root=root, det=det, pose=pose, ckpt=ckpt, gated=gated_ckpt, rules=rules_ckpt,
                           frames=frames, other=other, models=["--det", det, "--pose", pose])


def main(capsys, monkeypatch, *argv):
    """(exit status, stdout, stderr) of signfuse.cli.main with extract-pose and translate registered."""
    extra = cli._extra_commands
    mine = [pose_extraction.register, translate.register]
    monkeypatch.setattr(cli, "_extra_commands", lambda: extra() + [r for r in mine if r not in extra()])
    try:
        status = cli.main([str(a) for a in argv])
    except SystemExit as e:
        status = e.code
    out, err = capsys.readouterr()
    return status, out, err


def test_translate_equals_predict_on_the_extracted_pose(setup, tmp_path, capsys, monkeypatch):
    a = write_video(tmp_path / "videos" / "a.mp4", setup.frames)
    b = write_video(tmp_path / "videos" / "b.mp4", setup.other)
    status, out, err = main(capsys, monkeypatch, "translate", a, b, "--finetune", setup.ckpt, *setup.models, *FAST)
    assert status == 0 and err == "", err  # nothing to say (no warning about the video a pose-only model ignores)
    lines = out.splitlines()
    assert len(lines) == 2 and all(lines), out
    # the poses are cached next to the videos, and are what extract-pose writes
    cached = [tmp_path / "videos" / "a.pose.pkl", tmp_path / "videos" / "b.pose.pkl"]
    status, _, err = main(capsys, monkeypatch, "extract-pose", "--videos", a, b, "--out", tmp_path / "pose",
                          *setup.models)
    assert status == 0, err
    for path, name in zip(cached, ("a", "b"), strict=True):
        assert path.read_bytes() == (tmp_path / "pose" / f"{name}.pkl").read_bytes()
    # each line is predict's text on that pose file
    for path, line in zip(cached, lines, strict=True):
        status, out, err = main(capsys, monkeypatch, "predict", "--finetune", setup.ckpt, "--pose", path, *FAST)
        assert status == 0 and out == line + "\n", err
    assert not np.array_equal(read(cached[0])["keypoints"], read(cached[1])["keypoints"])  # two different videos


def test_description_checkpoint_with_its_file(setup, tmp_path, capsys, monkeypatch):
    video = write_video(tmp_path / "v.mp4", setup.frames)
    description = tmp_path / "v.json"
    description.write_text(json.dumps({"0": "right hand moves up", "6": "hand touches chin", "11": "hands rest"}))
    for extra in ([], ["--description", description]):
        status, out, err = main(capsys, monkeypatch, "translate", video, "--finetune", setup.gated, *setup.models,
                                *FAST, *extra)
        assert status == 0 and out.count("\n") == 1, err
        status, expected, err = main(capsys, monkeypatch, "predict", "--finetune", setup.gated, "--pose",
                                     tmp_path / "v.pose.pkl", *FAST, *extra)
        assert status == 0 and out == expected, err
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    status, out, err = main(capsys, monkeypatch, "translate", video, "--finetune", setup.gated, *setup.models,
                            *FAST, "--description", bad)
    assert status == 2 and out == "" and one_error_line(err, bad)  # the file goes to predict, which reads it
    other = write_video(tmp_path / "w.mp4", setup.other)
    status, out, err = main(capsys, monkeypatch, "translate", video, other, "--finetune", setup.gated, *setup.models,
                            *FAST, "--description", description)
    assert status == 2 and out == "" and one_error_line(err, description, "2 videos")


def test_rules_describer_checkpoint(setup, tmp_path, capsys, monkeypatch):
    """A checkpoint trained with --describe rules: the descriptions are made from the extracted pose file."""
    video = write_video(tmp_path / "v.mp4", setup.frames)
    status, out, err = main(capsys, monkeypatch, "translate", video, "--finetune", setup.rules, *setup.models, *FAST)
    assert status == 0 and out.count("\n") == 1, err
    pose_file = tmp_path / "v.pose.pkl"
    for ckpt, extra in ((setup.rules, []), (setup.gated, ["--describe", "rules"])):
        status, expected, err = main(capsys, monkeypatch, "predict", "--finetune", ckpt, "--pose", pose_file,
                                     *FAST, *extra)
        assert status == 0 and out == expected, err
    # the rules describe every frame of the extracted poses (so the model gets descriptions, not masks)
    from signfuse.data.descriptions import PoseDescriber
    from signfuse.data.pose import load_pose
    from signfuse.describe.rules import rules_settings
    _, described = PoseDescriber(rules_settings("Synthetic")).describe("v", np.arange(12), pose=load_pose(pose_file))
    assert described.tolist() == [1.0] * 12


def test_cache_json_and_cache_dir(setup, tmp_path, capsys, monkeypatch):
    video = write_video(tmp_path / "v.mp4", setup.frames)
    cache = tmp_path / "poses"
    argv = ["translate", video, "--finetune", setup.ckpt, *setup.models, *FAST, "--cache_dir", cache, "--json"]
    status, out, err = main(capsys, monkeypatch, *argv)
    assert status == 0, err
    first = json.loads(out)
    assert first["pose"] == "extracted" and first["pose_file"] == str(cache / "v.pkl") and first["text"]
    assert set(first["timings_s"]) >= {"pose", "predict"} and all(v >= 0 for v in first["timings_s"].values())
    assert len(read(cache / "v.pkl")["keypoints"]) == 12
    status, out, err = main(capsys, monkeypatch, *argv, "--overwrite")
    assert status == 0 and json.loads(out)["pose"] == "extracted", err
    # second run: the cached pose file, no pose model loaded
    monkeypatch.setattr(pose_extraction, "PoseExtractor", lambda *a, **k: pytest.fail("extracted again"))
    status, out, err = main(capsys, monkeypatch, *argv)
    assert status == 0, err
    second = json.loads(out)
    assert second["pose"] == "cached" and second["text"] == first["text"]


def test_cache_made_with_other_models_is_redone(setup, tmp_path, capsys, monkeypatch):
    video = write_video(tmp_path / "v.mp4", setup.frames)
    renamed = tmp_path / "pose_v2.onnx"
    renamed.write_bytes(setup.pose.read_bytes())
    status, out, _ = main(capsys, monkeypatch, "translate", video, "--finetune", setup.ckpt, *setup.models, *FAST,
                          "--json")
    assert status == 0 and json.loads(out)["pose"] == "extracted"
    status, out, _ = main(capsys, monkeypatch, "translate", video, "--finetune", setup.ckpt, "--det", setup.det,
                          "--pose", renamed, *FAST, "--json")
    assert status == 0 and json.loads(out)["pose"] == "extracted"
    assert read(tmp_path / "v.pose.pkl")["extraction"]["pose"] == "pose_v2.onnx"
    # a pose file made by another tool (no extraction block) is used as it is
    data = read(tmp_path / "v.pose.pkl")
    foreign = {"keypoints": data["keypoints"], "scores": [s * np.float32(0.5) for s in data["scores"]]}
    cache = tmp_path / "foreign"
    cache.mkdir()
    pose_extraction.write_pose_file(cache / "v.pkl", foreign)
    status, out, err = main(capsys, monkeypatch, "translate", video, "--finetune", setup.ckpt, *setup.models, *FAST,
                            "--json", "--cache_dir", cache)
    assert status == 0 and json.loads(out)["pose"] == "cached"
    assert "not made by signfuse extract-pose" in err
    assert "scores" in read(cache / "v.pkl") and "extraction" not in read(cache / "v.pkl")


def test_bad_inputs(setup, tmp_path, capsys, monkeypatch):
    good = write_video(tmp_path / "good.mp4", setup.frames)
    missing = tmp_path / "missing.mp4"
    status, out, err = main(capsys, monkeypatch, "translate", good, missing, "--finetune", setup.ckpt,
                            *setup.models, *FAST)
    assert status == 2 and out == "" and one_error_line(err, missing)  # checked before any work
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video" * 40)
    status, out, err = main(capsys, monkeypatch, "translate", broken, "--finetune", setup.ckpt, *setup.models, *FAST)
    assert status == 2 and out == "" and one_error_line(err, broken, "cannot open the video")
    nowhere = tmp_path / "none.pth"
    status, out, err = main(capsys, monkeypatch, "translate", good, "--finetune", nowhere, *setup.models, *FAST)
    assert status == 2 and out == "" and one_error_line(err, nowhere)


def test_rgb_pose_checkpoint(setup, tmp_path, capsys, monkeypatch):
    """An RGB-pose checkpoint: predict takes the hand crops from the video itself (frame k = pose frame k)."""
    rgb = build_model(ModelConfig(dataset="Synthetic", rgb_support=True, rgb_gate_init="small"), "tiny", seed=0)
    ckpt = tmp_path / "rgb.pth"
    torch.save(run.checkpoint_dict(rgb.eval(), rgb.cfg, SimpleNamespace(mt5_model="tiny", rgb_support=True,
                                                                        rgb_gate_init="small"), epoch=1), ckpt)
    video = write_video(tmp_path / "v.mp4", setup.frames)
    status, out, err = main(capsys, monkeypatch, "translate", video, "--finetune", ckpt, *setup.models, *FAST)
    assert status == 0 and out.count("\n") == 1, err
    status, expected, err = main(capsys, monkeypatch, "predict", "--finetune", ckpt, "--pose", tmp_path / "v.pose.pkl",
                                 "--video", video, *FAST)
    assert status == 0 and out == expected, err
    # without the video predict cannot run this model: translate gave it the video
    status, _, err = main(capsys, monkeypatch, "predict", "--finetune", ckpt, "--pose", tmp_path / "v.pose.pkl", *FAST)
    assert status == 2 and "--video" in one_error_line(err)
