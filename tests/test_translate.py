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
from helpers import run_cli
from signfuse import cli
from signfuse.inference import pose_extraction, predict
from signfuse.config import ModelConfig
from signfuse.data.dataset import collate_fn, make_item
from signfuse.describe.describer import PoseDescriber
from signfuse.data.pose import load_pose
from signfuse.describe.rules import rules_settings
from signfuse.models.uni_sign import attach_text_source, build_model
from signfuse.training import model_setup
from test_pose_extraction import BLUE, H, W, draw, make_detector, make_pose_model, one_person_frames, read, write_video

FAST = ["--mt5_model", "tiny", "--device", "cpu", "--num_beams", "1", "--max_new_tokens", "8"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("translate")
    det, pose = make_detector(root / "det.onnx"), make_pose_model(root / "pose.onnx")
    model = train_on(build_model(ModelConfig(dataset="Synthetic"), "tiny", seed=0), pinned_batch())
    ckpt = root / "pose_only.pth"
    recorded = {"mt5_model": "tiny", "dataset": "Synthetic"}  # settings as a run records them
    torch.save(model_setup.checkpoint_dict(model, model.cfg, SimpleNamespace(**recorded), epoch=1), ckpt)
    gated = build_model(ModelConfig(dataset="Synthetic", use_descriptions=True), "tiny", seed=0)
    attach_text_source(gated, SimpleNamespace(mt5_model="tiny"))
    gated.load_state_dict(model.state_dict(), strict=False)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # fusion weights that change the features
        for name, p in gated.text_fusion.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (3.0 if name.startswith("fusion.proj") else 0.02))
    gated_ckpt, rules_ckpt = root / "gated.pth", root / "rules.pth"
    torch.save(model_setup.checkpoint_dict(gated, gated.cfg, SimpleNamespace(**recorded, use_descriptions=True), epoch=1),
               gated_ckpt)
    # the same weights, trained (so says the checkpoint) with the rules describer
    rules = SimpleNamespace(**recorded, use_descriptions=True, describe="rules")
    torch.save(model_setup.checkpoint_dict(gated, gated.cfg, rules, epoch=1), rules_ckpt)
    frames, _ = one_person_frames(12)
    # a second signer: the marker moves down instead of right
    other = [draw(W, H, [(BLUE, (50, 20, 120, 110), (85, 40 + 4 * k))]) for k in range(12)]
    return SimpleNamespace(root=root, det=det, pose=pose, ckpt=ckpt, gated=gated_ckpt, rules=rules_ckpt,
                           gated_model=gated.eval(), frames=frames, other=other, models=["--det", det, "--pose", pose])


def main(capsys, monkeypatch, *argv):
    """(exit status, stdout, stderr) of signfuse.cli.main with extract-pose and translate registered."""
    return run_cli(capsys, *argv)


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
    """A checkpoint trained with --describe rules: the descriptions are made from the extracted pose file,
    with the checkpoint's frame size and frame rate (here the dataset's defaults), not the video's."""
    video = write_video(tmp_path / "v.mp4", setup.frames)
    settings, init = [], PoseDescriber.__init__
    monkeypatch.setattr(PoseDescriber, "__init__", lambda self, s, *a, **k: settings.append(s) or init(self, s, *a, **k))
    status, out, err = main(capsys, monkeypatch, "translate", video, "--finetune", setup.rules, *setup.models, *FAST)
    assert status == 0 and out.count("\n") == 1, err
    pose_file = tmp_path / "v.pose.pkl"
    assert read(pose_file)["extraction"]["frame_size"] == [W, H] != [512, 512]
    assert settings and all(s == rules_settings("Synthetic") for s in settings)  # frame size 512 x 512, 25 fps
    monkeypatch.undo()
    for ckpt, extra in ((setup.rules, []), (setup.gated, ["--describe", "rules"])):
        status, expected, err = main(capsys, monkeypatch, "predict", "--finetune", ckpt, "--pose", pose_file,
                                     *FAST, *extra)
        assert status == 0 and out == expected, err
    # the rules describe every frame of the extracted poses (so the model gets descriptions, not masks)
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
    timings = first["timings_s"]
    assert set(timings) == {"pose", "load", "describe", "rgb_crops", "generate", "total"}
    assert all(v >= 0 for v in timings.values()) and timings["load"] > 0 and timings["generate"] > 0
    assert timings["total"] >= timings["pose"] + timings["generate"]
    assert first["gates"] is None  # a pose-only model has no gate
    assert len(read(cache / "v.pkl")["keypoints"]) == 12
    status, out, err = main(capsys, monkeypatch, *argv, "--overwrite")
    assert status == 0 and json.loads(out)["pose"] == "extracted", err
    # second run: the cached pose file, no pose model loaded
    monkeypatch.setattr(pose_extraction, "PoseExtractor", lambda *a, **k: pytest.fail("extracted again"))
    status, out, err = main(capsys, monkeypatch, *argv)
    assert status == 0, err
    second = json.loads(out)
    assert second["pose"] == "cached" and second["text"] == first["text"]


def predict_details(*argv) -> tuple:
    """(text, details) of signfuse.inference.predict.predict_file for the flags of ``signfuse predict``."""
    argv = ["predict", *map(str, argv), *FAST]
    parser = cli.build_parser()
    args = parser.parse_args(argv)
    args.given_flags = cli.given_flags(parser, argv)
    details = {}
    return predict.predict_file(args, details=details), details


def test_json_gate_summary_of_a_description_checkpoint(setup, tmp_path, capsys, monkeypatch):
    """--json reports the gate of the translation: the statistics of the gate the model computes on
    the pose file's sample (recomputed here through the dataset's item), every frame described by the rules."""
    video = write_video(tmp_path / "v.mp4", setup.frames)
    status, out, err = main(capsys, monkeypatch, "translate", video, "--finetune", setup.rules, *setup.models,
                            *FAST, "--json")
    assert status == 0, err
    result = json.loads(out)
    text, gates = result["gates"]["text"], result["gates"]
    assert gates["rgb"] is None and set(text) == {"mean", "min", "max", "mean_described", "described_share"}
    assert text["described_share"] == 1.0 and text["mean_described"] == pytest.approx(text["mean"])
    assert 0 <= text["min"] <= text["mean"] <= text["max"] <= 1 and text["min"] < text["max"]
    # the same sample through make_item and the model that the checkpoint holds
    pose = load_pose(tmp_path / "v.pose.pkl")
    describer = PoseDescriber(rules_settings("Synthetic"))
    item = make_item(pose, "v", describe=lambda frames: describer.describe("v", frames, pose=pose))
    model = setup.gated_model
    with torch.no_grad():
        assert model.generate(collate_fn([item]), max_new_tokens=8, num_beams=1)[0] == result["text"]
    gate = model.last_gate[0, :, 0]  # (T,) one sample: every frame is real
    assert len(gate) == 12 and text["max"] == pytest.approx(gate.max().item(), abs=1e-6)
    assert (text["mean"], text["min"]) == pytest.approx((gate.mean().item(), gate.min().item()), abs=1e-6)


def test_one_predictor_for_several_videos(setup, tmp_path, capsys, monkeypatch):
    """Two videos: the checkpoint is read and the model built once, and each text and gate is what
    a predict of its own gives (two videos of the same name in two folders: the rules describer
    describes each from its own pose file)."""
    a = write_video(tmp_path / "one" / "v.mp4", setup.frames)
    b = write_video(tmp_path / "two" / "v.mp4", setup.other)
    loads, builds = [], []
    real_load, real_build = predict.safe_torch_load, predict.build_run_model
    monkeypatch.setattr(predict, "safe_torch_load", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    monkeypatch.setattr(predict, "build_run_model", lambda *a, **k: builds.append(a) or real_build(*a, **k))
    status, out, err = main(capsys, monkeypatch, "translate", a, b, "--finetune", setup.rules, *setup.models,
                            *FAST, "--json")
    assert status == 0, err
    assert len(loads) == 1 and len(builds) == 1
    results = [json.loads(line) for line in out.splitlines()]
    assert [r["timings_s"]["load"] > 0 for r in results] == [True, False]  # the model is built for the first
    for video, result in zip((a, b), results, strict=True):
        text, details = predict_details("--finetune", setup.rules, "--pose", video.with_name("v.pose.pkl"))
        assert (result["text"], result["gates"]) == (text, details["gates"])
    assert results[0]["gates"] != results[1]["gates"]  # two different poses (and descriptions)
    describer = PoseDescriber(rules_settings("Synthetic"))
    texts = [describer.descriptions(str(n), pose=load_pose(v.with_name("v.pose.pkl"))) for n, v in enumerate((a, b))]
    assert texts[0] != texts[1]


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
    torch.save(model_setup.checkpoint_dict(rgb.eval(), rgb.cfg, SimpleNamespace(mt5_model="tiny", dataset="Synthetic",
                                                                        rgb_support=True, rgb_gate_init="small"),
                                   epoch=1), ckpt)
    video = write_video(tmp_path / "v.mp4", setup.frames)
    status, out, err = main(capsys, monkeypatch, "translate", video, "--finetune", ckpt, *setup.models, *FAST)
    assert status == 0 and out.count("\n") == 1, err
    status, expected, err = main(capsys, monkeypatch, "predict", "--finetune", ckpt, "--pose", tmp_path / "v.pose.pkl",
                                 "--video", video, *FAST)
    assert status == 0 and out == expected, err
    # without the video predict cannot run this model: translate gave it the video
    status, _, err = main(capsys, monkeypatch, "predict", "--finetune", ckpt, "--pose", tmp_path / "v.pose.pkl", *FAST)
    assert status == 2 and "--video" in one_error_line(err)
    # the gate summary: per hand, the fusion gate over the hand's crops (in [0, 1), near the small init's 0.01)
    status, out, err = main(capsys, monkeypatch, "translate", video, "--finetune", ckpt, *setup.models, *FAST, "--json")
    result = json.loads(out)
    gates = result["gates"]
    assert status == 0 and result["text"] + "\n" == expected and gates["text"] is None, err
    assert set(gates["rgb"]) == {"left", "right"} and sum(g["frames"] for g in gates["rgb"].values()) > 0
    for g in gates["rgb"].values():
        assert (g["mean"] is None) == (g["frames"] == 0)
        assert g["mean"] is None or 0 < g["mean"] < 0.05
    # Uni-Sign's format ({'model': state_dict}, no settings): its weights say it is RGB-pose, and
    # --rgb_support may be given; the same text either way (--dataset: the prompt's language)
    bare = tmp_path / "unisign_rgb.pth"
    torch.save({"model": rgb.state_dict()}, bare)
    for extra in ([], ["--rgb_support"]):
        status, out, err = main(capsys, monkeypatch, "translate", video, "--finetune", bare, "--dataset", "Synthetic",
                                *setup.models, *FAST, *extra)
        assert status == 0 and out == expected and err == "", err
    status, _, err = main(capsys, monkeypatch, "predict", "--finetune", bare, "--pose", tmp_path / "v.pose.pkl",
                          "--dataset", "Synthetic", *FAST)
    assert status == 2 and "--video" in one_error_line(err, bare)
