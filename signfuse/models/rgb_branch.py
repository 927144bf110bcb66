"""The RGB-pose branch (``--rgb_support``): hand crops fused into the hand features (docs/rgb-pose.md section 8).

Each sampled hand crop (3 x 112 x 112) goes through torchvision's EfficientNet-B0 ``features``
(1280 x 4 x 4) and ``rgb_proj`` (C x 4 x 4, C the pose encoder's last width, 256 in Uni-Sign).
Right after the spatial GCN chain of a hand, the C-d features of the 21 nodes of each sampled
frame attend to that frame's crop features with the pose-guided deformable attention (PGF,
``DeformableAttention2D``), and a gate mixes the result back: g * D + (1 - g) * P.

The modules live directly on the pose encoder (``add_rgb_modules``), under Uni-Sign's names, so
that its RGB-pose checkpoints load strictly: ``rgb_support_backbone.0.*``, ``rgb_proj``,
``fusion_pose_rgb_linear`` (built but never used, as in Uni-Sign), ``fusion_pose_rgb_DA``,
``fusion_gate``. They keep PyTorch's default initialisation (they are created after the pose
encoder's truncated-normal init), except the gate: zero (Uni-Sign's: the gate is exactly 0 and no
gradient reaches the branch) or ``small`` (a gate that can learn).

Differences from Uni-Sign, all exact in eval mode: the backbone skips dummy crops (in train mode
Uni-Sign's BatchNorm statistics also count the dummy zero crops, ours do not, and EfficientNet-B0's
stochastic depth draws one number per row, so a skipped dummy shifts the later draws; each hand's
real crops of the batch still go through the backbone together, as in Uni-Sign); all valid frames of
the batch go through PGF and the gate in one call (every operation acts per frame); PGF runs in
float32 by an explicit cast (Uni-Sign: ``torch.cuda.amp.autocast(dtype=float32)``).
"""
import itertools
import math
from pathlib import Path
from urllib.error import URLError

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

from signfuse.checkpoint_io import safe_torch_load, state_dict_of
from signfuse.errors import InputError

HANDS = ("left", "right")
BACKBONE_CHANNELS = 1280  # EfficientNet-B0 features: (1280, 4, 4) on a 112 x 112 crop
GRID_CELLS = 16  # 4 x 4 key/value tokens of a crop
RGB_PREFIXES = ("rgb_support_backbone.", "rgb_proj.", "fusion_pose_rgb_linear.", "fusion_pose_rgb_DA.",
                "fusion_gate.")  # state-dict keys added by --rgb_support (385 at Uni-Sign's widths)
RGB_BACKBONE_WEIGHTS = ("none", "imagenet")  # or a FILE (--rgb_backbone_weights)


def efficientnet_b0_features() -> nn.Sequential:
    """Uni-Sign's backbone: Sequential(efficientnet_b0().features), random init (keys ``0.<stage>.*``)."""
    from torchvision.models import efficientnet_b0
    return nn.Sequential(efficientnet_b0(weights=None).features)


def sinusoid_table(n_position: int, dim: int) -> torch.Tensor:
    """(n_position, dim): sin (even channels) / cos (odd) of p / 10000^(2 floor(c/2) / dim), float64 -> float32."""
    p = torch.arange(n_position, dtype=torch.float64)[:, None]  # (n, 1)
    c = torch.arange(dim, dtype=torch.float64)[None, :]  # (1, dim)
    angle = p / torch.pow(10000.0, 2 * torch.div(c, 2, rounding_mode="floor") / dim)  # (n, dim)
    table = torch.where(c.long() % 2 == 0, torch.sin(angle), torch.cos(angle))
    return table.float()


class RelativePositionBias(nn.Module):
    """Uni-Sign's ``CPB`` (SwinV2's continuous bias): sign(d) log(1 + |d|) -> MLP (``mlp.0.0``, ``mlp.1.0``, ``mlp.2``)."""

    def __init__(self, hidden: int, out: int):
        super().__init__()
        self.mlp = nn.ModuleList([
            nn.Sequential(nn.Linear(2, hidden), nn.ReLU()),
            nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU()),
            nn.Linear(hidden, out),
        ])

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        x = torch.sign(d) * torch.log(d.abs() + 1)  # (..., 2)
        for layer in self.mlp:
            x = layer(x)
        return x  # (..., out)


class PointEmbedding(nn.Module):
    """Random Fourier features of a point in [0, 1]^2 (Uni-Sign's ``PositionEmbeddingRandom``)."""

    def __init__(self, num_feats: int):
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_feats))

    def forward(self, xy: torch.Tensor) -> torch.Tensor:
        u = (2 * xy - 1) @ self.positional_encoding_gaussian_matrix  # (..., num_feats)
        u = 2 * math.pi * u
        return torch.cat([torch.sin(u), torch.cos(u)], dim=-1)  # (..., 2 * num_feats)


class DeformableAttention2D(nn.Module):
    """PGF (docs/rgb-pose.md section 8.3): the nodes of a frame attend to its crop features, globally
    (cross attention) then at points around each node's own position (deformable attention).

    Submodule names and creation order are Uni-Sign's ``DeformableAttention2D``."""

    def __init__(self, dim: int, heads: int = 8, dim_head: int = 32, offset_groups: int = 8):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.dim_head, self.offset_groups = heads, dim_head, offset_groups
        self.scale = dim_head ** -0.5
        self.offset_scale = 4 / 6
        offset_dims = inner // offset_groups
        self.to_offsets = nn.Sequential(
            nn.Conv1d(offset_dims, offset_dims, 1, groups=offset_dims),
            nn.GELU(),
            nn.Conv1d(offset_dims, 2, 1, bias=False),
            nn.Tanh(),
        )
        self.rel_pos_bias = RelativePositionBias(dim // 4, heads // offset_groups)
        self.to_q = nn.Conv1d(dim, inner, 1, groups=offset_groups, bias=False)
        self.to_k = nn.Conv2d(dim, inner, 1, groups=offset_groups, bias=False)
        self.to_v = nn.Conv2d(dim, inner, 1, groups=offset_groups, bias=False)
        self.to_out = nn.Conv1d(inner, dim, 1)
        self.cross_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.pe_layer = PointEmbedding(dim // 2)
        # the crop tokens' fixed positions: not in Uni-Sign's state dict
        self.register_buffer("pos_embed", sinusoid_table(GRID_CELLS, dim), persistent=False)

    def forward(self, pose_feat: torch.Tensor, rgb_feat: torch.Tensor, pose_init: torch.Tensor) -> torch.Tensor:
        """pose_feat (t, C, V) node features, rgb_feat (t, C, h, w) crop features, pose_init (t, 2, V)
        node positions (x, y) in [0, 1] -> (t, C, V)."""
        t, C, V = pose_feat.shape
        G, H, dh = self.offset_groups, self.heads, self.dim_head
        # 1-3. global cross attention: nodes (+ point embedding) to the crop's 16 tokens
        tokens = rgb_feat.flatten(2).transpose(1, 2) + self.pos_embed  # (t, 16, C)
        query = pose_feat.transpose(1, 2) + self.pe_layer(pose_init.transpose(1, 2).detach())  # (t, V, C)
        glob, _ = self.cross_attn(query, tokens, tokens, need_weights=False)  # (t, V, C)
        # 4-6. queries, offsets (one small network shared by the groups), sampling points
        q = self.to_q(pose_feat + glob.transpose(1, 2))  # (t, inner, V)
        offsets = self.to_offsets(q.reshape(t * G, -1, V)) * self.offset_scale  # (t*G, 2, V)
        base = (pose_init * 2 - 1).unsqueeze(1).expand(t, G, 2, V).reshape(t * G, 2, V)  # (t*G, 2, V)
        points = base + offsets  # (t*G, 2, V)
        # 7. bilinear samples of each group's channels at its points
        grid = points.transpose(1, 2).unsqueeze(1)  # (t*G, 1, V, 2)
        sampled = F.grid_sample(rgb_feat.reshape(t * G, C // G, *rgb_feat.shape[-2:]), grid,
                                mode="bilinear", padding_mode="zeros", align_corners=False)  # (t*G, C/G, 1, V)
        sampled = sampled.reshape(t, C, 1, V)  # (t, C, 1, V)
        # 8-9. per-head attention of the nodes to their sampled points, with the relative-position bias
        k = self.to_k(sampled).reshape(t, H, dh, V).transpose(2, 3)  # (t, H, V, dh)
        v = self.to_v(sampled).reshape(t, H, dh, V).transpose(2, 3)  # (t, H, V, dh)
        q = (q * self.scale).reshape(t, H, dh, V).transpose(2, 3)  # (t, H, V, dh)
        sim = q @ k.transpose(2, 3)  # (t, H, V, V)
        d = base.transpose(1, 2).unsqueeze(2) - points.transpose(1, 2).unsqueeze(1)  # (t*G, V, V, 2): node i - point j
        bias = self.rel_pos_bias(d)  # (t*G, V, V, H/G)
        bias = bias.reshape(t, G, V, V, -1).permute(0, 1, 4, 2, 3).reshape(t, H, V, V)  # (t, H, V, V)
        attn = (sim + bias).softmax(dim=-1)  # (t, H, V, V)
        # 10. heads concatenated (head-major channels), to_out
        out = (attn @ v).transpose(2, 3).reshape(t, H * dh, V)  # (t, inner, V)
        return self.to_out(out)  # (t, C, V)


def fusion_gate(dim: int, init: str) -> nn.Sequential:
    """Conv1d(2C, C) -> GELU -> Conv1d(C, 1) -> Tanh -> ReLU: a gate in [0, 1) per node.

    ``zero`` (Uni-Sign's): both convolutions 0, so the gate is 0 and passes no gradient.
    ``small``: the last convolution N(0, 1e-3) with bias 0.01 (the first keeps PyTorch's init),
    so the gate starts near 0.01 and every parameter of the branch receives a gradient."""
    gate = nn.Sequential(nn.Conv1d(2 * dim, dim, 1), nn.GELU(), nn.Conv1d(dim, 1, 1), nn.Tanh(), nn.ReLU())
    if init == "zero":
        for conv in (gate[0], gate[2]):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
    elif init == "small":
        nn.init.normal_(gate[2].weight, std=1e-3)
        nn.init.constant_(gate[2].bias, 0.01)
    else:
        raise ValueError(f"rgb_gate_init {init!r}: expected zero or small")
    return gate


def add_rgb_modules(model: nn.Module, dim: int, gate_init: str) -> None:
    """Create Uni-Sign's RGB modules as direct children of ``model`` (top-level state-dict keys).

    They are drawn from a fork of the global RNG: the modules created after them (description
    fusion) get the same initial weights with and without ``--rgb_support``."""
    with torch.random.fork_rng(devices=[]):
        model.rgb_support_backbone = efficientnet_b0_features()
        model.rgb_proj = nn.Conv2d(BACKBONE_CHANNELS, dim, kernel_size=1)
        model.fusion_pose_rgb_linear = nn.Linear(dim, dim)  # never used (Uni-Sign's): kept for strict loading
        model.fusion_pose_rgb_DA = DeformableAttention2D(dim)
        model.fusion_gate = fusion_gate(dim, gate_init)


def run_float32(module: nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
    """``module(*inputs)`` computed in float32, whatever the autocast state and the module's dtype
    (a bf16 model computes with float32 copies of its weights; gradients flow back to them)."""
    inputs = [x.float() for x in inputs]
    with torch.autocast(device_type=inputs[0].device.type, enabled=False):
        state = dict(itertools.chain(module.named_parameters(), module.named_buffers()))
        if all(v.dtype == torch.float32 for v in state.values()):
            return module(*inputs)
        return torch.func.functional_call(module, {k: v.float() for k, v in state.items()}, tuple(inputs))


def valid_rows(indices: torch.Tensor, rgb_len, batch_size: int, num_frames: int) -> tuple:
    """Rows of a hand's collated crops that are real (a sample with one row of index -1 is a dummy).

    -> (rows (n,), sample of each row (n,), position of each row (n,)), int64 on ``indices``' device."""
    lens = torch.as_tensor(list(rgb_len), dtype=torch.long, device=indices.device)  # (B,)
    if len(lens) != batch_size or int(lens.sum()) != indices.shape[0]:
        raise ValueError(f"RGB batch: rgb_len {list(rgb_len)} does not match {indices.shape[0]} crop rows "
                         f"and {batch_size} samples")
    indices = indices.long()  # (N,)
    sample = torch.repeat_interleave(torch.arange(batch_size, device=indices.device), lens)  # (N,)
    dummy = (lens[sample] == 1) & (indices == -1)  # (N,)
    rows = torch.nonzero(~dummy).flatten()  # (n,)
    positions = indices[rows]  # (n,)
    if positions.numel() and (int(positions.min()) < 0 or int(positions.max()) >= num_frames):
        raise ValueError(f"RGB batch: sampled positions must lie in [0, {num_frames}), got "
                         f"{int(positions.min())} .. {int(positions.max())}")
    return rows, sample[rows], positions


def fuse_hand_rgb(model: nn.Module, feats: torch.Tensor, batch: dict, part: str) -> torch.Tensor:
    """Uni-Sign's ``gather_feat_pose_rgb`` for one hand, batched over the valid frames of the batch.

    feats (B, C, T, V): the spatial chain's output. Returns a copy in which each (sample, position)
    with a hand crop holds g * D + (1 - g) * P; every other frame is unchanged. The batch gives
    ``<part>_sampled_indices`` (N,), ``<part>_hands`` (N, 3, 112, 112), ``<part>_skeletons_norm``
    (N, 21, 2) and ``<part>_rgb_len`` (list over samples, summing to N)."""
    B, C, T, V = feats.shape
    keys = [f"{part}_{name}" for name in ("sampled_indices", "hands", "skeletons_norm", "rgb_len")]
    if any(key not in batch for key in keys):
        raise ValueError(f"--rgb_support: the batch has no {', '.join(k for k in keys if k not in batch)} "
                         "(the data side loads hand crops only with --rgb_support)")
    rows, samples, positions = valid_rows(batch[keys[0]].to(feats.device), batch[keys[3]], B, T)
    if rows.numel() == 0:
        if model.training and any(isinstance(m, nn.SyncBatchNorm) for m in model.rgb_support_backbone.modules()):
            # SyncBatchNorm (several GPU processes): every process enters its collectives, forward and
            # backward, even with no crop; it accepts an empty batch, and the sum of nothing adds 0
            empty = batch[keys[1]][:0].to(device=feats.device, dtype=model.rgb_proj.weight.dtype)  # (0, 3, 112, 112)
            return feats + model.rgb_proj(model.rgb_support_backbone(empty)).sum().to(feats.dtype)
        return feats
    hands = batch[keys[1]].to(feats.device)[rows]  # (n, 3, 112, 112): dummies never reach the backbone
    rgb = model.rgb_proj(model.rgb_support_backbone(hands.to(model.rgb_proj.weight.dtype)))  # (n, C, 4, 4)
    P = feats[samples, :, positions]  # (n, C, V)
    X = batch[keys[2]].to(feats.device)[rows].transpose(1, 2)  # (n, 2, V): x row, y row
    D = run_float32(model.fusion_pose_rgb_DA, P, rgb, X).to(feats.dtype)  # (n, C, V)
    g = model.fusion_gate(torch.cat([D, P], dim=1))  # (n, 1, V)
    out = feats.clone()
    out[samples, :, positions] = (g * D + (1 - g) * P).to(feats.dtype)  # (B, C, T, V)
    return out


# ----------------------------------------------------------------------------- weights

def _features_keys(sd: dict) -> dict:
    """EfficientNet-B0 weights -> its ``features`` keys: full model (``features.*``, classifier
    dropped), a Uni-Sign RGB-pose state dict (``rgb_support_backbone.0.*``) or features keys."""
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
    for prefix in ("features.", "rgb_support_backbone.0."):
        if any(k.startswith(prefix) for k in sd):
            return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    return sd


def _check_features(sd: dict, origin: str) -> dict:
    """Load ``sd`` strictly into a fresh EfficientNet-B0 ``features``; its state dict, or InputError."""
    features = efficientnet_b0_features()[0]
    try:
        features.load_state_dict(_features_keys(sd), strict=True)
    except RuntimeError as e:
        raise InputError(f"{origin}: not an EfficientNet-B0 state dict (--rgb_backbone_weights): "
                         f"{' '.join(str(e).split())[:300]}") from None
    return features.state_dict()


def imagenet_weights_path() -> Path:
    """Where torchvision's weights API caches EfficientNet_B0_Weights.IMAGENET1K_V1."""
    from torchvision.models import EfficientNet_B0_Weights
    url = EfficientNet_B0_Weights.IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def load_backbone_weights(spec: str) -> dict | None:
    """``--rgb_backbone_weights``: "none" -> None (random init); "imagenet" -> torchvision's
    IMAGENET1K_V1 (its cache, else a download); a FILE -> a local EfficientNet-B0 state dict
    (.safetensors, else torch.load with weights_only=True). Returns the ``features`` state dict;
    every failure is one InputError, raised before any other work."""
    if spec in (None, "none"):
        return None
    if spec == "imagenet":

        from torchvision.models import EfficientNet_B0_Weights
        weights = EfficientNet_B0_Weights.IMAGENET1K_V1
        cached = imagenet_weights_path()
        try:
            sd = weights.get_state_dict(progress=True, check_hash=True, weights_only=True)
        except (URLError, OSError, RuntimeError) as e:
            raise InputError(f"{cached}: torchvision's {weights} weights (--rgb_backbone_weights imagenet) are "
                             f"not cached and could not be downloaded ({' '.join(str(e).split())[:200]}); put "
                             f"{weights.url} there, pass a local FILE, or --finetune a checkpoint holding the "
                             "RGB weights") from None
        return _check_features(sd, str(cached))
    path = Path(spec)
    if not path.is_file():
        raise InputError(f"{path}: --rgb_backbone_weights file not found (expected none, imagenet or a FILE)")
    if path.suffix == ".safetensors":
        try:
            sd = load_file(str(path))
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
            raise InputError(f"{path}: not a readable safetensors file: {str(e)[:200]}") from None
    else:
        sd = state_dict_of(safe_torch_load(path), path)
    return _check_features(sd, str(path))


def has_rgb_weights(keys) -> bool:
    """Whether a state dict's keys hold the RGB branch (any key under ``RGB_PREFIXES``)."""
    return any(k.startswith(RGB_PREFIXES) or k.startswith(tuple("module." + p for p in RGB_PREFIXES))
               for k in keys)


def gate_is_zero(model: nn.Module) -> bool:
    """The gate's last convolution is all zeros: the gate is 0 and passes no gradient."""
    last = model.fusion_gate[2]
    return bool((last.weight == 0).all() and (last.bias == 0).all())


def rgb_training_warning(cfg, loaded_rgb_weights: bool, model: nn.Module = None) -> str | None:
    """The one-line warning for training ``--rgb_support`` with a branch that cannot learn: no RGB
    weights came from the checkpoint and the gate is Uni-Sign's zero (or ``model``'s gate is all
    zeros after loading). None when nothing is wrong."""
    if not cfg.rgb_support:
        return None
    fresh_zero = not loaded_rgb_weights and cfg.rgb_gate_init == "zero"
    loaded_zero = model is not None and hasattr(model, "fusion_gate") and gate_is_zero(model)
    if not (fresh_zero or loaded_zero):
        return None
    origin = ("the checkpoint has no RGB weights and the fusion gate starts at Uni-Sign's zero" if fresh_zero
              else "the fusion gate is all zeros")
    return (f"warning: --rgb_support: {origin}: Tanh and ReLU of 0 pass no gradient, so the RGB branch "
            "will not learn and the model stays the pose-only one; use --rgb_gate_init small")
