"""Action descriptions fused into the pose features (docs/descriptions.md sections 4-6).

Pieces, from text to fused features:
- ``TextEncoder``: a frozen mT5 encoder; one vector per distinct text (masked mean over tokens),
  cached by text. It holds the encoder outside the module tree, so a model that owns a
  TextEncoder has no encoder keys in its state dict and no encoder parameters to optimise.
- ``LearnableMaskEmbedding``: the (1, D) vector of frames that have no text.
- ``frame_text_features``: per-frame weighted sums of the batch's text vectors (interpolation).
- ``GatingFusion`` (phase 1): fused = pose + sigmoid(MLP([pose, text, has_desc])) * text', text'
  the projected text's direction at the pose features' size: the gate sets the amount.
- ``CrossAttentionFusion`` (phase 2): each frame attends over its sample's description vectors
  (relative frame positions as a learned per-head bias); the attended texts' direction at the
  pose's size, times the share of attention on texts (the gate; a null key takes the rest).
- ``DescriptionFusion``: what Uni_Sign owns as ``text_fusion``: mask embedding, text dropout,
  one of the two fusions. Both fusions start as the identity: fused == pose exactly.
- ``alignment_kinds``: per frame, how it got its text (exact, interpolated, nearest, none).

Batch keys used (docs/DESIGN.md): ``desc_index`` (B, T, 2) int64 (-1 = none), ``desc_weight``
(B, T, 2), ``has_description`` (B, T, 1), ``frame_indices`` (B, T) (-1 on padding).
"""
import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import AutoTokenizer, MT5Config, MT5EncoderModel

from signfuse.config import TINY_MT5, TINY_MT5_DIR, ModelConfig
from signfuse.errors import InputError
from signfuse.models.desc_predictor import DescriptionPredictor, predicted_texts

# -----------------------------------------------------------------------------
# text encoder

def load_text_encoder(model_name, seed=0):
    """(MT5EncoderModel, tokenizer) from a local directory, or "tiny": the packaged tiny
    config with random weights drawn from ``seed`` (the global RNG is left untouched)."""

    if str(model_name) == TINY_MT5:
        config = MT5Config.from_pretrained(TINY_MT5_DIR, local_files_only=True)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            encoder = MT5EncoderModel(config)
        tokenizer = AutoTokenizer.from_pretrained(TINY_MT5_DIR, local_files_only=True)
        return encoder, tokenizer
    path = Path(model_name)
    if not (path / "config.json").is_file():
        raise InputError(f"{path}: not a local mT5 directory (no config.json); "
                         "point --desc_encoder / --mt5_model at a downloaded mT5 folder")
    try:
        encoder = MT5EncoderModel.from_pretrained(path, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: cannot load the mT5 text encoder: {err}") from None
    return encoder, tokenizer


def masked_mean(states, mask):
    """Mean of ``states`` (N, L, C) over the positions where ``mask`` (N, L) is 1 -> (N, C)."""
    mask = mask.to(states.dtype).unsqueeze(-1)  # (N, L, 1)
    return (states * mask).sum(1) / mask.sum(1).clamp_min(1.0)  # (N, C)


class TextEncoder(nn.Module):
    """Frozen mT5 encoder: texts -> one vector each (mean of token states over non-pad tokens).

    ``encode(texts)`` -> (N, text_dim) float32: each distinct text missing from the cache is
    encoded once, without gradients, in batched calls of up to ``chunk_size`` texts of similar
    token length (sorted, so that little of each call is padding); results are cached by text.
    It has no parameters and no state-dict keys.

    The mT5 encoder is not a registered submodule: it never appears in ``state_dict()`` or
    ``parameters()`` (of this module or of a model that owns it), and ``train()`` leaves it in
    eval mode. ``.to(...)`` / ``.cuda()`` / ``.half()`` still apply to it (``_apply`` override).
    Pass ``encoder``+``tokenizer`` to use objects you already have (``encoder`` is frozen in
    place: give a dedicated copy, never the translation model's own encoder).
    """

    def __init__(self, model_name=None, device=None, max_tokens=64,
                 encoder=None, tokenizer=None, seed=0, chunk_size=64):
        super().__init__()
        if encoder is None or tokenizer is None:
            if model_name is None:
                raise ValueError("TextEncoder needs model_name or both encoder and tokenizer")
            encoder, tokenizer = load_text_encoder(model_name, seed)
        encoder.eval()
        encoder.requires_grad_(False)
        self._frozen = [encoder]  # a list: hidden from the module tree (no keys, no parameters)
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.text_dim = encoder.config.d_model
        self.chunk_size = chunk_size
        self._cache = {}  # text -> (text_dim,) float32 on the encoder's device
        if device is not None:
            self.to(device)

    @property
    def encoder(self):
        return self._frozen[0]

    @property
    def device(self):
        return next(self.encoder.parameters()).device

    def _apply(self, fn, recurse=True):
        # .to / .cuda / .half reach the hidden encoder and the cache too
        self.encoder._apply(fn)
        self._cache = {text: vec.to(self.device) for text, vec in self._cache.items()}
        return super()._apply(fn, recurse)

    def train(self, mode=True):
        super().train(mode)
        self.encoder.eval()  # frozen: dropout stays off
        return self

    def clear_cache(self):
        self._cache.clear()

    def encode(self, texts):
        """(N, text_dim) float32 vectors of ``texts`` (a list of str), cached by text."""
        new = [t for t in dict.fromkeys(texts) if t not in self._cache]  # distinct, in order
        if new:
            ids = self.tokenizer(new, truncation=True, max_length=self.max_tokens)["input_ids"]
            order = sorted(range(len(new)), key=lambda i: len(ids[i]))  # similar lengths together
            for start in range(0, len(order), self.chunk_size):
                rows = order[start:start + self.chunk_size]
                self._cache.update(zip((new[i] for i in rows), self._encode_ids([ids[i] for i in rows]), strict=True))
        if not texts:
            return torch.zeros(0, self.text_dim, device=self.device)
        return torch.stack([self._cache[t] for t in texts])  # (N, text_dim)

    @torch.no_grad()
    def _encode_ids(self, ids: list) -> torch.Tensor:
        """Token id lists (n texts) -> (n, text_dim) float32: one encoder call, padded to the longest."""
        tokens = self.tokenizer.pad({"input_ids": ids}, return_tensors="pt").to(self.device)
        with torch.autocast(self.device.type, enabled=False):  # float32 always: the same vectors as a store
            states = self.encoder(input_ids=tokens["input_ids"],
                                  attention_mask=tokens["attention_mask"]).last_hidden_state  # (n, L, text_dim)
        return masked_mean(states.float(), tokens["attention_mask"])  # (n, text_dim)


# -----------------------------------------------------------------------------
# frame text features

class LearnableMaskEmbedding(nn.Module):
    """The text feature of a frame with no description: a Parameter (1, D), init N(0, 0.01^2)."""

    def __init__(self, hidden_dim):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, hidden_dim) * 0.01)  # (1, D)

    def forward(self):
        return self.weight


def frame_text_features(vectors, desc_index, desc_weight, has_text=None, mask_embedding=None):
    """Per-frame text features (B, T, D) from the batch's distinct text vectors (N, D).

    Frame (b, t) gets sum_k desc_weight[b, t, k] * vectors[desc_index[b, t, k]] (index -1: no
    text, contributes nothing). Frames without any text (``has_text`` False; by default: no
    slot with index >= 0 and weight > 0) get ``mask_embedding`` (1, D) (zeros when None).
    Frames with interpolated or nearest texts have has_description 0 but do have text.
    """
    B, T, K = desc_index.shape
    D = vectors.shape[-1]
    dtype = mask_embedding.dtype if mask_embedding is not None else vectors.dtype
    table = torch.cat([vectors.new_zeros(1, D), vectors]).to(dtype)  # (N + 1, D), row 0: none
    picked = table[desc_index.clamp_min(-1) + 1]  # (B, T, K, D)
    weight = desc_weight.to(dtype) * (desc_index >= 0)  # (B, T, K)
    feats = (picked * weight.unsqueeze(-1)).sum(2)  # (B, T, D)
    if has_text is None:
        has_text = (weight > 0).any(-1)  # (B, T)
    if mask_embedding is None:
        mask_embedding = feats.new_zeros(1, D)
    return torch.where(has_text.unsqueeze(-1), feats, mask_embedding.to(dtype))  # (B, T, D)


# Alignment kind of a frame (code = position): no text (the mask embedding: undescribed, or
# dropped), its own description, two texts interpolated, one neighbour's text (nearest; also
# interpolation between two equal texts).
ALIGNMENT_KINDS = ("undescribed", "exact", "interpolated", "nearest")


def alignment_kinds(desc_index, desc_weight, has_description) -> torch.Tensor:
    """(B, T) int64 codes into ALIGNMENT_KINDS from a batch's ``desc_index`` / ``desc_weight``
    (B, T, 2) and ``has_description`` (B, T, 1) or (B, T): exact = has_description 1;
    interpolated = two texts; nearest = one text and has_description 0; undescribed = none."""
    texts = ((desc_weight > 0) & (desc_index >= 0)).sum(-1)  # (B, T)
    exact = has_description.reshape(texts.shape) > 0.5  # (B, T)
    kind = torch.where(texts >= 2, 2, torch.where(texts == 1, 3, 0))
    return torch.where(exact & (texts > 0), 1, kind)


# -----------------------------------------------------------------------------
# fusion modules

# The gate's value at initialisation (its last layer's bias is logit(GATE_INIT)): low, so that
# the first text updates are small; and the size of the text update relative to the frame's
# pose features when the gate is 1 (docs/gate.md: measured side by side).
GATE_INIT = 0.1
TEXT_SCALE = 1.0
DIRECTION_EPS = 1e-3  # below this RMS the projection's output is still growing from zero


def rms(x: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Root mean square over the last dimension, kept: (..., C) -> (..., 1)."""
    return (x.pow(2).mean(-1, keepdim=True) + eps).sqrt()


class GatingFusion(nn.Module):
    """Phase 1: gate = sigmoid(MLP([norm(pose), norm(text), has_description])) (B, T, 1);
    fused = pose + gate * text', where text' = TEXT_SCALE * rms(pose) * direction and
    direction = proj(norm(text)) / rms(proj(norm(text))), proj: Linear(text_dim, feature_dim),
    norm: layer normalisation without parameters.

    The gate, not the projection, sets how much text enters a frame: text' always has the size
    of the frame's pose features (their RMS, not differentiated), the projection only chooses
    its direction, so a gate of g adds g * TEXT_SCALE times the pose's size. (With
    ``fused = pose + gate * proj(text)`` the projection's scale and the gate were
    interchangeable: AdamW turned the gate's small but steadily positive gradient into full
    steps, the sigmoid saturated at 1 within ~20 steps on every frame, described or not, and
    froze there; docs/gate.md.) The normalised text and pose keep the gate's inputs at one
    scale while the pose features grow during training.

    Identity at start: ``proj`` starts at zero (weight and bias), so text' = 0 and
    fused == pose exactly; the gate starts at GATE_INIT. At the very first step only ``proj``
    gets a gradient (the gate's is text' = 0, and so is the mask embedding's); from the second
    step on the gate MLP and the mask embedding learn too. Frames with the mask embedding
    (no description, or dropped) learn a gate near 0: they add almost nothing.
    """

    def __init__(self, feature_dim=768, text_dim=None, hidden=512, predicted_indicator: bool = False):
        super().__init__()
        text_dim = feature_dim if text_dim is None else text_dim
        self.predicted_indicator = predicted_indicator  # the gate also reads "this frame's text is predicted"
        self.gate_mlp = nn.Sequential(
            nn.Linear(feature_dim + text_dim + 1 + int(predicted_indicator), hidden),
            nn.GELU(),
            nn.Linear(hidden, 1),
        )
        nn.init.constant_(self.gate_mlp[2].bias, math.log(GATE_INIT / (1 - GATE_INIT)))
        self.proj = nn.Linear(text_dim, feature_dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def gate(self, pose_feat, text_norm, has_description, predicted=None):
        """(B, T, C), normalised text (B, T, text_dim), (B, T, 1) or (B, T), with the indicator
        ``predicted`` (B, T, 1) (None: no frame predicted) -> gate (B, T, 1) in (0, 1)."""
        if has_description.dim() == pose_feat.dim() - 1:
            has_description = has_description.unsqueeze(-1)  # (B, T, 1)
        pose = F.layer_norm(pose_feat, pose_feat.shape[-1:])  # (B, T, C)
        inputs = [pose, text_norm, has_description.to(pose_feat.dtype)]
        if self.predicted_indicator:
            inputs.append(torch.zeros_like(inputs[-1]) if predicted is None else predicted.to(pose_feat.dtype))
        x = torch.cat(inputs, -1)  # (B, T, C + text_dim + 1 [+ 1])
        return torch.sigmoid(self.gate_mlp(x))  # (B, T, 1)

    def text_update(self, pose_feat, text_norm):
        """text' (B, T, C): the direction of proj(normalised text) at the size of the pose features."""
        direction = self.proj(text_norm)  # (B, T, C)
        direction = direction / rms(direction, DIRECTION_EPS ** 2)
        return TEXT_SCALE * rms(pose_feat).detach() * direction  # (B, T, C)

    def forward(self, pose_feat, text_feat, has_description, predicted=None):
        """(B, T, C), (B, T, text_dim), (B, T, 1) or (B, T), indicator (B, T, 1) or None ->
        (fused (B, T, C), gate (B, T, 1))."""
        text_norm = F.layer_norm(text_feat.to(pose_feat.dtype), text_feat.shape[-1:])  # (B, T, text_dim), once
        gate = self.gate(pose_feat, text_norm, has_description, predicted)  # (B, T, 1)
        return pose_feat + gate * self.text_update(pose_feat, text_norm), gate


# The null key's logit bias at initialisation: with 5 texts in a sample, a frame starts with
# 90 % of its attention on the null key (cross-attention's gate ~0.1, as GATE_INIT).
NULL_LOGIT_INIT = math.log(9 * 5)


def relative_position_bucket(offset, num_buckets=32, max_distance=256):
    """T5-style buckets of a frame offset (query - key; float allowed): half of the buckets per
    sign, exact up to num_buckets // 4 frames, then log-spaced up to ``max_distance``."""
    half = num_buckets // 2
    exact = half // 2
    dist = offset.abs().round()
    far = exact + (torch.log(dist.clamp_min(exact) / exact) / math.log(max_distance / exact)
                   * (half - exact)).long()
    bucket = torch.where(dist < exact, dist.long(), far.clamp_max(half - 1))
    return bucket + (offset > 0).long() * half


class CrossAttentionFusion(nn.Module):
    """Phase 2: each pose frame attends over its sample's description vectors.

    Keys/values: the batch's N distinct text vectors, each valid for the samples whose frames
    carry it (desc_weight > 0), at the position of the weighted mean of those frames' original
    frame numbers (the described frame when it was sampled; between its neighbours otherwise).
    The query-key frame offset selects a learned per-head bias (T5-style buckets). One extra
    "null" key, made from the mask embedding with a zero value, is always valid: a frame can
    attend to nothing, a sample without texts gets a zero update, no softmax over an empty set.
    Frames in ``drop`` (text dropout, descriptions off) attend only to the null key.
    has_description is not an input here: the key positions say where the texts were described.

    As in GatingFusion, a gate sets the amount: gate (B, T, 1) = 1 - the head-mean attention
    on the null key (the share of the frame's attention that goes to descriptions; 0 for frames
    without any), and fused = pose + gate * text', text' = TEXT_SCALE * rms(pose) * d / rms(d),
    d = out_proj(attention output): the attended texts' direction at the pose's size. The null
    key's logit has a learned bias (``null_logit``, NULL_LOGIT_INIT: with ~5 texts a frame starts
    with ~90 % of its attention on the null key, gate ~0.1). ``out_proj`` starts at zero, so
    fused == pose exactly at initialisation; at step one only out_proj gets a gradient, the
    attention layers, the null logit and the mask embedding learn from the second step on.
    """

    def __init__(self, feature_dim=768, text_dim=None, heads=8, num_buckets=32, max_distance=256):
        super().__init__()
        text_dim = feature_dim if text_dim is None else text_dim
        assert feature_dim % heads == 0, "feature_dim must be a multiple of heads"
        self.heads = heads
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.ln_q = nn.LayerNorm(feature_dim)
        self.ln_kv = nn.LayerNorm(text_dim)
        self.q_proj = nn.Linear(feature_dim, feature_dim)
        self.k_proj = nn.Linear(text_dim, feature_dim)
        self.v_proj = nn.Linear(text_dim, feature_dim)
        self.out_proj = nn.Linear(feature_dim, feature_dim, bias=False)  # no bias: no text, no update
        nn.init.zeros_(self.out_proj.weight)  # identity at start
        self.rel_bias = nn.Embedding(num_buckets, heads)
        nn.init.zeros_(self.rel_bias.weight)
        self.null_logit = nn.Parameter(torch.full((1,), NULL_LOGIT_INIT))

    def forward(self, pose_feat, text_vectors, desc_index, desc_weight, frame_indices,
                mask_embedding, drop=None):
        """pose_feat (B, T, C), text_vectors (N, text_dim), desc_index/desc_weight (B, T, 2),
        frame_indices (B, T), mask_embedding (1, text_dim), drop (B, T) bool or None
        -> (fused (B, T, C), gate (B, T, 1))."""
        B, T, C = pose_feat.shape
        N, H = text_vectors.shape[0], self.heads
        hd = C // H
        dtype = pose_feat.dtype
        weight = desc_weight.float() * (desc_index >= 0)  # (B, T, 2); positions in float32
        if drop is not None:
            weight = weight.masked_fill(drop.unsqueeze(-1), 0)

        # which texts each sample has, and where: scatter the frames' weights onto the N texts
        slot = (desc_index.clamp_min(-1) + 1).flatten(1)  # (B, 2T), 0 = no text
        frame_pos = frame_indices.float()  # (B, T)
        pos = frame_pos.unsqueeze(-1).expand_as(weight)  # (B, T, 2)
        mass = weight.new_zeros(B, N + 1).scatter_add_(1, slot, weight.flatten(1))[:, 1:]  # (B, N)
        pos_sum = weight.new_zeros(B, N + 1).scatter_add_(1, slot, (weight * pos).flatten(1))[:, 1:]
        key_pos = pos_sum / mass.clamp_min(1e-6)  # (B, N)
        valid = mass > 0  # (B, N)

        q = self.q_proj(self.ln_q(pose_feat)).view(B, T, H, hd).transpose(1, 2)  # (B, H, T, hd)
        kv_in = self.ln_kv(torch.cat([mask_embedding, text_vectors]).to(dtype))  # (1 + N, text_dim)
        k = self.k_proj(kv_in).view(N + 1, H, hd).transpose(0, 1)  # (H, 1 + N, hd)
        v = self.v_proj(kv_in[1:]).view(N, H, hd).transpose(0, 1)  # (H, N, hd)

        att = torch.einsum("bhtd,hnd->bhtn", q, k) / math.sqrt(hd)  # (B, H, T, 1 + N)
        offset = frame_pos.unsqueeze(-1) - key_pos.unsqueeze(1)  # (B, T, N)
        bucket = relative_position_bucket(offset, self.num_buckets, self.max_distance)
        bias = self.rel_bias(bucket).permute(0, 3, 1, 2).to(dtype)  # (B, H, T, N)
        allowed = valid.unsqueeze(1).expand(B, T, N)  # (B, T, N)
        if drop is not None:
            allowed = allowed & ~drop.unsqueeze(-1)
        text_att = (att[..., 1:] + bias).masked_fill(~allowed.unsqueeze(1), float("-inf"))
        att = torch.cat([att[..., :1] + self.null_logit.to(dtype), text_att], -1).softmax(-1)  # (B, H, T, 1 + N)

        y = torch.einsum("bhtn,hnd->bhtd", att[..., 1:], v)  # (B, H, T, hd); null value is 0
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        direction = self.out_proj(y)  # (B, T, C); 0 where a frame attends to nothing
        direction = direction / rms(direction, DIRECTION_EPS ** 2)
        gate = (1 - att[..., 0].mean(1)).unsqueeze(-1)  # (B, T, 1)
        return pose_feat + gate * TEXT_SCALE * rms(pose_feat).detach() * direction, gate


# -----------------------------------------------------------------------------
# the module Uni_Sign owns (as `text_fusion`)

class DescriptionFusion(nn.Module):
    """Mask embedding + text dropout + the fusion chosen by ``cfg.text_fusion_type``.

    Keys (under Uni_Sign's ``text_fusion.``): ``mask_embedding.weight`` and ``fusion.*``.
    ``forward(pose_feats, batch, text_vectors, descriptions_off=False) -> (fused, gate)``.
    Text dropout (training only): a frame is dropped with cfg.text_dropout_p, every frame of a
    sample with cfg.text_dropout_sample_p; a dropped frame loses its texts (weights 0), so its
    text feature is the mask embedding, and its has_description becomes 0 (cross-attention: it
    attends to no text). ``descriptions_off`` (or ``batch["descriptions_off"]``) drops every
    frame, in any mode: the ``--eval_descriptions off`` evaluation. ``last_alignment`` keeps the
    last batch's ``alignment_kinds`` (B, T) after dropout (a dropped frame is undescribed), for
    the gate statistics per kind.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.text_fusion_type not in ("gating", "cross_attn"):
            raise ValueError(f"unknown text_fusion_type {cfg.text_fusion_type!r}")
        self.fusion_type = cfg.text_fusion_type
        self.text_dim = cfg.text_dim
        self.p = cfg.text_dropout_p
        self.sample_p = cfg.text_dropout_sample_p
        self.mask_embedding = LearnableMaskEmbedding(cfg.text_dim)
        self.last_alignment = None  # (B, T) alignment kinds of the last batch, after text dropout
        if cfg.desc_predicted_indicator and cfg.text_fusion_type != "gating":
            raise InputError("--desc_predicted_indicator: an input of the gated fusion's gate "
                             "(--text_fusion_type gating), not of cross-attention")
        if cfg.text_fusion_type == "gating":
            self.fusion = GatingFusion(cfg.d_model, cfg.text_dim, cfg.fusion_hidden, cfg.desc_predicted_indicator)
        else:
            self.fusion = CrossAttentionFusion(cfg.d_model, cfg.text_dim, cfg.cross_attn_heads)
        if cfg.desc_distill_weight > 0:  # made last: the other weights start as without it
            self.predictor = DescriptionPredictor(cfg.d_model, cfg.text_dim, cfg.desc_predictor_hidden,
                                                  cfg.desc_predictor_keypoints)

    def dropout_mask(self, B, T, device):
        """(B, T) bool, True = frame's descriptions dropped (always all False in eval mode)."""
        drop = torch.zeros(B, T, dtype=torch.bool, device=device)
        if self.training and self.p > 0:
            drop |= torch.rand(B, T, device=device) < self.p
        if self.training and self.sample_p > 0:
            drop |= torch.rand(B, 1, device=device) < self.sample_p
        return drop

    def forward(self, pose_feats, batch, text_vectors=None, descriptions_off=False, predicted=None):
        """-> (fused, gate). ``predicted``: None, or (pred (B, T, text_dim), samples (B,) bool): those
        samples' frames read the predictor's vectors instead of their descriptions."""
        B, T, _ = pose_feats.shape
        device = pose_feats.device
        if "desc_index" in batch:
            index = batch["desc_index"].to(device)  # (B, T, 2)
            weight = batch["desc_weight"].to(device)  # (B, T, 2)
            has = batch["has_description"].to(device).view(B, T, 1)  # (B, T, 1)
        else:  # a batch without description keys: nothing described
            index = torch.full((B, T, 2), -1, dtype=torch.long, device=device)
            weight = torch.zeros(B, T, 2, device=device)
            has = torch.zeros(B, T, 1, device=device)
        if text_vectors is None:
            text_vectors = torch.zeros(0, self.text_dim, device=device)
        if text_vectors.shape[-1] != self.text_dim:
            raise ValueError(f"description vectors are {text_vectors.shape[-1]} wide, "
                             f"the fusion expects text_dim={self.text_dim}")
        text_vectors = text_vectors.to(device=device, dtype=pose_feats.dtype)
        frame_indices = batch.get("frame_indices")
        if frame_indices is None:
            frame_indices = torch.arange(T, device=device).expand(B, T)
        frame_indices = frame_indices.to(device)  # (B, T)
        is_predicted = torch.zeros(B, T, 1, dtype=torch.bool, device=device)  # (B, T, 1)
        if predicted is not None:
            index, weight, has, text_vectors = predicted_texts(index, weight, has, text_vectors, *predicted,
                                                               frame_mask=batch["attention_mask"].to(device))
            is_predicted = predicted[1].view(B, 1, 1).expand(B, T, 1)

        drop = self.dropout_mask(B, T, device)  # (B, T)
        if descriptions_off or batch.get("descriptions_off", False):
            drop = torch.ones_like(drop)
        weight = weight.masked_fill(drop.unsqueeze(-1), 0)  # (B, T, 2)
        has = has.masked_fill(drop.unsqueeze(-1), 0)  # (B, T, 1)
        mask = self.mask_embedding()  # (1, text_dim)
        self.last_alignment = alignment_kinds(index, weight, has)  # (B, T), dropped frames: undescribed

        if self.fusion_type == "gating":
            text = frame_text_features(text_vectors, index, weight, mask_embedding=mask)
            is_predicted = is_predicted & (weight > 0).any(-1, keepdim=True)  # (B, T, 1): a predicted text, kept
            return self.fusion(pose_feats, text, has, is_predicted)  # text: (B, T, text_dim)
        return self.fusion(pose_feats, text_vectors, index, weight, frame_indices, mask, drop)


