"""Training end to end on generated pose files: the loss falls, checkpoints reload exactly."""
import json

import pytest
import torch

from signfuse.cli import run_parser
from signfuse.config import ModelConfig
from signfuse.data.dataset import SignDataset, collate_fn
from signfuse.demo.synthetic import make_synthetic
from signfuse.models.uni_sign import Uni_Sign, build_model
from signfuse.training import model_setup, run
from signfuse.training.checkpoint import load_weights



@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic(root, samples=40, seed=1)
    return root


def tiny_args(root, out, *extra):
    return run_parser().parse_args([
        "--dataset", "Synthetic", "--data_root", str(root), "--mt5_model", "tiny", "--device", "cpu",
        "--output_dir", str(out), "--batch-size", "4", "--gradient-accumulation-steps", "1",
        "--num_workers", "0", "--max_length", "32", "--lr", "3e-3", "--max_samples", "12",
        "--num_beams", "1", "--max_new_tokens", "6", "--seed", "3", *extra])


def test_training_lowers_the_loss_and_writes_the_run_files(synthetic, tmp_path):
    args = tiny_args(synthetic, tmp_path / "out", "--epochs", "3", "--eval_every_epochs", "100")
    run.train(args)
    out = tmp_path / "out"
    log = [json.loads(line) for line in (out / "log.txt").read_text().splitlines()]
    assert [entry["epoch"] for entry in log] == [0, 1, 2]
    assert [entry["step"] for entry in log] == [3, 6, 9]  # 12 samples / batch 4
    losses = [entry["train_loss"] for entry in log]
    assert losses[2] < 0.8 * losses[0], losses
    assert "dev_bleu4" in log[2] and "dev_bleu4" not in log[0]  # evaluated at the last epoch only
    for name in ("checkpoint_0.pth", "checkpoint_2.pth", "best_checkpoint.pth", "last.pth",
                 "dev_tmp_pres.txt", "dev_tmp_refs.txt"):
        assert (out / name).is_file(), name
    refs = (out / "dev_tmp_refs.txt").read_text().splitlines()
    assert len(refs) == 4 and all(  # dev: 10% of 40 samples
        line.startswith("sample: synth_") and ", ground-truth: " in line for line in refs)
    assert list(out.glob("events.out.tfevents.*"))


def held_out_batch(root):
    ds = SignDataset(root / "data/Synthetic/labels.test", root / "dataset/Synthetic/pose_format",
                     "Synthetic", "test", max_length=32)
    return collate_fn([ds[i] for i in range(3)])


def test_a_saved_checkpoint_reloads_strictly_and_gives_the_same_loss(synthetic, tmp_path):
    torch.manual_seed(0)
    model = build_model(ModelConfig(dataset="Synthetic"), "tiny", seed=5)
    batch = held_out_batch(synthetic)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(3):  # move every weight (and the BatchNorm statistics) away from its start
        model.train()
        model(batch)["loss"].backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    with torch.no_grad():
        loss = model(batch)["loss"]
    path = tmp_path / "ckpt.pth"
    torch.save(model_setup.checkpoint_dict(model, model.cfg, tiny_args(synthetic, tmp_path), epoch=0), path)

    fresh = build_model(ModelConfig(dataset="Synthetic"), "tiny", seed=6)  # other initial weights
    lines = []
    report = load_weights(fresh, path, log=lines.append)
    assert report == {"missing": [], "unexpected": [], "new_fusion": []}
    assert lines and "missing keys: none" in lines[0] and "unexpected keys: none" in lines[0]
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(fresh(batch)["loss"], loss)
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_a_checkpoint_of_another_size_is_refused_naming_the_file(tmp_path):
    from signfuse.errors import InputError
    small = build_model(ModelConfig(dataset="Synthetic"), "tiny", seed=0)
    path = tmp_path / "small.pth"
    torch.save({"model": small.state_dict()}, path)
    # the same mT5, a pose encoder of other widths (build_model would choose the tiny widths)
    other = Uni_Sign(ModelConfig(dataset="Synthetic", gcn_channels=(4, 8, 16)), small.mt5_model, small.tokenizer)
    with pytest.raises(InputError) as e:
        load_weights(other, path, log=lambda *_: None)
    message = str(e.value)
    assert message.startswith(f"{path}: ") and "other shapes than this model" in message
    assert "proj_linear.body.weight: checkpoint (8, 3) vs model (4, 3)" in message


def test_no_function_of_the_training_package_is_longer_than_a_screen():
    """nanoGPT style: every function of signfuse/training/ reads in one screen (~60 lines,
    docstring included)."""
    import ast
    from pathlib import Path
    import signfuse.training
    long = []
    for path in sorted(Path(signfuse.training.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 60:
                    long.append(f"{path.name}:{node.lineno} {node.name} ({length} lines)")
    assert not long, long
