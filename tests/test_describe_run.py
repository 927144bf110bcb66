"""``--describe rules`` in runs: train, eval and predict make the descriptions from each pose file
on the fly (no description file anywhere), with the texts ``signfuse describe`` writes; the
checkpoint records the describer's resolved settings and eval/predict use them unless told
otherwise. Also make-synthetic's --mouthing and --cue_amplitude."""
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from signfuse import cli
from signfuse.data.descriptions import DescriptionLoader, Describer
from signfuse.describe.describer import PoseDescriber
from signfuse.describe.rules import RULES_VERSION
from signfuse.errors import InputError
from signfuse.metrics import postprocess_prediction, read_results
from signfuse.inference.plotting import load_gates
from signfuse.describe.describer import build_describer
from signfuse.training import inputs, model_setup
from signfuse.training.settings import resolve_describer

RULES = ["--use_descriptions", "--describe", "rules"]


def make_data(root, *flags):
    assert cli.main(["make-synthetic", "--out", str(root), "--samples", "16", "--seed", "3",
                     "--split_fractions", "0.5,0.25,0.25", *map(str, flags)]) == 0
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Synthetic data from make-synthetic with no description folder at all."""
    root = make_data(tmp_path_factory.mktemp("rules_data"), "--mouthing", "0.5")
    shutil.rmtree(root / "description")
    return root


def run_args(data, *flags):
    """fine_tuning.py's flags, parsed, with the describer resolved as ``train`` resolves it."""
    parser = cli.run_parser()
    argv = ["--dataset", "Synthetic", "--data_root", str(data), "--max_length", "24", *map(str, flags)]
    args = parser.parse_args(argv)
    args.given_flags = cli.given_flags(parser, argv)
    return resolve_describer(args)


def test_the_run_describer_gives_the_texts_of_the_describe_command_byte_for_byte(data, tmp_path):
    settings = ["--language", "zh", "--desc_max_tokens", "20", "--fps", "30"]
    assert cli.main(["describe", "--dataset", "Synthetic", "--data_root", str(data), "--desc_dir", str(tmp_path),
                     *settings]) == 0
    rules = run_args(data, *RULES, *settings, "--seed", "4")
    files = run_args(data, "--use_descriptions", "--describe", "files", "--desc_dir", tmp_path, "--seed", "4")
    assert (rules.language, rules.frame_size, rules.fps, rules.rules_version) == ("zh", (512, 512), 30.0, RULES_VERSION)
    on_the_fly, from_files = build_describer(rules), build_describer(files)
    assert isinstance(on_the_fly, PoseDescriber) and isinstance(from_files, Describer)
    for split, train in (("train", True), ("dev", False)):
        a = inputs.build_dataset(files, split, train, from_files)
        b = inputs.build_dataset(rules, split, train, on_the_fly)
        for i in range(len(a)):
            x, y = a[i], b[i]
            assert "error" not in x and x.keys() == y.keys()
            assert [[t.encode() for t, _ in pairs] for pairs in x["desc_aligned"]] == \
                [[t.encode() for t, _ in pairs] for pairs in y["desc_aligned"]]
            assert x["desc_aligned"] == y["desc_aligned"]
            assert np.array_equal(x["has_description"], y["has_description"]) and y["has_description"].all()
    # the start-up warm-up reads every sample's pose itself once told where the files are
    fresh = build_describer(rules)
    datasets = [inputs.build_dataset(rules, split, False, fresh) for split in ("train", "dev", "test")]
    inputs.tell_pose_files(fresh, datasets, trust_pickles=False)
    loader = DescriptionLoader(tmp_path / "Synthetic", strict=True)
    ids = [i for ds in datasets for i in ds.sample_ids()]
    assert len(ids) == 16
    texts = set()
    for sample_id in ids:
        expected = loader.load(sample_id)[0]
        assert fresh.descriptions(sample_id) == expected and expected
        texts.update(expected.values())
    from signfuse.models.text_fusion import TextEncoder
    source = TextEncoder("tiny", max_tokens=20)
    assert model_setup.warm_text_cache(SimpleNamespace(text_source=source), fresh, ids, log=lambda *_: None) == len(texts)
    assert set(source._cache) == texts


def test_the_describer_flags_are_checked_and_files_still_need_their_folder(data):
    with pytest.raises(InputError, match="--fps 0.0"):
        run_args(data, *RULES, "--fps", "0")
    files = run_args(data, "--use_descriptions")  # the default: files
    assert files.describe is None and files.rules_version is None and files.language is None
    with pytest.raises(InputError, match="description folder not found"):
        build_describer(files)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """A tiny description model trained with --describe rules (no description file anywhere),
    its fusion weights then made large enough that the descriptions change the predictions."""
    out = tmp_path_factory.mktemp("rules_run")
    assert cli.main(["train", "--dataset", "Synthetic", "--data_root", str(data), "--mt5_model", "tiny",
                     "--device", "cpu", "--num_workers", "0", "--batch-size", "4", "--gradient-accumulation-steps",
                     "1", "--epochs", "6", "--lr", "1e-2", "--eval_every_epochs", "6", "--seed", "5",
                     "--max_length", "24", "--num_beams", "1", "--max_new_tokens", "8", "--text_dropout_p", "0",
                     "--output_dir", str(out), *RULES]) == 0
    ckpt = torch.load(out / "best_checkpoint.pth", weights_only=True)
    g = torch.Generator().manual_seed(2)
    for key, value in ckpt["model"].items():
        if key.startswith("text_fusion.") and value.is_floating_point():
            ckpt["model"][key] = torch.randn(value.shape, generator=g) * 6.0
    torch.save(ckpt, out / "sharp.pth")
    return SimpleNamespace(out=out, ckpt=ckpt, sharp=out / "sharp.pth")


def test_the_checkpoint_records_the_resolved_describer_settings(trained):
    settings = trained.ckpt["settings"]
    assert (settings["describe"], settings["language"], settings["frame_size"], settings["fps"]) == \
        ("rules", "en", [512, 512], 25.0)
    assert settings["rules_version"] == RULES_VERSION and settings["desc_max_tokens"] == 64
    text = (trained.out / "run.txt").read_text()
    assert "made from each pose file by the rules describer" in text and "distinct texts encoded" in text


def test_rules_eval_and_predict_need_no_description_file(data, trained, tmp_path, capsys, monkeypatch):
    """eval --describe rules: every frame described, predictions written; predict with only the
    checkpoint and the pose file fuses the very descriptions the evaluation fused, and gives its text."""
    fused = {}  # sample -> [(frames, aligned, has_description)] of every PoseDescriber.describe call
    describe = PoseDescriber.describe

    def spy(self, sample_id, frame_indices, pose=None):
        aligned, has_description = describe(self, sample_id, frame_indices, pose)
        fused.setdefault(sample_id, []).append((list(map(int, frame_indices)), aligned, has_description.tolist()))
        return aligned, has_description

    monkeypatch.setattr(PoseDescriber, "describe", spy)
    out = tmp_path / "eval"
    assert cli.main(["eval", "--finetune", str(trained.sharp), "--data_root", str(data), "--device", "cpu",
                     "--num_workers", "0", "--output_dir", str(out), "--describe", "rules"]) == 0
    capsys.readouterr()
    gates = load_gates(out / "test_gates.npz")
    evaluated = read_results(out / "test_tmp_pres.txt", "prediction")
    assert len(evaluated) == 4 and set(gates) == set(evaluated) and all(evaluated.values())
    assert all(g["has_description"].sum() > 0 and g["has_description"].all() for g in gates.values())
    for name, text in evaluated.items():  # predict: the rules of the checkpoint, no --description
        pose = data / "dataset" / "Synthetic" / "pose_format" / f"{name}.pkl"
        assert len(fused[name]) == 1
        assert cli.main(["predict", "--finetune", str(trained.sharp), "--pose", str(pose)]) == 0
        printed, err = capsys.readouterr()
        assert err == ""
        assert postprocess_prediction(printed[:-1], "Synthetic", "SLT") == text, name
        assert len(fused[name]) == 2 and fused[name][0] == fused[name][1] and fused[name][0][1]
    assert [p for p in Path(data).rglob("*") if "description" in p.name] == []  # no description file anywhere


def test_describe_files_overrides_the_checkpoints_rules(data, trained, tmp_path, capsys):
    assert cli.main(["eval", "--finetune", str(trained.sharp), "--data_root", str(data), "--device", "cpu",
                     "--num_workers", "0", "--output_dir", str(tmp_path), "--describe", "files"]) == 2
    err = capsys.readouterr().err
    assert "description folder not found" in err
    assert "--describe files (checkpoint: rules)" in (tmp_path / "run.txt").read_text()
    pose = data / "dataset" / "Synthetic" / "pose_format" / "synth_00000.pkl"
    desc = tmp_path / "d.json"
    desc.write_text(json.dumps({"0": "hand up"}))
    assert cli.main(["predict", "--finetune", str(trained.sharp), "--pose", str(pose), "--describe", "rules",
                     "--description", str(desc)]) == 2
    assert "--describe rules and --description" in capsys.readouterr().err


def test_a_checkpoint_of_another_rules_version_is_reported(data, trained, tmp_path, capsys):
    ckpt = dict(trained.ckpt, settings={**trained.ckpt["settings"], "rules_version": "rules-0"})
    torch.save(ckpt, tmp_path / "old.pth")
    pose = data / "dataset" / "Synthetic" / "pose_format" / "synth_00001.pkl"
    assert cli.main(["predict", "--finetune", str(tmp_path / "old.pth"), "--pose", str(pose)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "made by rules version rules-0" in err[0] and RULES_VERSION in err[0]


def test_make_synthetic_mouthing_and_cue_amplitude(tmp_path):
    plain, mouthing, cue = (make_data(tmp_path / name, *flags) for name, flags in
                            (("plain", ()), ("mouthing", ("--mouthing", "0.5")), ("cue", ("--cue_amplitude", "0.05"))))

    def mouth(root):
        return [m for p in sorted((root / "truth" / "Synthetic").glob("*.json")) for m in json.loads(p.read_text())["mouth"]]

    def poses(root):
        return {p.name: p.read_bytes() for p in sorted((root / "dataset" / "Synthetic" / "pose_format").glob("*.pkl"))}

    assert "open" not in mouth(plain) and "open" in mouth(mouthing)
    assert poses(plain).keys() == poses(cue).keys() and poses(plain) != poses(cue)
    assert poses(plain) != poses(mouthing)
