"""ST-GCN building blocks: the graph convolution unit, the block, and the two chains.

Tensors are (B, C, T, V): batch, channels, frames, graph nodes. The module and parameter
names (``gcn.conv``, ``gcn.A``, ``gcn.bn``, ``tcn.0``, ``tcn.1``, ``residual.0``,
``residual.1``, ``layer{i}_0``, ``layer0_{j}``) are Uni-Sign's, so that its checkpoints load
strictly (docs/unisign-compat.md section 4).
"""
from collections import OrderedDict

import torch
import torch.nn as nn


class GCNUnit(nn.Module):
    """Conv 1x1 to K*C channels, mix nodes with the K learnable adjacency matrices, BN, ReLU.

    ``inplace`` (default, Uni-Sign's ``ReLU(inplace=True)``): the ReLU overwrites BatchNorm's
    output instead of allocating one more (B, C, T, V) tensor; the numbers are the same bits
    either way (BatchNorm's backward needs its input, not its output)."""

    def __init__(self, in_channels: int, out_channels: int, A: torch.Tensor, inplace: bool = True):
        super().__init__()
        self.num_subsets = A.shape[0]
        self.out_channels = out_channels
        self.conv = nn.Conv2d(in_channels, self.num_subsets * out_channels, kernel_size=1)
        self.A = nn.Parameter(A.clone())  # (K, V, V), learnable, starts at the graph's matrices
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=inplace)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, T, V = x.shape
        x = self.conv(x)  # (B, K*C, T, V)
        x = x.view(B, self.num_subsets, self.out_channels, T, V)  # (B, K, C, T, V)
        x = torch.einsum("nkctv,kvw->nctw", x, self.A)  # (B, C, T, V)
        return self.relu(self.bn(x))


class STGCNBlock(nn.Module):
    """ReLU(tcn(gcn(x)) + residual(x)); tcn is a (k, 1) temporal convolution when k > 1.

    ``inplace`` (default): the ReLUs work in place as Uni-Sign's do, and where tcn ends in
    BatchNorm the residual is added into its output (BatchNorm's backward does not need it):
    two (B, C, T, V) tensors fewer per block, the same bits (tests/test_inplace.py)."""

    def __init__(self, in_channels: int, out_channels: int, A: torch.Tensor, temporal_kernel: int = 1,
                 inplace: bool = True):
        super().__init__()
        self.inplace = inplace
        self.gcn = GCNUnit(in_channels, out_channels, A, inplace=inplace)
        if temporal_kernel > 1:
            self.tcn = nn.Sequential(
                nn.Conv2d(out_channels, out_channels, (temporal_kernel, 1), padding=(temporal_kernel // 2, 0)),
                nn.BatchNorm2d(out_channels),
                nn.Dropout(0.0),
            )
        else:
            self.tcn = nn.Identity()
        if in_channels == out_channels:
            self.residual = nn.Identity()
        else:
            self.residual = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1),
                nn.BatchNorm2d(out_channels),
            )
        self.relu = nn.ReLU(inplace=inplace)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.tcn(self.gcn(x))  # (B, C_out, T, V)
        if self.inplace and not isinstance(self.tcn, nn.Identity):
            y = y.add_(self.residual(x))  # into BatchNorm's output: no new tensor
        else:  # gcn's output is its ReLU's, which that ReLU's backward reads: add out of place
            y = y + self.residual(x)
        return self.relu(y)  # (B, C_out, T, V)


def spatial_chain(channels: tuple, A: torch.Tensor) -> nn.Sequential:
    """Blocks ``layer{i}_0`` with temporal kernel 1: c0 -> c0 -> c1 -> c2 (channels = (c0, c1, c2))."""
    widths = (channels[0],) + tuple(channels)
    blocks = OrderedDict(
        (f"layer{i}_0", STGCNBlock(c_in, c_out, A, temporal_kernel=1))
        for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:]))
    )
    return nn.Sequential(blocks)


def temporal_chain(channels: int, A: torch.Tensor, temporal_kernel: int = 5, num_blocks: int = 3) -> nn.Sequential:
    """Blocks ``layer0_{j}`` of constant width with a (temporal_kernel, 1) convolution each."""
    blocks = OrderedDict(
        (f"layer0_{j}", STGCNBlock(channels, channels, A, temporal_kernel=temporal_kernel))
        for j in range(num_blocks)
    )
    return nn.Sequential(blocks)
