"""The model of a run: from flags or a checkpoint to ``Uni_Sign`` on its device
(``build_run_model``: configuration, text source, weights, RGB branch), the text cache filled up
front, and what a checkpoint saves (``checkpoint_dict``)."""
import time
from dataclasses import asdict

import torch

from signfuse.models.rgb_branch import (
    RGB_PREFIXES,
    fusion_gate,
    gate_is_zero,
    has_rgb_weights,
    load_backbone_weights,
    rgb_training_warning,
)
from signfuse.models.compiled import compile_model
from signfuse.models.text_fusion import TextEncoder
from signfuse.models.uni_sign import attach_text_source, build_model
from signfuse.training import distributed as D
from signfuse.training import engine
from signfuse.training.checkpoint import load_weights, safe_torch_load, state_dict_of
from signfuse.training.settings import args_record, plain, record, resolve_model_config


def read_checkpoint(args) -> dict | None:
    """The --finetune checkpoint, read once (weights_only), or None."""
    return safe_torch_load(args.finetune) if args.finetune else None



def build_run_model(args, info: D.DistInfo, log=print, checkpoint=None, cfg=None, training=False, backbone=None):
    """(Uni_Sign on the run's device, its configuration): the configuration resolved once
    (``resolve_model_config``, unless given), the fusion's text source with
    --use_descriptions, the weights of --finetune (``checkpoint``: its loaded contents).
    ``training``: a pose-only --finetune may start the RGB branch fresh (its backbone from
    ``backbone``, see ``rgb_backbone``), and a branch that cannot learn is said in one line."""
    if cfg is None:
        if checkpoint is None and args.finetune:
            checkpoint = read_checkpoint(args)
        cfg = resolve_model_config(args, checkpoint, args.finetune)
    model = build_model(cfg, args.mt5_model, seed=getattr(args, "seed", 0), desc_encoder=args.desc_encoder,
                        backbone=backbone)
    if cfg.use_descriptions:
        attach_text_source(model, args)
    report = None
    if args.finetune:
        report = load_weights(model, args.finetune, allow_unexpected=getattr(args, "finetune_allow_unexpected", False),
                              log=log if info.is_main else (lambda *_: None), checkpoint=checkpoint,
                              allow_new_rgb=training)
    if training and cfg.rgb_support:
        start_rgb_branch(model, cfg, report, args.seed, log)
    model.to(info.device)
    if getattr(args, "compile", False):
        log(f"--compile: torch.compile of {', '.join(compile_model(model))} (static shapes)")
    return model, model.cfg



def rgb_backbone(args, checkpoint, cfg, log=print) -> dict | None:
    """The EfficientNet-B0 weights a trained RGB branch starts from (--rgb_backbone_weights),
    read before any other work (offline without 'imagenet' cached: one line, here); None when
    random ('none'), without --rgb_support, or when --finetune holds the RGB branch's weights
    (then nothing is read or downloaded)."""
    spec = getattr(args, "rgb_backbone_weights", None) or "none"
    if not cfg.rgb_support or spec == "none":
        return None
    if checkpoint is not None and has_rgb_weights(state_dict_of(checkpoint, args.finetune)):
        log(f"--rgb_backbone_weights {spec}: not used, {args.finetune} holds the RGB branch's weights")
        return None
    return load_backbone_weights(spec)



def start_rgb_branch(model, cfg, report, seed: int, log=print) -> None:
    """Training --rgb_support: with --rgb_gate_init small, a fusion gate that is all zeros after
    loading (Uni-Sign's RGB-pose checkpoints: its zero gate never learns, docs/rgb-pose.md 8.4) gets
    the small init of its last convolution (drawn from ``seed``; every other weight stays the
    checkpoint's); then one warning line when the branch still cannot learn."""
    loaded = report is not None and not any(k.startswith(RGB_PREFIXES) for k in report["missing"])
    if loaded and cfg.rgb_gate_init == "small" and gate_is_zero(model):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            small = fusion_gate(model.fusion_gate[0].out_channels, "small")
        model.fusion_gate[2].load_state_dict(small[2].state_dict())
        log("--rgb_gate_init small: the fusion gate of the checkpoint is all zeros (it cannot learn): "
            "its last convolution starts small")
    warning = rgb_training_warning(cfg, loaded, model)
    if warning:
        log(warning)



def warm_text_cache(model, describer, sample_ids, log=print, batch_size: int = 64) -> int:
    """Encode every description text of ``sample_ids`` once, in a fixed order, before the run.

    The frozen text encoder (no --desc_store) caches one vector per text, computed in a batch
    with the other new texts of the batch that first needs it: the vector's last bits depend
    on that batch's padding, so on which batches came first. Filled up front, the cache is
    the same in every process and in a resumed run (same weights as an uninterrupted one,
    the same predictions with one or several processes). Returns the number of texts."""
    source = getattr(model, "text_source", None)
    if describer is None or source is None:
        return 0
    if not isinstance(source, TextEncoder):  # a precomputed store: fixed vectors already
        return 0
    texts = {t for sample_id in dict.fromkeys(sample_ids)
             for t in describer.descriptions(sample_id).values() if isinstance(t, str) and t}
    texts = sorted(texts, key=lambda t: (len(t), t))
    t0 = time.time()
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            source.encode(texts[start:start + batch_size])
    if texts:
        log(f"descriptions: {len(texts)} distinct texts encoded by the frozen text encoder in "
            f"{time.time() - t0:.1f}s (`signfuse precompute-text` and --desc_store save this at start-up)")
    return len(texts)



def count_model_parameters(model) -> tuple[int, int]:
    """(all parameters, parameters of the description fusion)."""
    total = sum(p.numel() for p in model.parameters())
    fusion = sum(p.numel() for n, p in model.named_parameters() if n.startswith("text_fusion."))
    return total, fusion



def checkpoint_dict(model, cfg, args, epoch, result=None, text_encoder=None) -> dict:
    """Uni-Sign's checkpoint format plus plain-data extras (loadable with weights_only): the
    model configuration, the recorded settings (``settings.record``), the text encoder's
    identity, every flag, and with ``result`` the metrics."""
    ckpt = {"model": engine.unwrap(model).state_dict(), "epoch": epoch, "config": plain(asdict(cfg)),
            "settings": record(args), "text_encoder": plain(text_encoder), "args": args_record(args)}
    if result is not None:
        ckpt["metrics"] = plain(result)
    return ckpt
