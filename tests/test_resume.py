"""Resumable training: a run killed at any moment (SIGKILL) continues with ``--resume auto``
and ends with the same weights as an uninterrupted run; a truncated last.pth is detected and
last.prev.pth used; a non-finite loss stops the run with one clear message (or is skipped and
counted with --skip_nonfinite).

The end-to-end tests run ``fine_tuning.py`` on CPU (tiny mT5, a few synthetic samples, one
thread per process).
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from conftest import REPO, SUBPROCESS_ENV as ENV
from signfuse.errors import InputError
from signfuse.training import distributed as D
from signfuse.training import engine
from signfuse.training.checkpoint import load_last, save_last


def train_flags(data: Path, out: Path, *extra) -> list:
    """A tiny run with descriptions (text dropout draws from the RNG), 5 micro-batches per epoch,
    steps of 2 micro-batches counted over the run (an epoch's fifth micro-batch goes into the next
    epoch's first step, as Uni-Sign's DeepSpeed counts them), last.pth after every step."""
    return ["--device", "cpu", "--dataset", "Synthetic", "--data_root", str(data), "--mt5_model", "tiny",
            "--use_descriptions", "--desc_dir", str(data / "description"), "--text_dropout_p", "0.3",
            "--batch-size", "2", "--gradient-accumulation-steps", "2", "--epochs", "2", "--max_length", "16",
            "--num_workers", "0", "--max_samples", "10", "--seed", "7", "--save_every_steps", "1",
            "--max_new_tokens", "12", "--num_beams", "2",
            "--output_dir", str(out), *extra]


def run_fine_tuning(flags, timeout=300) -> subprocess.CompletedProcess:
    """``python fine_tuning.py FLAGS`` in a process of its own (one thread, CPU)."""
    return subprocess.run([sys.executable, str(REPO / "fine_tuning.py"), *flags], env=ENV, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def model_weights(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def assert_same_weights(a: dict, b: dict, atol=1e-6):
    assert a.keys() == b.keys()
    worst = max(float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0 for k in a)
    assert worst <= atol, f"weights differ by up to {worst}"


def epoch_logs(out: Path) -> list:
    """log.txt without the timings."""
    rows = [json.loads(line) for line in (out / "log.txt").read_text().splitlines()]
    return [{k: v for k, v in r.items() if "time" not in k} for r in rows]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from signfuse.demo.synthetic import make_synthetic
    root = tmp_path_factory.mktemp("resume_data")
    make_synthetic(root, samples=16, seed=0, min_frames=20, max_frames=76)
    return root


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """An uninterrupted run."""
    out = tmp_path_factory.mktemp("resume_reference") / "out"
    r = run_fine_tuning(train_flags(data, out))
    assert r.returncode == 0, r.stderr[-3000:]
    return out


# ----------------------------------------------------------------------------- kill and resume

def _start_and_kill(data: Path, out: Path, min_step: int) -> dict:
    """Start a run, SIGKILL it once last.pth holds a mid-epoch state of step >= min_step."""
    proc = subprocess.Popen([sys.executable, str(REPO / "fine_tuning.py"), *train_flags(data, out)], env=ENV,
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    last, deadline, state = out / "last.pth", time.time() + 240, None
    try:
        while time.time() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"the run ended (status {proc.returncode}) before it could be killed: "
                            f"{proc.stderr.read()[-2000:]}")
            if last.exists():
                try:
                    state = torch.load(last, map_location="cpu", weights_only=True)
                except Exception:  # noqa: BLE001 - renamed away between exists() and load
                    state = None
                if state and state["step"] >= min_step and state["batch_in_epoch"] > 0:
                    break
            time.sleep(0.02)
        else:
            pytest.fail("no mid-epoch last.pth appeared in time")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return state


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_auto_gives_the_same_weights(data, reference, tmp_path):
    out = tmp_path / "killed"
    seen = _start_and_kill(data, out, min_step=2)
    assert not (out / "checkpoint_1.pth").exists()
    kept = tmp_path / "killed_copy"
    shutil.copytree(out, kept)  # for the truncated-checkpoint test below

    r = run_fine_tuning(train_flags(data, out, "--resume", "auto"))
    assert r.returncode == 0, r.stderr[-3000:]
    log = (out / "run.txt").read_text()
    assert "resuming from" in log and f"epoch {seen['epoch']}" in log

    assert_same_weights(model_weights(out / "checkpoint_1.pth"), model_weights(reference / "checkpoint_1.pth"))
    assert_same_weights(model_weights(out / "last.pth"), model_weights(reference / "last.pth"))
    final, ref_final = (torch.load(p / "last.pth", weights_only=True) for p in (out, reference))
    assert final["step"] == ref_final["step"] and final["epoch"] == ref_final["epoch"] == 2
    # optimizer and schedule too, and the epoch statistics (running sums restored)
    assert final["stepper"]["scheduler"]["last_epoch"] == ref_final["stepper"]["scheduler"]["last_epoch"]
    a, b = epoch_logs(out), epoch_logs(reference)
    assert len(a) == len(b) == 2  # log.txt holds each epoch once
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            assert x[k] == pytest.approx(y[k], rel=1e-6, abs=1e-9), k

    # a crash that truncated last.pth: detected, the previous state is used, same result
    torn = kept / "last.pth"
    torn.write_bytes(torn.read_bytes()[: torn.stat().st_size // 2])
    r = run_fine_tuning(train_flags(data, kept, "--resume", "auto"))
    assert r.returncode == 0, r.stderr[-3000:]
    log = (kept / "run.txt").read_text()
    assert "truncated or corrupt" in log and "last.prev.pth" in log
    assert_same_weights(model_weights(kept / "last.pth"), model_weights(reference / "last.pth"))


# ----------------------------------------------------------------------------- last.pth files

def _state(step):
    return {"model": {"w": torch.full((2,), float(step))}, "stepper": {}, "step": step, "epoch": 0}


def test_save_last_keeps_the_previous_state_and_load_last_falls_back(tmp_path):
    messages = []
    assert load_last(tmp_path, log=messages.append) is None  # nothing yet: a new run
    for step in (1, 2, 3):
        save_last(_state(step), tmp_path)
    assert load_last(tmp_path, log=messages.append)["step"] == 3
    assert not messages

    last = tmp_path / "last.pth"
    last.write_bytes(last.read_bytes()[:100])  # truncated by a crash
    (tmp_path / "last.pth.tmp").write_bytes(b"partial")  # an unfinished save is never read
    state = load_last(tmp_path, log=messages.append)
    assert state["step"] == 2 and state["path"].endswith("last.prev.pth")
    assert any("last.pth" in m and "truncated or corrupt" in m for m in messages)
    assert any("previous state" in m for m in messages)

    (tmp_path / "last.prev.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError) as e:
        load_last(tmp_path, log=messages.append)
    assert "no readable state to resume from" in str(e.value) and "last.prev.pth" in str(e.value)


def test_load_last_when_only_the_previous_file_exists(tmp_path):
    """A crash between the rename of last.pth to last.prev.pth and the new last.pth."""
    save_last(_state(4), tmp_path)
    os.replace(tmp_path / "last.pth", tmp_path / "last.prev.pth")
    assert load_last(tmp_path, log=lambda *_: None)["step"] == 4


def test_resume_auto_with_only_damaged_files_stops_with_one_line(data, tmp_path, capsys):
    from signfuse.cli import fine_tuning_main
    out = tmp_path / "out"
    out.mkdir()
    (out / "last.pth").write_bytes(b"\x00" * 64)
    (out / "last.prev.pth").write_bytes(b"PK\x03\x04 torn")
    status = fine_tuning_main(train_flags(data, out, "--resume", "auto"))
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert err[-1].startswith("fine_tuning.py: error: ") and "no readable state to resume from" in err[-1]
    assert "Traceback" not in "\n".join(err)
    assert not (out / "checkpoint_0.pth").exists()  # no silent new run


def test_resume_from_a_finished_run_trains_no_more(reference, data, tmp_path, capsys):
    from signfuse.cli import fine_tuning_main
    out = tmp_path / "done"
    shutil.copytree(reference, out)
    before = model_weights(out / "last.pth")
    assert fine_tuning_main(train_flags(data, out, "--resume", "auto")) == 0
    assert "already complete" in (out / "run.txt").read_text()
    assert_same_weights(model_weights(out / "last.pth"), before, atol=0)


# ----------------------------------------------------------------------------- non-finite loss

class ToyModel(torch.nn.Module):
    """loss = mean((w . x - y)^2); a sample with x = nan makes the loss NaN."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 1)

    def forward(self, batch):
        loss = ((self.lin(batch["x"]).squeeze(-1) - batch["y"]) ** 2).mean()
        return {"loss": loss, "gate": None}


def toy_batches(n, bad=(), seed=0):
    g = torch.Generator().manual_seed(seed)
    batches = []
    for i in range(n):
        x = torch.randn(2, 3, generator=g)
        if i in bad:
            x[0, 0] = float("nan")
        batches.append({"x": x, "y": torch.randn(2, generator=g), "names": [f"s{i}a", f"s{i}b"], "skipped": []})
    return batches


def toy_run(batches, accum=2, skip=False):
    torch.manual_seed(0)
    model = ToyModel()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    stepper = engine.Stepper(model, opt, sched, accum=accum, clip=1.0)
    args = SimpleNamespace(skip_nonfinite=skip, save_every_steps=0, gradient_accumulation_steps=accum)
    logs = []
    ctx = engine.RunContext(args=args, dist=D.DistInfo(), log=logs.append)
    state = engine.TrainState()
    stats = engine.train_one_epoch(model, batches, stepper, state, ctx)
    return model, state, stats, logs, sched


def test_nonfinite_loss_stops_with_the_step_and_the_samples():
    with pytest.raises(engine.NonFiniteLossError) as e:
        toy_run(toy_batches(6, bad={3}))
    msg = str(e.value)
    assert "non-finite loss at optimizer step 2 (epoch 0, micro-batch 3" in msg
    assert "s3a, s3b" in msg and "--skip_nonfinite" in msg
    assert isinstance(e.value, engine.SignfuseError)  # the CLI prints it as one line


def test_skip_nonfinite_skips_the_whole_step_and_counts_it():
    model, state, stats, logs, sched = toy_run(toy_batches(6, bad={3}), skip=True)
    assert state.nonfinite_skipped == 1 and stats["nonfinite_skipped_steps"] == 1 and state.step == 3
    assert sched.last_epoch == 3  # the schedule still advances
    assert any("step skipped" in m and "s3a" in m for m in logs)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    # the same weights as a run without the two micro-batches of the skipped step
    clean = toy_batches(6, bad={3})
    clean = clean[:2] + clean[4:]
    reference, *_ = toy_run(clean)
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-7)


def test_nonfinite_loss_from_the_command_line(data, tmp_path, capsys):
    """An absurd learning rate: the first step blows the weights up, the second loss is not finite."""
    from signfuse.cli import fine_tuning_main
    flags = ["--device", "cpu", "--dataset", "Synthetic", "--data_root", str(data), "--mt5_model", "tiny",
             "--batch-size", "2", "--gradient-accumulation-steps", "1", "--epochs", "1", "--max_length", "8",
             "--num_workers", "0", "--max_samples", "6", "--lr", "1e30", "--max_new_tokens", "8"]
    assert fine_tuning_main(flags + ["--output_dir", str(tmp_path / "stop")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("fine_tuning.py: error: non-finite loss at optimizer step 2 (epoch 0, micro-batch 1")
    assert "samples: synth_" in err[-1] and "Traceback" not in "\n".join(err)

    out = tmp_path / "skip"
    assert fine_tuning_main(flags + ["--output_dir", str(out), "--skip_nonfinite"]) == 0
    entry = json.loads((out / "log.txt").read_text().splitlines()[-1])
    assert entry["nonfinite_skipped_steps"] >= 1
    assert "step skipped" in (out / "run.txt").read_text()
