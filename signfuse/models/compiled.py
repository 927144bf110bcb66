"""``--compile``: ``torch.compile`` of the parts of Uni_Sign where it pays (off by default).

Compiled: the pose encoder (``encode_pose``: the four ST-GCN parts, the anchors, the pooling and
``pose_proj``, one graph) and the description fusion (``text_fusion.fusion``). The parameters,
buffers and state-dict keys do not change (the compiled functions are attributes of the same
module objects), so checkpoints are the same with and without the flag.

Not compiled: mT5 (stock ``transformers``; its ``generate`` changes shapes at every step, so a
compiled forward recompiles or runs a static cache that beam search over variable inputs does not
use) and the RGB branch (its per-batch crop rows are data-dependent: a graph break per batch).

Variable frame counts: marking the sizes dynamic (``dynamic=True``: one graph for every T) is
the right choice, but with torch 2.14 on CPU inductor fails on this graph ("cannot determine truth
value of Relational" while lowering the dynamic graph), so the graphs are static: one per (B, T)
seen, at most ``torch._dynamo.config.recompile_limit`` (8) per function, after which torch runs
that function eagerly (it says so once). Training batches of a dataset have many T, so --compile
pays when the frames are bucketed or fixed (``--max_length`` with long videos: T = max_length for
most batches), and on GPU (``benchmarks/bench_gpu.py``). Bucketing T inside the model is not done:
in train mode BatchNorm's batch statistics would count the padded frames (other numbers).
``compile_model(model, dynamic=True)`` tries the dynamic graph on a newer torch.

Measured on CPU (benchmarks/bench_compile.py, Uni-Sign's widths, B=4, T=256, 1 thread): the
compiled pose encoder's evaluation forward is 1.06x eager's, its training forward + backward
0.87x (slower): on a CPU it pays for inference only.

Outputs equal eager's up to float rounding (fused kernels sum in another order);
``tests/test_compile.py`` states the tolerance.
"""
import torch


def compile_model(model, dynamic: bool = False, mode: str | None = None) -> list:
    """Compile ``model``'s (a PoseEncoder / Uni_Sign) pose encoder and description fusion in
    place. Returns the names of what was compiled."""
    done = []
    model.encode_pose = torch.compile(model.encode_pose, dynamic=dynamic, mode=mode)  # bound method: same module
    done.append("encode_pose")
    fusion = getattr(getattr(model, "text_fusion", None), "fusion", None)
    if fusion is not None:
        fusion.compile(dynamic=dynamic, mode=mode)  # nn.Module.compile: in place, keys unchanged
        done.append("text_fusion.fusion")
    return done


def is_compiled(model) -> bool:
    return "encode_pose" in vars(model)
