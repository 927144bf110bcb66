"""``signfuse predict``: translate one pose file (optionally with its description file)."""
import sys
from dataclasses import fields
from pathlib import Path

import torch

from signfuse.config import ModelConfig
from signfuse.data.dataset import collate_fn, make_item
from signfuse.data.pose import load_pose
from signfuse.errors import InputError, SampleError
from signfuse.training.checkpoint import FUSION_PREFIX, load_weights, safe_torch_load, state_dict_of


def config_from_checkpoint(ckpt: dict, path) -> ModelConfig:
    """The ModelConfig a signfuse checkpoint records; Uni-Sign's defaults for a Uni-Sign one.
    The weights decide ``use_descriptions`` and, without a recorded config, the fusion's
    type and sizes (a bare ``{'model': state_dict}`` of either fusion loads)."""
    saved = ckpt.get("config") if isinstance(ckpt, dict) else None
    known = {f.name for f in fields(ModelConfig)}
    cfg = ModelConfig(**{k: tuple(v) if k == "gcn_channels" else v for k, v in saved.items() if k in known}) \
        if isinstance(saved, dict) else ModelConfig()
    sd = state_dict_of(ckpt, path)
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
    cfg.use_descriptions = any(k.startswith(FUSION_PREFIX) for k in sd)
    if cfg.use_descriptions and "text_fusion_type" not in (saved if isinstance(saved, dict) else {}):
        if FUSION_PREFIX + "fusion.alpha" in sd:
            cfg.text_fusion_type = "cross_attn"
            rel_bias = sd.get(FUSION_PREFIX + "fusion.rel_bias.weight")
            if rel_bias is not None and rel_bias.dim() == 2:
                cfg.cross_attn_heads = int(rel_bias.shape[1])
        elif FUSION_PREFIX + "fusion.gate_mlp.0.weight" in sd:
            cfg.text_fusion_type = "gating"
            cfg.fusion_hidden = int(sd[FUSION_PREFIX + "fusion.gate_mlp.0.weight"].shape[0])
    return cfg


def predict_file(args) -> str:
    """The translation of ``args.pose`` by the model of ``args.finetune``.

    The inputs (checkpoint, pose file, description file) are read and checked before the
    model is built, so that a bad one stops the command at once."""
    from signfuse.models.uni_sign import attach_text_source, build_model
    from signfuse.training.distributed import pick_device

    ckpt = safe_torch_load(args.finetune)
    cfg = config_from_checkpoint(ckpt, args.finetune)
    if args.dataset:
        cfg.dataset = args.dataset
    device = pick_device(args.device)
    try:
        pose = load_pose(args.pose, args.trust_pickles)
    except SampleError as e:
        raise InputError(str(e)) from None
    describe = None
    if args.description and not cfg.use_descriptions:
        print(f"signfuse: warning: {args.finetune} has no description-fusion weights (trained without "
              f"--use_descriptions): --description {args.description} is not used", file=sys.stderr)
    elif args.description:
        describe = single_file_describer(args.description, args.desc_alignment, args.max_gap)
    elif cfg.use_descriptions:
        describe = lambda frames: ([[] for _ in frames], [0] * len(frames))  # no descriptions: all masked
    item = make_item(pose, name=Path(args.pose).stem, max_length=args.max_length, describe=describe)

    model = build_model(cfg, args.mt5_model)
    if cfg.use_descriptions:
        saved_args = ckpt.get("args") if isinstance(ckpt, dict) else None
        saved_encoder = saved_args.get("desc_encoder") if isinstance(saved_args, dict) else None
        attach_text_source(model, args, mt5_model=args.mt5_model, desc_encoder=args.desc_encoder or saved_encoder)
    load_weights(model, args.finetune, log=lambda *_: None, checkpoint=ckpt)
    model.to(device).eval()
    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in collate_fn([item]).items()}
    with torch.no_grad():
        return model.generate(batch, max_new_tokens=args.max_new_tokens, num_beams=args.num_beams)[0]


def single_file_describer(path, strategy, max_gap):
    """frames -> (aligned, has_description) from one description file (errors stop the command)."""
    from signfuse.data.descriptions import TemporalAligner, read_description_file
    try:
        descriptions, _ = read_description_file(Path(path))
    except SampleError as e:
        raise InputError(str(e)) from None
    return lambda frames: TemporalAligner(descriptions, [int(f) for f in frames], strategy, max_gap).align()
