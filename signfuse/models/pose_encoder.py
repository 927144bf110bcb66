"""PoseEncoder: Uni-Sign's four-part pose encoder (body, left hand, right hand, face).

Each part: Linear(3, c0) on (x, y, confidence), a spatial ST-GCN chain to c_last channels,
the detached body feature of its anchor node added (wrists for the hands, nose for the
face), a temporal ST-GCN chain, and the mean over nodes. The four parts are concatenated,
``part_para`` is added, and ``pose_proj`` maps to the language model's width
(docs/unisign-compat.md section 4). The frame mask is not used here: padded frames (copies of
the last frame) pass through, and only the language model sees the mask.
With ``cfg.rgb_support`` the hands' spatial-chain outputs are fused with their hand crops
before the wrist feature is added (rgb_branch.py; docs/rgb-pose.md section 8).
"""
import torch
import torch.nn as nn

from signfuse.config import ModelConfig
from signfuse.models.graph import PART_SKELETONS, distance_adjacency
from signfuse.models.rgb_branch import HANDS, add_rgb_modules, fuse_hand_rgb
from signfuse.models.stgcn import spatial_chain, temporal_chain

PARTS = ("body", "left", "right", "face_all")  # order of the forward pass and of the concatenation
BODY_ANCHOR = {"left": 7, "right": 8, "face_all": 0}  # body node added to each part: wrists, nose


class PoseEncoder(nn.Module):

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        c_last = cfg.gcn_channels[-1]
        # the two hands share every module: the state dict holds both key sets, with equal values
        built = {name: self._part_modules(name) for name in ("body", "right", "face_all")}
        built["left"] = built["right"]
        self.proj_linear = nn.ModuleDict({part: built[part][0] for part in PARTS})
        self.gcn_modules = nn.ModuleDict({part: built[part][1] for part in PARTS})
        self.fusion_gcn_modules = nn.ModuleDict({part: built[part][2] for part in PARTS})
        self.part_para = nn.Parameter(torch.zeros(len(PARTS) * c_last))
        self.pose_proj = nn.Linear(len(PARTS) * c_last, cfg.d_model)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        if cfg.rgb_support:  # after the init above: Uni-Sign's RGB modules keep PyTorch's default init
            add_rgb_modules(self, c_last, cfg.rgb_gate_init)

    def _part_modules(self, part: str) -> tuple:
        """(proj_linear, spatial chain, temporal chain) of one part."""
        cfg = self.cfg
        A = torch.from_numpy(distance_adjacency(PART_SKELETONS[part]))  # (2, V, V)
        return (
            nn.Linear(3, cfg.gcn_channels[0]),
            spatial_chain(cfg.gcn_channels, A),
            temporal_chain(cfg.gcn_channels[-1], A, cfg.temporal_kernel, cfg.num_temporal_blocks),
        )

    def encode_pose(self, batch: dict) -> torch.Tensor:
        """batch['body'|'left'|'right'|'face_all']: (B, T, V, 3) -> pose features (B, T, d_model)."""
        feats = []
        body = None
        for part in PARTS:
            x = self.proj_linear[part](batch[part])  # (B, T, V, c0)
            x = x.permute(0, 3, 1, 2)  # (B, c0, T, V)
            x = self.gcn_modules[part](x)  # (B, c_last, T, V)
            if part == "body":
                body = x
            else:
                if self.cfg.rgb_support and part in HANDS:
                    x = fuse_hand_rgb(self, x, batch, part)  # hand crops fused into the sampled frames
                x = x + body[..., BODY_ANCHOR[part]].detach()[..., None]  # (B, c_last, T, V)
            x = self.fusion_gcn_modules[part](x)  # (B, c_last, T, V)
            feats.append(x.mean(dim=-1).transpose(1, 2))  # (B, T, c_last)
        x = torch.cat(feats, dim=-1).add_(self.part_para)  # (B, T, 4*c_last); in place: the sum's backward needs no input
        return self.pose_proj(x)  # (B, T, d_model)
