"""The description predictor: descriptions at training only (issue 19; MMSLT's idea).

A small head reads the pose features of each sampled frame (after the RGB branch when it is
on) and predicts the frame's description embedding: the vector the fusion would read for that
frame (the frozen text encoder's or the ``--desc_store``'s, interpolated as the fusion
interpolates it). It trains on the frames that have a text, with its own loss, weighted by
``--desc_distill_weight``; its gradient also reaches the pose encoder (the cue the
descriptions state must be found in the keypoints). At inference without descriptions the
fusion reads the predicted vectors instead (``--eval_descriptions predicted``, ``predict``
and ``translate`` without a description file).

Pieces:
- ``DescriptionPredictor``: LayerNorm, then a Linear (``hidden`` 0) or a two-layer MLP.
- ``distill_loss``: its loss on the frames that have a text: ``cosine`` (1 - the cosine of
  the layer-normalised vectors: the fusion reads its texts layer-normalised, so only that
  view matters; it equals half the MSE of the normalised vectors divided by their width) or
  ``mse`` (the MSE of the raw vectors); ``contrastive`` adds ``contrastive_loss`` to the cosine
  loss: which of the batch's texts is the frame's.
- ``predicted_texts``: the batch keys through which the fusion reads the predictions (each
  frame its own "text"), for every sample or for some (scheduled sampling in training).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

DISTILL_LOSSES = ("cosine", "mse", "contrastive")
CONTRAST_TEMPERATURE = 0.1  # of the contrastive loss's cosines


# The keypoints the head may read besides the pose features: the face and body parts' xy, as
# displacements from the sample's mean over its real frames, at each sampled frame and its
# KEYPOINT_WINDOW neighbours on each side. (The weak facial cues of the synthetic benchmark are
# 0.01-0.02 in these coordinates: a probe on frozen features told the paired texts apart on 45 %
# of the test frames from the pose features, 70 % with these displacements; docs/predictor.md.)
KEYPOINT_PARTS = ("face_all", "body")
KEYPOINT_WINDOW = 1
KEYPOINT_SCALE = 20.0  # the displacements to about unit size


def keypoint_dim(window: int = KEYPOINT_WINDOW) -> int:
    """Width of ``keypoint_motion``'s output: (18 face + 9 body points) x 2 x (2 window + 1)."""
    return (18 + 9) * 2 * (2 * window + 1)


def keypoint_motion(batch: dict, window: int = KEYPOINT_WINDOW) -> torch.Tensor:
    """(B, T, keypoint_dim) from the batch's ``face_all``/``body`` (B, T, V, 3) and ``attention_mask``."""
    x = torch.cat([batch[part][..., :2].flatten(2) for part in KEYPOINT_PARTS], -1).float()  # (B, T, 54)
    m = batch["attention_mask"].unsqueeze(-1).to(x)  # (B, T, 1)
    mean = (x * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp_min(1.0)  # (B, 1, 54)
    d = (x - mean) * KEYPOINT_SCALE  # (B, T, 54)
    T = d.shape[1]
    padded = torch.cat([d[:, :1].expand(-1, window, -1), d, d[:, -1:].expand(-1, window, -1)], 1)  # (B, T + 2w, 54)
    return torch.cat([padded[:, i:i + T] for i in range(2 * window + 1)], -1)  # (B, T, 54 (2w + 1))


class DescriptionPredictor(nn.Module):
    """pose features (B, T, feature_dim) [+ keypoint displacements (B, T, keypoint_dim)] ->
    predicted description vectors (B, T, text_dim).

    ``hidden`` 0: LayerNorm + Linear; else LayerNorm + Linear(in, hidden) + GELU +
    Linear(hidden, text_dim). Keys (under Uni_Sign's ``text_fusion.predictor.``): ``net.*``."""

    def __init__(self, feature_dim: int, text_dim: int, hidden: int = 256, keypoints: bool = False):
        super().__init__()
        self.keypoints = keypoints
        width = feature_dim + (keypoint_dim() if keypoints else 0)
        layers = [nn.LayerNorm(width)]
        if hidden > 0:
            layers += [nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, text_dim)]
        else:
            layers += [nn.Linear(width, text_dim)]
        self.net = nn.Sequential(*layers)

    def forward(self, pose_feat: torch.Tensor, batch: dict = None) -> torch.Tensor:
        if self.keypoints:
            pose_feat = torch.cat([pose_feat, keypoint_motion(batch).to(pose_feat)], -1)  # (B, T, feature_dim + k)
        return self.net(pose_feat)  # (B, T, text_dim)


def normalised(x: torch.Tensor) -> torch.Tensor:
    """Layer normalisation without parameters over the last dimension (the fusion's view)."""
    return F.layer_norm(x.float(), x.shape[-1:])


def distill_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, kind: str = "cosine") -> torch.Tensor:
    """Mean loss over the frames of ``mask`` (B, T) bool of ``pred`` vs ``target`` (B, T, D).
    ``cosine``: 1 - cos(norm(pred), norm(target)); ``mse``: mean squared error of the raw
    vectors. 0 (with a gradient path) when no frame has a text."""
    if kind not in DISTILL_LOSSES:
        raise ValueError(f"unknown description predictor loss {kind!r} (expected one of {DISTILL_LOSSES})")
    if not bool(mask.any()):
        return pred.sum() * 0.0
    p, t = pred[mask].float(), target[mask].float().detach()  # (n, D)
    if kind == "cosine":
        return (1 - F.cosine_similarity(normalised(p), normalised(t), dim=-1)).mean()
    return F.mse_loss(p, t)


def contrastive_loss(pred, vectors, index, weight, mask, temperature: float = CONTRAST_TEMPERATURE) -> torch.Tensor:
    """Cross entropy of each frame of ``mask`` (B, T) over the batch's distinct texts ``vectors``
    (N, D): logits = cos(norm(pred), norm(text)) / ``temperature``, target = the frame's text
    weights (``index``/``weight`` (B, T, 2): its text, or the two it interpolates). The cosine
    loss rewards the part that the texts share as much as the part that tells them apart (a
    prediction between "mouth smiles" and "mouth frowns" scores well); this one only rewards
    telling the frame's text from the batch's others."""
    N = vectors.shape[0]
    if N < 2 or not bool(mask.any()):
        return pred.sum() * 0.0
    p = F.normalize(normalised(pred[mask]), dim=-1)  # (n, D)
    v = F.normalize(normalised(vectors.detach()), dim=-1)  # (N, D)
    logits = p @ v.T / temperature  # (n, N)
    w = (weight * (index >= 0))[mask].float()  # (n, 2)
    target = torch.zeros_like(logits).scatter_add_(1, index[mask].clamp_min(0), w)  # (n, N)
    target = target / target.sum(-1, keepdim=True).clamp_min(1e-6)
    return -(target * F.log_softmax(logits, -1)).sum(-1).mean()


def cosine_to_target(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> tuple[float, float, int]:
    """(summed raw cosine, summed cosine of the normalised vectors, frames) over ``mask``: the
    predictor's similarity to the true embedding (``--eval_descriptions`` reports the means)."""
    p, t = pred[mask].float(), target[mask].float()
    if p.shape[0] == 0:
        return 0.0, 0.0, 0
    raw = F.cosine_similarity(p, t, dim=-1).sum()
    centred = F.cosine_similarity(normalised(p), normalised(t), dim=-1).sum()
    return float(raw), float(centred), int(p.shape[0])


def predicted_texts(index, weight, has, vectors, pred, samples, frame_mask=None) -> tuple:
    """The fusion's inputs with the samples of ``samples`` (B,) bool reading ``pred`` (B, T, D):
    each of their frames gets its own predicted vector as its one text (weight 1, has_description
    0: a text, as an interpolated frame has, not a described frame). ``index``/``weight`` (B, T, 2),
    ``has`` (B, T, 1), ``vectors`` (N, D) the given texts; ``frame_mask`` (B, T): padding frames
    get no text. Returns (index, weight, has, vectors (N + B*T, D))."""
    B, T, _ = index.shape
    N = vectors.shape[0]
    own = N + torch.arange(B * T, device=index.device).view(B, T, 1)  # (B, T, 1)
    p_index = torch.cat([own, torch.full_like(own, -1)], -1)  # (B, T, 2)
    real = torch.ones(B, T, device=index.device) if frame_mask is None else frame_mask.to(weight.dtype)
    p_weight = torch.stack([real.to(weight.dtype), torch.zeros_like(real, dtype=weight.dtype)], -1)  # (B, T, 2)
    s = samples.view(B, 1, 1)
    index = torch.where(s, p_index, index)
    weight = torch.where(s, p_weight, weight)
    has = has.masked_fill(s, 0)
    vectors = torch.cat([vectors, pred.reshape(B * T, -1).to(vectors.dtype)])  # (N + B*T, D)
    return index, weight, has, vectors
