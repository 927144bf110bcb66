"""The figures of ``signfuse describe-stats``: coverage of a dataset's description files."""
from pathlib import Path
from typing import Optional

import numpy as np

from signfuse.data.description_files import DescriptionLoader
from signfuse.errors import InputError


def _spread(values: list) -> Optional[dict]:
    """``{"mean", "min", "max"}`` of a list of numbers; None when it is empty."""
    if not values:
        return None
    return {"mean": float(np.mean(values)), "min": int(min(values)), "max": int(max(values))}


def _text_lengths(texts: list, tokenizer) -> list:
    """Length of each text: tokens of ``tokenizer`` (with its special tokens), else words."""
    if not texts:
        return []
    if tokenizer is None:
        return [len(text.split()) for text in texts]
    return [len(ids) for ids in tokenizer(texts)["input_ids"]]


def describe_stats(desc_dir, dataset: str, sample_ids=None, tokenizer=None,
                   max_tokens: int = 64) -> dict:
    """Statistics of the description files of ``dataset`` under ``desc_dir``.

    Reads ``<desc_dir>/<dataset>/<sample_id>.json`` for each of ``sample_ids`` (e.g. the
    stems of a split's video paths), or every ``*.json`` there when None. Returns a dict:
    ``directory``, ``samples``, ``described``, ``missing``, ``invalid``, ``empty`` (counts);
    ``frames_per_sample`` (mean/min/max over described samples, or None); ``distinct_texts``;
    ``text_length`` (``unit`` "tokens" with ``tokenizer``, else "words"; mean/min/max over the
    distinct texts; with a tokenizer also ``over_max_tokens``, the texts longer than
    ``max_tokens`` that --desc_max_tokens would truncate) or None; ``invalid_files``
    ("<path>: <reason>"). Raises InputError when the directory does not exist.
    """
    directory = Path(desc_dir) / dataset
    if not directory.is_dir():
        raise InputError(f"{directory}: description directory not found")
    if sample_ids is None:
        sample_ids = sorted(path.stem for path in directory.glob("*.json"))
    loader = DescriptionLoader(directory, report=lambda message: None)
    texts: dict[str, None] = {}
    for sample_id in sample_ids:
        texts.update(dict.fromkeys(loader.load(sample_id)[0].values()))
    counts = loader.counts(sample_ids)
    lengths = _text_lengths(list(texts), tokenizer)
    text_length = _spread(lengths)
    if text_length is not None:
        text_length["unit"] = "words" if tokenizer is None else "tokens"
        if tokenizer is not None:
            text_length["over_max_tokens"] = sum(n > max_tokens for n in lengths)
            text_length["max_tokens"] = max_tokens
    return {
        "directory": str(directory),
        "samples": counts.samples, "described": counts.described, "missing": counts.missing,
        "invalid": counts.invalid, "empty": counts.empty,
        "frames_per_sample": _spread(counts.frames_per_sample),
        "distinct_texts": len(texts),
        "text_length": text_length,
        "invalid_files": counts.invalid_files,
    }


def format_describe_stats(stats: dict) -> str:
    """The human-readable report of ``describe_stats``'s dict, one fact per line."""
    lines = [f"description directory: {stats['directory']}",
             f"samples: {stats['samples']}",
             f"  with descriptions: {stats['described']}",
             f"  file missing: {stats['missing']}",
             f"  file invalid: {stats['invalid']}",
             f"  only empty texts: {stats['empty']}"]
    frames = stats["frames_per_sample"]
    if frames is None:
        lines.append("described frames per described sample: none")
    else:
        lines.append(f"described frames per described sample: mean {frames['mean']:.1f}, "
                     f"min {frames['min']}, max {frames['max']}")
    lines.append(f"distinct texts: {stats['distinct_texts']}")
    length = stats["text_length"]
    if length is not None:
        line = (f"text length ({length['unit']}): mean {length['mean']:.1f}, "
                f"min {length['min']}, max {length['max']}")
        if "over_max_tokens" in length:
            line += f"; {length['over_max_tokens']} longer than {length['max_tokens']} tokens"
        lines.append(line)
    lines.append(f"invalid files: {len(stats['invalid_files'])}")
    lines += [f"  {message}" for message in stats["invalid_files"]]
    return "\n".join(lines)
