"""Every flag of signfuse, defined once: its option strings, type, default, choices and help.

A flag means the same in every command that takes it. Commands pick theirs with ``add_flags``
or the group functions (``add_data_args``, ``add_description_args``, ``add_rgb_args``,
``add_generation_args``, ``add_distributed_args``, ``add_run_args``); ``check_run_args``
validates a run's flags, once; ``given_flags`` tells which flags a command line gave.

Adding a flag: one ``_flag(...)`` line here, and the code that reads ``args.<dest>``.
This module imports nothing of signfuse above ``config`` and ``errors``.
"""
import argparse
import copy

from signfuse.config import (ALIGNMENTS, DATASETS, DESCRIBE_LANGUAGES, DESCRIBE_SOURCES, FUSION_TYPES, RGB_CROPS,
                             RGB_EVAL_SAMPLING, RGB_GATE_INITS, TASKS, UNISIGN_MT5_DIR)
from signfuse.errors import InputError


def _optional_int(text):
    return None if text in (None, "", "none", "None") else int(text)


# ----------------------------------------------------------------------------- every flag, once

#: dest -> (option strings, argparse keywords). Uni-Sign's flags keep Uni-Sign's names and defaults.
FLAGS = {}


def _flag(*names, **kw):
    dest = kw.get("dest") or names[0].lstrip("-").replace("-", "_")
    FLAGS[dest] = (names, kw)


# Uni-Sign's training flags
_flag("--batch-size", dest="batch_size", type=int, default=16, help="samples per process and micro-batch")
_flag("--gradient-accumulation-steps", dest="gradient_accumulation_steps", type=int, default=8,
      help="micro-batches per optimizer step (counted over the whole run, as Uni-Sign's DeepSpeed engine does)")
_flag("--gradient-clipping", dest="gradient_clipping", type=float, default=1.0)
_flag("--epochs", type=int, default=20)
_flag("--finetune", default="", help="checkpoint to start from ({'model': state_dict}, Uni-Sign's format); "
      "eval and predict also take its recorded settings for the flags not given")
_flag("--opt", default="adamw")
_flag("--opt-eps", dest="opt_eps", type=float, default=1e-9)
_flag("--weight-decay", dest="weight_decay", type=float, default=1e-4)
_flag("--lr", type=float, default=1e-3)
_flag("--min-lr", dest="min_lr", type=float, default=1e-8,
      help="accepted and ignored, as in Uni-Sign: its schedule (transformers' cosine) decays to 0")
_flag("--warmup-epochs", dest="warmup_epochs", type=float, default=0)
_flag("--sched", default="cosine", help="cosine: transformers.get_scheduler('cosine'), as Uni-Sign")
_flag("--output_dir", default="", help="where checkpoints, logs and results go")
_flag("--seed", type=int, default=42)
_flag("--eval", action="store_true", help="evaluate (dev then test) instead of training")
_flag("--num_workers", type=int, default=8)
_flag("--label_smoothing", type=float, default=0.2)
_flag("--hidden_dim", type=int, default=256, help="accepted for compatibility (Uni-Sign's pose width)")
# data
_flag("--dataset", default="CSL_Daily", choices=DATASETS)
_flag("--task", default="SLT", choices=TASKS)
_flag("--max_length", type=int, default=256, help="frames sampled per video at most")
_flag("--data_root", default=".",
      help="root of Uni-Sign's layout (data/<dataset>/, dataset/<dataset>/pose_format, description/)")
_flag("--label_dir", default=None, help="folder of labels.<split> (overrides --data_root)")
_flag("--pose_dir", default=None, help="folder of the pose .pkl files (overrides --data_root)")
_flag("--trust_pickles", action="store_true",
      help="load pose/label pickles with the unrestricted unpickler (only for files you trust)")
_flag("--max_samples", type=int, default=None, help="use only the first N samples of each split")
_flag("--split", default=None, help="one split (default: every split of the dataset)")
# model
_flag("--mt5_model", default=UNISIGN_MT5_DIR,
      help="local mT5 directory (config.json, weights, tokenizer); 'tiny' for the embedded tiny model")
_flag("--finetune_allow_unexpected", action="store_true",
      help="ignore (with a warning) checkpoint weights this model does not have")
# descriptions: where they come from
_flag("--use_descriptions", action="store_true", help="fuse per-frame action descriptions")
_flag("--desc_dir", default=None,
      help="root of the description files: <desc_dir>/<dataset>/<sample_id>.json (default: <data_root>/description)")
_flag("--desc_strict", action="store_true", help="an unusable description file stops the run")
_flag("--describe", default=None, choices=DESCRIBE_SOURCES,
      help="files: read --desc_dir; rules: make the descriptions from each pose file on the fly "
           "(default: what the checkpoint was trained with, else files)")
_flag("--language", default=None, choices=DESCRIBE_LANGUAGES,
      help="language of the rules describer's texts (default: the dataset's)")
_flag("--frame_size", type=int, nargs=2, metavar=("W", "H"), default=None,
      help="video frame size for the rules describer's aspect ratio: only W/H matters "
           "(default: per dataset, see docs/describe.md)")
_flag("--fps", type=float, default=None, help="frame rate of the pose files for the rules describer (default: 25)")
# descriptions: alignment to the sampled frames, text vectors, fusion
_flag("--desc_alignment", default="interpolate", choices=ALIGNMENTS)
_flag("--max_gap", type=_optional_int, default=None, help="nearest-neighbour limit in frames")
_flag("--desc_encoder", default=None, help="frozen text encoder directory (default: --mt5_model)")
_flag("--desc_store", default=None, help="precomputed embedding store (signfuse precompute-text)")
_flag("--desc_max_tokens", type=int, default=64,
      help="tokens per description text at most (the text encoder's); the rules describer's texts also have at "
           "most this many words (en) or characters (zh)")
_flag("--text_fusion_type", default="gating", choices=FUSION_TYPES)
_flag("--text_dropout_p", type=float, default=0.1)
_flag("--text_dropout_sample_p", type=float, default=0.0)
_flag("--desc_off_loss", type=float, default=0.0,
      help="training: add this weight times the loss of the same batch with every description masked "
           "(trains the missing-description path; one more pass through mT5 per step)")
# evaluation and generation
_flag("--num_beams", type=int, default=4, help="beam width of generation (1: greedy)")
_flag("--max_new_tokens", type=int, default=100, help="most tokens generated per sample")
_flag("--eval_descriptions", default="on", choices=("on", "off", "both"),
      help="evaluate with descriptions, with every frame masked, or both")
_flag("--eval_every_epochs", type=int, default=1)
# the run: devices, processes, resuming
_flag("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when present)")
_flag("--dtype", default="bf16", choices=("bf16", "fp16"), help="autocast/DeepSpeed precision on GPU")
_flag("--zero_stage", type=int, default=2, help="DeepSpeed ZeRO stage")
_flag("--offload", action="store_true", help="DeepSpeed optimizer offload to CPU")
_flag("--local_rank", "--local-rank", dest="local_rank", type=int, default=None, help="set by the deepspeed launcher")
_flag("--engine", default="auto", choices=("auto", "torch", "deepspeed"),
      help="auto: DeepSpeed under the deepspeed launcher, else torch (DDP under torchrun)")
_flag("--sync_bn", action=argparse.BooleanOptionalAction, default=True,
      help="BatchNorm statistics synchronised across processes (SyncBatchNorm) on GPU, as Uni-Sign does "
           "(CPU and one-process runs keep plain BatchNorm)")
_flag("--resume", default="none", help="'auto': continue from <output_dir>/last.pth; or a folder")
_flag("--save_every_steps", type=int, default=0, help="also write last.pth every N optimizer steps")
_flag("--skip_nonfinite", action="store_true", help="skip (and count) steps whose loss is NaN/inf")
_flag("--max_steps", type=int, default=None, help="stop after N optimizer steps (end of that epoch)")
# RGB-pose branch
_flag("--rgb_support", action="store_true",
      help="Uni-Sign's RGB-pose model: hand crops from the videos fused into the hand features")
_flag("--rgb_dir", default=None,
      help="video folder (default: Uni-Sign's layout under --data_root, split sub-folder included)")
_flag("--rgb_eval_sampling", default="topk", choices=RGB_EVAL_SAMPLING,
      help="evaluation hand frames: topk (deterministic, the k best) or random (Uni-Sign's draw)")
_flag("--rgb_gate_init", default="zero", choices=RGB_GATE_INITS,
      help="zero: Uni-Sign's gate (no gradient reaches the branch); small: a gate that can learn")
_flag("--rgb_crop", default="unisign", choices=RGB_CROPS,
      help="unisign: Uni-Sign's numpy-slicing crops; padded: zero fill outside the frame")
_flag("--rgb_backbone_weights", default="none",
      help="for RGB training without RGB weights in --finetune: none, imagenet (torchvision's weights API) "
           "or a local state-dict FILE")
_flag("--video", default=None,
      help="the sign video of --pose: an RGB-pose checkpoint (--rgb_support) takes its hand crops from it")
_flag("--videos", action="store_true",
      help="also write a lossless video per sample showing the hands where the pose puts them "
           "(dataset/Synthetic/rgb_format/<split>/: the input of --rgb_support)")
# description predictor (descriptions at training only)
# pre-training (Uni-Sign stages 1 and 2)
_flag("--quick_break", type=int, default=0,
      help="pre-training: overwrite checkpoint.pth every N micro-batches of an epoch (<= 0: once per epoch); "
           "training goes on")
_flag("--label_file", default=None,
      help="pre-training: the JSON label list [{video, pose, text}] (default: Uni-Sign's "
           "<data_root>/data/<dataset>/<dataset>_Labels.json, e.g. data/CSL_News/CSL_News_Labels.json)")
_flag("--keep_checkpoints", type=int, default=0,
      help="keep only the newest N checkpoint_<epoch>.pth (0: all, as Uni-Sign)")
# speed (compiled path)
# seeing it (render, export-pose, serve)


def add_flags(p, *dests, required=(), default=None) -> None:
    """Add the flags ``dests`` (FLAGS keys) to ``p`` (a parser or an argument group).
    ``required``: those of them the command cannot do without; ``default``: {dest: value} for
    a command whose fallback differs (the flag keeps its meaning)."""
    for dest in dests:
        names, kw = FLAGS[dest]
        kw = dict(kw)
        if dest in required:
            kw.pop("default", None)
            kw["required"] = True
        if default and dest in default:
            kw["default"] = default[dest]
        p.add_argument(*names, **kw)


# ----------------------------------------------------------------------------- groups

UNISIGN_TRAINING = ("batch_size", "gradient_accumulation_steps", "gradient_clipping", "epochs", "finetune", "opt",
                    "opt_eps", "weight_decay", "lr", "min_lr", "warmup_epochs", "sched", "output_dir", "seed", "eval",
                    "num_workers", "label_smoothing", "hidden_dim")
DATA = ("dataset", "task", "max_length", "data_root", "label_dir", "pose_dir", "trust_pickles", "max_samples")
DESCRIPTION_SOURCE = ("desc_dir", "desc_strict", "describe", "language", "frame_size", "fps")
DESCRIPTION_MODEL = ("desc_alignment", "max_gap", "desc_encoder", "desc_store", "desc_max_tokens")
FUSION = ("use_descriptions", "text_fusion_type", "text_dropout_p", "text_dropout_sample_p", "desc_off_loss")
GENERATION = ("num_beams", "max_new_tokens")
DISTRIBUTED = ("device", "dtype", "zero_stage", "offload", "local_rank", "engine", "sync_bn")
RESUMING = ("resume", "save_every_steps", "skip_nonfinite", "max_steps")
RGB = ("rgb_support", "rgb_dir", "rgb_eval_sampling", "rgb_gate_init", "rgb_crop", "rgb_backbone_weights")


def add_data_args(p, *dests, required=()) -> None:
    """Dataset, task and Uni-Sign's layout (default: all of ``DATA``)."""
    add_flags(p.add_argument_group("data"), *(dests or DATA), required=required)


def add_description_args(p, *dests, required=()) -> None:
    """Where the descriptions come from, how they are aligned and encoded, and the fusion
    (default: all of them)."""
    add_flags(p.add_argument_group("descriptions"), *(dests or FUSION + DESCRIPTION_SOURCE + DESCRIPTION_MODEL),
              required=required)


def add_rgb_args(p, *dests) -> None:
    add_flags(p.add_argument_group("RGB-pose branch (--rgb_support)"), *(dests or RGB))


def add_generation_args(p) -> None:
    add_flags(p.add_argument_group("generation"), *GENERATION)


def add_distributed_args(p, *dests) -> None:
    """Device, precision, processes (torchrun / DeepSpeed)."""
    add_flags(p.add_argument_group("devices and processes"), *(dests or DISTRIBUTED))


def add_run_args(p: argparse.ArgumentParser) -> None:
    """Every flag of Uni-Sign's fine_tuning.py, then signfuse's own (train, eval, fine_tuning.py)."""
    add_flags(p.add_argument_group("Uni-Sign training"), *UNISIGN_TRAINING)
    add_data_args(p)
    add_flags(p.add_argument_group("model"), "mt5_model", "finetune_allow_unexpected")
    add_description_args(p)
    add_flags(p.add_argument_group("evaluation"), *GENERATION, "eval_descriptions", "eval_every_epochs")
    add_distributed_args(p)
    add_flags(p.add_argument_group("long runs"), *RESUMING, "keep_checkpoints")
    add_rgb_args(p)


def run_parser(prog="fine_tuning.py") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Fine-tune or evaluate (--eval) Uni-Sign with descriptions.")
    add_run_args(p)
    return p


def pretrain_parser(prog="pre_training.py") -> argparse.ArgumentParser:
    """pre_training.py and ``signfuse pretrain``: the run's flags, --quick_break, --label_file;
    --dataset defaults to CSL_News."""
    p = argparse.ArgumentParser(prog=prog, description="Pre-train (Uni-Sign stages 1 and 2) on a JSON corpus "
                                "in CSL-News's format, or evaluate (--eval) on its held-out entries.")
    add_pretrain_args(p)
    return p


def add_pretrain_args(p) -> None:
    add_run_args(p)
    add_flags(p.add_argument_group("pre-training"), "quick_break", "label_file")
    p.set_defaults(dataset="CSL_News")


def check_run_args(args) -> None:
    """Flag problems that must stop a run before any work (checked once, here)."""
    for name in ("batch_size", "gradient_accumulation_steps", "epochs", "max_length"):
        if getattr(args, name) < 1:
            flag = name if name == "max_length" else name.replace("_", "-")
            raise InputError(f"--{flag} {getattr(args, name)}: must be at least 1")
    if not 0.0 <= args.text_dropout_p <= 1.0 or not 0.0 <= args.text_dropout_sample_p <= 1.0:
        raise InputError("--text_dropout_p / --text_dropout_sample_p: must be probabilities in [0, 1]")
    if getattr(args, "desc_off_loss", 0.0) < 0:
        raise InputError(f"--desc_off_loss {args.desc_off_loss}: must be >= 0")
    if args.max_gap is not None and args.max_gap < 0:
        raise InputError(f"--max_gap {args.max_gap}: must be a number of frames >= 0 (or none)")


def given_flags(parser: argparse.ArgumentParser, argv: list) -> frozenset:
    """The dests of the flags that ``argv`` gives explicitly (not left at their defaults)."""
    quiet = _without_defaults(parser)
    return frozenset(vars(quiet.parse_args(argv)))


def _without_defaults(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    quiet = copy.deepcopy(parser)
    stack = [quiet]
    while stack:
        p = stack.pop()
        p._defaults.clear()
        for action in p._actions:
            action.default = argparse.SUPPRESS
            if isinstance(action, argparse._SubParsersAction):
                stack += list(action.choices.values())
    return quiet
