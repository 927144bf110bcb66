"""Label files: which samples a split has, and their sentences and glosses.

A label file (``labels.train|dev|test``) is a gzip-compressed pickle of a dict
``{name: sample}``; each sample is a dict with ``name`` (str), ``text`` (the sentence),
``gloss`` (a list of str, or '' when there is none) and ``video_path`` (``X.mp4``; the pose
file is ``X.pkl``). A label file is a run-level input: any problem is an InputError.
"""
from pathlib import Path

from signfuse.errors import InputError
from signfuse.safe_pickle import load_pickle

REQUIRED_KEYS = ("name", "text", "gloss", "video_path")


def kind(value) -> str:
    """'a list', 'an int': the type of ``value`` for messages."""
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def check_sample(path, key, sample) -> dict:
    """The sample of entry ``key``, checked; gloss '' when absent (as Uni-Sign reads it)."""
    need = ", ".join(REQUIRED_KEYS)
    if not isinstance(sample, dict):
        raise InputError(f"{path}: entry {key!r} is {kind(sample)}, expected a dict with {need}")
    for field in ("name", "text", "video_path"):
        if field not in sample:
            raise InputError(f"{path}: entry {key!r} has no '{field}' (a sample needs {need})")
        if not isinstance(sample[field], str):
            raise InputError(f"{path}: entry {key!r}: '{field}' is {kind(sample[field])}, expected a str")
    if not sample["video_path"]:
        raise InputError(f"{path}: entry {key!r}: 'video_path' is empty")
    gloss = sample.get("gloss", "")
    if gloss is None:
        gloss = ""
    if not isinstance(gloss, (str, list, tuple)) or (
            not isinstance(gloss, str) and not all(isinstance(g, str) for g in gloss)):
        raise InputError(f"{path}: entry {key!r}: 'gloss' is {kind(gloss)}, "
                         f"expected a list of str (or '' when there is none)")
    return sample if "gloss" in sample and sample["gloss"] is not None else {**sample, "gloss": gloss}


def load_labels(path, trust_pickles: bool = False) -> dict:
    """Read and check the label file at ``path``: ``{name: sample dict}``, in file order."""
    path = Path(path)
    if path.suffix == ".json":
        raise InputError(f"{path}: a JSON label file (Uni-Sign's CSL_News pre-training format) is not "
                         f"supported here; pre-training reads it (pre_training.py, signfuse pretrain); fine-tuning "
                         f"reads label files that are gzip pickles of {{name: sample}}")
    labels = load_pickle(path, trust=trust_pickles, error=InputError)
    if not isinstance(labels, dict):
        raise InputError(f"{path}: label file of the wrong type: {kind(labels)}, expected a dict {{name: sample}}")
    if not labels:
        raise InputError(f"{path}: label file holds no samples")
    return {key: check_sample(path, key, sample) for key, sample in labels.items()}


def gloss_text(gloss) -> str:
    """A sample's gloss as one string: the list joined by spaces, '' if none."""
    return gloss if isinstance(gloss, str) else " ".join(gloss)
