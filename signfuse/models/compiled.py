"""``--compile``: ``torch.compile`` of the parts of Uni_Sign where it pays (off by default).

Compiled: the pose encoder (``encode_pose``: the four ST-GCN parts, the anchors, the pooling and
``pose_proj``, one graph) and the description fusion (``text_fusion.fusion``). The parameters,
buffers and state-dict keys do not change (the compiled functions are attributes of the same
module objects), so checkpoints are the same with and without the flag.

Not compiled: mT5 (stock ``transformers``; its ``generate`` changes shapes at every step, so a
compiled forward recompiles or runs a static cache that beam search over variable inputs does not
use) and the RGB branch (its per-batch crop rows are data-dependent: a graph break per batch).

Variable frame counts: the graphs are compiled with ``dynamic=True`` (sizes marked dynamic):
one graph serves every batch size and number of frames T >= 2, instead of one per T (a run sees
up to --max_length different T). Bucketing T (padding to a few lengths) would also bound the
graphs, but changes the numbers in train mode (BatchNorm's batch statistics would count the
padded frames), so it is not used. Graphs are specialised on train / eval mode (BatchNorm), and
torch's own guards recompile for a size of 0 or 1; ``torch._dynamo.config.cache_size_limit``
(8) caps the rest.

Outputs equal eager's up to float rounding (fused kernels sum in another order);
``tests/test_compile.py`` states the tolerance.
"""
import torch


def compile_model(model, dynamic: bool = True, mode: str | None = None) -> list:
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
