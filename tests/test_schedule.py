"""Training as Uni-Sign trains: transformers' cosine schedule with Uni-Sign's warm-up and total
steps, optimizer steps every --gradient-accumulation-steps micro-batches counted over the whole
run (as its DeepSpeed engine counts them), the last partial batch of each epoch dropped, and
BatchNorm synchronised across GPU processes (--sync_bn)."""
import json
from types import SimpleNamespace

import pytest
import torch
from transformers import get_scheduler

from signfuse.cli import run_parser
from signfuse.training import distributed as D, inputs, samplers
from signfuse.training import engine, run
from signfuse.training.optim import build_optimizer, build_scheduler, schedule_steps


class ToyModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 1)

    def forward(self, batch):
        return {"loss": ((self.lin(batch["x"]).squeeze(-1) - batch["y"]) ** 2).mean(), "gate": None}


def toy_epoch(epoch: int, n: int) -> list:
    g = torch.Generator().manual_seed(epoch)
    return [{"x": torch.randn(2, 3, generator=g), "y": torch.randn(2, generator=g),
             "names": [f"e{epoch}b{i}a", f"e{epoch}b{i}b"], "skipped": []} for i in range(n)]


class Scalars:
    """A TensorBoard writer that keeps what it is given."""

    def __init__(self):
        self.values = {}

    def add_scalar(self, tag, value, step):
        self.values.setdefault(tag, []).append((step, value))


UNISIGN_FLAGS = ["--epochs", "3", "--warmup-epochs", "1", "--gradient-accumulation-steps", "2", "--lr", "1e-3"]


def test_learning_rate_is_transformers_cosine_step_by_step_for_unisign_flags():
    """3 epochs of 5 micro-batches, steps of 2: Uni-Sign makes int(3 * 5 / 2) = 7 optimizer steps
    (the fifth micro-batch of an epoch goes into the next epoch's first step) and its schedule
    is get_scheduler('cosine', warm-up int(1 * 5 / 2) = 2, total 7): ours, step by step."""
    args = run_parser().parse_args(UNISIGN_FLAGS)
    assert schedule_steps(args, 5) == (2, 7)
    torch.manual_seed(0)
    model = ToyModel()
    optimizer = build_optimizer(model, args)
    stepper = engine.Stepper(model, optimizer, build_scheduler(optimizer, args, 5), accum=2, clip=1.0)
    writer = Scalars()
    ctx = engine.RunContext(args=SimpleNamespace(skip_nonfinite=False, save_every_steps=0), dist=D.DistInfo(),
                            writer=writer, log=lambda *_: None)
    state = engine.TrainState()
    for epoch in range(3):
        state.epoch, state.batch_in_epoch = epoch, 0
        engine.train_one_epoch(model, toy_epoch(epoch, 5), stepper, state, ctx)
    assert state.step == 7 and state.pending == 1  # the last micro-batch waits for a step that never comes

    reference = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    schedule = get_scheduler("cosine", optimizer=reference, num_warmup_steps=2, num_training_steps=7)
    expected = []
    for _ in range(7):  # the learning rate after each optimizer step
        reference.step()
        schedule.step()
        expected.append(schedule.get_last_lr()[0])
    assert [lr for _, lr in writer.values["train/lr"]] == expected  # exactly, step by step
    assert [s for s, _ in writer.values["train/lr"]] == list(range(1, 8))
    assert expected[0] == 5e-4 and expected[1] == 1e-3 and expected[-1] == 0.0  # warm-up, peak, end at 0 (no --min-lr)


def test_optimizer_steps_span_epochs_as_unisigns_deepspeed_counts_them():
    """The same weights as Uni-Sign's loop: loss / accumulation, a step every 2 micro-batches of
    the run, whatever the epoch boundaries."""
    args = run_parser().parse_args(UNISIGN_FLAGS)
    torch.manual_seed(0)
    model, reference_model = ToyModel(), ToyModel()
    reference_model.load_state_dict(model.state_dict())
    optimizer = build_optimizer(model, args)
    stepper = engine.Stepper(model, optimizer, build_scheduler(optimizer, args, 5), accum=2, clip=1.0)
    ctx = engine.RunContext(args=SimpleNamespace(skip_nonfinite=False, save_every_steps=0), dist=D.DistInfo(),
                            log=lambda *_: None)
    state = engine.TrainState()
    for epoch in range(3):
        state.epoch, state.batch_in_epoch = epoch, 0
        engine.train_one_epoch(model, toy_epoch(epoch, 5), stepper, state, ctx)

    opt = build_optimizer(reference_model, args)
    schedule = build_scheduler(opt, args, 5)
    micro = 0
    for epoch in range(3):
        for batch in toy_epoch(epoch, 5):
            (reference_model(batch)["loss"] / 2).backward()
            micro += 1
            if micro % 2 == 0:
                torch.nn.utils.clip_grad_norm_(reference_model.parameters(), 1.0)
                opt.step()
                schedule.step()
                opt.zero_grad()
    for p, q in zip(model.parameters(), reference_model.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize("n,batch,world,batches", [(11, 4, 1, 2), (11, 4, 2, 1), (8, 4, 1, 2), (3, 4, 1, 0)])
def test_training_loader_drops_the_last_partial_batch(n, batch, world, batches):
    """Uni-Sign's DataLoader(drop_last=True) over a DistributedSampler: only whole batches."""
    args = run_parser().parse_args(["--batch-size", str(batch), "--num_workers", "0"])
    assert samplers.train_batches_per_epoch(n, batch, world) == batches
    seen = []
    for rank in range(world):
        loader = inputs.build_loader(list(range(n)), args, D.DistInfo(rank=rank, world_size=world), train=True)
        assert loader.drop_last and len(loader) == batches
        indices = list(loader.sampler)
        assert len(indices) == batches * batch  # the sampler itself yields whole batches only
        seen += indices
        loader.sampler.set_start_batch(1)  # resuming after one batch: the rest, still whole batches
        assert list(loader.sampler) == indices[batch:]
    assert len(set(seen)) == len(seen) or world * batches * batch > n  # no sample twice (unless padded)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from signfuse.demo.synthetic import make_synthetic
    root = tmp_path_factory.mktemp("schedule_data")
    make_synthetic(root, samples=40, seed=1)
    return root


def test_a_run_drops_partial_batches_and_steps_across_epochs(synthetic, tmp_path):
    """14 samples, batches of 4: 3 micro-batches per epoch (2 samples dropped); steps of 2
    micro-batches over 3 epochs: int(3 * 3 / 2) = 4 steps, after micro-batches 2, 4, 6 and 8
    of the run, as Uni-Sign; the schedule ends at 0 on its 4th step."""
    out = tmp_path / "out"
    args = run_parser().parse_args([
        "--dataset", "Synthetic", "--data_root", str(synthetic), "--mt5_model", "tiny", "--device", "cpu",
        "--output_dir", str(out), "--batch-size", "4", "--gradient-accumulation-steps", "2", "--epochs", "3",
        "--num_workers", "0", "--max_length", "16", "--max_samples", "14", "--num_beams", "1",
        "--max_new_tokens", "4", "--eval_every_epochs", "100"])
    run.train(args)
    log = [json.loads(line) for line in (out / "log.txt").read_text().splitlines()]
    assert [e["step"] for e in log] == [1, 3, 4]
    assert [e["train_samples"] for e in log] == [12, 12, 12]
    last = torch.load(out / "last.pth", weights_only=True)
    assert (last["epoch"], last["step"], last["stepper"]["scheduler"]["last_epoch"]) == (3, 4, 4)
    assert log[-1]["lr"] == 0.0


def test_sync_batchnorm_only_for_gpu_processes():
    from signfuse.config import ModelConfig
    from signfuse.models.uni_sign import build_model
    gpus = D.DistInfo(rank=0, world_size=2, device=torch.device("cuda", 0))
    assert D.uses_sync_batchnorm(True, gpus)
    assert not D.uses_sync_batchnorm(False, gpus)  # --no-sync_bn
    assert not D.uses_sync_batchnorm(True, D.DistInfo(world_size=2))  # CPU processes (gloo): plain BatchNorm
    assert not D.uses_sync_batchnorm(True, D.DistInfo(device=torch.device("cuda", 0)))  # one process
    model = build_model(ModelConfig(dataset="Synthetic"), "tiny", seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert D.sync_batchnorm(model, True, D.DistInfo(world_size=2)) is model
    synced = D.sync_batchnorm(model, True, gpus)  # converted as Uni-Sign converts before DDP/DeepSpeed
    kinds = {type(m) for m in synced.modules()}
    assert torch.nn.SyncBatchNorm in kinds and torch.nn.BatchNorm2d not in kinds
    after = synced.state_dict()
    assert list(after) == list(before)  # Uni-Sign's state-dict keys, unchanged values
    assert all(torch.equal(after[k], v) for k, v in before.items())
