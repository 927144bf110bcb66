"""Training-step time and peak memory: pose-only vs gating vs cross-attention, online vs store.

    python benchmarks/bench_step.py --threads 1 --clock process   # B=8, T=256, d_model 768; on CPU 2 layers, vocab 32128
    python benchmarks/bench_step.py --full     # mT5-base: 12 layers, vocab 250112
    python benchmarks/bench_step.py --quick    # CI: B=2, T=64, 1 layer, vocab 8192, 2 steps

A training step is what fine-tuning does: forward, label-smoothed loss, backward, gradient
clipping (1.0), AdamW step (bf16 autocast on GPU, float32 on CPU). Models: Uni_Sign with
mT5-base's width (tests/data/mt5-base-config.json, random weights, the tiny tokenizer), the
pose encoder at Uni-Sign's widths. Descriptions: about one described frame in 8, the frames
between interpolated. "online": the frozen text encoder (same shape as mT5's encoder, its own
weights) with its cache cleared before every step (the first epoch: every text new);
"store": EmbeddingStore lookups (signfuse precompute-text).

Time: every variant built in this one process around one shared mT5, their steps
interleaved round by round (drift hits all alike), median per variant. Memory: each variant
alone in a fresh child process of this script: CUDA max_memory_allocated on GPU; on CPU the
peak resident set size (/proc VmHWM) minus the RSS after imports. Prints the figures and writes
them with the machine and the settings to docs/results/bench_step.json (``--out``).
"""
import argparse
import json
import subprocess
import sys
import tempfile

import torch

from common import (CLOCK_HELP, CLOCKS, VARIANTS, add_out_arg, build_language_model, build_text_encoder,
                    build_variant, description_pool, machine_info, machine_line, median_ms, peak_rss_bytes,
                    rss_bytes, synthetic_batch, timed, write_pool_store, write_result, start)

TARGETS = {"gating + store": 0.05, "cross_attn + store": 0.15}  # slower than pose-only, at most
MiB = 2 ** 20


def setup(args, device, store_path=None, names=tuple(VARIANTS)):
    """-> (models {name: Uni_Sign}, optimizers {name: [AdamW]}, batch, shared, store path)."""
    from signfuse.models.text_store import EmbeddingStore

    shared = build_language_model(args.layers, args.vocab, device, args.seed)
    pool = description_pool(args.pool, args.seed)
    sources = {}
    if any(VARIANTS[n][2] == "online" for n in names) or store_path is None:
        sources["online"] = build_text_encoder(shared["config"], shared["tokenizer"], device)
    if store_path is None:
        store_path = write_pool_store(sources["online"], pool, args.folder)
    sources["store"] = EmbeddingStore.open(store_path).to(device)
    models = {n: build_variant(n, shared, sources, device, args.seed) for n in names}
    mt5_params = list(shared["mt5"].parameters())
    mt5_opt = torch.optim.AdamW(mt5_params, lr=1e-5)  # one optimizer for the shared weights
    shared_ids = {id(p) for p in mt5_params}
    optimizers = {n: [mt5_opt, torch.optim.AdamW([p for p in m.parameters() if id(p) not in shared_ids],
                                                 lr=1e-5)] for n, m in models.items()}
    batch = synthetic_batch(args.batch, args.frames, pool, device, args.seed)
    return models, optimizers, batch, shared, store_path


def train_step(model, optimizers, batch, device):
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    source = getattr(model, "text_source", None)
    if hasattr(source, "clear_cache"):
        source.clear_cache()  # online: every text encoded again
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        loss = model(batch)["loss"]
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    for opt in optimizers:
        opt.step()
    return loss.detach()


def memory_child(args, device) -> dict:
    """Build one variant alone, run a few steps, report its peak memory (bytes)."""
    base = rss_bytes()
    models, optimizers, batch, _, _ = setup(args, device, args._store, names=(args._child,))
    model = models[args._child].train()
    for _ in range(3):
        train_step(model, optimizers[args._child], batch, device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return {"peak": torch.cuda.max_memory_allocated(device)}
    return {"peak": peak_rss_bytes() - base}


def measure_memory(args, name, store_path) -> float:
    """Peak memory (MiB) of a child process of this script training ``name`` alone."""
    argv = [sys.executable, __file__, "--batch", str(args.batch), "--frames", str(args.frames),
            "--layers", str(args.layers), "--vocab", str(args.vocab), "--pool", str(args.pool),
            "--seed", str(args.seed), "--_child", name, "--_store", str(store_path)]
    argv += ["--device", args.device] if args.device else []
    argv += ["--threads", str(args.threads)] if args.threads else []
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"memory child for {name!r} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["peak"] / MiB


def check_equal_at_init(models, batch):
    """Every fusion is the identity at initialisation: the same loss as pose-only (eval mode)."""
    with torch.no_grad():
        losses = {n: m.eval()(batch)["loss"].item() for n, m in models.items()}
    ref = losses["pose-only"]
    for name, loss in losses.items():
        assert abs(loss - ref) <= 1e-4 * max(1.0, abs(ref)), (name, loss, ref)
    return ref


def time_variants(models, optimizers, batch, args, device) -> dict:
    """{name: [seconds of each timed step]}: the variants' steps interleaved round by round,
    the order rotated every round, after ``args.warmup`` untimed rounds."""
    names = list(models)
    times = {n: [] for n in names}
    for r in range(args.warmup + args.steps):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t = timed(lambda name=name: train_step(models[name], optimizers[name], batch, device), device, args.clock)
            if r >= args.warmup:
                times[name].append(t)
    return times


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=256)
    parser.add_argument("--layers", type=int, default=None, help="mT5 layers (default: 2 on CPU, 12 on GPU)")
    parser.add_argument("--vocab", type=int, default=None, help="vocabulary (default: 32128 on CPU, 250112 on GPU)")
    parser.add_argument("--full", action="store_true", help="mT5-base: 12 layers, vocabulary 250112")
    parser.add_argument("--pool", type=int, default=400, help="distinct description texts")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant (median)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--no_memory", action="store_true", help="skip the per-variant memory runs")
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all)")
    parser.add_argument("--clock", default="wall", choices=CLOCKS, help=CLOCK_HELP)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="B=2, T=64, 1 layer, vocab 8192, 2 steps (CI)")
    add_out_arg(parser, "step")
    parser.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--_store", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.batch, args.frames, args.pool, args.steps = 2, 64, 50, 2
        args.layers, args.vocab = args.layers or 1, args.vocab or 8192
    return args


def measure(args, device) -> dict:
    """Times, added parameters, memory and the initial loss of every variant."""
    with tempfile.TemporaryDirectory() as folder:
        args.folder = folder
        models, optimizers, batch, shared, store_path = setup(args, device)
        loss0 = check_equal_at_init(models, batch)
        for model in models.values():
            model.train()
        names = list(models)
        times = time_variants(models, optimizers, batch, args, device)
        base_params = sum(p.numel() for p in models["pose-only"].parameters())
        added = {n: sum(p.numel() for p in m.parameters()) - base_params for n, m in models.items()}
        models.clear()  # free them before the memory runs
        optimizers.clear()
        memory = {} if args.no_memory else {n: measure_memory(args, n, store_path) for n in names}
    return {"times": times, "added": added, "memory": memory, "loss0": loss0,
            "distinct_texts": len(batch["desc_texts"]), "config": shared["config"], "source": shared["source"]}


def figures_of(m: dict) -> dict:
    """The result file's figures: per variant ms/step, % vs pose-only, memory, added parameters."""
    base_t, base_m = median_ms(m["times"]["pose-only"]), m["memory"].get("pose-only")
    variants = {}
    for name, times in m["times"].items():
        t = median_ms(times)
        v = {"ms_per_step": round(t, 1), "vs_pose_only_percent": round((t / base_t - 1) * 100, 1),
             "added_parameters": m["added"][name], "ms_all": [round(1000 * x, 1) for x in times]}
        if m["memory"]:
            v.update(peak_mib=round(m["memory"][name]), added_mib=round(m["memory"][name] - base_m))
        variants[name] = v
    targets = {name: {"at_most_percent": 100 * limit, "met": variants[name]["vs_pose_only_percent"] < 100 * limit}
               for name, limit in TARGETS.items()}
    return {"variants": variants, "targets": targets, "loss_at_init": round(m["loss0"], 4),
            "check": "at initialisation every variant's loss equals pose-only's (eval mode)"}


def main():
    args = parse_args()
    device = start(args)
    gpu = device.type == "cuda"
    if args._child:
        print(json.dumps(memory_child(args, device)))
        return
    info = machine_info(device)
    m = measure(args, device)

    config, figures = m["config"], figures_of(m)
    reduced = [f"{config['num_layers']} layers instead of 12"] * (config["num_layers"] != 12)
    reduced += [f"vocabulary {config['vocab_size']} instead of 250112"] * (config["vocab_size"] != 250112)
    memory_kind = ("CUDA max_memory_allocated" if gpu else "peak RSS (VmHWM) - RSS after imports") + \
        ", each variant alone in a fresh process"
    settings = {"batch": args.batch, "frames": args.frames, "target_words": 12, "described_frames": "~1 in 8",
                "pool": args.pool, "distinct_texts": m["distinct_texts"],
                "model": {"config": m["source"], "d_model": config["d_model"], "layers": config["num_layers"],
                          "vocab": config["vocab_size"], "weights": "random"},
                "dtype": "bf16 autocast" if gpu else "float32", "device": str(device), "steps": args.steps,
                "warmup": args.warmup, "statistic": "median, variants interleaved", "clock": args.clock,
                "memory": memory_kind if m["memory"] else "skipped", "seed": args.seed, "quick": args.quick,
                "reduced": reduced}
    write_result(args.out, figures, settings, info)
    print(machine_line(info))
    print(f"settings: B={args.batch}, T={args.frames}, 12-word targets, ~1 described frame in 8 "
          f"(interpolated between), pool of {args.pool} texts, {m['distinct_texts']} distinct "
          f"texts in the batch; {settings['dtype']} on {device}; median of {args.steps} steps after "
          f"{args.warmup} warm-up, variants interleaved, {args.clock} clock")
    print(f"model: mT5-base shape from {m['source']} (d_model {config['d_model']}), random "
          f"weights{', reduced: ' + ', '.join(reduced) if reduced else ''}; text encoder: same "
          f"encoder shape; tiny tokenizer; AdamW + clipping")
    print(f"memory: {settings['memory']}")
    print(f"check: at initialisation every variant's loss equals pose-only's ({figures['loss_at_init']:.4f}, eval mode)")
    print(f"{'variant':<22}{'ms/step':>10}{'vs pose-only':>14}{'peak MiB':>10}{'+MiB':>8}{'+params':>12}")
    for name, v in figures["variants"].items():
        mem = f"{v['peak_mib']:>10}{v['added_mib']:>+8}" if m["memory"] else f"{'-':>10}{'-':>8}"
        print(f"{name:<22}{v['ms_per_step']:>10.1f}{v['vs_pose_only_percent']:>+13.1f}%{mem}{v['added_parameters']:>12,}")
    for name, t in figures["targets"].items():
        print(f"target: {name} < {t['at_most_percent']:.0f}% slower than pose-only: "
              f"{figures['variants'][name]['vs_pose_only_percent']:+.1f}% ({'met' if t['met'] else 'NOT met'})")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
