"""One source of truth for a run's configuration.

A run resolves its model configuration once (``resolve_model_config``: the checkpoint's
recorded architecture, the flags, then the widths of the models used) into a frozen
``ModelConfig``. Every checkpoint it writes records that configuration, the settings of
``config.CHECKPOINT_SETTINGS`` (``record``: mT5, dataset, frame sampling, generation,
descriptions and their alignment, text encoder, describer, RGB) and the identity of the text
encoder. ``signfuse eval`` and ``signfuse predict`` read them back
(``apply_checkpoint_settings``): a checkpoint alone says how to run its model; a flag given on
the command line wins, and one whose value differs from the checkpoint's is reported in one
line. ``signfuse train`` takes its settings from its flags (fine-tuning may change them).
"""
import argparse

import numpy as np

from signfuse.config import ModelConfig
from signfuse.describe.describer import describer_settings
from signfuse.flags import CHECKPOINT_FLAGS, FLAGS
from signfuse.models.text_store import IDENTITY_FIELDS, encoder_identity
from signfuse.models.uni_sign import TEXT_ENCODER_SEED, resolve_config
from signfuse.training.checkpoint import FUSION_PREFIX, state_dict_of

NOT_RECORDED = ("func", "given_flags")  # parts of an argparse namespace that are no settings


def plain(obj):
    """Only plain types (so that weights_only loading and json both accept it)."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


def record(args) -> dict:
    """The settings of ``args`` that a checkpoint records (those of CHECKPOINT_FLAGS it has)."""
    return {name: plain(getattr(args, name)) for name in CHECKPOINT_FLAGS if hasattr(args, name)}


def args_record(args) -> dict:
    """Every flag of ``args`` as plain data (a checkpoint's "args", read by --resume's check)."""
    return plain({k: v for k, v in vars(args).items() if k not in NOT_RECORDED})


def text_encoder_dir(args) -> str:
    """The frozen text encoder of the descriptions: --desc_encoder, default --mt5_model."""
    return getattr(args, "desc_encoder", None) or args.mt5_model


def text_encoder_identity(args) -> dict | None:
    """What makes the description vectors (text_store.encoder_identity: files' hashes, pooling,
    --desc_max_tokens); None without --use_descriptions."""
    if not getattr(args, "use_descriptions", False):
        return None
    return encoder_identity(text_encoder_dir(args), max_tokens=args.desc_max_tokens, seed=TEXT_ENCODER_SEED)


def resolve_describer(args) -> argparse.Namespace:
    """A copy of ``args`` whose describer settings are complete, as a checkpoint records them:
    with --describe rules the language, frame size and fps it uses (the dataset's defaults
    resolved) and ``rules_version``; otherwise ``rules_version`` None."""
    settings = describer_settings(args)
    if settings is None:
        return argparse.Namespace(**{**vars(args), "rules_version": None})
    return argparse.Namespace(**{**vars(args), "language": settings["language"], "fps": settings["fps"],
                                 "frame_size": tuple(settings["frame_size"]), "rules_version": settings["version"]})


def saved_settings(checkpoint, path) -> tuple[dict, dict]:
    """(settings, configuration) that a loaded checkpoint records: signfuse's ("settings",
    "config"); an older signfuse checkpoint's flags ("args"); for Uni-Sign's bare
    ``{'model': state_dict}`` what its weights tell (descriptions or not, the fusion's kind
    and sizes)."""
    if not isinstance(checkpoint, dict):
        return {}, {}
    config = dict(checkpoint.get("config") or {})
    if isinstance(checkpoint.get("settings"), dict):
        return dict(checkpoint["settings"]), config
    old = checkpoint.get("args") if isinstance(checkpoint.get("args"), dict) else {}
    settings = {k: old[k] for k in CHECKPOINT_FLAGS if k in old}
    sd = state_dict_of(checkpoint, path)
    keys = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
    settings["use_descriptions"] = any(k.startswith(FUSION_PREFIX) for k in keys)
    if settings["use_descriptions"] and "text_fusion_type" not in config:
        config.update(_fusion_from_weights(keys, settings))
    return settings, config


def _fusion_from_weights(keys: dict, settings: dict) -> dict:
    """The fusion's kind (into ``settings``) and sizes (returned) from its weights' shapes."""
    if FUSION_PREFIX + "fusion.null_logit" in keys or FUSION_PREFIX + "fusion.alpha" in keys:  # alpha: before 0.2
        settings["text_fusion_type"] = "cross_attn"
        rel_bias = keys.get(FUSION_PREFIX + "fusion.rel_bias.weight")
        return {"cross_attn_heads": int(rel_bias.shape[1])} if rel_bias is not None and rel_bias.dim() == 2 else {}
    if FUSION_PREFIX + "fusion.gate_mlp.0.weight" in keys:
        settings["text_fusion_type"] = "gating"
        return {"fusion_hidden": int(keys[FUSION_PREFIX + "fusion.gate_mlp.0.weight"].shape[0])}
    return {}


def explicit_flags(args) -> frozenset:
    """The flags given on the command line (``cli.main`` records them in ``args.given_flags``);
    for a namespace built otherwise, the flags whose value is not their default."""
    if getattr(args, "given_flags", None) is not None:
        return frozenset(args.given_flags)
    defaults = {dest: kw.get("default") for dest, (_, kw) in FLAGS.items()}
    return frozenset(k for k, v in vars(args).items() if k in defaults and plain(v) != plain(defaults[k]))


def apply_checkpoint_settings(args, checkpoint, path, log=print) -> argparse.Namespace:
    """A copy of ``args`` with the checkpoint's recorded settings for the flags not given; a
    given flag that differs from the checkpoint's value is reported in one line (the flag is used)."""
    saved, _ = saved_settings(checkpoint, path)
    given, resolved, differ = explicit_flags(args), argparse.Namespace(**vars(args)), []
    for name, value in saved.items():  # also those the command has no flag for (it cannot change them)
        if name not in given:
            setattr(resolved, name, tuple(value) if isinstance(value, list) else value)
        elif plain(getattr(args, name)) != plain(value):
            differ.append(f"--{name} {_shown(getattr(args, name))} (checkpoint: {_shown(value)})")
    if differ:
        log(f"warning: flags that differ from the settings of {path} (the flags are used): " + ", ".join(differ))
    return resolved


def _shown(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def resolve_model_config(args, checkpoint=None, path=None) -> ModelConfig:
    """The run's model configuration, resolved once: the architecture no flag sets from the
    checkpoint's recorded configuration, the flags' fields from ``args``, then the widths of
    the models used (``uni_sign.resolve_config``). Frozen: nothing changes it afterwards."""
    _, saved = saved_settings(checkpoint, path) if checkpoint is not None else ({}, {})
    cfg = ModelConfig.from_args(args, saved=saved)
    return resolve_config(cfg, args.mt5_model, text_encoder_dir(args))


def check_text_encoder(args, checkpoint, path, log=print) -> None:
    """One warning line when the text encoder found now is not the one the checkpoint was
    trained with (other weights, tokenizer or --desc_max_tokens give other vectors)."""
    recorded = checkpoint.get("text_encoder") if isinstance(checkpoint, dict) else None
    if not recorded or not getattr(args, "use_descriptions", False):
        return
    now = text_encoder_identity(args)
    differ = [f for f in IDENTITY_FIELDS if f != "encoder" and recorded.get(f) != now.get(f)]
    if differ:
        log(f"warning: the text encoder {now.get('encoder')} is not the one {path} was trained with "
            f"({recorded.get('encoder')}): {', '.join(differ)} differ; its description vectors will differ")
