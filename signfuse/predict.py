"""``signfuse predict``: translate one pose file (optionally with its description file)."""
from pathlib import Path

import torch

from signfuse.config import ModelConfig
from signfuse.data.dataset import collate_fn, make_item
from signfuse.data.pose import load_pose
from signfuse.errors import InputError, SampleError
from signfuse.training.checkpoint import FUSION_PREFIX, load_weights, safe_torch_load, state_dict_of


def config_from_checkpoint(ckpt: dict, path) -> ModelConfig:
    """The ModelConfig a signfuse checkpoint records; Uni-Sign's defaults for a Uni-Sign one
    (whose fusion weights, if any, decide ``use_descriptions``)."""
    saved = ckpt.get("config") if isinstance(ckpt, dict) else None
    cfg = ModelConfig(**{k: tuple(v) if k == "gcn_channels" else v for k, v in saved.items()}) \
        if isinstance(saved, dict) else ModelConfig()
    cfg.use_descriptions = any(k.startswith(FUSION_PREFIX) for k in state_dict_of(ckpt, path))
    return cfg


def predict_file(args) -> str:
    """The translation of ``args.pose`` by the model of ``args.finetune``."""
    from signfuse.models.uni_sign import attach_text_source, build_model
    from signfuse.training.distributed import pick_device

    ckpt = safe_torch_load(args.finetune)
    cfg = config_from_checkpoint(ckpt, args.finetune)
    if args.dataset:
        cfg.dataset = args.dataset
    device = pick_device(args.device)
    model = build_model(cfg, args.mt5_model)
    if cfg.use_descriptions:
        saved_args = ckpt.get("args", {}) if isinstance(ckpt, dict) else {}
        attach_text_source(model, args, mt5_model=args.mt5_model,
                           desc_encoder=args.desc_encoder or saved_args.get("desc_encoder"))
    load_weights(model, args.finetune, log=lambda *_: None)
    model.to(device).eval()
    try:
        pose = load_pose(args.pose, args.trust_pickles)
    except SampleError as e:
        raise InputError(str(e)) from None
    describe = None
    if args.description:
        describe = single_file_describer(args.description, args.desc_alignment, args.max_gap)
    elif cfg.use_descriptions:
        describe = lambda frames: ([[] for _ in frames], [0] * len(frames))  # no descriptions: all masked
    item = make_item(pose, name=Path(args.pose).stem, max_length=args.max_length, describe=describe)
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
