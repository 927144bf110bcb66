"""Reading checkpoints safely: ``torch.load(weights_only=True)`` (a file can only give tensors
and plain containers, never run code) and the weights inside Uni-Sign's ``{'model': state_dict}``,
DeepSpeed's ``{'module': state_dict}`` or a bare state dict. At the bottom of the package so that
the models (the RGB backbone's weights) and training (resume, evaluation) both use it."""
import pickle
import zipfile
from pathlib import Path

import torch

from signfuse.errors import InputError


def safe_torch_load(path, safe_globals=()) -> dict:
    """torch.load with weights_only=True; every failure is one InputError naming the file.
    ``safe_globals``: plain-data classes allowed besides tensors and containers."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    try:
        if safe_globals:
            with torch.serialization.safe_globals(list(safe_globals)):
                return torch.load(path, map_location="cpu", weights_only=True)
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        first = next((line for line in lines if "GLOBAL" in line), lines[0] if lines else type(e).__name__)
        raise InputError(
            f"{path}: refused to load: the checkpoint holds objects other than tensors and plain "
            f"containers ({first[:200]}). signfuse loads checkpoints with weights_only=True and never "
            "runs code from a file. If you trust this file, re-save its weights once: "
            "python -c \"import torch; c=torch.load('IN', weights_only=False); "
            "torch.save({'model': c['model']}, 'OUT')\"") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise InputError(f"{path}: not a readable checkpoint (truncated or corrupt?): "
                         f"{str(e).splitlines()[0][:200] if str(e) else type(e).__name__}") from None



def state_dict_of(obj, path) -> dict:
    """The model weights inside a loaded checkpoint object."""
    if isinstance(obj, dict):
        for key in ("model", "module", "state_dict"):
            if key in obj and isinstance(obj[key], dict):
                return obj[key]
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
    raise InputError(f"{path}: no model weights found (expected {{'model': state_dict}} as Uni-Sign saves)")
