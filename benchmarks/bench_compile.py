"""``--compile`` on CPU: the pose encoder (Uni-Sign's widths, d_model 768), eager vs compiled.

What it measures, side by side in one process (calls interleaved, median of the repeats):
- ``train``: forward + backward of ``encode_pose`` in train mode (BatchNorm on batch statistics),
- ``eval``: forward of ``encode_pose`` under ``torch.no_grad`` in eval mode,
each at fixed shapes (B, T): the compiled graphs are static (signfuse/models/compiled.py), so
each shape compiles once; the compilation time of the first call is reported apart. Before timing
it checks that the compiled features equal eager's within ``TOL`` of their largest value (the
tolerance of tests/test_compile.py).

    python benchmarks/bench_compile.py --threads 1 --out docs/results/bench_compile.json

Ratios above 1: compiled faster. CPU only (a GPU's figures: benchmarks/bench_gpu.py).
"""
import argparse
import copy
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_out_arg, machine_info, machine_line, median_ms, pose_batch, set_threads, write_result  # noqa: E402

from signfuse.config import ModelConfig  # noqa: E402
from signfuse.models.compiled import compile_model  # noqa: E402
from signfuse.models.pose_encoder import PoseEncoder  # noqa: E402

TOL = 1e-4  # relative to the largest |feature| (tests/test_compile.py)


def train_call(model, batch):
    def run():
        model.zero_grad(set_to_none=True)
        y = model.encode_pose(batch)  # (B, T, d_model)
        y.square().mean().backward()
        return y.detach()
    return run


def eval_call(model, batch):
    def run():
        with torch.no_grad():
            return model.encode_pose(batch)  # (B, T, d_model)
    return run


def measure(mode: str, eager, compiled, batch, repeats: int) -> dict:
    """One mode: compile time (first call), outputs compared, interleaved timed repeats."""
    make = train_call if mode == "train" else eval_call
    for m in (eager, compiled):
        m.train(mode == "train")
    calls = {"eager": make(eager, batch), "compiled": make(compiled, batch)}
    t0 = time.perf_counter()
    got = calls["compiled"]()  # compiles this shape (forward, and backward in train mode)
    compile_s = time.perf_counter() - t0
    want = calls["eager"]()
    diff = float((got - want).abs().max() / want.abs().max())
    if diff > TOL:
        raise SystemExit(f"{mode}: compiled features differ from eager by {diff:.2e} of the largest (> {TOL})")
    times = {"eager": [], "compiled": []}
    for r in range(repeats + 1):  # the first pair is a warm-up
        for name in (("eager", "compiled") if r % 2 == 0 else ("compiled", "eager")):
            t = time.process_time()
            calls[name]()
            if r:
                times[name].append(time.process_time() - t)
    eager_ms, compiled_ms = median_ms(times["eager"]), median_ms(times["compiled"])
    return {"eager_ms": round(eager_ms, 2), "compiled_ms": round(compiled_ms, 2),
            "ratio_eager_over_compiled": round(eager_ms / compiled_ms, 3),
            "first_call_s (compilation)": round(compile_s, 1), "max_relative_diff": diff,
            "repeats_ms": {n: [round(1000 * x, 1) for x in t] for n, t in times.items()}}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--frames", type=int, default=256)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (clock: process CPU time)")
    p.add_argument("--modes", nargs="+", default=["eval", "train"], choices=("eval", "train"))
    add_out_arg(p, "compile")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    set_threads(args.threads)
    info = machine_info()
    print(machine_line(info))
    torch.manual_seed(0)
    eager = PoseEncoder(ModelConfig(d_model=768))
    compiled = copy.deepcopy(eager)
    compile_model(compiled)
    batch = pose_batch(args.batch, args.frames, seed=0)  # random normalised parts, every frame real
    figures = {}
    for mode in args.modes:
        figures[mode] = measure(mode, eager, compiled, batch, args.repeats)
        row = {k: v for k, v in figures[mode].items() if k != "repeats_ms"}
        print(f"pose encoder {mode}: {row}", flush=True)
    settings = {"model": "PoseEncoder, Uni-Sign's widths, d_model 768", "batch": args.batch,
                "frames": args.frames, "dtype": "float32", "device": "cpu", "threads": args.threads,
                "clock": "process CPU time", "statistic": "median of interleaved repeats",
                "repeats": args.repeats, "compile": "torch.compile, inductor, static shapes",
                "tolerance": f"features within {TOL} of their largest value"}
    return write_result(args.out, figures, settings, info, argv)


if __name__ == "__main__":
    main()
