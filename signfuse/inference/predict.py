"""``signfuse predict``: translate one pose file (optionally with its description file).

The checkpoint says how to run its model: its recorded settings (mT5, dataset, frame
sampling, generation, descriptions and their alignment, text encoder, RGB; see
``signfuse.training.settings``) apply to every flag not given, so that
``signfuse predict --finetune CKPT --pose P --description D`` gives what evaluation gave for
that sample (a model trained with ``--describe rules`` needs no --description: its descriptions
are made from the pose file, as in its evaluation). A given flag that differs from the
checkpoint's value is used, and reported in one line on stderr. A Uni-Sign checkpoint
(``{'model': state_dict}``) records nothing: its weights tell whether it fuses descriptions and
whether it has the RGB branch (Uni-Sign's RGB-pose model; ``signfuse eval`` needs --rgb_support
for it), and the flags' defaults apply.

An RGB-pose checkpoint also takes the sign video (``--video``): the hand crops of the frames
evaluation would pick (``--rgb_eval_sampling``, the checkpoint's).

``Predictor(args)`` holds a checkpoint's model (built once, at its first prediction, after that
prediction's inputs are checked), its text source, describer and device;
``Predictor.predict(pose, name, video=None, details=None)`` translates one pose (``signfuse
translate`` translates every video with one Predictor). ``predict_file(args, pose=None,
details=None)`` is ``signfuse predict``. ``details`` (a dict) receives ``timings`` (seconds per
stage: load, describe, rgb_crops, generate), ``gates`` (``gate_summary``: None for a pose-only
model) and ``seen`` (``what_it_saw``: the sampled frames, their descriptions and gate, the crop boxes).
"""
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from signfuse.data.dataset import collate_fn, make_item
from signfuse.data.hand_crops import RGBSettings, load_hand_crops
from signfuse.data.pose import PoseRecord, load_pose, pose_record
from signfuse.describe.describer import build_describer, describer_settings
from signfuse.errors import InputError, SampleError
from signfuse.models.rgb_branch import HANDS, has_rgb_weights, valid_rows
from signfuse.training.checkpoint import safe_torch_load, state_dict_of
from signfuse.training.distributed import DistInfo, pick_device
from signfuse.training.model_setup import build_run_model
from signfuse.training.settings import (
    apply_checkpoint_settings,
    check_text_encoder,
    explicit_flags,
    resolve_model_config,
    saved_settings,
)

STAGES = ("load", "describe", "rgb_crops", "generate")  # the timings a prediction reports (seconds)


def warn(message: str) -> None:
    print(f"signfuse: {message}", file=sys.stderr)


def predict_file(args, pose=None, details=None) -> str:
    """The translation of ``args.pose`` (with ``args.video`` for an RGB-pose model) by the model
    of ``args.finetune``. ``pose``: the sample's pose already in memory (a PoseRecord, or the dict a
    pose file holds) instead of reading ``args.pose``, which then only names the sample.
    ``details``: a dict that receives the timings and the gate summary (``Predictor.predict``).

    The inputs (checkpoint, pose file, description file, video) are read and checked before the
    model is built, so that a bad one stops the command at once."""
    predictor = Predictor(args)
    args = predictor.args
    video = getattr(args, "video", None)
    if video and not predictor.cfg.rgb_support and "video" in explicit_flags(args):
        warn(f"warning: {args.finetune} has no RGB-branch weights (trained without --rgb_support): "
             f"--video {video} is not used")
    return predictor.predict(args.pose if pose is None else pose, str(args.pose), video=video, details=details)


class Predictor:
    """The model of a checkpoint (``args.finetune``), ready to translate poses: the checkpoint's
    settings applied to ``args`` (``self.args``), its configuration, device and describer. The
    model and its text source are built and loaded once, at the first prediction."""

    def __init__(self, args):
        start = time.perf_counter()
        self.checkpoint = safe_torch_load(args.finetune)
        args = apply_checkpoint_settings(args, self.checkpoint, args.finetune, log=warn)
        self.args = rgb_from_weights(args, self.checkpoint)
        self.cfg = resolve_model_config(self.args, self.checkpoint, args.finetune)
        self.device = pick_device(args.device)
        self.describe = describer(self.args, self.cfg)  # reads --description now: a bad file stops here
        self.model = None
        self.load_seconds = time.perf_counter() - start

    def load(self) -> None:
        """Build the model, attach its text source, load the checkpoint's weights (once)."""
        start = time.perf_counter()
        check_text_encoder(self.args, self.checkpoint, self.args.finetune, log=warn)
        model, _ = build_run_model(self.args, DistInfo(device=self.device), log=lambda *_: None,
                                   checkpoint=self.checkpoint, cfg=self.cfg)  # the path of training and eval
        self.model, self.checkpoint = model.eval(), None  # the weights are in the model now
        self.load_seconds += time.perf_counter() - start

    def predict(self, pose, name: str, video=None, details: dict = None) -> str:
        """The translation of one pose: a PoseRecord, the dict a pose file holds, or a pose file's
        path; ``name`` names it in messages (its stem is the sample id); ``video``: the sign video
        (an RGB-pose model's hand crops; not used by other models). ``details``: a dict that
        receives ``timings`` ({stage: seconds}, STAGES; load is 0 once the model is built) and
        ``gates`` (``gate_summary``)."""
        timings = dict.fromkeys(STAGES, 0.0)
        pose = as_pose_record(pose, name, getattr(self.args, "trust_pickles", False))
        sample_id = Path(name).stem
        describe = None if self.describe is None else timed(timings, "describe",
                                                            lambda frames: self.describe(sample_id, pose, frames))
        item = make_item(pose, name=sample_id, max_length=self.args.max_length, describe=describe)
        boxes = {}  # hand -> (original frame numbers (k,), boxes (k, 4) pixels) of its crops
        with stage(timings, "rgb_crops"):
            item.update(hand_crops(self.args, self.cfg, pose, item["frame_indices"], video, name, boxes))
        if self.model is None:
            self.load()
            timings["load"] = self.load_seconds
        batch = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in collate_fn([item]).items()}
        with stage(timings, "generate"), torch.no_grad(), RGBGates(self.model) as rgb:
            self.model.last_gate = None
            text = self.model.generate(batch, max_new_tokens=self.args.max_new_tokens,
                                       num_beams=self.args.num_beams)[0]
        if details is not None:
            details["timings"] = timings
            details["gates"] = gate_summary(self.model, batch, rgb.outputs)
            details["seen"] = what_it_saw(self.model, item, batch, rgb.outputs, boxes)
        return text


def as_pose_record(pose, name: str, trust_pickles: bool = False) -> PoseRecord:
    """A PoseRecord from a PoseRecord, a pose file's dict, or a pose file's path (one line on a bad one)."""
    if isinstance(pose, PoseRecord):
        return pose
    try:
        return pose_record(pose, name) if isinstance(pose, dict) else load_pose(pose, trust_pickles)
    except SampleError as e:
        raise InputError(str(e)) from None


def rgb_from_weights(args, checkpoint):
    """``args`` with ``rgb_support`` from the checkpoint's weights when it records no RGB setting
    (Uni-Sign's ``{'model': state_dict}``) and the flag is not given: an RGB-pose checkpoint runs
    its RGB branch, as its description-fusion weights tell whether it fuses descriptions."""
    saved, _ = saved_settings(checkpoint, args.finetune)
    if "rgb_support" in saved or "rgb_support" in explicit_flags(args):
        return args
    args.rgb_support = has_rgb_weights(state_dict_of(checkpoint, args.finetune))
    return args


@contextmanager
def stage(timings: dict, name: str):
    """Add the seconds the block takes to ``timings[name]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - start


def timed(timings: dict, name: str, fn):
    """``fn``, its seconds added to ``timings[name]``."""
    def run(*a):
        with stage(timings, name):
            return fn(*a)
    return run


class RGBGates:
    """While active, the outputs of an RGB-pose model's ``fusion_gate`` (one (n, 1, V) tensor per
    hand that has crops, in the order the hands are fused); nothing for other models."""

    def __init__(self, model):
        self.module, self.outputs, self.handle = getattr(model, "fusion_gate", None), [], None

    def __enter__(self):
        if self.module is not None:
            self.handle = self.module.register_forward_hook(lambda _m, _i, out: self.outputs.append(out.detach()))
        return self

    def __exit__(self, *exc):
        if self.handle is not None:
            self.handle.remove()
        return False


def gate_summary(model, batch: dict, rgb_outputs: list) -> dict | None:
    """The gates of the last prediction (a batch of one sample), or None for a pose-only model.
    ``text`` (description fusion): the gate's mean, min and max over the sample's frames, its mean
    over the described frames (None when none is), and the share of described frames. ``rgb``
    (RGB-pose): per hand, the fusion gate's mean over the hand's crops and their nodes, and the
    number of frames with a crop (mean None when the hand has none)."""
    text = rgb = None
    if model.cfg.use_descriptions and model.last_gate is not None:
        T = int(batch["attention_mask"][0].sum())
        gate = model.last_gate[0, :T, 0].float()  # (T,)
        described = batch["has_description"][0, :T, 0] > 0  # (T,)
        text = {"mean": gate.mean().item(), "min": gate.min().item(), "max": gate.max().item(),
                "mean_described": gate[described].mean().item() if described.any() else None,
                "described_share": described.float().mean().item()}
    if model.cfg.rgb_support:
        T = batch["attention_mask"].shape[1]
        fused = [hand for hand in HANDS if valid_rows(batch[f"{hand}_sampled_indices"], batch[f"{hand}_rgb_len"],
                                                      1, T)[0].numel()]
        if len(fused) != len(rgb_outputs):
            raise RuntimeError(f"RGB gate: {len(rgb_outputs)} fusion_gate calls for the hands {fused}")
        outputs = dict(zip(fused, rgb_outputs, strict=True))  # hand -> (n, 1, V)
        rgb = {hand: {"mean": outputs[hand].float().mean().item() if hand in outputs else None,
                      "frames": int(outputs[hand].shape[0]) if hand in outputs else 0} for hand in HANDS}
    return None if text is None and rgb is None else {"text": text, "rgb": rgb}


def what_it_saw(model, item: dict, batch: dict, rgb_outputs: list, boxes: dict) -> dict:
    """What the model took in for the last prediction (a batch of one sample), per sampled frame,
    as plain data (``signfuse render`` draws it): ``frame_indices`` (T original frame numbers),
    ``aligned`` (per frame the description texts and weights it got; None without descriptions),
    ``has_description`` (per frame), ``gate`` (the description gate per frame; None for a model
    without one) and ``crops`` ({hand: {"frames", "boxes" (x0, y0, x1, y1 pixels), "gate" (the RGB
    fusion gate's mean per crop)}} of an RGB-pose model's crops; None for other models)."""
    T = len(item["frame_indices"])
    seen = {"frame_indices": [int(f) for f in item["frame_indices"]], "aligned": None, "has_description": None,
            "gate": None, "crops": None}
    if "desc_aligned" in item:
        seen["aligned"] = [[(str(text), float(weight)) for text, weight in pairs] for pairs in item["desc_aligned"]]
        seen["has_description"] = [float(h) for h in item["has_description"]]
    if getattr(model, "last_gate", None) is not None:
        seen["gate"] = model.last_gate[0, :T, 0].float().tolist()  # (T,)
    if model.cfg.rgb_support:
        outputs = iter(rgb_outputs)  # one (k, 1, V) per hand with crops, in the order of HANDS
        seen["crops"] = {hand: {"frames": [int(f) for f in frames], "boxes": [[int(v) for v in b] for b in hand_boxes],
                                "gate": next(outputs).float().mean(dim=(1, 2)).tolist()}
                         for hand, (frames, hand_boxes) in boxes.items()}
    return seen


def describer(args, cfg):
    """(sample_id, pose, frames) -> (aligned, has_description) for a sample, or None for a model
    without descriptions (a description file given to it is reported and not used). The
    descriptions: --description's file (read now; errors stop the command); else, with --describe
    rules (given, or the checkpoint's), those the rules describer makes from ``pose``; else none
    (every frame masked)."""
    if not cfg.use_descriptions:
        if args.description:
            warn(f"warning: {args.finetune} has no description-fusion weights (trained without "
                 f"--use_descriptions): --description {args.description} is not used")
        return None
    if args.description:
        if args.describe == "rules" and "describe" in explicit_flags(args):
            raise InputError(f"--describe rules and --description {args.description}: give one of them "
                             "(rules: the descriptions are made from --pose)")
        from_file = build_describer(args, warn, description_file=args.description)
        return lambda sample_id, pose, frames: from_file.describe(sample_id, frames)
    if describer_settings(args) is not None:
        # settings checked now, another rules version reported once; then one describer per pose
        # (a PoseDescriber caches each sample id's texts: two videos may share a name)
        build_describer(args, warn)
        return lambda sample_id, pose, frames: build_describer(args, lambda *_: None).describe(
            sample_id, frames, pose=pose)
    return lambda sample_id, pose, frames: ([[] for _ in frames], [0] * len(frames))


def hand_crops(args, cfg, pose, frames, video, name, boxes=None) -> dict:
    """The RGB keys of the sample ``name`` for an RGB-pose model (``hand_crops.load_hand_crops`` on
    ``video``, evaluation's frame choice), else {}; ``boxes`` (a dict) receives, per hand with
    crops, (original frame numbers, boxes). Any problem with the video stops the command in one line."""
    if not cfg.rgb_support:
        return {}
    if not video:
        raise InputError(f"{args.finetune}: an RGB-pose model (--rgb_support): give the sign video of "
                         f"{name} with --video (its hand crops are part of the model's input)")
    settings = RGBSettings(video_dir=str(Path(video).parent), crop=args.rgb_crop, eval_sampling=args.rgb_eval_sampling)
    try:  # --rgb_eval_sampling random: from a fixed seed (the same crops every time)
        return load_hand_crops(pose, frames, video, settings, train=False, rng=np.random.default_rng(0),
                               keypoints=pose.exact_keypoints, boxes=boxes)
    except SampleError as e:
        raise InputError(str(e)) from None
