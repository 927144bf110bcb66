"""--compile (signfuse.models.compiled): the compiled pose encoder gives eager's features and
gradients within float rounding (train mode: BatchNorm on batch statistics) and keeps the
state-dict keys.

Only the pose encoder is compiled here (tiny widths, inductor, CPU): compiling mT5 or the whole
model takes minutes on 2 cores; even this compilation (forward and backward graphs) costs about
1.5 min of CPU, hence ``slow``. Tolerance: fused kernels sum in another order. Features: 1e-4 of
their largest value. Gradients: 1e-4 of the largest gradient of the model (the biases of the
convolutions before a BatchNorm have a true gradient of 0: both sides give rounding noise of
~1e-7 there, measured, which no per-tensor relative tolerance can compare)."""
import copy

import pytest
import torch

from conftest import padded_parts
from signfuse.config import TINY_POSE_CHANNELS, ModelConfig
from signfuse.models.compiled import compile_model, is_compiled
from signfuse.models.pose_encoder import PoseEncoder

TOL = 1e-4  # relative to the largest |value| of each tensor


def batch(B: int, T: int, seed: int) -> dict:
    """Random parts (B, T, V, 3) in [-1, 1] from one seeded generator (conftest.padded_parts)."""
    return padded_parts([T] * B, torch.Generator().manual_seed(seed))


def fwd_bwd(model, b):
    model.zero_grad(set_to_none=True)
    y = model.encode_pose(b)  # (B, T, d_model)
    (y * torch.linspace(-1, 1, y.shape[-1])).sum().backward()
    return y.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool((a - b).abs().max() <= TOL * max(b.abs().max().item(), 1e-12))


@pytest.fixture(scope="module")
def models():
    torch._dynamo.reset()
    torch.manual_seed(0)
    eager = PoseEncoder(ModelConfig(gcn_channels=TINY_POSE_CHANNELS, d_model=16)).train()
    compiled = copy.deepcopy(eager)
    assert compile_model(compiled) == ["encode_pose"]
    return eager, compiled


@pytest.mark.slow
def test_compiled_encoder_equals_eager_within_tolerance(models):
    eager, compiled = models
    assert is_compiled(compiled) and not is_compiled(eager)
    assert compiled.state_dict().keys() == eager.state_dict().keys()
    for T, seed in ((9, 0), (9, 1)):  # static shapes: one graph, two batches
        want, want_grads = fwd_bwd(eager, batch(2, T, seed))
        got, got_grads = fwd_bwd(compiled, batch(2, T, seed))
        assert got.shape == want.shape and close(got, want)
        scale = max(g.abs().max().item() for g in want_grads.values())
        for name, grad in want_grads.items():
            assert (got_grads[name] - grad).abs().max() <= TOL * scale, name
    for (name, a), (_, b) in zip(compiled.named_buffers(), eager.named_buffers(), strict=True):
        assert close(a.float(), b.float()), name  # running statistics
