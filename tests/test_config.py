"""One source of truth for configuration: the model's configuration is resolved once and frozen;
every checkpoint records it with the description, text-encoder and RGB settings; `eval` and
`predict` read them back (predict with only --finetune/--pose/--description reproduces the
evaluation); a flag that contradicts the checkpoint is reported in one line; each flag is
defined once and means the same in every command (--desc_dir: the root of <dataset>/ folders)."""
import argparse
import dataclasses
import json
from pathlib import Path

import pytest
import torch

from signfuse import cli
from signfuse.config import TINY_POSE_CHANNELS, ModelConfig
from signfuse.flags import CHECKPOINT_FLAGS
from signfuse.data import paths
from signfuse.metrics import postprocess_prediction, read_results
from signfuse.models.uni_sign import build_model

# non-default settings, so that reading them back is visible in the predictions
TRAIN_FLAGS = ["--use_descriptions", "--desc_alignment", "nearest", "--max_gap", "3", "--desc_max_tokens", "16",
               "--max_length", "24", "--num_beams", "2", "--max_new_tokens", "8", "--text_dropout_p", "0.0"]


def test_the_model_configuration_is_frozen_and_resolved_once():
    cfg = ModelConfig(dataset="Synthetic", use_descriptions=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.text_dim = 8
    model = build_model(cfg, "tiny", seed=0)
    assert cfg == ModelConfig(dataset="Synthetic", use_descriptions=True)  # the caller's object is untouched
    assert model.cfg.gcn_channels == TINY_POSE_CHANNELS  # resolved before the model is built
    assert model.cfg.d_model == model.mt5_model.config.d_model and model.cfg.text_dim == model.cfg.d_model


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny description model trained with non-default alignment and generation flags."""
    from signfuse.demo.synthetic import make_synthetic
    root = tmp_path_factory.mktemp("config_data")
    make_synthetic(root, samples=24, seed=2, invalid_files=0, split=(0.5, 0.25, 0.25), max_frames=76,
                   desc_fraction=0.5)
    out = tmp_path_factory.mktemp("config_run")
    argv = ["train", "--dataset", "Synthetic", "--data_root", str(root), "--mt5_model", "tiny", "--device", "cpu",
            "--num_workers", "0", "--batch-size", "4", "--gradient-accumulation-steps", "1", "--epochs", "6",
            "--lr", "1e-2", "--eval_every_epochs", "3", "--seed", "5", "--output_dir", str(out), *TRAIN_FLAGS]
    assert cli.main(argv) == 0
    return argparse.Namespace(root=root, out=out)


def test_every_checkpoint_records_the_configuration_and_the_settings(trained):
    ckpts = [torch.load(trained.out / name, weights_only=True)
             for name in ("checkpoint_0.pth", "checkpoint_1.pth", "best_checkpoint.pth", "last.pth")]
    for ckpt in ckpts:
        cfg = ModelConfig.from_dict(ckpt["config"])
        assert cfg.gcn_channels == TINY_POSE_CHANNELS and cfg.use_descriptions and cfg.desc_max_tokens == 16
        settings = ckpt["settings"]
        assert set(settings) == set(CHECKPOINT_FLAGS)
        assert (settings["mt5_model"], settings["dataset"], settings["desc_alignment"], settings["max_gap"]) == \
            ("tiny", "Synthetic", "nearest", 3)
        assert (settings["max_length"], settings["num_beams"], settings["max_new_tokens"]) == (24, 2, 8)
        assert (settings["rgb_support"], settings["rgb_crop"], settings["describe"]) == (False, "unisign", None)
        assert ckpt["text_encoder"]["encoder"] == "tiny" and ckpt["text_encoder"]["max_tokens"] == 16


def sharpened(trained, tmp_path) -> Path:
    """The trained checkpoint (its settings and configuration) with fusion weights large enough
    that the descriptions, as aligned, change the predictions (a few steps leave them small)."""
    ckpt = torch.load(trained.out / "best_checkpoint.pth", weights_only=True)
    g = torch.Generator().manual_seed(2)
    for key, value in ckpt["model"].items():
        if key.startswith("text_fusion.") and value.is_floating_point():
            ckpt["model"][key] = torch.randn(value.shape, generator=g) * 6.0
    torch.save(ckpt, tmp_path / "sharp.pth")
    return tmp_path / "sharp.pth"


def test_predict_reads_the_checkpoints_settings(trained):
    args = cli.build_parser().parse_args(["predict", "--finetune", "x.pth", "--pose", "p.pkl", "--max_new_tokens", "3"])
    args.given_flags = frozenset({"finetune", "pose", "max_new_tokens"})
    ckpt = torch.load(trained.out / "best_checkpoint.pth", weights_only=True)
    from signfuse.training.settings import apply_checkpoint_settings
    lines = []
    resolved = apply_checkpoint_settings(args, ckpt, "x.pth", log=lines.append)
    assert lines == ["warning: flags that differ from the settings of x.pth (the flags are used): "
                     "--max_new_tokens 3 (checkpoint: 8)"]
    assert (resolved.mt5_model, resolved.dataset, resolved.max_length, resolved.num_beams) == ("tiny", "Synthetic", 24, 2)
    assert (resolved.desc_alignment, resolved.max_gap, resolved.desc_max_tokens) == ("nearest", 3, 16)
    assert resolved.use_descriptions and resolved.text_fusion_type == "gating" and resolved.max_new_tokens == 3


def test_predict_with_only_the_checkpoint_gives_the_evaluation(trained, tmp_path, capsys):
    """`signfuse eval --finetune CKPT` (data location only) and then `signfuse predict --finetune
    CKPT --pose P [--description D]` for each test sample: the same text."""
    ckpt = sharpened(trained, tmp_path)
    out = tmp_path / "eval"
    assert cli.main(["eval", "--finetune", str(ckpt), "--data_root", str(trained.root), "--device", "cpu",
                     "--num_workers", "0", "--output_dir", str(out)]) == 0
    capsys.readouterr()
    assert "warning" not in (out / "run.txt").read_text()
    evaluated = read_results(out / "test_tmp_pres.txt", "prediction")
    assert len(evaluated) == 6
    described = 0
    for name, text in evaluated.items():
        pose = trained.root / "dataset" / "Synthetic" / "pose_format" / f"{name}.pkl"
        desc = trained.root / "description" / "Synthetic" / f"{name}.json"
        argv = ["predict", "--finetune", str(ckpt), "--pose", str(pose)]
        if desc.is_file():
            argv += ["--description", str(desc)]
            described += 1
        assert cli.main(argv) == 0
        printed, err = capsys.readouterr()
        assert err == ""
        assert postprocess_prediction(printed[:-1], "Synthetic", "SLT") == text, name
    assert 0 < described < len(evaluated)


def test_a_flag_that_contradicts_the_checkpoint_is_reported_in_one_line(trained, capsys):
    ckpt = trained.out / "best_checkpoint.pth"
    name = sorted(read_results(trained.out / "dev_tmp_pres.txt", "prediction"))[0]
    pose = trained.root / "dataset" / "Synthetic" / "pose_format" / f"{name}.pkl"
    argv = ["predict", "--finetune", str(ckpt), "--pose", str(pose), "--max_gap", "5", "--desc_alignment",
            "nearest", "--mt5_model", "tiny", "--num_beams", "1"]
    assert cli.main(argv) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"signfuse: warning: flags that differ from the settings of {ckpt}")
    assert "--max_gap 5 (checkpoint: 3)" in err[0] and "--num_beams 1 (checkpoint: 2)" in err[0]
    assert "desc_alignment" not in err[0] and "mt5_model" not in err[0]  # given, but as the checkpoint has them


def _commands() -> dict:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {"fine_tuning.py": cli.run_parser(), **sub.choices}


#: the commands built from cli.FLAGS' groups
SHARED = ("fine_tuning.py", "train", "eval", "predict", "score", "describe-stats", "check-data", "precompute-text",
          "describe")
#: flags of those commands that are their own (same dest as a run flag, another meaning): to be renamed
OWN = {("precompute-text", "seed"), ("precompute-text", "batch_size")}


def test_each_flag_is_defined_once_and_means_the_same_everywhere():
    """Every flag of these commands that FLAGS defines has FLAGS' names, type, choices and help
    (only its default may differ where the command says so, e.g. describe-stats' --mt5_model:
    None counts words)."""
    checked = 0
    for command, parser in _commands().items():
        if command not in SHARED:
            continue
        for action in parser._actions:
            dest = action.dest
            if dest not in cli.FLAGS or not action.option_strings or (command, dest) in OWN:
                continue
            names, kw = cli.FLAGS[dest]
            assert tuple(action.option_strings)[:len(names)] == tuple(names), (command, dest)  # (+ --no-sync_bn)
            assert action.help == kw.get("help") and action.choices == kw.get("choices"), (command, dest)
            assert action.type == kw.get("type"), (command, dest)
            checked += 1
    assert checked > 150


def test_desc_dir_is_the_root_of_the_dataset_folders_in_every_command(tmp_path):
    root = tmp_path / "descs"
    for command, parser in _commands().items():
        action = next((a for a in parser._actions if a.dest == "desc_dir"), None)
        if action is None:
            continue
        assert action.default is None, command  # <data_root>/description
    assert paths.description_dir("Synthetic", desc_dir=root) == root / "Synthetic"
    assert paths.description_dir("Synthetic", data_root=tmp_path) == tmp_path / "description" / "Synthetic"
    # describe-stats and plot-gates read <desc_dir>/<dataset>/ as training does
    (root / "Synthetic").mkdir(parents=True)
    (root / "Synthetic" / "a.json").write_text(json.dumps({"0": "hand up"}))
    args = cli.build_parser().parse_args(["describe-stats", "--dataset", "Synthetic", "--desc_dir", str(root)])
    from signfuse.commands.describe_stats import describe_stats_command
    assert "with descriptions: 1" in describe_stats_command(args)
    moved = cli.build_parser().parse_args(["describe-stats", "--dataset", "Synthetic", "--data_root", str(tmp_path)])
    (tmp_path / "description").mkdir()
    Path(root).rename(tmp_path / "description" / "x")
    (tmp_path / "description" / "x" / "Synthetic").rename(tmp_path / "description" / "Synthetic")
    assert "with descriptions: 1" in describe_stats_command(moved)
