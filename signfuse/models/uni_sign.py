"""Uni_Sign: pose features, prefixed by a text prompt, translated by mT5.

The pose encoder (``PoseEncoder``) turns the four keypoint parts into one vector per frame,
of mT5's width. The prompt ("Translate sign language video to ...: </s>") is embedded with
mT5's token embedding and put before the pose tokens; the attention mask is the prompt's
mask followed by the frame mask. Training: label-smoothed cross entropy on the target
sentence. Inference: beam search (docs/unisign-compat.md section 5). State-dict keys are
Uni-Sign's: the pose encoder's (with ``--rgb_support`` its RGB branch's too), then ``mt5_model.*``.
"""
from dataclasses import replace

import torch
import torch.nn.functional as F
from transformers import MT5Config

from signfuse.config import TINY_MT5, TINY_MT5_DIR, TINY_POSE_CHANNELS, ModelConfig
from signfuse.errors import InputError
from signfuse.models.mt5 import load_mt5
from signfuse.models.pose_encoder import PoseEncoder
from signfuse.models.text_fusion import DescriptionFusion, TextEncoder
from signfuse.models.text_store import EmbeddingStore, encoder_identity

TEXT_ENCODER_SEED = 0  # the tiny text encoder's random weights (fixed: stores stay valid across runs)


class Uni_Sign(PoseEncoder):

    def __init__(self, cfg: ModelConfig, mt5_model, tokenizer):
        if cfg.d_model != mt5_model.config.d_model:  # pose_proj maps to the language model's width
            cfg = replace(cfg, d_model=mt5_model.config.d_model)
        super().__init__(cfg)
        self.mt5_model = mt5_model  # stock MT5ForConditionalGeneration
        self.tokenizer = tokenizer  # not a module: no state-dict keys
        self.last_gate = None  # (B, T, 1) gate of the last batch, with descriptions
        if cfg.use_descriptions:
            self.text_fusion = DescriptionFusion(cfg)  # keys text_fusion.* (outside Uni-Sign's)
            # texts -> (N, cfg.text_dim) vectors: a frozen TextEncoder or an EmbeddingStore
            # (attach_text_source); the encoder holds no state-dict keys and no parameters
            self.text_source = None

    # ---- inputs of mT5 ----

    def fuse(self, pose_feats: torch.Tensor, batch: dict, descriptions_off: bool = False) -> tuple:
        """Description fusion: (B, T, d_model) -> (fused (B, T, d_model), gate (B, T, 1) or None).

        Without descriptions (Uni-Sign) the pose features go through unchanged. With them, each
        distinct text of the batch becomes one vector (text source), frames get the weighted sums
        of their texts' vectors (or the mask embedding), and the fusion adds them to the pose.
        ``descriptions_off`` masks every frame (``--eval_descriptions off``).
        """
        if not self.cfg.use_descriptions:
            return pose_feats, None
        texts = batch.get("desc_texts", [])
        if texts and self.text_source is None:
            raise RuntimeError("Uni_Sign with descriptions needs a text source: call attach_text_source")
        vectors = self.text_source.encode(texts) if texts else None  # (N, text_dim)
        fused, gate = self.text_fusion(pose_feats, batch, vectors, descriptions_off=descriptions_off)
        self.last_gate = gate.detach()
        return fused, gate

    def build_inputs(self, batch: dict, descriptions_off: bool = False) -> tuple:
        """-> (inputs_embeds (B, P+T, d_model), attention_mask (B, P+T) int64, gate or None)."""
        pose = self.encode_pose(batch)  # (B, T, d_model)
        pose, gate = self.fuse(pose, batch, descriptions_off)  # (B, T, d_model)
        B = pose.shape[0]
        prompt = self.tokenizer([self.cfg.prompt] * B, padding="longest", return_tensors="pt")
        prompt_ids = prompt["input_ids"].to(pose.device)  # (B, P), ends with </s>
        prompt_embeds = self.mt5_model.encoder.embed_tokens(prompt_ids)  # (B, P, d_model)
        inputs_embeds = torch.cat([prompt_embeds, pose], dim=1)  # (B, P+T, d_model)
        frame_mask = batch["attention_mask"].to(device=pose.device, dtype=torch.long)  # (B, T)
        attention_mask = torch.cat([prompt["attention_mask"].to(pose.device), frame_mask], dim=1)  # (B, P+T)
        return inputs_embeds, attention_mask, gate

    def tokenize_targets(self, targets: list) -> torch.Tensor:
        """Target sentences -> labels (B, L): padded to the longest, truncated, pad = -100."""
        tokens = self.tokenizer(
            list(targets), padding=True, truncation=True, max_length=self.cfg.max_target_tokens, return_tensors="pt"
        )
        return tokens["input_ids"].masked_fill(tokens["attention_mask"] == 0, -100)  # (B, L)

    # ---- training and inference ----

    def forward(self, batch: dict, descriptions_off: bool = False) -> dict:
        """Label-smoothed loss. In training with ``cfg.desc_off_loss`` > 0, plus that weight times
        the loss of the same batch with every description masked (computed first)."""
        if self.training and self.cfg.use_descriptions and self.cfg.desc_off_loss > 0 and not descriptions_off:
            off = self.translation_loss(batch, descriptions_off=True)["loss"]
            out = self.translation_loss(batch)
            return {**out, "loss": out["loss"] + self.cfg.desc_off_loss * off}
        return self.translation_loss(batch, descriptions_off)

    def translation_loss(self, batch: dict, descriptions_off: bool = False) -> dict:
        """-> {"loss", "logits" (B, L, vocab), "gate" (B, T, 1) or None}."""
        inputs_embeds, attention_mask, gate = self.build_inputs(batch, descriptions_off)
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
    def generate_ids(self, batch: dict, max_new_tokens: int = None, num_beams: int = None,
                     descriptions_off: bool = False) -> torch.Tensor:
        """Beam search from the prompt and pose tokens -> token ids (B, L_out)."""
        inputs_embeds, attention_mask, _ = self.build_inputs(batch, descriptions_off)
        return self.mt5_model.generate(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            max_new_tokens=max_new_tokens or self.cfg.max_new_tokens,
            num_beams=num_beams or self.cfg.num_beams,
        )

    def generate(self, batch: dict, max_new_tokens: int = None, num_beams: int = None,
                 descriptions_off: bool = False) -> list:
        """One decoded string per sample (special tokens skipped)."""
        ids = self.generate_ids(batch, max_new_tokens=max_new_tokens, num_beams=num_beams,
                                descriptions_off=descriptions_off)
        return self.tokenizer.batch_decode(ids, skip_special_tokens=True)


def build_model(cfg: ModelConfig, mt5_path: str, seed: int = 0, desc_encoder: str = None,
                backbone: dict = None) -> Uni_Sign:
    """Load mT5 and its tokenizer (``mt5_path`` or "tiny") and build Uni_Sign around them.

    The model's configuration is ``resolve_config(cfg, mt5_path, desc_encoder)`` (``cfg`` is
    not changed); with ``cfg.use_descriptions`` attach the text vectors with ``attach_text_source``.
    With ``cfg.rgb_support``, the backbone starts from ``backbone`` (EfficientNet-B0 features weights,
    ``rgb_branch.load_backbone_weights``; None: random).
    The pose encoder's initial weights depend on ``seed`` only (the caller's RNG is untouched).
    """
    cfg = resolve_config(cfg, mt5_path, desc_encoder)
    mt5_model, tokenizer = load_mt5(mt5_path, seed=seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Uni_Sign(cfg, mt5_model, tokenizer)
    if backbone is not None and cfg.rgb_support:
        model.rgb_support_backbone[0].load_state_dict(backbone, strict=True)
    return model


def resolve_config(cfg: ModelConfig, mt5_path: str, desc_encoder: str = None) -> ModelConfig:
    """``cfg`` with the widths that follow from the models used (a new object; ``cfg`` is frozen):
    ``gcn_channels`` = TINY_POSE_CHANNELS for the tiny mT5, ``d_model`` = mT5's, and with
    descriptions ``text_dim`` = the text encoder's (``desc_encoder``, default ``mt5_path``)."""
    changes = {"d_model": mt5_width(mt5_path)}
    if mt5_path == TINY_MT5:
        changes["gcn_channels"] = TINY_POSE_CHANNELS
    if cfg.use_descriptions:
        changes["text_dim"] = text_encoder_width(desc_encoder or mt5_path)
    return replace(cfg, **changes)


def mt5_width(path: str) -> int:
    """d_model of the mT5 at ``path`` ("tiny" or a local directory), from its config.json
    (a missing directory is reported when the model is loaded)."""
    try:
        return text_encoder_width(path)
    except InputError:
        return ModelConfig.d_model


def text_encoder_width(path: str) -> int:
    """d_model of the text encoder at ``path`` ("tiny" or a local mT5 directory), from its config."""
    directory = TINY_MT5_DIR if path == TINY_MT5 else path
    try:
        return MT5Config.from_pretrained(str(directory), local_files_only=True).d_model
    except (OSError, ValueError) as e:
        raise InputError(f"{directory}: not a local mT5 directory for the description encoder "
                         f"(--desc_encoder / --mt5_model): {str(e).splitlines()[0]}") from None


def attach_text_source(model: Uni_Sign, args, mt5_model: str = None, desc_encoder: str = None):
    """Give ``model`` its description vectors: the store of ``args.desc_store`` (checked against
    the encoder it must come from), else a frozen TextEncoder (``--desc_encoder``, default the
    ``--mt5_model`` directory). Returns the source."""
    encoder = desc_encoder or getattr(args, "desc_encoder", None) or mt5_model or args.mt5_model
    max_tokens = getattr(args, "desc_max_tokens", model.cfg.desc_max_tokens)
    if getattr(args, "desc_store", None):
        identity = encoder_identity(encoder, max_tokens=max_tokens, seed=TEXT_ENCODER_SEED)
        source = EmbeddingStore.open(args.desc_store, expected_identity=identity)
    else:
        source = TextEncoder(encoder, max_tokens=max_tokens, seed=TEXT_ENCODER_SEED)
    if source.text_dim != model.cfg.text_dim:
        origin = args.desc_store if getattr(args, "desc_store", None) else encoder
        raise InputError(f"{origin}: description vectors are {source.text_dim} wide, the model's fusion "
                         f"expects {model.cfg.text_dim}")
    model.text_source = source
    return source
