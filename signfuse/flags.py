"""Every flag of signfuse, defined once: its option strings, type, default, choices and help.

A flag means the same in every command that takes it. Commands pick theirs with ``add_flags``
or the group functions (``add_data_args``, ``add_description_args``, ``add_rgb_args``,
``add_generation_args``, ``add_distributed_args``, ``add_run_args``); ``check_run_args``
validates a run's flags, once; ``given_flags`` tells which flags a command line gave.

Adding a flag: one ``_flag(...)`` line here, and the code that reads ``args.<dest>``. The same
line says, when it applies, that checkpoints record the flag (``record="model"|"descriptions"|
"rgb"``: ``CHECKPOINT_SETTINGS``, read back by eval and predict), that a resumed run warns when it
changed (``resume=True``: ``RESUME_SENSITIVE``), and which values stop a run (``valid=at_least(1)``
or ``probability``: ``check_run_args``). A flag the model reads is a field of ``ModelConfig`` of
the same name (``ModelConfig.from_args`` takes it from the flags). This module imports nothing of
signfuse above ``config`` and ``errors``.
"""
import argparse
import copy

from signfuse.config import (ALIGNMENTS, DATASETS, DESCRIBE_LANGUAGES, DESCRIBE_SOURCES, FUSION_TYPES, RGB_CROPS,
                             RGB_EVAL_SAMPLING, RGB_GATE_INITS, RULES_CLAUSES, TASKS, UNISIGN_MT5_DIR)
from signfuse.errors import InputError


def _optional_int(text):
    return None if text in (None, "", "none", "None") else int(text)


# ----------------------------------------------------------------------------- every flag, once

#: dest -> (option strings, argparse keywords). Uni-Sign's flags keep Uni-Sign's names and defaults.
FLAGS = {}
GROUP_OF = {}   #: dest -> its group (``group=``; the group tuples below derive from it)
RECORDED = {}   #: dest -> the part of a checkpoint's settings that records it ("model", "descriptions", "rgb")
RESUMED = []    #: dests whose change between an interrupted run and its continuation changes the result
VALID = {}      #: dest -> check(value) -> None, or what is wrong with the value (``check_run_args``)


def at_least(bound, problem: str = None):
    """A ``valid=`` check: the value (unless None) is at least ``bound``."""
    return lambda value: None if value is None or value >= bound else (problem or f"must be at least {bound}")


def probability(value):
    """A ``valid=`` check: a probability, in [0, 1]."""
    return None if 0.0 <= value <= 1.0 else "must be a probability in [0, 1]"


def _flag(*names, group: str = None, record: str = None, resume: bool = False, valid=None, **kw):
    """Define a flag: its option strings and argparse keywords, the group of flags that commands
    take it with (``group``: the tuples below, e.g. ``DATA``), where checkpoints record it
    (``record``), whether a resumed run compares it (``resume``), its check (``valid``)."""
    dest = kw.get("dest") or names[0].lstrip("-").replace("-", "_")
    FLAGS[dest] = (names, kw)
    if group:
        GROUP_OF[dest] = group
    if record:
        RECORDED[dest] = record
    if resume:
        RESUMED.append(dest)
    if valid:
        VALID[dest] = valid


# Uni-Sign's training flags
_flag("--batch-size", group="unisign_training", resume=True, valid=at_least(1), dest="batch_size", type=int, default=16,
      help="samples per process and micro-batch")
_flag("--gradient-accumulation-steps", group="unisign_training", resume=True, valid=at_least(1),
      dest="gradient_accumulation_steps", type=int, default=8,
      help="micro-batches per optimizer step (counted over the whole run, as Uni-Sign's DeepSpeed engine does)")
_flag("--gradient-clipping", group="unisign_training", resume=True, dest="gradient_clipping", type=float, default=1.0)
_flag("--epochs", group="unisign_training", resume=True, valid=at_least(1), type=int, default=20)
_flag("--finetune", group="unisign_training", default="",
      help="checkpoint to start from ({'model': state_dict}, Uni-Sign's format); "
      "eval and predict also take its recorded settings for the flags not given")
_flag("--opt", group="unisign_training", default="adamw")
_flag("--opt-eps", group="unisign_training", dest="opt_eps", type=float, default=1e-9)
_flag("--weight-decay", group="unisign_training", resume=True, dest="weight_decay", type=float, default=1e-4)
_flag("--lr", group="unisign_training", resume=True, type=float, default=1e-3)
_flag("--min-lr", group="unisign_training", resume=True, dest="min_lr", type=float, default=1e-8,
      help="accepted and ignored, as in Uni-Sign: its schedule (transformers' cosine) decays to 0")
_flag("--warmup-epochs", group="unisign_training", resume=True, dest="warmup_epochs", type=float, default=0)
_flag("--sched", group="unisign_training", default="cosine",
      help="cosine: transformers.get_scheduler('cosine'), as Uni-Sign")
_flag("--output_dir", group="unisign_training", default="", help="where checkpoints, logs and results go")
_flag("--seed", group="unisign_training", resume=True, type=int, default=42)
_flag("--eval", group="unisign_training", action="store_true", help="evaluate (dev then test) instead of training")
_flag("--num_workers", group="unisign_training", type=int, default=8)
_flag("--label_smoothing", group="unisign_training", resume=True, type=float, default=0.2)
_flag("--hidden_dim", group="unisign_training", type=int, default=256,
      help="accepted for compatibility (Uni-Sign's pose width)")
# data
_flag("--dataset", group="data", record="model", resume=True, default="CSL_Daily", choices=DATASETS)
_flag("--task", group="data", record="model", resume=True, default="SLT", choices=TASKS)
_flag("--max_length", group="data", record="model", resume=True, valid=at_least(1), type=int, default=256,
      help="frames sampled per video at most")
_flag("--data_root", group="data", default=".",
      help="root of Uni-Sign's layout (data/<dataset>/, dataset/<dataset>/pose_format, description/)")
_flag("--label_dir", group="data", default=None, help="folder of labels.<split> (overrides --data_root)")
_flag("--pose_dir", group="data", default=None, help="folder of the pose .pkl files (overrides --data_root)")
_flag("--trust_pickles", group="data", action="store_true",
      help="load pose/label pickles with the unrestricted unpickler (only for files you trust)")
_flag("--max_samples", group="data", resume=True, type=int, default=None,
      help="use only the first N samples of each split")
_flag("--split", default=None, help="one split (default: every split of the dataset)")
# model
_flag("--mt5_model", group="model", record="model", resume=True, default=UNISIGN_MT5_DIR,
      help="local mT5 directory (config.json, weights, tokenizer); 'tiny' for the embedded tiny model")
_flag("--finetune_allow_unexpected", group="model", action="store_true",
      help="ignore (with a warning) checkpoint weights this model does not have")
# descriptions: where they come from
_flag("--use_descriptions", group="fusion", record="descriptions", resume=True, action="store_true",
      help="fuse per-frame action descriptions")
_flag("--desc_dir", group="description_source", default=None,
      help="root of the description files: <desc_dir>/<dataset>/<sample_id>.json (default: <data_root>/description)")
_flag("--desc_strict", group="description_source", action="store_true",
      help="an unusable description file stops the run")
_flag("--describe", group="description_source", record="descriptions", resume=True, default=None,
      choices=DESCRIBE_SOURCES,
      help="files: read --desc_dir; rules: make the descriptions from each pose file on the fly "
           "(default: what the checkpoint was trained with, else files)")
_flag("--language", group="description_source", record="descriptions", resume=True, default=None,
      choices=DESCRIBE_LANGUAGES, help="language of the rules describer's texts (default: the dataset's)")
_flag("--frame_size", group="description_source", record="descriptions", resume=True, type=int, nargs=2,
      metavar=("W", "H"), default=None,
      help="video frame size for the rules describer's aspect ratio: only W/H matters "
           "(default: per dataset, see docs/describe.md)")
_flag("--fps", group="description_source", record="descriptions", resume=True, type=float, default=None,
      help="frame rate of the pose files for the rules describer (default: 25)")
_flag("--rules_clauses", group="description_source", record="descriptions", resume=True, default="all",
      choices=RULES_CLAUSES,
      help="what the rules describer's texts say: all; face (mouth, eyebrows, head only: a short text "
           "where the face moves, none where it rests); hands")
# descriptions: alignment to the sampled frames, text vectors, fusion
_flag("--desc_alignment", group="description_model", record="descriptions", default="interpolate", choices=ALIGNMENTS)
_flag("--max_gap", group="description_model", record="descriptions",
      valid=at_least(0, "must be a number of frames >= 0 (or none)"), type=_optional_int, default=None,
      help="nearest-neighbour limit in frames")
_flag("--desc_encoder", group="description_model", record="descriptions", default=None,
      help="frozen text encoder directory (default: --mt5_model)")
_flag("--desc_store", group="description_model", default=None,
      help="precomputed embedding store (signfuse precompute-text)")
_flag("--desc_max_tokens", group="description_model", record="descriptions", resume=True, type=int, default=64,
      help="tokens per description text at most (the text encoder's); the rules describer's texts also have at "
           "most this many words (en) or characters (zh)")
_flag("--text_fusion_type", group="fusion", record="descriptions", resume=True, default="gating", choices=FUSION_TYPES)
_flag("--text_dropout_p", group="fusion", resume=True, valid=probability, type=float, default=0.1)
_flag("--text_dropout_sample_p", group="fusion", resume=True, valid=probability, type=float, default=0.0)
_flag("--desc_off_loss", group="fusion", valid=at_least(0, "must be >= 0"), type=float, default=0.0,
      help="training: add this weight times the loss of the same batch with every description masked "
           "(trains the missing-description path; one more pass through mT5 per step)")
# evaluation and generation
_flag("--num_beams", group="generation", record="model", type=int, default=4,
      help="beam width of generation (1: greedy)")
_flag("--max_new_tokens", group="generation", record="model", type=int, default=100,
      help="most tokens generated per sample")
_flag("--eval_descriptions", group="evaluation", default="on", choices=("on", "off", "both", "predicted", "all"),
      help="evaluate with descriptions, with every frame masked, or both; predicted: every frame reads the "
           "description predictor's embedding (--desc_distill_weight; no description is read); all: on, off "
           "and predicted")
_flag("--eval_every_epochs", group="evaluation", type=int, default=1)
# the run: devices, processes, resuming
_flag("--device", group="distributed", default=None, help="cpu, cuda or cuda:N (default: CUDA when present)")
_flag("--dtype", group="distributed", resume=True, default="bf16", choices=("bf16", "fp16"),
      help="autocast/DeepSpeed precision on GPU")
_flag("--zero_stage", group="distributed", resume=True, type=int, default=2, help="DeepSpeed ZeRO stage")
_flag("--offload", group="distributed", action="store_true", help="DeepSpeed optimizer offload to CPU")
_flag("--local_rank", "--local-rank", group="distributed", dest="local_rank", type=int, default=None,
      help="set by the deepspeed launcher")
_flag("--engine", group="distributed", default="auto", choices=("auto", "torch", "deepspeed"),
      help="auto: DeepSpeed under the deepspeed launcher, else torch (DDP under torchrun)")
_flag("--sync_bn", group="distributed", action=argparse.BooleanOptionalAction, default=True,
      help="BatchNorm statistics synchronised across processes (SyncBatchNorm) on GPU, as Uni-Sign does "
           "(CPU and one-process runs keep plain BatchNorm)")
_flag("--resume", group="resuming", default="none", help="'auto': continue from <output_dir>/last.pth; or a folder")
_flag("--save_every_steps", group="resuming", type=int, default=0, help="also write last.pth every N optimizer steps")
_flag("--skip_nonfinite", group="resuming", action="store_true", help="skip (and count) steps whose loss is NaN/inf")
_flag("--max_steps", group="resuming", type=int, default=None, help="stop after N optimizer steps (end of that epoch)")
# RGB-pose branch
_flag("--rgb_support", group="rgb", record="rgb", resume=True, action="store_true",
      help="Uni-Sign's RGB-pose model: hand crops from the videos fused into the hand features")
_flag("--rgb_dir", group="rgb", default=None,
      help="video folder (default: Uni-Sign's layout under --data_root, split sub-folder included)")
_flag("--rgb_eval_sampling", group="rgb", record="rgb", resume=True, default="topk", choices=RGB_EVAL_SAMPLING,
      help="evaluation hand frames: topk (deterministic, the k best) or random (Uni-Sign's draw)")
_flag("--rgb_gate_init", group="rgb", record="rgb", resume=True, default="zero", choices=RGB_GATE_INITS,
      help="zero: Uni-Sign's gate (no gradient reaches the branch); small: a gate that can learn")
_flag("--rgb_crop", group="rgb", record="rgb", resume=True, default="unisign", choices=RGB_CROPS,
      help="unisign: Uni-Sign's numpy-slicing crops; padded: zero fill outside the frame")
_flag("--rgb_backbone_weights", group="rgb", default="none",
      help="for RGB training without RGB weights in --finetune: none, imagenet (torchvision's weights API) "
           "or a local state-dict FILE")
_flag("--video", default=None,
      help="the sign video of --pose: an RGB-pose checkpoint (--rgb_support) takes its hand crops from it")
_flag("--videos", action="store_true",
      help="also write a lossless video per sample showing the hands where the pose puts them "
           "(dataset/Synthetic/rgb_format/<split>/: the input of --rgb_support)")
# description predictor (descriptions at training only)
_flag("--desc_distill_weight", group="fusion", resume=True, valid=at_least(0, "must be >= 0"), type=float, default=None,
      help="train a head that predicts each frame's description embedding from the pose, with this loss weight "
           "(default 0: no predictor); without descriptions the fusion then reads its predictions (docs/predictor.md)")
_flag("--desc_predictor_hidden", group="fusion", type=int, default=None,
      help="the predictor's hidden width (default 256; 0: one Linear)")
_flag("--desc_distill_loss", group="fusion", resume=True, default=None, choices=("cosine", "mse", "contrastive"),
      help="the predictor's loss: cosine (default; of layer-normalised vectors), mse (raw vectors) or contrastive "
           "(cosine + which of the batch's texts is the frame's)")
_flag("--desc_predicted_p", group="fusion", resume=True, valid=lambda v: None if v is None else probability(v),
      type=float, default=None,
      help="training: share of samples whose fusion reads the (detached) predicted embeddings instead of the given "
           "ones (default 0)")
_flag("--desc_predicted_loss", group="fusion", resume=True, valid=at_least(0, "must be >= 0"), type=float,
      default=None,
      help="training: add this weight times the loss of the same batch with every frame reading the predicted "
           "embeddings (trains the predicted path as --desc_off_loss trains the off path; one more pass through "
           "mT5 per step; default 0)")
_flag("--desc_predictor_keypoints", group="fusion", action=argparse.BooleanOptionalAction, default=None,
      help="the predictor also reads the face and body keypoints' displacements (default: yes)")
_flag("--desc_predicted_indicator", group="fusion", action=argparse.BooleanOptionalAction, default=None,
      help="gated fusion with a predictor: the gate also reads whether a frame's text vector is predicted (one "
           "more input; default: no, measured in docs/predictor.md)")
_flag("--cue_amplitude", type=float, default=0.0,
      help="how far the paired signs' facial cue moves the face points, in body units (half a shoulder width): "
           "a weak cue in the keypoints themselves (0: none)")
# pre-training (Uni-Sign stages 1 and 2)
_flag("--quick_break", group="pretraining", type=int, default=0,
      help="pre-training: overwrite checkpoint.pth every N micro-batches of an epoch (<= 0: once per epoch); "
           "training goes on")
_flag("--label_file", group="pretraining", resume=True, default=None,
      help="pre-training: the JSON label list [{video, pose, text}] (default: Uni-Sign's "
           "<data_root>/data/<dataset>/<dataset>_Labels.json, e.g. data/CSL_News/CSL_News_Labels.json)")
_flag("--keep_checkpoints", group="resuming", valid=at_least(0), type=int, default=0,
      help="keep only the newest N checkpoint_<epoch>.pth (0: all, as Uni-Sign)")
# speed (compiled path)
_flag("--compile", group="speed", action="store_true",
      help="torch.compile the pose encoder and the description fusion (static shapes: one graph per batch "
           "shape, at most 8, then eager; models/compiled.py says why); the same outputs up to float rounding. "
           "On CPU it pays for inference only (measured: README)")
# seeing it (render, export-pose, serve)
_flag("--kpt_thr", type=float, default=0.3,
      help="render: draw the keypoints whose score is at least this (and the links between two of them)")
_flag("--gif", action="store_true", help="render: also write a GIF next to the MP4 (same name, .gif)")
_flag("--lossless", action="store_true",
      help="render: lossless H.264 (libx264rgb, qp 0: the drawn pixels exactly; large files)")
_flag("--format", default="pose", choices=("pose",),
      help="export-pose: the file format (pose: pose-format's .pose files)")
_flag("--port", type=int, default=7860, help="serve: the port on 127.0.0.1 (0: any free port)")
_flag("--max_upload_mb", type=float, default=50.0, help="serve: the largest upload accepted (MiB)")
_flag("--max_seconds", type=float, default=60.0,
      help="serve: the longest video accepted (seconds; a pose file: its frames at its frame rate, else 25 fps)")
_flag("--max_queue", type=int, default=8,
      help="serve: requests waiting for the one worker at most (more are refused: server busy)")


#: The run settings every checkpoint records besides ``ModelConfig`` (flag names, by kind; the
#: flags' ``record=``). ``signfuse eval`` and ``signfuse predict`` take each of them from the
#: checkpoint unless it is given on the command line (a given value that differs is reported in
#: one line). ``rules_version`` is no flag: the version of the rules describer that made the
#: training descriptions with ``--describe rules`` (None otherwise; a later version is reported).
CHECKPOINT_SETTINGS = {kind: tuple(d for d, k in RECORDED.items() if k == kind) + NOT_FLAGS
                       for kind, NOT_FLAGS in (("model", ()), ("descriptions", ("rules_version",)), ("rgb", ()))}
CHECKPOINT_FLAGS = tuple(name for names in CHECKPOINT_SETTINGS.values() for name in names)
#: flags whose change between the interrupted run and its continuation changes the result (``resume=True``)
RESUME_SENSITIVE = tuple(RESUMED)


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

def _group(name: str) -> tuple:
    """The dests of the flags defined with ``group=name``, in the order of their definitions."""
    return tuple(dest for dest, group in GROUP_OF.items() if group == name)


UNISIGN_TRAINING = _group("unisign_training")
DATA = _group("data")
MODEL = _group("model")
DESCRIPTION_SOURCE = _group("description_source")
DESCRIPTION_MODEL = _group("description_model")
FUSION = _group("fusion")
GENERATION = _group("generation")
EVALUATION = _group("evaluation")
DISTRIBUTED = _group("distributed")
RESUMING = _group("resuming")
RGB = _group("rgb")
SPEED = _group("speed")
PRETRAINING = _group("pretraining")


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


def add_prediction_args(p, *data) -> None:
    """The flags of a checkpoint's predictor (predict, translate, render, serve): each overrides
    the checkpoint's recorded setting when given. ``data``: the data flags besides dataset and
    max_length the command takes (e.g. "trust_pickles")."""
    add_data_args(p, "dataset", "max_length", *data)
    add_flags(p.add_argument_group("model"), "mt5_model")
    add_description_args(p, "describe", "language", "frame_size", "fps", "rules_clauses", *DESCRIPTION_MODEL)
    add_generation_args(p)
    add_distributed_args(p, "device")
    add_rgb_args(p, "rgb_support", "rgb_eval_sampling", "rgb_crop")


def add_distributed_args(p, *dests) -> None:
    """Device, precision, processes (torchrun / DeepSpeed)."""
    add_flags(p.add_argument_group("devices and processes"), *(dests or DISTRIBUTED))


def add_run_args(p: argparse.ArgumentParser) -> None:
    """Every flag of Uni-Sign's fine_tuning.py, then signfuse's own (train, eval, fine_tuning.py)."""
    add_flags(p.add_argument_group("Uni-Sign training"), *UNISIGN_TRAINING)
    add_data_args(p)
    add_flags(p.add_argument_group("model"), *MODEL)
    add_description_args(p)
    add_flags(p.add_argument_group("evaluation"), *GENERATION, *EVALUATION)
    add_distributed_args(p)
    add_flags(p.add_argument_group("long runs"), *RESUMING)
    add_rgb_args(p)
    add_flags(p.add_argument_group("speed"), *SPEED)


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
    add_flags(p.add_argument_group("pre-training"), *PRETRAINING)
    p.set_defaults(dataset="CSL_News")


def check_run_args(args) -> None:
    """Flag problems that must stop a run before any work (checked once, here): each flag's
    ``valid`` check, in the order of FLAGS."""
    for dest, valid in VALID.items():
        problem = valid(getattr(args, dest)) if hasattr(args, dest) else None
        if problem:
            raise InputError(f"{FLAGS[dest][0][0]} {getattr(args, dest)}: {problem}")


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
