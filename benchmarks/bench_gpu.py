"""Training step on a GPU at mT5-base size: pose-only, gated and RGB-pose, eager vs --compile, DDP vs DeepSpeed.

    python benchmarks/bench_gpu.py              # on a GPU: the real mT5-base shape, bf16, B=8, T=256 (<= 8 min)
    python benchmarks/bench_gpu.py --tiny       # anywhere (CPU): the tiny model, float32, to check the script

Each row builds one model alone on the device (mT5 of tests/data/mt5-base-config.json: 12 + 12
layers, vocabulary 250112, random weights; Uni-Sign's pose widths; the tiny tokenizer), wraps it
with signfuse's own engine code (``training.run.wrap_model``: DDP in a process group of one, or a
DeepSpeed engine configured from Uni-Sign's flags: ZeRO stage 2, bf16) and times training steps
(forward, loss, backward, clipping, AdamW: signfuse's ``Stepper``), bf16 autocast on a GPU.
Models: pose-only (Uni-Sign), gated (descriptions through the gate, texts from an embedding store,
about one described frame in 8), RGB-pose (``--rgb_support``, ~10 % of the frames of each hand
with a crop, ``--rgb_gate_init small``). ``--compile``: signfuse's ``compile_model`` (pose
encoder and fusion, static shapes); its compilation time is reported apart from the steps.
Figures per row: ms/step (median after warm-up), samples/s, peak GPU memory
(``max_memory_allocated``; on CPU the peak RSS of the process so far), and the device's name.
Rows run in order until ``--budget_s`` is spent (the rest are listed as not run).
Writes docs/results/bench_gpu.json (``--out``; ``--tiny``: docs/results/bench_gpu_tiny.json).
"""
import argparse
import gc
import math
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from common import (MT5_BASE_JSON, RESULTS, description_batch, description_pool, machine_info, machine_line,
                    mt5_base_config, mt5_from_config_dict, peak_rss_bytes, pose_batch, to_device, write_result)

MiB = 2 ** 20
MODELS = ("pose-only", "gated", "RGB-pose")
# eager rows first (DDP, then DeepSpeed), the compiled ones last: their compilation takes the longest
ROWS = [(m, False, "ddp") for m in MODELS] + [(m, False, "deepspeed") for m in MODELS] + \
       [(m, True, "ddp") for m in MODELS]


def rgb_keys(B: int, T: int, seed: int) -> dict:
    """RGB keys of a batch: per sample and hand ceil(10 % of T) sorted positions, random crops."""
    g = torch.Generator().manual_seed(seed)
    k = math.ceil(0.1 * T)
    batch = {}
    for hand in ("left", "right"):
        idx = torch.cat([torch.randperm(T, generator=g)[:k].sort().values for _ in range(B)])  # (B*k,)
        batch[f"{hand}_sampled_indices"] = idx
        batch[f"{hand}_hands"] = torch.randn(B * k, 3, 112, 112, generator=g)
        batch[f"{hand}_skeletons_norm"] = torch.rand(B * k, 21, 2, generator=g)
        batch[f"{hand}_rgb_len"] = [k] * B
    return batch


def make_batch(name: str, B: int, T: int, pool: list, device) -> dict:
    batch = pose_batch(B, T, seed=0)
    if name == "gated":
        desc = description_batch(B, T, pool, seed=0)
        desc.pop("aligned")
        batch.update(desc)
    if name == "RGB-pose":
        batch.update(rgb_keys(B, T, seed=0))
    return to_device(batch, device)


TINY_WIDTHS = {"d_model": 64, "d_ff": 128, "num_heads": 4, "d_kv": 16}  # --tiny: mT5's widths shrunk too


def model_config(args) -> dict:
    config, _ = mt5_base_config(layers=args.layers, vocab=args.vocab)
    return {**config, **TINY_WIDTHS} if args.tiny else config


def build(name: str, args, device, store_path):
    """One Uni_Sign of ``name`` on ``device`` (weights drawn there: fast on a GPU)."""
    from transformers import AutoTokenizer
    from signfuse.config import TINY_MT5_DIR, ModelConfig
    from signfuse.models.text_store import EmbeddingStore
    from signfuse.models.uni_sign import Uni_Sign

    config = model_config(args)
    cfg = ModelConfig(dataset="Synthetic", d_model=config["d_model"], text_dim=config["d_model"],
                      use_descriptions=name == "gated", text_fusion_type="gating",
                      rgb_support=name == "RGB-pose", rgb_gate_init="small",
                      gcn_channels=args.gcn_channels)
    with torch.device(device):
        mt5 = mt5_from_config_dict(config, seed=0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = Uni_Sign(cfg, mt5, AutoTokenizer.from_pretrained(TINY_MT5_DIR, local_files_only=True))
    if name == "gated":
        model.text_source = EmbeddingStore.open(store_path).to(device)
    return model.to(device)


def run_args(engine: str, B: int, device) -> SimpleNamespace:
    """The run flags that signfuse's engine code reads (Uni-Sign's defaults: ZeRO 2, bf16, clip 1)."""
    from signfuse.flags import run_parser
    argv = ["--engine", "deepspeed" if engine == "deepspeed" else "torch", "--batch-size", str(B),
            "--gradient-accumulation-steps", "1", "--dtype", "bf16", "--zero_stage", "2", "--lr", "1e-4",
            "--epochs", "1", "--device", str(device)]
    return run_parser().parse_args(argv)


def wrapped(model, engine: str, args, info):
    """(model, stepper) through signfuse's wrap_model; DDP even in a group of one."""
    from signfuse.training import distributed as D
    from signfuse.training.engine import Stepper
    from signfuse.training.optim import build_optimizer
    from signfuse.training.parallel import wrap_model
    opt = build_optimizer(model, args)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    if engine == "deepspeed":
        return wrap_model(model, args, info, opt, sched, log=lambda *a: None)
    ddp = D.wrap_ddp(model, info, find_unused_parameters=True)  # find_unused: the fusions and RGB, as runs do
    return ddp, Stepper(ddp, opt, sched, 1, args.gradient_clipping, None, info)


def step(model, stepper, batch, device) -> float:
    with stepper.micro_batch(True):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = model(batch)["loss"]
        stepper.backward(loss)
    stepper.finish()
    stepper.apply()
    return float(loss.detach())


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_row(name, compiled, engine, args, device, info, store_path, pool) -> dict:
    from signfuse.models.compiled import compile_model
    model = build(name, args, device, store_path).train()
    if compiled:
        compile_model(model)
    wrapped_model, stepper = wrapped(model, engine, run_args(engine, args.batch, device), info)
    batch = make_batch(name, args.batch, args.frames, pool, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    losses = [step(wrapped_model, stepper, batch, device)]  # the first step: compilation, allocations
    sync(device)
    first_s = time.perf_counter() - t0
    times = []
    for i in range(args.warmup + args.steps):
        t = time.perf_counter()
        losses.append(step(wrapped_model, stepper, batch, device))
        sync(device)
        if i >= args.warmup:
            times.append(time.perf_counter() - t)
    ms = 1000 * statistics.median(times)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else peak_rss_bytes()
    row = {"model": name, "compile": compiled, "engine": engine, "device": device_name(device),
           "ms_per_step": round(ms, 2), "samples_per_s": round(args.batch / (ms / 1000), 2),
           "peak_memory_mib": round(peak / MiB, 1),
           "peak_memory_kind": "CUDA max_memory_allocated" if device.type == "cuda" else "process peak RSS so far",
           "first_step_s": round(first_s, 2), "losses_finite": all(math.isfinite(x) for x in losses),
           "ms_all": [round(1000 * t, 2) for t in times]}
    del wrapped_model, stepper, model, batch
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def device_name(device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from common import cpu_model
    return f"CPU: {cpu_model()}"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="tiny model on CPU (checks the script; no GPU claim)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--frames", type=int, default=256)
    p.add_argument("--steps", type=int, default=10, help="timed steps per row (median)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps after the first")
    p.add_argument("--budget_s", type=float, default=330,
                   help="start no row after this many seconds (a compiled row takes 1-2 min: the run stays under 8)")
    p.add_argument("--rows", default=None, help="comma-separated row numbers to run (default: all)")
    p.add_argument("--device", default=None)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    args.layers, args.vocab, args.gcn_channels = None, None, (64, 128, 256)
    if args.tiny:
        args.batch, args.frames, args.steps, args.warmup = 2, 16, 2, 0
        args.layers, args.vocab, args.gcn_channels = 1, 512, (8, 16, 32)
    args.out = args.out or str(RESULTS / ("bench_gpu_tiny.json" if args.tiny else "bench_gpu.json"))
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    from signfuse.models.text_store import write_store
    from signfuse.training import distributed as D
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() and not args.tiny else "cpu"))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    info = machine_info(device)
    dist_info = D.DistInfo(device=device)
    D.import_before_the_group(deepspeed=True)
    D.init_single_process_group(dist_info)
    pool = description_pool(200)
    chosen = [int(i) for i in args.rows.split(",")] if args.rows else range(len(ROWS))
    rows, not_run, start = [], [], time.perf_counter()
    config = model_config(args)
    with tempfile.TemporaryDirectory() as tmp:
        g = torch.Generator().manual_seed(0)
        store = write_store(Path(tmp) / "store.safetensors", pool, torch.randn(len(pool), config["d_model"], generator=g),
                            {"encoder": "benchmark (random vectors)"})
        for i in chosen:
            name, compiled, engine = ROWS[i]
            if time.perf_counter() - start > args.budget_s:
                not_run.append({"model": name, "compile": compiled, "engine": engine, "why": "budget spent"})
                continue
            row = measure_row(name, compiled, engine, args, device, dist_info, store, pool)
            rows.append(row)
            print(f"{name:<10} compile={str(compiled):<5} {engine:<9} {row['ms_per_step']:>9.1f} ms/step "
                  f"{row['samples_per_s']:>8.2f} samples/s  peak {row['peak_memory_mib']:>9.1f} MiB  "
                  f"(first step {row['first_step_s']:.1f} s)  [{row['device']}]", flush=True)
    D.cleanup()
    settings = {"tiny": args.tiny, "batch": args.batch, "frames": args.frames, "steps": args.steps,
                "warmup": args.warmup, "statistic": "median wall time per step (synchronised)",
                "dtype": "bf16 autocast" if device.type == "cuda" else "float32 (CPU)",
                "model": {"config": str(MT5_BASE_JSON.name), "layers": config["num_layers"],
                          "vocab": config["vocab_size"], "d_model": config["d_model"],
                          "pose_widths": list(args.gcn_channels), "weights": "random"},
                "deepspeed": "ZeRO stage 2, bf16 (on CPU: stage 0, float32)", "ddp": "process group of one",
                "claim": "none: a CPU run only shows the script works" if device.type != "cuda" else "GPU figures"}
    figures = {"device": device_name(device), "rows": rows, "not_run": not_run}
    result = write_result(args.out, figures, settings, info)
    print(machine_line(info))
    print(f"written: {args.out}")
    return result


if __name__ == "__main__":
    main()
