"""Checkpoints: safe loading, Uni-Sign-strict weight loading, atomic resumable saves.

Every checkpoint is read with ``torch.load(weights_only=True)``: a file can only give
tensors and plain containers, never run code. Uni-Sign's format is
``{'model': state_dict}``; DeepSpeed's ``{'module': state_dict}`` and a bare state dict
are accepted too.
"""
import os
from pathlib import Path

import torch

from signfuse.checkpoint_io import safe_torch_load, state_dict_of  # noqa: F401 (importers of this module use them too)
from signfuse.errors import InputError
from signfuse.models.rgb_branch import RGB_PREFIXES, has_rgb_weights

FUSION_PREFIX = "text_fusion."  # keys added by --use_descriptions (outside Uni-Sign's)


def load_weights(model: torch.nn.Module, path, allow_unexpected: bool = False, log=print,
                 checkpoint=None, allow_new_rgb: bool = False) -> dict:
    """Load a checkpoint into ``model``: strict for every key the checkpoint should hold.

    Missing keys are an error, except the description-fusion keys (``text_fusion.*``), which a
    Uni-Sign checkpoint cannot have: they are reported as newly initialised, and BatchNorm's
    ``num_batches_tracked`` (absent from some Uni-Sign checkpoints; BatchNorm fills it in).
    ``allow_new_rgb``: a checkpoint without any RGB-branch key (pose-only) may start a
    ``--rgb_support`` model's RGB branch fresh; those keys are returned in 'missing'.
    Unexpected keys and shape mismatches are errors (``allow_unexpected`` turns unexpected keys
    into a warning).
    ``checkpoint``: the already loaded contents of ``path`` (saves reading it twice).
    Returns {'missing', 'unexpected', 'new_fusion'} lists.
    """
    sd = state_dict_of(safe_torch_load(path) if checkpoint is None else checkpoint, path)
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
    own = model.state_dict()
    mismatched = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                  for k, v in sd.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if mismatched:
        more = f" (and {len(mismatched) - 5} more)" if len(mismatched) > 5 else ""
        raise InputError(f"{path}: {len(mismatched)} weights have other shapes than this model: "
                         + "; ".join(mismatched[:5]) + more
                         + ". Check --mt5_model and the model size flags.")
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    new_fusion = [k for k in missing if k.startswith(FUSION_PREFIX)]
    missing = [k for k in missing if not k.startswith(FUSION_PREFIX) and not k.endswith(".num_batches_tracked")]
    new_rgb = [k for k in missing if k.startswith(RGB_PREFIXES)] if not has_rgb_weights(sd) else []
    if allow_new_rgb and new_rgb:
        missing = [k for k in missing if not k.startswith(RGB_PREFIXES)]
    else:
        new_rgb = []
    if missing:
        hint = (" (a pose-only checkpoint: drop --rgb_support, or train the RGB branch from it)"
                if any(k.startswith(RGB_PREFIXES) for k in missing) and not has_rgb_weights(sd) else "")
        raise InputError(f"{path}: {len(missing)} weights of the model are missing from the checkpoint{hint}: "
                         + ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else ""))
    if unexpected:
        hint = ""
        if any(k.startswith(FUSION_PREFIX) for k in unexpected):
            has_fusion = any(k.startswith(FUSION_PREFIX) for k in own)
            hint = (" (fusion weights of another kind: check --text_fusion_type)" if has_fusion
                    else " (fusion weights: add --use_descriptions)")
        elif has_rgb_weights(unexpected) and not has_rgb_weights(own):
            hint = " (RGB-pose weights of Uni-Sign's RGB branch: add --rgb_support)"
        msg = (f"{path}: {len(unexpected)} weights of the checkpoint are not in this model{hint}: "
               + ", ".join(unexpected[:8]) + (" ..." if len(unexpected) > 8 else ""))
        if not allow_unexpected:
            raise InputError(msg)
        log(f"warning: {msg}; ignored")
    model.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=False)
    log(f"loaded {path}: {len(sd) - len(unexpected)} weights; missing keys: none"
        + (f"; newly initialised fusion weights: {len(new_fusion)} tensors ({FUSION_PREFIX}*)" if new_fusion else "")
        + (f"; newly initialised RGB-branch weights (pose-only checkpoint): {len(new_rgb)} tensors: "
           + key_groups(new_rgb, RGB_PREFIXES) if new_rgb else "")
        + (f"; unexpected keys ignored: {len(unexpected)}" if unexpected else "; unexpected keys: none"))
    return {"missing": missing + new_rgb, "unexpected": unexpected, "new_fusion": new_fusion}


def key_groups(keys: list, prefixes: tuple) -> str:
    """'rgb_proj.* (4), fusion_gate.* (6)': how many of ``keys`` start with each prefix."""
    counts = {p: sum(k.startswith(p) for k in keys) for p in prefixes}
    return ", ".join(f"{p}* ({n})" for p, n in counts.items() if n)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save(obj, path) -> None:
    """torch.save to a temporary file in the same folder, fsync, then rename over ``path``:
    a reader (or a crash) sees the old file or the new one, never a partial one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def atomic_write_text(path, text: str) -> None:
    """Replace a text file atomically (temporary file, fsync, rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


LAST, PREVIOUS = "last.pth", "last.prev.pth"


def save_last(state: dict, output_dir) -> Path:
    """Write ``last.pth`` atomically, keeping the previous one as ``last.prev.pth``.

    A crash at any point leaves a readable state: before the rename both files are the old
    ones, between the rename and the new file only ``last.prev.pth`` exists, and a partly
    written new file is ``last.pth.tmp``, which is never read."""
    last = Path(output_dir) / LAST
    if last.exists():
        os.replace(last, last.with_name(PREVIOUS))
    atomic_save(state, last)
    return last


def deepspeed_state_classes() -> list:
    """The plain-data classes inside DeepSpeed's ZeRO / bf16 optimizer state dicts (loss
    scaler settings, the ZeRO stage, parameter slice addresses): allowed when a DeepSpeed run
    reads its last.pth back, still with weights_only=True."""
    try:
        from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
        from deepspeed.runtime.zero.config import ZeroStageEnum
        from deepspeed.utils.tensor_fragment import fragment_address
    except Exception:  # noqa: BLE001 - DeepSpeed absent or reorganised: plain loading only
        return []
    return [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]


def load_last(output_dir, log=print, deepspeed: bool = False) -> dict | None:
    """The newest readable resumable state in ``output_dir`` (``last.pth``, else
    ``last.prev.pth``, with a warning), or None when neither file exists.

    A damaged file (truncated by a crash or a full disk, not a checkpoint) is reported and
    the previous one used; when every file that exists is damaged, InputError (a run asked
    to resume must not silently start again from scratch). ``deepspeed``: the state may hold
    a DeepSpeed optimizer's (``deepspeed_state_classes``)."""
    problems = []
    extra = deepspeed_state_classes() if deepspeed else []
    for name in (LAST, PREVIOUS):
        path = Path(output_dir) / name
        if not path.exists():
            continue
        try:
            state = safe_torch_load(path, safe_globals=extra)
            if not (isinstance(state, dict) and isinstance(state.get("model"), dict) and "step" in state
                    and "stepper" in state):
                raise InputError(f"{path}: not a resumable state (no model/stepper/step entries)")
        except InputError as e:
            problems.append(str(e))
            log(f"warning: {e}; " + ("trying last.prev.pth" if name == LAST else "no other state to resume from"))
            continue
        if problems:
            log(f"warning: resuming from the previous state {path} (its steps since are trained again)")
        return state | {"path": str(path)}
    if problems:
        raise InputError(f"{output_dir}: no readable state to resume from: " + " | ".join(problems)
                         + ". Remove these files to start a new run, or resume from a copy")
    return None
