"""The RGB-pose branch in whole runs (``--rgb_support``): the plan's command on synthetic data with
videos (``make-synthetic --videos``) trains, writes checkpoints that reload strictly and record the
RGB settings, evaluates with ``--eval_descriptions both`` (both fusion types), predicts from a video,
resumes bit-identically, evaluates the same with batch size 1 and 3 and with 1 and 2 processes,
trains under torchrun and the DeepSpeed launcher; bad videos are per-sample problems (training
skips them, ``check-data --rgb_support`` reports them); a Uni-Sign-format RGB-pose checkpoint
needs ``--rgb_support``.

Tiny mT5, CPU, one thread per process, 16 samples (8 train, 4 dev, 4 test) of 34-90 frames
sampled down to 16 (2 hand crops per hand and sample).
"""
import json
import pickle
import subprocess
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO, launch as launch_script
from signfuse import cli
from signfuse.config import ModelConfig
from signfuse.data import paths
from signfuse.data.dataset import SignDataset, collate_fn
from signfuse.data.labels import load_labels
from signfuse.demo.synthetic_video import render_frames, write_video
from signfuse.metrics import postprocess_prediction
from signfuse.models.rgb_branch import RGB_PREFIXES
from signfuse.models.uni_sign import build_model
from signfuse.training import distributed as D, inputs, loop, model_setup, settings
from signfuse.training import engine
from signfuse.training.checkpoint import load_weights

#: the plan's command (README), besides --finetune and the run's own flags
PLAN = ["--use_descriptions", "--text_fusion_type", "gating", "--text_dropout_p", "0.1", "--rgb_support",
        "--rgb_gate_init", "small"]


def run_flags(data: Path, out: Path, *extra) -> list:
    """A tiny run: 4 micro-batches of 2 per epoch, steps of 2 micro-batches, 2 epochs."""
    return ["--device", "cpu", "--dataset", "Synthetic", "--data_root", str(data), "--mt5_model", "tiny",
            "--batch-size", "2", "--gradient-accumulation-steps", "2", "--epochs", "2", "--max_length", "16",
            "--num_workers", "0", "--seed", "3", "--max_new_tokens", "8", "--num_beams", "2",
            "--output_dir", str(out), *extra]


def eval_flags(data: Path, ckpt: Path, out: Path, *extra) -> list:
    """Evaluation of ``ckpt``: its recorded settings (RGB, descriptions, mT5...) apply."""
    return ["--eval", "--finetune", str(ckpt), "--device", "cpu", "--data_root", str(data), "--num_workers", "0",
            "--eval_descriptions", "both", "--output_dir", str(out), *extra]


def fine_tuning(argv: list, capsys=None) -> int:
    """``fine_tuning.py ARGV`` in this process; asserts success unless ``capsys`` is given."""
    code = cli.fine_tuning_main([str(a) for a in argv])
    if capsys is None:
        assert code == 0
    return code


def predictions(out: Path, split: str) -> list:
    return (out / f"{split}_tmp_pres.txt").read_text().splitlines()


def weights(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


# ----------------------------------------------------------------------------- data

@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """make-synthetic --videos; in the train split: synth_00000's video is missing, synth_00001's
    is shorter than its pose file, synth_00002 has no confident hand and no video (never opened)."""
    root = tmp_path_factory.mktemp("rgb_data")
    assert cli.main(["make-synthetic", "--out", str(root), "--samples", "16", "--seed", "1", "--videos",
                     "--split_fractions", "0.5,0.25,0.25"]) == 0
    videos = paths.rgb_dir("Synthetic", "train", root)
    poses = paths.pose_dir("Synthetic", "train", root)
    (videos / "synth_00000.mp4").unlink()
    pose = pickle.loads((poses / "synth_00001.pkl").read_bytes())
    write_video(videos / "synth_00001.mp4", render_frames(pose["keypoints"][:10, 0]))
    pose = pickle.loads((poses / "synth_00002.pkl").read_bytes())
    pose["scores"][:, :, 91:133] = 0.1
    (poses / "synth_00002.pkl").write_bytes(pickle.dumps(pose))
    (videos / "synth_00002.mp4").unlink()
    return root


@pytest.fixture(scope="module")
def pose_ckpt(data) -> Path:
    """A pose-only checkpoint of the tiny model in Uni-Sign's format (the plan's --finetune)."""
    path = data / "pose_only.pth"
    torch.save({"model": build_model(ModelConfig(dataset="Synthetic"), "tiny", seed=0).state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def plan_run(data, pose_ckpt, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("plan") / "out"
    fine_tuning([*PLAN, "--finetune", pose_ckpt, *run_flags(data, out)])
    return out


@pytest.fixture(scope="module")
def plan_eval(data, plan_run, tmp_path_factory) -> Path:
    """The plan run's last checkpoint evaluated with batch size 3, descriptions on and off."""
    out = tmp_path_factory.mktemp("plan_eval") / "b3"
    fine_tuning(eval_flags(data, plan_run / "checkpoint_1.pth", out, "--batch-size", "3"))
    return out


# ----------------------------------------------------------------------------- one process

def test_plan_command_trains_the_rgb_branch_and_skips_bad_videos(data, plan_run):
    log = [json.loads(line) for line in (plan_run / "log.txt").read_text().splitlines()]
    assert [e["epoch"] for e in log] == [0, 1] and [e["step"] for e in log] == [2, 4]
    assert all(e["skipped_samples"] == 2 and e["train_samples"] == 6 for e in log)  # 8 train samples, 2 bad videos
    text = (plan_run / "run.txt").read_text()
    videos = paths.rgb_dir("Synthetic", "train", data)
    assert f"synth_00000: {videos / 'synth_00000.mp4'}: video file not found" in text
    assert f"synth_00001: {videos / 'synth_00001.mp4'}: the video has 10 frames, fewer than the" in text
    assert "synth_00002" not in text  # no confident hand: trained with dummy crops, its (absent) video never opened
    assert "newly initialised RGB-branch weights" in text and "warning: --rgb_support" not in text
    # the RGB branch learned: its weights moved from their initial values (same seed, same init)
    init = build_model(ModelConfig(dataset="Synthetic", use_descriptions=True, rgb_support=True,
                                   rgb_gate_init="small"), "tiny", seed=3).state_dict()
    trained = weights(plan_run / "checkpoint_1.pth")
    for key in ("rgb_proj.weight", "fusion_gate.2.weight", "fusion_pose_rgb_DA.to_out.weight",
                "rgb_support_backbone.0.0.0.weight"):
        assert not torch.equal(trained[key], init[key]), key


def test_checkpoint_records_the_rgb_settings_and_reloads_strictly(plan_run):
    ckpt = torch.load(plan_run / "checkpoint_1.pth", weights_only=True)
    assert {k: ckpt["settings"][k] for k in ("rgb_support", "rgb_gate_init", "rgb_crop", "rgb_eval_sampling")} == \
        {"rgb_support": True, "rgb_gate_init": "small", "rgb_crop": "unisign", "rgb_eval_sampling": "topk"}
    assert ckpt["config"]["rgb_support"] is True and ckpt["config"]["rgb_gate_init"] == "small"
    model = build_model(ModelConfig.from_dict(ckpt["config"]), "tiny", seed=9)
    logs = []
    report = load_weights(model, plan_run / "checkpoint_1.pth", log=logs.append)  # strict
    assert report == {"missing": [], "unexpected": [], "new_fusion": []}
    own = model.state_dict()
    assert sum(k.startswith(RGB_PREFIXES) for k in own) > 300
    assert all(torch.equal(own[k], v) for k, v in ckpt["model"].items())


def test_evaluation_with_descriptions_both_and_batch_size_1_equals_3(data, plan_run, plan_eval, tmp_path):
    text = (plan_eval / "run.txt").read_text()
    results = {line.split(": {", 1)[0]: json.loads("{" + line.split(": {", 1)[1])
               for line in text.splitlines() if line.startswith(("dev", "test")) and ": {" in line}
    assert set(results) == {"dev", "dev (descriptions off)", "test", "test (descriptions off)"}
    assert all(r["samples"] == 4 and r["skipped_samples"] == 0 for r in results.values())
    one = tmp_path / "b1"
    fine_tuning(eval_flags(data, plan_run / "checkpoint_1.pth", one, "--batch-size", "1"))
    for split in ("dev", "test", "dev_nodesc", "test_nodesc"):
        assert predictions(one, split) == predictions(plan_eval, split), split
    for split in ("dev", "test"):  # the description gate, a function of the fused (pose + RGB) features
        g1, g3 = np.load(one / f"{split}_gates.npz"), np.load(plan_eval / f"{split}_gates.npz")
        assert sorted(g1.files) == sorted(g3.files) and len(g1.files) == 16  # 4 samples x 4 arrays
        for key in g1.files:  # the same numbers, up to the kernels' batch-size-dependent last bits
            np.testing.assert_allclose(g1[key], g3[key], rtol=0, atol=1e-6, err_msg=key)


def test_cross_attention_fusion_with_rgb_trains_and_evaluates(data, pose_ckpt, tmp_path):
    out = tmp_path / "xattn"
    plan = [a if a != "gating" else "cross_attn" for a in PLAN]
    fine_tuning([*plan, "--finetune", pose_ckpt, *run_flags(data, out, "--epochs", "1")])
    ckpt = torch.load(out / "checkpoint_0.pth", weights_only=True)
    assert ckpt["config"]["text_fusion_type"] == "cross_attn" and ckpt["settings"]["rgb_support"] is True
    model = build_model(ModelConfig.from_dict(ckpt["config"]), "tiny")
    assert load_weights(model, out / "checkpoint_0.pth", log=lambda *_: None)["missing"] == []
    fine_tuning(eval_flags(data, out / "checkpoint_0.pth", out / "eval", "--batch-size", "4"))
    for split in ("dev", "test", "dev_nodesc", "test_nodesc"):
        assert len(predictions(out / "eval", split)) == 4


def test_resume_after_max_steps_gives_the_uninterrupted_weights(data, pose_ckpt, plan_run, tmp_path):
    out = tmp_path / "resumed"
    fine_tuning([*PLAN, "--finetune", pose_ckpt, *run_flags(data, out, "--max_steps", "1")])  # stops after epoch 0
    assert torch.load(out / "last.pth", weights_only=True)["epoch"] == 1
    fine_tuning([*PLAN, "--finetune", pose_ckpt, *run_flags(data, out, "--resume", "auto")])
    assert "resuming from" in (out / "run.txt").read_text()
    resumed, reference = weights(out / "last.pth"), weights(plan_run / "last.pth")
    assert resumed.keys() == reference.keys()
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)  # bit-identical on CPU


def test_predict_from_the_video_equals_evaluation(data, plan_run, plan_eval, capsys):
    test = load_labels(paths.label_path("Synthetic", "test", data))
    described = {p.stem for p in (data / "description" / "Synthetic").glob("*.json")}
    name = next(n for n in test if n not in described)  # evaluation masked every frame of it: so does predict
    pose = paths.pose_dir("Synthetic", "test", data) / f"{name}.pkl"
    video = paths.rgb_dir("Synthetic", "test", data) / f"{name}.mp4"
    ckpt = plan_run / "checkpoint_1.pth"
    assert cli.main(["predict", "--finetune", str(ckpt), "--pose", str(pose), "--video", str(video),
                     "--device", "cpu"]) == 0
    text = capsys.readouterr().out.strip()
    expected = next(line for line in predictions(plan_eval, "test") if line.startswith(f"sample: {name},"))
    assert expected == f"sample: {name}, prediction: {postprocess_prediction(text, 'Synthetic', 'SLT')}"
    assert cli.main(["predict", "--finetune", str(ckpt), "--pose", str(pose), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--video" in err[0] and str(ckpt) in err[0] and "--rgb_support" in err[0]


def test_unisign_format_rgb_checkpoint_needs_rgb_support(data, plan_run, plan_eval, tmp_path, capsys):
    """Weights only (``{'model': state_dict}``, no num_batches_tracked, as Uni-Sign saves them):
    without --rgb_support the run stops with one line naming the flag; with it the checkpoint
    loads strictly and evaluates exactly as the signfuse checkpoint does."""
    sd = {k: v for k, v in weights(plan_run / "checkpoint_1.pth").items() if not k.endswith("num_batches_tracked")}
    bare = tmp_path / "unisign_rgb_pose.pth"
    torch.save({"model": sd}, bare)
    same = ["--dataset", "Synthetic", "--mt5_model", "tiny", "--max_length", "16", "--num_beams", "2",
            "--max_new_tokens", "8", "--batch-size", "3"]
    assert fine_tuning(eval_flags(data, bare, tmp_path / "refused", *same), capsys) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fine_tuning.py: error: ") and str(bare) in err[0]
    assert "add --rgb_support" in err[0]
    fine_tuning(eval_flags(data, bare, tmp_path / "ok", *same, "--rgb_support"))
    for split in ("dev", "test", "dev_nodesc", "test_nodesc"):
        assert predictions(tmp_path / "ok", split) == predictions(plan_eval, split), split


def test_check_data_reports_the_bad_videos_by_kind(data, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["check-data", "--dataset", "Synthetic", "--data_root", str(data), "--split", "train",
                  "--rgb_support"])
    assert e.value.code == 1
    out = capsys.readouterr().out
    videos = paths.rgb_dir("Synthetic", "train", data)
    assert f"videos: {videos}" in out and "train: 8 samples, 6 usable, 2 unusable" in out
    assert "problems by kind: missing video 1, too few video frames 1" in out
    assert f"error: synth_00000: {videos / 'synth_00000.mp4'}: video file not found" in out
    assert f"error: synth_00001: {videos / 'synth_00001.mp4'}: the video has 10 frames" in out
    assert "synth_00002" not in out  # no confident hand: its missing video is no problem
    assert cli.main(["check-data", "--dataset", "Synthetic", "--data_root", str(data), "--split", "dev",
                     "--rgb_support"]) == 0
    assert "dev: 4 samples, 4 usable, 0 unusable" in capsys.readouterr().out


def test_missing_video_folder_is_one_line_naming_it_and_the_flag(data, tmp_path, capsys):
    assert fine_tuning([*PLAN, *run_flags(data, tmp_path / "out", "--rgb_dir", tmp_path / "nowhere")], capsys) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{tmp_path / 'nowhere'}: video directory not found" in err[0] and "--rgb_dir" in err[0]


def test_offline_imagenet_weights_stop_the_run_before_any_work(data, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)

    def offline(*args, **kwargs):
        from urllib.error import URLError
        raise URLError("[Errno -2] Name or service not known")

    def no_work(*args, **kwargs):
        raise AssertionError("data built before the backbone weights were checked")
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    monkeypatch.setattr(loop, "training_data", no_work)
    code = fine_tuning([*PLAN, *run_flags(data, tmp_path / "out", "--rgb_backbone_weights", "imagenet")], capsys)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--rgb_backbone_weights imagenet" in err[0]


# ----------------------------------------------------------------------------- pieces of the run

def run_args(data, **changes) -> Namespace:
    args = cli.run_parser().parse_args(run_flags(data, ""))
    for key, value in changes.items():
        setattr(args, key, value)
    return args


def test_rgb_gate_start_and_warning(data, tmp_path):
    """Training from a checkpoint whose gate is all zeros (Uni-Sign's RGB-pose checkpoints): --rgb_gate_init
    small gives the gate's last convolution its small init and keeps every other weight; zero says in
    one line that the branch cannot learn. A backbone-weights flag is not read when the checkpoint
    holds the RGB weights."""
    zero = build_model(ModelConfig(dataset="Synthetic", rgb_support=True), "tiny", seed=1)
    torch.save({"model": zero.state_dict()}, tmp_path / "zero_gate.pth")
    saved = zero.state_dict()
    logs = []
    args = run_args(data, rgb_support=True, rgb_gate_init="small", finetune=str(tmp_path / "zero_gate.pth"),
                    rgb_backbone_weights=str(tmp_path / "absent.pth"))
    checkpoint = model_setup.read_checkpoint(args)
    cfg = settings.resolve_model_config(args, checkpoint, args.finetune)
    assert model_setup.rgb_backbone(args, checkpoint, cfg, logs.append) is None  # the absent file is never opened
    model, _ = model_setup.build_run_model(args, D.DistInfo(), logs.append, checkpoint, cfg, training=True)
    own = model.state_dict()
    assert [k for k in own if not torch.equal(own[k], saved[k])] == ["fusion_gate.2.weight", "fusion_gate.2.bias"]
    assert torch.all(own["fusion_gate.2.bias"] == 0.01)
    assert any("not used" in line and "absent.pth" in line for line in logs)
    assert any(line.startswith("--rgb_gate_init small: the fusion gate of the checkpoint is all zeros") for line in logs)
    assert not any(line.startswith("warning") for line in logs)
    logs.clear()
    args.rgb_gate_init = "zero"
    model_setup.build_run_model(args, D.DistInfo(), logs.append, checkpoint, training=True)
    assert [line for line in logs if line.startswith("warning")] == [
        line for line in logs if "--rgb_gate_init small" in line and "the fusion gate is all zeros" in line]
    assert len([line for line in logs if line.startswith("warning")]) == 1


def test_batches_keep_int64_indices_and_list_lengths_on_the_device(data):
    ds = SignDataset(paths.label_path("Synthetic", "dev", data), paths.pose_dir("Synthetic", "dev", data),
                     "Synthetic", "dev", max_length=16, rgb=inputs.rgb_settings(run_args(data, rgb_support=True), "dev"))
    batch = engine.to_device(collate_fn([ds[0], ds[1]]), torch.device("cpu"))
    for hand in ("left", "right"):
        assert batch[f"{hand}_sampled_indices"].dtype == torch.int64
        assert batch[f"{hand}_hands"].dtype == torch.float32 and batch[f"{hand}_skeletons_norm"].dtype == torch.float32
        assert isinstance(batch[f"{hand}_rgb_len"], list) and sum(batch[f"{hand}_rgb_len"]) == len(
            batch[f"{hand}_sampled_indices"])
        assert (batch[f"{hand}_sampled_indices"] >= 0).all()  # real crops (synthetic hands are confident)
    assert not np.isnan(batch["left_hands"].numpy()).any()


# ----------------------------------------------------------------------------- several processes

def launch(tool: str, nproc: int, argv: list) -> subprocess.CompletedProcess:
    return launch_script(tool, nproc, REPO / "fine_tuning.py", argv)


@pytest.mark.slow
def test_torchrun_evaluation_equals_single_process_evaluation(data, plan_run, plan_eval, tmp_path):
    out = tmp_path / "two"
    launch("torchrun", 2, eval_flags(data, plan_run / "checkpoint_1.pth", out, "--batch-size", "3"))
    assert "distributed: 2 processes (DDP, gloo)" in (out / "run.txt").read_text()
    for split in ("dev", "test", "dev_nodesc", "test_nodesc"):
        assert predictions(out, split) == predictions(plan_eval, split), split
        assert (out / f"{split}_tmp_refs.txt").read_bytes() == (plan_eval / f"{split}_tmp_refs.txt").read_bytes()


# DeepSpeed and DDP agree to a tolerance, not to the bit (see test_distributed.DEEPSPEED_TOL; the same
# reasoning and margin: a last-bit change of the clipping threshold moves these weights by ~1e-4).
DEEPSPEED_TOL = 1e-3


@pytest.mark.slow
def test_deepspeed_launcher_trains_rgb_with_descriptions_like_torchrun(data, pose_ckpt, tmp_path):
    import deepspeed  # noqa: F401 - installed with the package's [deepspeed] extra: a failure here is one
    flags = [*PLAN, "--finetune", pose_ckpt]
    launch("torchrun", 2, [*flags, *run_flags(data, tmp_path / "ddp", "--epochs", "1", "--eval_every_epochs", "9")])
    launch("deepspeed", 2, [*flags, *run_flags(data, tmp_path / "ds", "--epochs", "1", "--eval_every_epochs", "9")])
    logs = {k: (tmp_path / k / "run.txt").read_text() for k in ("ddp", "ds")}
    assert "distributed: 2 processes (DDP, gloo)" in logs["ddp"]
    assert "distributed: 2 processes (DeepSpeed, gloo)" in logs["ds"]
    assert all("replicas: the 2 processes hold identical weights" in text for text in logs.values())
    assert all("skipped 2 samples" in text for text in logs.values())
    ddp, ds = weights(tmp_path / "ddp" / "last.pth"), weights(tmp_path / "ds" / "last.pth")
    assert ddp.keys() == ds.keys()
    init = build_model(ModelConfig(dataset="Synthetic", use_descriptions=True, rgb_support=True,
                                   rgb_gate_init="small"), "tiny", seed=3).state_dict()
    assert not torch.equal(ddp["rgb_proj.weight"], init["rgb_proj.weight"])  # the branch trained
    worst = max(float((ddp[k].double() - ds[k].double()).abs().max()) for k in ddp if ddp[k].numel())
    assert worst <= DEEPSPEED_TOL, f"DeepSpeed's weights differ from DDP's by up to {worst:.3g}"


def test_demo_rgb_trains_the_rgb_branch_end_to_end(tmp_path):
    from signfuse.demo.run import run_rgb_demo
    lines = []
    result = run_rgb_demo(tmp_path / "demo", seed=0, echo=lines.append, samples=24, epochs=2, batch_size=4)
    assert set(result["results"]) == {"dev", "dev_nodesc", "test", "test_nodesc"}
    assert result["results"]["test"]["samples"] > 0
    assert result["results"]["test"]["skipped_samples"] == 0
    assert 0.0 < result["rgb_gate_mean"] < 1.0 and result["rgb_gate_mean"] != pytest.approx(0.01, abs=1e-6)
    assert "--rgb_support" in result["commands"]["train"] and result["commands"]["data"].endswith("--videos")
    assert any(line.startswith("RGB fusion gate on the test hand crops: mean") for line in lines)
    assert json.loads((tmp_path / "demo" / "demo_rgb_results.json").read_text())["rgb_gate_mean"] == result["rgb_gate_mean"]
