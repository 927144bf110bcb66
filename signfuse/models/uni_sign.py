"""Uni_Sign: pose features, prefixed by a text prompt, translated by mT5.

The pose encoder (``PoseEncoder``) turns the four keypoint parts into one vector per frame,
of mT5's width. The prompt ("Translate sign language video to ...: </s>") is embedded with
mT5's token embedding and put before the pose tokens; the attention mask is the prompt's
mask followed by the frame mask. Training: label-smoothed cross entropy on the target
sentence. Inference: beam search (unisign-compat.md section 5). State-dict keys are
Uni-Sign's: the pose encoder's, then ``mt5_model.*``.
"""
import torch
import torch.nn.functional as F

from signfuse.config import TINY_MT5, TINY_POSE_CHANNELS, ModelConfig
from signfuse.models.mt5 import load_mt5
from signfuse.models.pose_encoder import PoseEncoder


class Uni_Sign(PoseEncoder):

    def __init__(self, cfg: ModelConfig, mt5_model, tokenizer):
        cfg.d_model = mt5_model.config.d_model  # pose_proj maps to the language model's width
        super().__init__(cfg)
        self.mt5_model = mt5_model  # stock MT5ForConditionalGeneration
        self.tokenizer = tokenizer  # not a module: no state-dict keys

    # ---- inputs of mT5 ----

    def fuse(self, pose_feats: torch.Tensor, batch: dict) -> tuple:
        """Description fusion: (B, T, d_model) -> (fused (B, T, d_model), gate (B, T, 1) or None).

        Without descriptions (Uni-Sign) the pose features go through unchanged.
        """
        if not self.cfg.use_descriptions:
            return pose_feats, None
        raise NotImplementedError("description fusion is not part of this model yet")

    def build_inputs(self, batch: dict) -> tuple:
        """-> (inputs_embeds (B, P+T, d_model), attention_mask (B, P+T) int64, gate or None)."""
        pose = self.encode_pose(batch)  # (B, T, d_model)
        pose, gate = self.fuse(pose, batch)  # (B, T, d_model)
        B = pose.shape[0]
        prompt = self.tokenizer([self.cfg.prompt] * B, padding="longest", return_tensors="pt")
        prompt_ids = prompt["input_ids"].to(pose.device)  # (B, P), ends with </s>
        prompt_embeds = self.mt5_model.encoder.embed_tokens(prompt_ids)  # (B, P, d_model)
        inputs_embeds = torch.cat([prompt_embeds, pose], dim=1)  # (B, P+T, d_model)
        frame_mask = batch["attention_mask"].to(device=pose.device, dtype=torch.long)  # (B, T)
        attention_mask = torch.cat([prompt["attention_mask"].to(pose.device), frame_mask], dim=1)  # (B, P+T)
        return inputs_embeds, attention_mask, gate

    def embed_inputs(self, batch: dict) -> tuple:
        """-> (inputs_embeds (B, P+T, d_model), attention_mask (B, P+T)): prompt first, then pose."""
        inputs_embeds, attention_mask, _ = self.build_inputs(batch)
        return inputs_embeds, attention_mask

    def tokenize_targets(self, targets: list) -> torch.Tensor:
        """Target sentences -> labels (B, L): padded to the longest, truncated, pad = -100."""
        tokens = self.tokenizer(
            list(targets), padding=True, truncation=True, max_length=self.cfg.max_target_tokens, return_tensors="pt"
        )
        return tokens["input_ids"].masked_fill(tokens["attention_mask"] == 0, -100)  # (B, L)

    # ---- training and inference ----

    def forward(self, batch: dict) -> dict:
        inputs_embeds, attention_mask, gate = self.build_inputs(batch)
        labels = self.tokenize_targets(batch["targets"]).to(inputs_embeds.device)  # (B, L)
        out = self.mt5_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            decoder_input_ids=self.mt5_model.prepare_decoder_input_ids_from_labels(labels),  # labels shifted right
            return_dict=True,
        )
        logits = out.logits  # (B, L, vocab)
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),  # (B*L, vocab)
            labels.reshape(-1),  # (B*L,)
            ignore_index=-100,
            label_smoothing=self.cfg.label_smoothing,
        )
        return {"loss": loss, "logits": logits, "gate": gate}

    @torch.no_grad()
    def generate_ids(self, batch: dict, max_new_tokens: int = None, num_beams: int = None) -> torch.Tensor:
        """Beam search from the prompt and pose tokens -> token ids (B, L_out)."""
        inputs_embeds, attention_mask, _ = self.build_inputs(batch)
        return self.mt5_model.generate(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            max_new_tokens=max_new_tokens or self.cfg.max_new_tokens,
            num_beams=num_beams or self.cfg.num_beams,
        )

    def generate(self, batch: dict, max_new_tokens: int = None, num_beams: int = None) -> list:
        """One decoded string per sample (special tokens skipped)."""
        ids = self.generate_ids(batch, max_new_tokens=max_new_tokens, num_beams=num_beams)
        return self.tokenizer.batch_decode(ids, skip_special_tokens=True)


def build_model(cfg: ModelConfig, mt5_path: str, seed: int = 0) -> Uni_Sign:
    """Load mT5 and its tokenizer (``mt5_path`` or "tiny") and build Uni_Sign around them.

    The pose encoder's initial weights depend on ``seed`` only (the caller's RNG is untouched).
    """
    if mt5_path == TINY_MT5:
        cfg.gcn_channels = TINY_POSE_CHANNELS
    mt5_model, tokenizer = load_mt5(mt5_path, seed=seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Uni_Sign(cfg, mt5_model, tokenizer)
