"""signfuse side by side with Uni-Sign's own code, in one process, on the same generated data.

    python benchmarks/bench_vs_unisign.py --unisign /path/to/Uni-Sign      # a local checkout of its code
    python benchmarks/bench_vs_unisign.py --unisign DIR --quick            # a short check (CI-sized)

Uni-Sign's code is imported from ``--unisign`` (a checkout of github.com/ZechengLi19/Uni-Sign;
nothing of it is in this repository); its imports need ``pip install -e '.[bench]'`` (decord,
einops) and DeepSpeed. Its ``from_pretrained`` calls are redirected to the same randomly
initialised mT5 and the tiny tokenizer that signfuse gets; every weight is copied from
signfuse's model into Uni-Sign's (strict load), so both compute the same numbers.

Sections (each compares the outputs before its figures count):
1. pose data pipeline: Uni-Sign's ``S2T_Dataset.load_pose`` vs signfuse's ``load_pose`` +
   ``make_item`` (restricted unpickler, array code) on the same pose files (Uni-Sign's format,
   float32, 200-256 frames: every frame kept, no random draw); parts must be equal.
2. pose encoder forward + backward: each model's forward with mT5 replaced by a small stub that
   reads the pose tokens (prompt embedding, tokenisation and loss kept), then backward; pose
   tokens and every gradient must be bit-equal.
3. pose-only training step: mT5 of mT5-base's width (d_model 768) with ``--layers`` encoder and
   decoder layers and ``--vocab`` tokens, forward, backward, clipping, AdamW; the same seed
   before each model's step (dropout); losses compared step by step.
4. evaluation batch at mT5-base shape (12 + 12 layers, vocabulary 250112, random weights, one
   mT5 shared by both): Uni-Sign's ``evaluate`` runs its full forward (the loss) and then
   ``generate``; signfuse generates only. Token ids must be equal; the forward's cost is what
   skipping it saves.
5. RGB hand crops: Uni-Sign's ``load_support_rgb_dict`` (decord) vs signfuse's
   ``load_hand_crops`` (PyAV) on the same videos, the hands' frames drawn from the same
   legacy NumPy seed; indices and crops must be identical, skeletons equal to float32 rounding.
6. peak memory of a training step (forward + backward) at mT5-base size, each model alone in a
   fresh child process: peak RSS (VmHWM) minus the RSS once the model is built.
7. profile (``--only profile``, not in the default run): the training step of section 3 under
   ``torch.profiler``, the two sides alternating, ``--profile_steps`` steps each after one
   unprofiled step: self CPU time per operator per step and the calls, the operators where the
   two differ most; where the time goes, not a timing (the profiler adds its own cost per call).

Timing: CPU time of this process (``time.process_time``), 1 thread, the two sides' calls
interleaved repeat by repeat (order alternating), medians; beside them the medians of user and
system CPU time (``getrusage``) and of minor page faults. Ratios are Uni-Sign's time /
signfuse's (above 1: signfuse is faster); beside the median of the repeats' ratios a
distribution-free 95 % interval for it (order statistics; ``benchmarks/pool_ratios.py`` pools the
repeats of several runs). Writes docs/results/bench_vs_unisign.json (``--out``).
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before NumPy and torch start their thread pools
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import copy  # noqa: E402
import json  # noqa: E402
import pickle  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from common import (MT5_BASE_JSON, machine_info, machine_line, median_interval, mt5_base_config,  # noqa: E402
                    mt5_from_config_dict, peak_rss_bytes, rss_bytes, write_result)
from signfuse.config import TINY_MT5_DIR, ModelConfig  # noqa: E402
from signfuse.data.dataset import collate_fn, make_item  # noqa: E402
from signfuse.demo.lexicon import WORDS  # noqa: E402
from signfuse.data.pose import load_pose  # noqa: E402
from signfuse.data.transforms import PART_NAMES  # noqa: E402

DATASET = "CSL_Daily"
MiB = 2 ** 20


# ----------------------------------------------------------------------------- Uni-Sign's code

def import_unisign(folder) -> SimpleNamespace:
    """Uni-Sign's ``models`` and ``datasets`` modules, imported from its checkout ``folder``."""
    folder = Path(folder).resolve()
    if not (folder / "models.py").is_file() or not (folder / "stgcn_layers").is_dir():
        raise SystemExit(f"{folder}: not a checkout of Uni-Sign's code (models.py, stgcn_layers/ expected)")
    sys.path.insert(0, str(folder))
    import datasets as us_datasets  # noqa: E402 - Uni-Sign's datasets.py
    import models as us_models  # noqa: E402 - Uni-Sign's models.py
    for module in (us_models, us_datasets):
        if Path(module.__file__).resolve().parent != folder:
            raise SystemExit(f"{module.__name__} was imported from {module.__file__}, not from {folder}")
    return SimpleNamespace(models=us_models, datasets=us_datasets, folder=str(folder))


class Pretrained:
    """Stands in for ``from_pretrained`` in Uni-Sign's models.py: returns the object it is given."""

    def __init__(self, obj):
        self.obj = obj

    def from_pretrained(self, *args, **kwargs):
        return self.obj


def unisign_model(us, mt5, tokenizer, weights: dict):
    """Uni-Sign's Uni_Sign (pose only) around ``mt5`` and ``tokenizer``, loaded with ``weights``."""
    us.models.MT5ForConditionalGeneration = Pretrained(mt5)
    us.models.T5Tokenizer = Pretrained(tokenizer)
    args = SimpleNamespace(hidden_dim=256, dataset=DATASET, rgb_support=False, label_smoothing=0.2)
    model = us.models.Uni_Sign(args)
    model.load_state_dict(weights, strict=True)
    return model


def signfuse_model(mt5, tokenizer, seed: int = 0):
    from signfuse.models.uni_sign import Uni_Sign
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Uni_Sign(ModelConfig(dataset=DATASET, d_model=768), mt5, tokenizer)


def model_pair(us, mt5, tokenizer, share_mt5: bool = False) -> tuple:
    """(signfuse model, Uni-Sign model) with equal weights; each its own mT5 unless ``share_mt5``."""
    ours = signfuse_model(mt5, tokenizer)
    theirs = unisign_model(us, mt5 if share_mt5 else copy.deepcopy(mt5), tokenizer, ours.state_dict())
    return ours, theirs


def tiny_tokenizer():
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(TINY_MT5_DIR, local_files_only=True)


class StubOutput(dict):
    """``out.logits`` (signfuse) and ``out['logits']`` (Uni-Sign)."""

    @property
    def logits(self):
        return self["logits"]


class StubLM(nn.Module):
    """mT5 reduced to what the pose side touches: the prompt's embedding table and a readout of
    the input tokens (every pose token gets a gradient). It keeps the last ``inputs_embeds``."""

    def __init__(self, d_model: int, vocab: int):
        super().__init__()
        self.config = SimpleNamespace(d_model=d_model)
        self.encoder = nn.Module()
        self.encoder.embed_tokens = nn.Embedding(vocab, d_model)
        self.readout = nn.Linear(d_model, vocab)
        self.seen = None

    def prepare_decoder_input_ids_from_labels(self, labels):
        return labels.clamp_min(0)

    def forward(self, inputs_embeds, attention_mask, labels=None, decoder_input_ids=None, return_dict=True):
        self.seen = inputs_embeds.detach()
        L = (labels if labels is not None else decoder_input_ids).shape[1]
        mask = attention_mask[..., None].to(inputs_embeds.dtype)  # (B, P+T, 1)
        pooled = (inputs_embeds * mask).sum(1) / mask.sum(1)  # (B, d_model)
        return StubOutput(logits=self.readout(pooled)[:, None, :].expand(-1, L, -1))  # (B, L, vocab)


# ----------------------------------------------------------------------------- data

def write_pose_files(folder: Path, count: int, seed: int) -> list:
    """``count`` pose files in Uni-Sign's format (lists over frames of (1, 133, 2) / (1, 133)
    float32), 200-256 frames (all kept by both samplers), random points with random confidences."""
    rng = np.random.default_rng(seed)
    names = []
    for i in range(count):
        T = int(rng.integers(200, 257))
        keypoints = rng.uniform(0.1, 0.9, (T, 1, 133, 2)).astype(np.float32)
        scores = rng.uniform(0.0, 1.0, (T, 1, 133)).astype(np.float32)
        name = f"S{i:05d}"
        (folder / f"{name}.pkl").write_bytes(pickle.dumps({"keypoints": list(keypoints), "scores": list(scores)}))
        names.append(name)
    return names


def sentence(rng) -> str:
    return " ".join(rng.choice(WORDS, size=int(rng.integers(6, 14))))


def unisign_dataset(us, pose_dir: Path):
    """Uni-Sign's S2T_Dataset with only what ``load_pose`` reads (no label file)."""
    ds = us.datasets.S2T_Dataset.__new__(us.datasets.S2T_Dataset)
    ds.rgb_support, ds.max_length, ds.pose_dir, ds.phase = False, 256, str(pose_dir), "train"
    return ds


def signfuse_item(pose_dir: Path, name: str, text: str = "") -> dict:
    pose = load_pose(pose_dir / f"{name}.pkl")
    return make_item(pose, name, text=text, target=text, max_length=256)


def batches(us, pose_dir: Path, names: list, B: int, seed: int) -> list:
    """[(signfuse batch, (Uni-Sign src_input, tgt_input))], each side collated by its own code."""
    rng = np.random.default_rng(seed)
    ds = unisign_dataset(us, pose_dir)
    out = []
    for start in range(0, len(names) - B + 1, B):
        group = names[start:start + B]
        texts = [sentence(rng) for _ in group]
        ours = collate_fn([signfuse_item(pose_dir, n, t) for n, t in zip(group, texts, strict=True)])
        theirs = ds.collate_fn([(n, ds.load_pose(f"{n}.mp4")[0], t, "", {}) for n, t in zip(group, texts, strict=True)])
        for part in PART_NAMES:
            assert torch.equal(ours[part], theirs[0][part].float()), part
        assert torch.equal(ours["attention_mask"], theirs[0]["attention_mask"])
        out.append((ours, theirs))
    return out


# ----------------------------------------------------------------------------- timing

FAULTS = {}  # name -> minor page faults of each timed call (the last ``interleaved``)
USER_SYS = {}  # name -> (user, system) CPU seconds of each timed call (the last ``interleaved``)


def interleaved(calls: dict, repeats: int, warmup: int = 1) -> dict:
    """{name: [CPU seconds]} of each zero-argument call, the order alternating every repeat
    (minor page faults per call in FAULTS)."""
    names = list(calls)
    times = {n: [] for n in names}
    FAULTS.clear(), USER_SYS.clear()
    for r in range(warmup + repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            u0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.process_time()
            calls[name]()
            t1, u1 = time.process_time(), resource.getrusage(resource.RUSAGE_SELF)
            if r >= warmup:
                times[name].append(t1 - t0)
                FAULTS.setdefault(name, []).append(u1.ru_minflt - u0.ru_minflt)
                USER_SYS.setdefault(name, []).append((u1.ru_utime - u0.ru_utime, u1.ru_stime - u0.ru_stime))
    return times


def summary(times: dict, per: int = 1) -> dict:
    """Medians (ms, per item), Uni-Sign / signfuse ratio of the medians and the median of each
    repeat's ratio (its two calls ran back to back on the same input), every repeat, page faults."""
    med = {n: 1000 * statistics.median(t) / per for n, t in times.items()}
    paired = [u / s for s, u in zip(times["signfuse"], times["unisign"], strict=True)]  # the same repeat's two calls
    ci = median_interval(paired)  # distribution-free, for the median of the repeats' ratios
    return {"signfuse_ms": round(med["signfuse"], 2), "unisign_ms": round(med["unisign"], 2),
            "ratio_unisign_over_signfuse": round(med["unisign"] / med["signfuse"], 3),
            "ratio_median_of_repeats": round(statistics.median(paired), 3),
            "ratio_median_of_repeats_interval_95": [None if x is None else round(x, 3) for x in (ci["low"], ci["high"])],
            "repeats_ms": {n: [round(1000 * x / per, 2) for x in t] for n, t in times.items()},
            "minor_page_faults_median": {n: int(statistics.median(f)) for n, f in FAULTS.items()},
            "user_ms_median": {n: round(1000 * statistics.median(u for u, _ in v) / per, 2) for n, v in USER_SYS.items()},
            "system_ms_median": {n: round(1000 * statistics.median(s for _, s in v) / per, 2) for n, v in USER_SYS.items()}}


# ----------------------------------------------------------------------------- 1. data pipeline

def measure_data(us, pose_dir: Path, names: list, repeats: int) -> dict:
    ds = unisign_dataset(us, pose_dir)
    worst = 0.0
    for name in names:
        theirs, _ = ds.load_pose(f"{name}.mp4")
        ours = signfuse_item(pose_dir, name)
        for part in PART_NAMES:
            assert theirs[part].shape == ours[part].shape, part
            worst = max(worst, float((theirs[part].double() - torch.from_numpy(ours[part]).double()).abs().max()))
    calls = {"signfuse": lambda: [signfuse_item(pose_dir, n) for n in names],
             "unisign": lambda: [ds.load_pose(f"{n}.mp4") for n in names]}
    return {**summary(interleaved(calls, repeats), per=len(names)), "files": len(names),
            "max_abs_diff": worst, "unit": "ms per sample"}


# ----------------------------------------------------------------------------- 2. pose encoder

def fwd_bwd(model, args_):
    model.zero_grad(set_to_none=True)
    out = model(*args_)
    out["loss"].backward()
    return out["loss"].detach()


def measure_encoder(us, pairs: list, tokenizer, repeats: int) -> dict:
    stub = StubLM(768, len(tokenizer))
    ours, theirs = model_pair(us, stub, tokenizer)
    ours.train(), theirs.train()
    batch, (src, tgt) = pairs[0]
    fwd_bwd(ours, (batch,)), fwd_bwd(theirs, (src, tgt))
    assert torch.equal(ours.mt5_model.seen, theirs.mt5_model.seen), "pose tokens differ"
    grads = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        assert torch.equal(p.grad, grads[name].grad), f"gradient of {name} differs"
    calls = {"signfuse": lambda: fwd_bwd(ours, (batch,)), "unisign": lambda: fwd_bwd(theirs, (src, tgt))}
    B, T = batch["body"].shape[:2]
    return {**summary(interleaved(calls, repeats)), "batch": B, "frames": T,
            "check": "pose tokens (mT5's inputs_embeds) and every gradient bit-equal", "unit": "ms per batch"}


# ----------------------------------------------------------------------------- 3. training step

def train_step(model, optimizer, args_, seed: int) -> float:
    torch.manual_seed(seed)  # the same dropout masks in both
    optimizer.zero_grad(set_to_none=True)
    loss = model(*args_)["loss"]
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return float(loss.detach())


def measure_train(us, pairs: list, tokenizer, layers: int, vocab: int, repeats: int) -> dict:
    config, _ = mt5_base_config(layers=layers, vocab=vocab)
    ours, theirs = model_pair(us, mt5_from_config_dict(config, seed=0), tokenizer)
    ours.train(), theirs.train()
    opt = {"signfuse": torch.optim.AdamW(ours.parameters(), lr=1e-4),
           "unisign": torch.optim.AdamW(theirs.parameters(), lr=1e-4)}
    losses = {"signfuse": [], "unisign": []}
    step = {"n": 0}

    def call(name, model):
        def run():
            batch, unisign_args = pairs[step["n"] // 2 % len(pairs)]
            losses[name].append(train_step(model, opt[name], (batch,) if name == "signfuse" else unisign_args,
                                           seed=step["n"] // 2))
            step["n"] += 1
        return run
    times = interleaved({"signfuse": call("signfuse", ours), "unisign": call("unisign", theirs)}, repeats)
    diff = max(abs(a - b) / abs(b) for a, b in zip(losses["signfuse"], losses["unisign"], strict=True))
    B, T = pairs[0][0]["body"].shape[:2]
    return {**summary(times), "steps": len(losses["signfuse"]), "batch": B, "frames_max": T,
            "losses_bit_equal": losses["signfuse"] == losses["unisign"], "max_relative_loss_diff": diff,
            "losses": [round(x, 6) for x in losses["signfuse"]],
            "mt5": {"d_model": config["d_model"], "layers": layers, "vocab": vocab, "weights": "random"},
            "step": "forward, backward, clip 1.0, AdamW (lr 1e-4), float32", "unit": "ms per step"}


# ----------------------------------------------------------------------------- 7. profile

def profiled_ops(fn) -> dict:
    """{operator: (self CPU ms, calls)} of one call of ``fn`` under torch.profiler."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key: (e.self_cpu_time_total / 1000, e.count) for e in prof.key_averages()}


def measure_profile(us, pairs: list, tokenizer, layers: int, vocab: int, steps: int, top: int = 12) -> dict:
    config, _ = mt5_base_config(layers=layers, vocab=vocab)
    ours, theirs = model_pair(us, mt5_from_config_dict(config, seed=0), tokenizer)
    ours.train(), theirs.train()
    sides = {"signfuse": (ours, torch.optim.AdamW(ours.parameters(), lr=1e-4)),
             "unisign": (theirs, torch.optim.AdamW(theirs.parameters(), lr=1e-4))}
    totals = {name: {} for name in sides}
    for step in range(steps + 1):  # step 0: not profiled (first-call allocations)
        batch, unisign_args = pairs[step % len(pairs)]
        for name in (list(sides) if step % 2 == 0 else list(sides)[::-1]):
            model, opt = sides[name]
            args_ = (batch,) if name == "signfuse" else unisign_args
            ops = profiled_ops(lambda: train_step(model, opt, args_, seed=step))  # noqa: B023 - called at once
            for op, (ms, calls) in (ops.items() if step else ()):
                before = totals[name].get(op, (0.0, 0))
                totals[name][op] = (before[0] + ms / steps, before[1] + calls / steps)
    ops = set(totals["signfuse"]) | set(totals["unisign"])

    def row(op):
        (s_ms, s_n), (u_ms, u_n) = (totals[n].get(op, (0.0, 0)) for n in ("signfuse", "unisign"))
        return {"signfuse_ms": round(s_ms, 1), "unisign_ms": round(u_ms, 1), "signfuse_calls": s_n, "unisign_calls": u_n}
    biggest = sorted(ops, key=lambda op: -max(row(op)["signfuse_ms"], row(op)["unisign_ms"]))
    differing = sorted(ops, key=lambda op: -abs(row(op)["signfuse_ms"] - row(op)["unisign_ms"]))
    return {"self_cpu_ms_per_step": {n: round(sum(ms for ms, _ in totals[n].values()), 1) for n in sides},
            "largest": {op: row(op) for op in biggest[:top]}, "most_different": {op: row(op) for op in differing[:top]},
            "steps": steps, "unit": "self CPU ms per step (torch.profiler)"}


# ----------------------------------------------------------------------------- 4. evaluation

def measure_eval(us, pairs: list, tokenizer, new_tokens: int, repeats: int, layers=None, vocab=None) -> dict:
    config, _ = mt5_base_config(layers=layers, vocab=vocab)
    ours, theirs = model_pair(us, mt5_from_config_dict(config, seed=0), tokenizer, share_mt5=True)
    ours.eval(), theirs.eval()
    batch, (src, tgt) = pairs[0]
    ids = {}

    @torch.no_grad()
    def unisign_eval(parts):
        t0 = time.process_time()
        out = theirs(src, tgt)  # its evaluate(): the loss first
        t1 = time.process_time()
        ids["unisign"] = theirs.generate(out, max_new_tokens=new_tokens, num_beams=4)
        parts.append((t1 - t0, time.process_time() - t1))

    def signfuse_eval():
        ids["signfuse"] = ours.generate_ids(batch, max_new_tokens=new_tokens, num_beams=4)

    parts = []
    times = interleaved({"signfuse": signfuse_eval, "unisign": lambda: unisign_eval(parts)}, repeats, warmup=0)
    assert torch.equal(ids["signfuse"], ids["unisign"]), "generated ids differ"
    forward = statistics.median(p[0] for p in parts)
    B, T = batch["body"].shape[:2]
    return {**summary(times), "unisign_forward_before_generate_ms": round(1000 * forward, 1),
            "saved_share_of_unisign_eval": round(forward / statistics.median(times["unisign"]), 3),
            "batch": B, "frames_max": T, "generated_tokens": int(ids["signfuse"].shape[1]),
            "max_new_tokens": new_tokens, "num_beams": 4, "ids_equal": True,
            "mt5": {"config": str(MT5_BASE_JSON.name), "layers": config["num_layers"], "vocab": config["vocab_size"],
                    "weights": "random (one instance shared by both)"}, "unit": "ms per batch"}


# ----------------------------------------------------------------------------- 5. RGB hand crops

def measure_rgb(us, folder: Path, count: int, frames: int, size: int, repeats: int) -> dict:
    from bench_rgb import synthetic_pose, write_video
    from torchvision import transforms
    from signfuse.data.hand_crops import RGBSettings, load_hand_crops

    transform = transforms.Compose([transforms.ToTensor(),
                                    transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    samples = []
    for i in range(count):
        pose = synthetic_pose(frames, seed=i)
        path = folder / f"video{i}.mp4"
        write_video(path, pose, size, "libx264", {"crf": "23", "g": "250", "bf": "3"}, seed=i)
        samples.append((pose, np.arange(frames), path))
    rep = {"n": 0}

    def ours(pose, idx, path):
        return load_hand_crops(pose, idx, path, RGBSettings(video_dir=str(folder)), train=True,
                               rng=np.random.RandomState(rep["n"]))

    def theirs(pose, idx, path):
        np.random.seed(rep["n"])  # Uni-Sign draws from NumPy's global generator
        return us.datasets.load_support_rgb_dict(idx, list(pose.keypoints[idx][:, None]),
                                                 list(pose.scores[idx][:, None]), str(path), transform)
    worst = 0.0
    for s in samples:
        a, b = ours(*s), theirs(*s)
        for key in a:
            x, y = torch.as_tensor(np.asarray(a[key])), b[key]
            if key.endswith("skeletons_norm"):
                worst = max(worst, float((x.double() - y.double()).abs().max()))
            else:
                assert torch.equal(x, y.to(x.dtype)) and x.shape == y.shape, key
    calls = {"signfuse": lambda: [ours(*s) for s in samples], "unisign": lambda: [theirs(*s) for s in samples]}

    def advance(fn):
        def run():
            fn()
            rep["n"] += 1
        return run
    times = interleaved({k: advance(v) for k, v in calls.items()}, repeats)
    return {**summary(times, per=count), "videos": count, "frames": frames, "size": size,
            "codec": "libx264 crf 23, GOP 250, 3 B-frames", "check": "indices and crops identical",
            "skeletons_max_abs_diff": worst, "unit": "ms per sample"}


# ----------------------------------------------------------------------------- 6. peak memory

def memory_child(args) -> dict:
    """One training step (forward + backward) of one side at mT5-base size, alone in this process."""
    us = import_unisign(args.unisign)
    base = rss_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        names = write_pose_files(Path(tmp), args.batch, args.seed)
        batch, (src, tgt) = batches(us, Path(tmp), names, args.batch, args.seed)[0]
    tokenizer = tiny_tokenizer()
    config, _ = mt5_base_config()
    mt5 = mt5_from_config_dict(config, seed=0)
    if args._child == "signfuse":
        model, inputs = signfuse_model(mt5, tokenizer), (batch,)
    else:
        model, inputs = unisign_model(us, mt5, tokenizer, signfuse_model(mt5, tokenizer).state_dict()), (src, tgt)
    model.train()
    built = rss_bytes()
    torch.manual_seed(args.seed)  # the same dropout masks on both sides (their losses are compared)
    loss = fwd_bwd(model, inputs)
    peak = peak_rss_bytes()
    return {"peak_minus_imports": peak - base, "peak_minus_built": peak - built, "loss": float(loss)}


def measure_memory(args) -> dict:
    out = {}
    for side in ("signfuse", "unisign"):
        argv = [sys.executable, __file__, "--unisign", args.unisign, "--batch", str(args.batch),
                "--seed", str(args.seed), "--_child", side]
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"memory child {side} failed:\n{done.stderr[-3000:]}")
        out[side] = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["signfuse"]["loss"] == out["unisign"]["loss"], out
    fig = {f"{side}_{k}_mib": round(v[k] / MiB) for side, v in out.items()
           for k in ("peak_minus_imports", "peak_minus_built")}
    fig["saved_mib"] = fig["unisign_peak_minus_built_mib"] - fig["signfuse_peak_minus_built_mib"]
    return {**fig, "losses_equal": True, "what": "forward + backward of one B x T~230 batch, mT5-base "
            "(12 + 12 layers, vocabulary 250112, random weights), float32; each side alone in a fresh process; "
            "peak RSS (VmHWM) minus the RSS after imports / after the model is built"}


# ----------------------------------------------------------------------------- main

SECTIONS = ("data", "encoder", "train", "eval", "rgb", "memory", "profile")
DEFAULT_SECTIONS = SECTIONS[:-1]  # the profile only when asked


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--unisign", required=True, help="a local checkout of Uni-Sign's code (never vendored)")
    p.add_argument("--files", type=int, default=300, help="pose files for the data pipeline")
    p.add_argument("--videos", type=int, default=20, help="videos for the RGB hand crops")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--layers", type=int, default=1, help="mT5 encoder and decoder layers of the training step")
    p.add_argument("--vocab", type=int, default=32128, help="mT5 vocabulary of the training step")
    p.add_argument("--repeats", type=int, default=9, help="interleaved repeats (medians) of the model sections")
    p.add_argument("--data_repeats", type=int, default=5)
    p.add_argument("--eval_repeats", type=int, default=3)
    p.add_argument("--new_tokens", type=int, default=30, help="max_new_tokens of the evaluation's generate")
    p.add_argument("--only", nargs="*", choices=SECTIONS, default=list(DEFAULT_SECTIONS))
    p.add_argument("--profile_steps", type=int, default=2, help="profiled training steps a side (--only profile)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="small: 20 files, 2 videos, 3 repeats, eval with 2 layers")
    p.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs/results/bench_vs_unisign.json"))
    p.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.files, args.videos, args.repeats, args.data_repeats, args.eval_repeats = 20, 2, 3, 2, 1
    return args


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(1)
    if args._child:
        print(json.dumps(memory_child(args)))
        return
    info = machine_info()
    us = import_unisign(args.unisign)
    tokenizer = tiny_tokenizer()
    figures = {}
    settings = {"unisign": "Uni-Sign's code from --unisign (its commit: see git -C DIR log)", "device": "cpu",
                "threads": 1, "clock": "process CPU time", "statistic": "median of interleaved repeats",
                "ratio": "Uni-Sign time / signfuse time (above 1: signfuse faster)", "batch": args.batch,
                "repeats": args.repeats, "quick": args.quick, "gpu": "none (CPU only)"}

    def section(name, fn, *a):
        try:
            figures[name] = fn(*a)
        except Exception as e:  # noqa: BLE001 - one failed section must not lose the others' figures
            figures[name] = {"error": f"{type(e).__name__}: {e}"}
        write_result(args.out, figures, settings, info)  # after every section: nothing measured is lost
        print(f"{name}: {json.dumps({k: v for k, v in figures[name].items() if k not in ('repeats_ms', 'losses')})}",
              flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        names = write_pose_files(folder, max(args.files, 4 * args.batch), args.seed)
        pairs = batches(us, folder, names[:4 * args.batch], args.batch, args.seed)
        if "data" in args.only:
            section("pose data pipeline", measure_data, us, folder, names[:args.files], args.data_repeats)
        if "encoder" in args.only:
            section("pose encoder forward + backward", measure_encoder, us, pairs, tokenizer, args.repeats)
        if "train" in args.only:
            section("pose-only training step", measure_train, us, pairs, tokenizer, args.layers, args.vocab,
                    args.repeats)
        if "profile" in args.only:
            section("training step profile", measure_profile, us, pairs, tokenizer, args.layers, args.vocab,
                    args.profile_steps)
        if "eval" in args.only:
            layers, vocab = (2, 32128) if args.quick else (None, None)
            section("evaluation batch", measure_eval, us, pairs, tokenizer, args.new_tokens, args.eval_repeats,
                    layers, vocab)
        if "rgb" in args.only:
            section("RGB hand crops", measure_rgb, us, folder, args.videos, 200, 384, args.data_repeats)
    if "memory" in args.only and not args.quick:
        section("training step peak memory", measure_memory, args)
    print(machine_line(info))
    for what, f in figures.items():
        if "ratio_unisign_over_signfuse" in f:
            print(f"{what:<36} signfuse {f['signfuse_ms']:>10.1f} {f['unit']:<14} Uni-Sign {f['unisign_ms']:>10.1f}"
                  f"   Uni-Sign / signfuse {f['ratio_unisign_over_signfuse']:.3f}x"
                  f" (median of the repeats' ratios {f['ratio_median_of_repeats']:.3f}x,"
                  f" 95% interval {f['ratio_median_of_repeats_interval_95']})")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
