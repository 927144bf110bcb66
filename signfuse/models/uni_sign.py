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
from signfuse.models.desc_predictor import contrastive_loss, cosine_to_target, distill_loss
from signfuse.models.text_fusion import DescriptionFusion, TextEncoder, frame_text_features
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
        self.last_distill = None  # the description predictor's loss of the last training batch
        self.prediction_cosine = [0.0, 0.0, 0]  # evaluation, predicted: summed cosines to the true texts, frames
        if cfg.use_descriptions:
            self.text_fusion = DescriptionFusion(cfg)  # keys text_fusion.* (outside Uni-Sign's)
            # texts -> (N, cfg.text_dim) vectors: a frozen TextEncoder or an EmbeddingStore
            # (attach_text_source); the encoder holds no state-dict keys and no parameters
            self.text_source = None

    # ---- inputs of mT5 ----

    def fuse(self, pose_feats: torch.Tensor, batch: dict, descriptions_off: bool = False,
             predicted: bool = False) -> tuple:
        """Description fusion: (B, T, d_model) -> (fused (B, T, d_model), gate (B, T, 1) or None).

        Without descriptions (Uni-Sign) the pose features go through unchanged. With them, each
        distinct text of the batch becomes one vector (text source), frames get the weighted sums
        of their texts' vectors (or the mask embedding), and the fusion adds them to the pose.
        ``descriptions_off`` masks every frame (``--eval_descriptions off``); ``predicted``: every
        frame reads the description predictor's vector (``--eval_descriptions predicted``).
        """
        if not self.cfg.use_descriptions:
            return pose_feats, None
        texts = batch.get("desc_texts", [])
        if texts and self.text_source is None and not predicted:
            raise RuntimeError("Uni_Sign with descriptions needs a text source: call attach_text_source")
        vectors = self.text_source.encode(texts) if texts and self.text_source is not None else None  # (N, text_dim)
        reads = self.predictions(pose_feats, batch, vectors, descriptions_off, predicted)
        fused, gate = self.text_fusion(pose_feats, batch, vectors, descriptions_off=descriptions_off, predicted=reads)
        self.last_gate = gate.detach()
        return fused, gate

    def predictions(self, pose_feats, batch, vectors, descriptions_off: bool, predicted: bool):
        """The description predictor's part of a forward (None without a predictor): in training
        its loss on the frames that have a text (``last_distill``); in evaluation with ``predicted``
        and the batch's descriptions, its cosine to them (``prediction_cosine``). Returns what the
        fusion reads instead of the descriptions: (pred (B, T, text_dim), samples (B,) bool): every
        sample with ``predicted``, in training ``cfg.desc_predicted_p`` of them (detached), else None."""
        self.last_distill = None
        predictor = getattr(self.text_fusion, "predictor", None)
        if predictor is None:
            if predicted:
                raise InputError("predicted descriptions need a model trained with --desc_distill_weight "
                                 "(this one has no description predictor)")
            return None
        if descriptions_off or not (self.training or predicted):
            return None
        pred = predictor(pose_feats, batch)  # (B, T, text_dim)
        # the predictor's loss in the main training pass (not again in the predicted path's pass:
        # --desc_predicted_loss), its cosine to the given vectors in a predicted evaluation
        if "desc_index" in batch and self.training != predicted:
            target, mask = self.text_targets(vectors, batch, pose_feats)
            if self.training:
                kind = self.cfg.desc_distill_loss
                self.last_distill = distill_loss(pred, target, mask, "cosine" if kind == "contrastive" else kind)
                if kind == "contrastive" and vectors is not None:
                    self.last_distill = self.last_distill + contrastive_loss(
                        pred, vectors, batch["desc_index"].to(pred.device), batch["desc_weight"].to(pred.device), mask)
            else:
                stats = cosine_to_target(pred, target, mask)
                self.prediction_cosine = [a + b for a, b in zip(self.prediction_cosine, stats, strict=True)]
        B = pose_feats.shape[0]
        if predicted:
            return pred, torch.ones(B, dtype=torch.bool, device=pred.device)
        if self.training and self.cfg.desc_predicted_p > 0:
            return pred.detach(), torch.rand(B, device=pred.device) < self.cfg.desc_predicted_p
        return None

    def text_targets(self, vectors, batch, pose_feats) -> tuple:
        """(target (B, T, text_dim): each frame's text vector as the fusion reads it, mask (B, T) bool:
        the real frames that have a text)."""
        index, weight = batch["desc_index"].to(pose_feats.device), batch["desc_weight"].to(pose_feats.device)
        has_text = ((weight > 0) & (index >= 0)).any(-1) & (batch["attention_mask"].to(pose_feats.device) > 0)
        if vectors is None:
            vectors = pose_feats.new_zeros(0, self.cfg.text_dim)
        return frame_text_features(vectors.to(pose_feats.dtype), index, weight), has_text

    def build_inputs(self, batch: dict, descriptions_off: bool = False, predicted: bool = False) -> tuple:
        """-> (inputs_embeds (B, P+T, d_model), attention_mask (B, P+T) int64, gate or None)."""
        pose = self.encode_pose(batch)  # (B, T, d_model)
        pose, gate = self.fuse(pose, batch, descriptions_off, predicted)  # (B, T, d_model)
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
        """Label-smoothed loss. In training, plus the weighted losses of the same batch's other
        paths, each computed before the main one: ``cfg.desc_off_loss`` x every description masked,
        ``cfg.desc_predicted_loss`` x every frame reading the predictor's vectors (with a
        predictor); with a description predictor, plus ``cfg.desc_distill_weight`` times its loss
        (``distill``, of the main pass)."""
        extra = [weight * self.translation_loss(batch, **path)["loss"] for weight, path in self.training_paths(descriptions_off)]
        out = self.translation_loss(batch, descriptions_off)
        for loss in extra:
            out["loss"] = out["loss"] + loss
        if out.get("distill") is not None:
            out["loss"] = out["loss"] + self.cfg.desc_distill_weight * out["distill"]
        return out

    def training_paths(self, descriptions_off: bool) -> list:
        """[(weight, translation_loss keywords)] of the extra paths a training step takes."""
        cfg = self.cfg
        if not (self.training and cfg.use_descriptions) or descriptions_off:
            return []
        paths = [(cfg.desc_off_loss, {"descriptions_off": True})] if cfg.desc_off_loss > 0 else []
        if cfg.desc_predicted_loss > 0 and getattr(self.text_fusion, "predictor", None) is not None:
            paths.append((cfg.desc_predicted_loss, {"predicted": True}))
        return paths

    def translation_loss(self, batch: dict, descriptions_off: bool = False, predicted: bool = False) -> dict:
        """-> {"loss", "logits" (B, L, vocab), "gate" (B, T, 1) or None}."""
        inputs_embeds, attention_mask, gate = self.build_inputs(batch, descriptions_off, predicted)
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
        out = {"loss": loss, "logits": logits, "gate": gate}
        if self.training and self.last_distill is not None:
            out["distill"] = self.last_distill
        return out

    @torch.no_grad()
    def generate_ids(self, batch: dict, max_new_tokens: int = None, num_beams: int = None,
                     descriptions_off: bool = False, predicted: bool = False) -> torch.Tensor:
        """Beam search from the prompt and pose tokens -> token ids (B, L_out)."""
        inputs_embeds, attention_mask, _ = self.build_inputs(batch, descriptions_off, predicted)
        return self.mt5_model.generate(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            max_new_tokens=max_new_tokens or self.cfg.max_new_tokens,
            num_beams=num_beams or self.cfg.num_beams,
        )

    def generate(self, batch: dict, max_new_tokens: int = None, num_beams: int = None,
                 descriptions_off: bool = False, predicted: bool = False) -> list:
        """One decoded string per sample (special tokens skipped)."""
        ids = self.generate_ids(batch, max_new_tokens=max_new_tokens, num_beams=num_beams,
                                descriptions_off=descriptions_off, predicted=predicted)
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
