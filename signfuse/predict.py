"""``signfuse predict``: translate one pose file (optionally with its description file).

The checkpoint says how to run its model: its recorded settings (mT5, dataset, frame
sampling, generation, descriptions and their alignment, text encoder, RGB; see
``signfuse.training.settings``) apply to every flag not given, so that
``signfuse predict --finetune CKPT --pose P --description D`` gives what evaluation gave for
that sample (a model trained with ``--describe rules`` needs no --description: its descriptions
are made from the pose file, as in its evaluation). A given flag that differs from the checkpoint's value is used, and reported in
one line on stderr. A Uni-Sign checkpoint (``{'model': state_dict}``) records nothing: its
weights tell whether it fuses descriptions, and the flags' defaults apply.

An RGB-pose checkpoint (trained with ``--rgb_support``; a Uni-Sign one needs the flag) also
takes the sign video (``--video``): the hand crops of the frames evaluation would pick
(``--rgb_eval_sampling``, the checkpoint's). ``predict_file(args, pose=...)`` translates a pose
already in memory (``signfuse translate``).
"""
import sys
from pathlib import Path

import torch

from signfuse.data.dataset import collate_fn, make_item
from signfuse.data.pose import PoseRecord, load_pose, pose_record
from signfuse.errors import InputError, SampleError
from signfuse.training.checkpoint import load_weights, safe_torch_load
from signfuse.training.settings import apply_checkpoint_settings, check_text_encoder, describer_settings, \
    given_flags, resolve_model_config


def warn(message: str) -> None:
    print(f"signfuse: {message}", file=sys.stderr)


def predict_file(args, pose=None) -> str:
    """The translation of ``args.pose`` (with ``args.video`` for an RGB-pose model) by the model
    of ``args.finetune``. ``pose``: the sample's pose already in memory (a PoseRecord, or the dict a
    pose file holds) instead of reading ``args.pose``, which then only names the sample.

    The inputs (checkpoint, pose file, description file, video) are read and checked before the
    model is built, so that a bad one stops the command at once."""
    from signfuse.models.uni_sign import attach_text_source, build_model
    from signfuse.training.distributed import pick_device

    checkpoint = safe_torch_load(args.finetune)
    args = apply_checkpoint_settings(args, checkpoint, args.finetune, log=warn)
    cfg = resolve_model_config(args, checkpoint, args.finetune)
    device = pick_device(args.device)
    try:
        if not isinstance(pose, PoseRecord):
            pose = load_pose(args.pose, args.trust_pickles) if pose is None else pose_record(pose, args.pose)
    except SampleError as e:
        raise InputError(str(e)) from None
    item = make_item(pose, name=Path(args.pose).stem, max_length=args.max_length,
                     describe=describer(args, cfg, pose))
    item.update(hand_crops(args, cfg, pose, item["frame_indices"]))

    check_text_encoder(args, checkpoint, args.finetune, log=warn)
    model = build_model(cfg, args.mt5_model)
    if cfg.use_descriptions:
        attach_text_source(model, args)
    load_weights(model, args.finetune, log=lambda *_: None, checkpoint=checkpoint)
    model.to(device).eval()
    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in collate_fn([item]).items()}
    with torch.no_grad():
        return model.generate(batch, max_new_tokens=args.max_new_tokens, num_beams=args.num_beams)[0]


def describer(args, cfg, pose=None):
    """frames -> (aligned, has_description) for the sample, or None for a model without
    descriptions (a description file given to it is reported and not used). The sample's
    descriptions: --description's file; else, with --describe rules (given, or the checkpoint's),
    those the rules describer makes from ``pose`` (the loaded pose file); else none."""
    if not cfg.use_descriptions:
        if args.description:
            warn(f"warning: {args.finetune} has no description-fusion weights (trained without "
                 f"--use_descriptions): --description {args.description} is not used")
        return None
    if args.description:
        if args.describe == "rules" and "describe" in given_flags(args):
            raise InputError(f"--describe rules and --description {args.description}: give one of them "
                             "(rules: the descriptions are made from --pose)")
        return single_file_describer(args.description, args.desc_alignment, args.max_gap)
    rules = describer_settings(args)
    if rules is not None:
        from signfuse.data.descriptions import PoseDescriber
        made = PoseDescriber(rules, args.desc_alignment, args.max_gap, warn=lambda message: warn(f"warning: {message}"))
        return lambda frames: made.describe(Path(args.pose).stem, frames, pose=pose)
    return lambda frames: ([[] for _ in frames], [0] * len(frames))  # no descriptions: every frame masked


def hand_crops(args, cfg, pose, frames) -> dict:
    """The RGB keys of the sample for an RGB-pose model (``hand_crops.load_hand_crops`` on
    ``args.video``, evaluation's frame choice), else {} (a --video given to a pose-only model is
    reported and not used). Any problem with the video stops the command in one line."""
    video = getattr(args, "video", None)
    if not cfg.rgb_support:
        if video and "video" in given_flags(args):  # translate passes every video, unasked
            warn(f"warning: {args.finetune} has no RGB-branch weights (trained without --rgb_support): "
                 f"--video {video} is not used")
        return {}
    if not video:
        raise InputError(f"{args.finetune}: an RGB-pose model (--rgb_support): give the sign video of "
                         f"{args.pose} with --video (its hand crops are part of the model's input)")
    import numpy as np
    from signfuse.data.hand_crops import RGBSettings, load_hand_crops
    settings = RGBSettings(video_dir=str(Path(video).parent), crop=args.rgb_crop, eval_sampling=args.rgb_eval_sampling)
    try:  # --rgb_eval_sampling random: from a fixed seed (the same crops every time)
        return load_hand_crops(pose, frames, video, settings, train=False, rng=np.random.default_rng(0),
                               keypoints=pose.exact_keypoints)
    except SampleError as e:
        raise InputError(str(e)) from None


def single_file_describer(path, strategy, max_gap):
    """frames -> (aligned, has_description) from one description file (errors stop the command)."""
    from signfuse.data.descriptions import TemporalAligner, read_description_file
    try:
        descriptions, _ = read_description_file(Path(path))
    except SampleError as e:
        raise InputError(str(e)) from None
    return lambda frames: TemporalAligner(descriptions, [int(f) for f in frames], strategy, max_gap).align()
