"""Several processes: torchrun (DDP, gloo on CPU) and the deepspeed launcher end to end, and
the pieces they rely on (samplers, distributed evaluation, the engine's per-step agreement
between ranks, the replica check) in two gloo processes.

The end-to-end tests run ``fine_tuning.py`` on CPU with the tiny mT5 and a few synthetic
samples, one thread per process.
"""
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import REPO, SUBPROCESS_ENV as ENV, gloo_group, launch
from signfuse.training import distributed as D
from signfuse.training import engine
from signfuse.training.samplers import BatchShardSampler, ResumableSampler


# ----------------------------------------------------------------------------- samplers

@pytest.mark.parametrize("n,world,batch", [(10, 2, 2), (11, 2, 3), (7, 3, 2), (5, 1, 2)])
def test_resumable_sampler_skips_exactly_the_consumed_batches(n, world, batch):
    data = list(range(n))
    for skip in range(0, 4):
        for rank in range(world):
            full = ResumableSampler(data, world, rank, shuffle=True, seed=3, batch_size=batch)
            full.set_epoch(5)
            part = ResumableSampler(data, world, rank, shuffle=True, seed=3, batch_size=batch)
            part.set_epoch(5)
            part.set_start_batch(skip)
            expected = list(full)[skip * batch:]
            assert list(part) == expected
            assert len(part) == len(expected)


def test_resumable_sampler_with_another_number_of_processes_sees_each_sample_once():
    n, batch = 13, 2
    consumed = []
    for rank in range(2):  # 2 batches per rank done by a 2-process run
        s = ResumableSampler(list(range(n)), 2, rank, shuffle=True, seed=0, batch_size=batch)
        consumed += list(s)[: 2 * batch]
    rest, lengths = [], set()
    for rank in range(3):  # continued by 3 processes
        s = ResumableSampler(list(range(n)), 3, rank, shuffle=True, seed=0, batch_size=batch)
        s.set_start_batch(2, world_size=2)
        rest += list(s)
        lengths.add(len(s))
    assert len(set(consumed)) == len(consumed) == 8
    assert set(rest) >= set(range(n)) - set(consumed)  # every unseen sample (and some repeats as padding)
    assert len(lengths) == 1  # as many batches on every rank, or the collectives would not pair up


@pytest.mark.parametrize("n,batch,world", [(9, 2, 2), (4, 2, 3), (1, 4, 2), (10, 3, 4)])
def test_batch_shard_sampler_keeps_single_process_batches(n, batch, world):
    single = list(BatchShardSampler(n, batch, 0, 1))
    shards = [list(BatchShardSampler(n, batch, r, world)) for r in range(world)]
    assert sorted(b for s in shards for b in s) == sorted(single)  # same batches, each once
    assert [i for b in single for i in b] == list(range(n))


def test_deepspeed_launcher_flag_is_accepted():
    from signfuse.cli import run_parser
    assert run_parser().parse_args(["--local_rank=1"]).local_rank == 1
    assert run_parser().parse_args(["--local-rank", "0"]).local_rank == 0
    assert run_parser().parse_args([]).local_rank is None


# ----------------------------------------------------------------------------- two gloo processes

WORDS = "i you mother friend want eat go see happy sad big small hot cold yes no".split()


def eval_samples(n=9):
    """(name, reference, prediction): predictions that share some words with the references."""
    rows = []
    for i in range(n):
        ref = " ".join(WORDS[(i * 3 + k) % len(WORDS)] for k in range(2 + i % 4))
        words = ref.split()
        pred = " ".join(words[: max(1, len(words) - i % 3)] + (["no"] if i % 2 else []))
        rows.append((f"s{i:02d}", ref, pred))
    return rows


class EvalDataset(torch.utils.data.Dataset):
    """Looks like SignDataset to the evaluation (names() in dataset order; items with a name and a target)."""

    def __init__(self, rows):
        self.rows = rows

    def names(self) -> list:
        return [r[0] for r in self.rows]

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


def eval_collate(items):
    return {"names": [r[0] for r in items], "targets": [r[1] for r in items],
            "pred": [r[2] for r in items], "skipped": []}


class FakeNet(torch.nn.Module):
    """generate() returns the batch's canned predictions."""

    def __init__(self):
        super().__init__()
        self.cfg = SimpleNamespace(use_descriptions=False)
        self.w = torch.nn.Parameter(torch.zeros(1))

    def generate(self, batch):
        return list(batch["pred"])


def run_eval(info, out_dir):
    ds = EvalDataset(eval_samples())
    loader = torch.utils.data.DataLoader(ds, batch_sampler=BatchShardSampler(len(ds), 2, info.rank, info.world_size),
                                         collate_fn=eval_collate)
    args = SimpleNamespace(dataset="Synthetic", task="SLT")
    ctx = engine.RunContext(args=args, dist=info, output_dir=Path(out_dir), log=lambda *_: None)
    return engine.evaluate(FakeNet(), loader, ctx, "dev")


class ToyModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 1)
        self.bn = torch.nn.BatchNorm1d(3)  # running statistics: buffers that differ per rank

    def forward(self, batch):
        loss = ((self.lin(self.bn(batch["x"])).squeeze(-1) - batch["y"]) ** 2).mean()
        return {"loss": loss, "gate": None}


def toy_batches(rank, n=8):
    """Rank 1's micro-batch 3 (the end of step 2) has no sample; rank 0's micro-batch 4 has a NaN."""
    g = torch.Generator().manual_seed(100 + rank)
    batches = []
    for i in range(n):
        x, y = torch.randn(2, 3, generator=g), torch.randn(2, generator=g)
        names = [f"r{rank}b{i}a", f"r{rank}b{i}b"]
        if rank == 1 and i == 3:
            x, y, names = x[:0], y[:0], []
        if rank == 0 and i == 4:
            x[0, 0] = float("nan")
        batches.append({"x": x, "y": y, "names": names, "skipped": []})
    return batches


def run_toy_ddp(info):
    torch.manual_seed(0)
    model = D.wrap_ddp(ToyModel(), info)
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    stepper = engine.Stepper(model, opt, sched, accum=2, clip=1.0, dist_info=info)
    assert stepper.ddp
    logs = []
    args = SimpleNamespace(skip_nonfinite=True, save_every_steps=0, gradient_accumulation_steps=2)
    ctx = engine.RunContext(args=args, dist=info, log=logs.append)
    state = engine.TrainState()
    stats = engine.train_one_epoch(model, toy_batches(info.rank), stepper, state, ctx)
    D.broadcast_buffers(model.module, info)
    digest = D.check_replicas(model.module, info)
    return {"digest": digest, "skipped": state.nonfinite_skipped, "steps": state.step, "logs": logs,
            "samples": stats["train_samples"], "finite": all(bool(torch.isfinite(p).all()) for p in model.parameters())}


def gloo_worker(rank, world, store, out_dir):
    torch.set_num_threads(1)
    info = D.DistInfo(rank=rank, world_size=world)
    with gloo_group(rank, world, store):  # left as the product leaves it: barrier, then destroy
        result = {"eval": run_eval(info, Path(out_dir) / "eval2")}
        result["toy"] = run_toy_ddp(info)
        # a rank that drifted apart is caught
        torch.manual_seed(1)
        net = ToyModel()
        if rank == 1:
            net.lin.bias.data += 1e-6
        try:
            D.check_replicas(net, info)
            result["mismatch"] = None
        except D.ReplicaMismatchError as e:
            result["mismatch"] = str(e)
        (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(result))


@pytest.fixture(scope="module")
def gloo_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("gloo")
    torch.multiprocessing.spawn(gloo_worker, args=(2, str(out / "store"), str(out)), nprocs=2, join=True)
    return out, [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def test_distributed_evaluation_equals_a_single_process(gloo_results):
    out, ranks = gloo_results
    single = run_eval(D.DistInfo(), out / "eval1")
    assert 0 < single["bleu4"] < 100 and 0 < single["rouge"] < 100
    for r in ranks:
        assert r["eval"] == single and r["eval"]["samples"] == 9
    for name in ("dev_tmp_pres.txt", "dev_tmp_refs.txt"):
        assert (out / "eval2" / name).read_bytes() == (out / "eval1" / name).read_bytes()


def test_ranks_agree_on_empty_and_nonfinite_micro_batches(gloo_results):
    _, ranks = gloo_results
    a, b = ranks[0]["toy"], ranks[1]["toy"]
    assert a["digest"] == b["digest"] and a["finite"] and b["finite"]
    assert a["skipped"] == b["skipped"] == 1 and a["steps"] == b["steps"] == 4
    assert a["samples"] == 2 * 7 + 2 * 7  # every rank's finite, non-empty micro-batches
    assert any("r0b4a" in m and "step skipped" in m for m in a["logs"])


def test_replica_check_names_the_rank_that_differs(gloo_results):
    _, ranks = gloo_results
    assert ranks[0]["mismatch"] == ranks[1]["mismatch"]
    assert "rank(s) 1 differ from rank 0" in ranks[0]["mismatch"]


# ----------------------------------------------------------------------------- torchrun and deepspeed

def flags(data: Path, out: Path, *extra) -> list:
    return ["--device", "cpu", "--dataset", "Synthetic", "--data_root", str(data), "--mt5_model", "tiny",
            "--use_descriptions", "--desc_dir", str(data / "description"), "--text_dropout_p", "0.3",
            "--batch-size", "2", "--gradient-accumulation-steps", "2", "--epochs", "2", "--max_length", "16",
            "--num_workers", "0", "--max_samples", "10", "--seed", "3", "--save_every_steps", "1",
            "--max_new_tokens", "12", "--num_beams", "2",
            "--output_dir", str(out), *extra]


def torchrun(nproc: int, args: list) -> subprocess.CompletedProcess:
    """``torchrun fine_tuning.py ARGS``: every process succeeds and frees its group."""
    return launch("torchrun", nproc, REPO / "fine_tuning.py", args)


def logged_digest(out: Path) -> str:
    lines = [l for l in (out / "run.txt").read_text().splitlines() if l.startswith("replicas:")]
    assert len(lines) == 1, lines
    return lines[0].split("sha256 ")[1].rstrip(")")


def eval_results(out: Path) -> dict:
    """{split: metrics} from the run.txt of an --eval run, without the timing."""
    res = {}
    for line in (out / "run.txt").read_text().splitlines():
        for split in ("dev", "test"):
            if line.startswith(f"{split}: {{"):
                res[split] = {k: v for k, v in json.loads(line[len(split) + 2:]).items() if k != "time_s"}
    return res


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from signfuse.demo.synthetic import make_synthetic
    root = tmp_path_factory.mktemp("dist_data")
    make_synthetic(root, samples=20, seed=1, min_frames=20, max_frames=76, split=(0.5, 0.25, 0.25))
    return root


@pytest.fixture(scope="module")
def ddp_run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "out"
    torchrun(2, flags(data, out))
    return out


@pytest.mark.slow
def test_torchrun_two_processes_hold_identical_weights(ddp_run):
    out = ddp_run
    log = (out / "run.txt").read_text()
    assert "distributed: 2 processes (DDP, gloo)" in log
    assert log.count("model: ") == 1  # only rank 0 logs
    digest = logged_digest(out)  # every rank's weights hashed and compared at the end
    last = torch.load(out / "last.pth", weights_only=True)
    assert D.state_digest(last["model"]) == digest
    assert D.state_digest(torch.load(out / "checkpoint_1.pth", weights_only=True)["model"]) == digest
    assert last["world_size"] == 2 and len(last["ranks"]) == 2 and last["epoch"] == 2
    assert len(list(out.glob("events.out.tfevents.*"))) == 1  # one TensorBoard writer (rank 0)
    assert [json.loads(l)["epoch"] for l in (out / "log.txt").read_text().splitlines()] == [0, 1]


@pytest.mark.slow
def test_torchrun_evaluation_equals_single_process_evaluation(ddp_run, data, tmp_path):
    ckpt = ddp_run / "checkpoint_1.pth"
    one, two = tmp_path / "one", tmp_path / "two"
    torchrun(2, flags(data, two, "--eval", "--finetune", str(ckpt), "--batch-size", "2"))
    r = subprocess.run([sys.executable, str(REPO / "fine_tuning.py"),
                        *flags(data, one, "--eval", "--finetune", str(ckpt), "--batch-size", "2")],
                       env=ENV, cwd=REPO, capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stderr[-4000:]
    res1, res2 = eval_results(one), eval_results(two)
    assert set(res1) == {"dev", "test"} and res1 == res2  # BLEU from summed statistics, ROUGE gathered
    assert res1["dev"]["samples"] == 5  # 3 batches of 2: one rank has 2 of them, the other 1
    for split in ("dev", "test"):
        for kind in ("pres", "refs"):
            name = f"{split}_tmp_{kind}.txt"
            assert (one / name).read_bytes() == (two / name).read_bytes(), name
        g1, g2 = np.load(one / f"{split}_gates.npz"), np.load(two / f"{split}_gates.npz")
        assert sorted(g1.files) == sorted(g2.files)
        for k in g1.files:
            np.testing.assert_array_equal(g1[k], g2[k])


def max_abs_difference(a: dict, b: dict) -> float:
    """The largest absolute difference between two state dicts of the same keys."""
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0 for k in a)


# DeepSpeed and DDP agree to a tolerance, not to the bit: DeepSpeed computes the gradient norm
# for clipping (and averages the gradients) in its own order, so the last bits of a step can
# differ (issue 11: another digest on another CPU), and Adam carries such differences on.
# Measured on this test's run (torch 2.14.1, CPU, 2 processes; max abs weight difference from
# the torchrun run): DeepSpeed 0 here (3.0e-8 with the training code before issue 11); a
# last-bit change of the clipping threshold at every step (--gradient-clipping 1.0000001 or
# 0.9999999 under torchrun) 2.3e-4 and 3.2e-4; a 10 % larger learning rate 7.7e-3; one more
# epoch of training 4.0. The tolerance passes the first kind by 3x and catches the second by 7x.
DEEPSPEED_TOL = 1e-3


@pytest.mark.slow
def test_deepspeed_launcher_on_cpu_trains_like_torchrun(ddp_run, data, tmp_path):
    """``deepspeed --num_gpus 2 fine_tuning.py ... --device cpu``: the launcher's --local_rank
    selects the DeepSpeed engine (ZeRO stage 0 and float32 on CPU, gloo); its steps fall
    where DDP's do, so it ends with DDP's weights (to DEEPSPEED_TOL)."""
    import deepspeed  # noqa: F401 - installed with the package's [deepspeed] extra: a failure here is one
    out = tmp_path / "ds"
    launch("deepspeed", 2, REPO / "fine_tuning.py", flags(data, out))
    log = (out / "run.txt").read_text()
    assert "distributed: 2 processes (DeepSpeed, gloo)" in log
    logged_digest(out)  # its two processes ended with identical weights (the run checks it)
    last = torch.load(out / "last.pth", weights_only=True)
    ref = torch.load(ddp_run / "last.pth", weights_only=True)
    assert last["step"] == ref["step"] and last["stepper"]["scheduler"]["last_epoch"] == ref["stepper"]["scheduler"]["last_epoch"]
    assert last["stepper"]["optimizer"]["state"].keys() == ref["stepper"]["optimizer"]["state"].keys()
    worst = max_abs_difference(last["model"], ref["model"])
    assert worst <= DEEPSPEED_TOL, f"DeepSpeed's weights differ from DDP's by up to {worst:.3g}"


@pytest.mark.slow
def test_deepspeed_engine_in_one_process_trains_like_torch(data, tmp_path):
    """``python fine_tuning.py --engine deepspeed`` (no launcher): DeepSpeed in a process group of
    one trains as ``--engine torch`` does, and the group is freed at the end, its file store's temporary folder with it.

    Compared by the training loss, not the weights: the two engines' backward passes differ in
    the last bits, and the convolution biases in front of a BatchNorm (whose true gradient is 0)
    get gradients that are pure rounding noise, which AdamW turns into updates of up to ~lr:
    measured (torch 2.14.1) 2.5e-4 apart after 2 steps of 2 samples, 7.9e-4 after this run (2
    steps of 2 micro-batches and a left-over one), while the epoch's mean training loss agrees to
    3.2e-6 relative: asserted to 1e-4, which a 10 % lower lr (1.9e-3 relative) exceeds 19x."""
    logs = {}
    for engine_name in ("torch", "deepspeed"):
        out, tmp = tmp_path / engine_name, tmp_path / f"{engine_name}-tmpdir"
        tmp.mkdir()
        r = subprocess.run([sys.executable, str(REPO / "fine_tuning.py"), *flags(data, out, "--epochs", "1"),
                            "--engine", engine_name], env={**ENV, "TMPDIR": str(tmp)}, cwd=REPO,
                           capture_output=True, text=True, timeout=400)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
        assert D.GROUP_HELD_WARNING not in r.stderr
        assert not list(tmp.glob("signfuse_pg_*")), "the group's file store folder was left behind"
        logs[engine_name] = [json.loads(line) for line in (out / "log.txt").read_text().splitlines()]
    (ours,), (theirs,) = logs["torch"], logs["deepspeed"]
    assert theirs["step"] == ours["step"] == 2 and theirs["train_samples"] == ours["train_samples"] == 10
    assert theirs["lr"] == pytest.approx(ours["lr"], rel=1e-9, abs=1e-12)
    assert theirs["train_loss"] == pytest.approx(ours["train_loss"], rel=1e-4)

LEAVE_SCRIPT = r'''
import os, sys
assert "torch.distributed.fsdp" not in sys.modules and "transformers" not in sys.modules
from signfuse.training import distributed as D

info = D.init_distributed("cpu")
import transformers.modeling_utils  # noqa: F401 - what the run imports after joining (it imports torch FSDP)
D.barrier(info)
freed = D.cleanup()
threads = sorted(open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task"))
with open(os.path.join(sys.argv[1], f"rank{info.rank}.txt"), "w") as f:  # one file per rank: no interleaving
    f.write(f"freed {freed}, threads {threads}")
'''


@pytest.mark.slow
def test_leaving_the_group_frees_it_and_ends_its_threads(tmp_path):
    """After ``cleanup`` no gloo thread is left to run into interpreter exit (where one can abort a
    process whose work is done: "terminate called without an active exception", SIGABRT). Imported
    after the group exists, torch FSDP (via transformers) would keep the group for good."""
    script = tmp_path / "leave.py"
    script.write_text(LEAVE_SCRIPT)
    launch("torchrun", 2, script, [tmp_path])
    for rank in (0, 1):
        said = (tmp_path / f"rank{rank}.txt").read_text()
        assert said.startswith("freed True") and "gloo" not in said, (rank, said)

ZERO_SCRIPT = r'''
import sys, torch, deepspeed
from signfuse.training import distributed as D, engine
from signfuse.training.checkpoint import load_last, save_last

torch.set_num_threads(1)
info = D.init_distributed("cpu")
out = sys.argv[1]


def make():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    config = {"train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 2, "gradient_clipping": 1.0,
              "zero_optimization": {"stage": 2}, "steps_per_print": 10 ** 9}
    eng, _, _, _ = deepspeed.initialize(model=model, optimizer=opt, lr_scheduler=sched, config=config,
                                        dist_init_required=False)
    return eng, engine.DeepSpeedStepper(eng, info)


def train(eng, stepper, steps, start):
    for step in range(start, start + steps):
        for micro in range(2):
            g = torch.Generator().manual_seed(100 * step + 10 * micro + info.rank)
            with stepper.micro_batch(boundary=micro == 1):
                stepper.backward(eng(torch.randn(2, 5, generator=g)).pow(2).mean())
        stepper.apply()


eng, stepper = make()
assert stepper.sharded
train(eng, stepper, 3, 0)
state = stepper.state_dict()  # what run.py's resumable_state gathers and saves
state["optimizer"] = D.gather_objects(state["optimizer"], info)
if info.is_main:
    save_last({"model": eng.module.state_dict(), "stepper": state, "step": 3}, out)
D.barrier(info)
train(eng, stepper, 3, 3)
final = D.state_digest(eng.module.state_dict())

resumed = load_last(out, deepspeed=True)  # weights_only=True, DeepSpeed's plain classes allowed
eng2, stepper2 = make()
eng2.module.load_state_dict(resumed["model"])
stepper2.load_state_dict(resumed["stepper"])
train(eng2, stepper2, 3, 3)
assert D.state_digest(eng2.module.state_dict()) == final
print(f"rank {info.rank}: resumed ZeRO-2 state gives the same weights")
D.barrier(info)  # leave as the product does: together, then destroy and free the group
assert D.cleanup(), D.GROUP_HELD_WARNING
'''


@pytest.mark.slow
def test_deepspeed_zero_optimizer_partitions_round_trip_through_last_pth(tmp_path):
    """ZeRO keeps one partition of the optimizer state per rank: last.pth holds all of them
    (gathered on rank 0), every rank reads its own back, with weights_only loading."""
    script = tmp_path / "zero_resume.py"
    script.write_text(ZERO_SCRIPT)
    r = launch("torchrun", 2, script, [tmp_path])
    assert r.stdout.count("resumed ZeRO-2 state gives the same weights") == 2
