"""One configuration object for the model, built from the command line or by hand.

``ModelConfig`` travels through the whole model (pose encoder, fusion, Uni_Sign), as in
nanoGPT. It is frozen: a run resolves it once (``ModelConfig.from_args`` with the
checkpoint's recorded configuration, then ``uni_sign.resolve_config`` for the widths that
follow from the models used) and nothing changes it afterwards. ``flags.CHECKPOINT_SETTINGS``
are the other settings a checkpoint records (``eval`` and ``predict`` read them back).
``DATASETS`` describes the dataset layouts and their languages.
"""
from dataclasses import dataclass, fields
from pathlib import Path

# Uni-Sign's datasets, YouTube-ASL (a pre-training corpus prepared in CSL-News's JSON format), plus the
# synthetic benchmark of ``signfuse make-synthetic``.
DATASETS = ("CSL_News", "CSL_Daily", "WLASL", "How2Sign", "OpenASL", "YouTube_ASL", "Synthetic")
TASKS = ("SLT", "ISLR", "CSLR")
# How2Sign has no dev split: evaluation and model selection use test.
SPLITS = {name: ("train", "dev", "test") for name in DATASETS}
SPLITS["How2Sign"] = ("train", "test")
FUSION_TYPES = ("gating", "cross_attn")
ALIGNMENTS = ("interpolate", "nearest", "exact")
RGB_EVAL_SAMPLING = ("topk", "random")   # evaluation hand frames: deterministic k best, or Uni-Sign's draw
RGB_GATE_INITS = ("zero", "small")
RGB_CROPS = ("unisign", "padded")        # padded: boxes leaving the frame are zero-filled, never wrapped
DESCRIBE_SOURCES = ("files", "rules")    # where descriptions come from in train/eval/predict
DESCRIBE_LANGUAGES = ("en", "zh")
RULES_CLAUSES = ("all", "face", "hands")  # what a rules text keeps (docs/describe.md)

UNISIGN_MT5_DIR = "./pretrained_weight/mt5-base"
TINY_MT5 = "tiny"  # --mt5_model tiny: the tiny config and tokenizer shipped in signfuse/assets
TINY_MT5_DIR = Path(__file__).resolve().parent / "assets" / "tiny_mt5"  # the one place of that folder


def prompt_for(dataset: str) -> str:
    """The text prompt put before the pose tokens (Uni-Sign: Chinese for CSL datasets)."""
    lang = "Chinese" if "CSL" in dataset else "English"
    return f"Translate sign language video to {lang}: "


@dataclass(frozen=True)
class ModelConfig:
    # pose encoder (Uni-Sign defaults; tiny configurations scale the widths down)
    gcn_channels: tuple = (64, 128, 256)  # proj_linear -> c0; spatial chain c0->c0->c1->c2
    temporal_kernel: int = 5              # kernel of the temporal chain (padding kernel // 2)
    num_temporal_blocks: int = 3
    d_model: int = 768                    # set from the mT5 config when the model is built
    # language model and loss
    dataset: str = "CSL_Daily"
    task: str = "SLT"
    label_smoothing: float = 0.2
    max_target_tokens: int = 50
    max_new_tokens: int = 100
    num_beams: int = 4
    # descriptions (off: exactly Uni-Sign)
    use_descriptions: bool = False
    text_fusion_type: str = "gating"
    fusion_hidden: int = 512
    text_dim: int = 768                   # width of the description vectors (the text encoder's)
    text_dropout_p: float = 0.1
    text_dropout_sample_p: float = 0.0
    desc_off_loss: float = 0.0            # training: + this weight x the loss with every description masked
    desc_max_tokens: int = 64
    cross_attn_heads: int = 8
    # description predictor (issue 19; weight 0: none, no weights, everything as before)
    desc_distill_weight: float = 0.0      # training: + this weight x the predictor's loss
    desc_predictor_hidden: int = 256      # the head's hidden width (0: one Linear)
    desc_distill_loss: str = "cosine"     # cosine (of layer-normalised vectors) or mse (raw vectors)
    desc_predicted_p: float = 0.0         # training: share of samples whose fusion reads the predictions
    desc_predicted_loss: float = 0.0      # training: + this weight x the loss with every frame's text predicted
    desc_predictor_keypoints: bool = True  # the head also reads the face/body keypoints' displacements
    desc_predicted_indicator: bool = False  # gating: the gate also reads whether a frame's text is predicted
    # RGB-pose branch (off: exactly the pose-only Uni-Sign; docs/rgb-pose.md section 8)
    rgb_support: bool = False
    rgb_gate_init: str = "zero"           # zero: Uni-Sign's (checkpoint parity); small: a gate that can learn

    @property
    def prompt(self) -> str:
        return prompt_for(self.dataset)

    @classmethod
    def from_dict(cls, saved: dict) -> "ModelConfig":
        """A configuration recorded in a checkpoint (plain data; unknown keys ignored)."""
        known = {f.name for f in fields(cls)}
        values = {k: tuple(v) if k == "gcn_channels" else v for k, v in saved.items() if k in known}
        return cls(**values)

    @staticmethod
    def recorded(saved: dict) -> dict:
        """A recorded configuration with the values its fields had before they existed (a
        description predictor recorded without ``desc_predictor_keypoints`` read none)."""
        saved = dict(saved or {})
        if "desc_distill_weight" in saved:
            saved.setdefault("desc_predictor_keypoints", False)
        return saved

    @classmethod
    def from_args(cls, args, saved: dict | None = None, **overrides) -> "ModelConfig":
        """The fields that no flag sets (the architecture: widths, kernel, fusion sizes) from
        ``saved`` (a checkpoint's recorded configuration, if any); every field that ``args``
        (an argparse namespace) has, from it; then ``overrides``."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in cls.recorded(saved).items() if k in names}
        values.update({k: v for k, v in vars(args).items() if k in names and v is not None})
        values.update(overrides)
        return cls.from_dict(values)


TINY_POSE_CHANNELS = (8, 16, 32)  # the pose widths used with --mt5_model tiny (CPU tests, the demo)
