"""The ST-GCN blocks' in-place ReLUs and residual add (Uni-Sign's ``ReLU(inplace=True)``) give
the same bits as the same modules computed out of place: features, every gradient and the
BatchNorm statistics, in train mode (batch statistics) and in eval mode."""
import copy

import torch
import torch.nn as nn

from conftest import padded_parts
from signfuse.config import ModelConfig
from signfuse.models.pose_encoder import PoseEncoder
from signfuse.models.stgcn import STGCNBlock


def out_of_place(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose ST-GCN blocks allocate every result (the reference)."""
    ref = copy.deepcopy(model)
    for m in ref.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
        if isinstance(m, STGCNBlock):
            m.inplace = False
    return ref


def random_batch(B: int, T: int, seed: int) -> dict:
    """Random parts (B, T, V, 3) in [-1, 1] from one seeded generator (conftest.padded_parts)."""
    return padded_parts([T] * B, torch.Generator().manual_seed(seed))


def run(model, batch):
    """Features and the gradients of a loss that weights every output element differently."""
    model.zero_grad(set_to_none=True)
    feats = model.encode_pose(batch)  # (B, T, d_model)
    weights = torch.linspace(-1, 1, feats.numel()).reshape(feats.shape)
    (feats * weights).sum().backward()
    return feats.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_inplace_blocks_are_bit_equal_to_out_of_place():
    torch.manual_seed(0)
    # Uni-Sign's widths on a short clip: the same kernels as in a real run
    model = PoseEncoder(ModelConfig(d_model=64))
    assert all(m.relu.inplace and m.inplace for m in model.modules() if isinstance(m, STGCNBlock))
    ref = out_of_place(model)
    for step in range(2):  # the second step starts from the updated running statistics
        batch = random_batch(2, 9, seed=step)
        model.train(), ref.train()
        got, got_grads = run(model, batch)
        want, want_grads = run(ref, batch)
        assert torch.equal(got, want)
        assert got_grads.keys() == want_grads.keys() and len(got_grads) == len(list(model.parameters()))
        for name, grad in want_grads.items():
            assert torch.equal(got_grads[name], grad), name
        for (name, a), (_, b) in zip(model.named_buffers(), ref.named_buffers(), strict=True):
            assert torch.equal(a, b), name  # BatchNorm running statistics
    model.eval(), ref.eval()
    with torch.no_grad():
        batch = random_batch(2, 9, seed=5)
        assert torch.equal(model.encode_pose(batch), ref.encode_pose(batch))
