"""Action descriptions in the data pipeline: ``Describer``, the hook ``SignDataset`` calls.

The description files' format is ``docs/descriptions.md``. The parts, bottom to top:

- ``description_files``: ``read_description_file(path) -> (descriptions, metadata)`` (the three
  shapes of a file) and ``DescriptionLoader(description_dir, strict=False)`` with its counts;
- ``alignment``: ``TemporalAligner(descriptions, frame_indices, strategy, max_gap).align()``
  maps the described original frames onto the sampled ones;
- ``description_collate``: ``collate_descriptions``, the batch's distinct texts and per frame
  two indices into them and two weights;
- ``description_stats``: the figures of ``signfuse describe-stats``;
- here: ``Describer`` = load + align, cached per sample, with the start-up ``summary(split)``.
  ``signfuse.describe.describer.PoseDescriber`` is the same hook for ``--describe rules``.

Frame numbers are always ORIGINAL frame numbers: description keys count from the first frame
of the pose file (not from its ``start``), and the sampler's frame numbers include ``start``.
"""
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from signfuse.data.alignment import TemporalAligner, check_alignment_options
from signfuse.data.description_collate import collate_descriptions  # noqa: F401 (the batch side, same subject)
from signfuse.data.description_files import (  # noqa: F401
    DescriptionCounts,
    DescriptionLoader,
    read_description_file,
)
from signfuse.errors import InputError


class Describer:
    """What ``SignDataset`` calls: the aligned descriptions of a sample's sampled frames.

    ``describe(sample_id, frame_indices) -> (aligned, has_description float32 (T,))``.
    Each sample's file is read once and cached. Call ``summary(split, sample_ids)`` at
    start-up: it reads every file of the split in the main process, so that bad files are
    reported (or, with ``strict``, raise InputError) before training starts, and data-loader
    workers started afterwards inherit the cache. Use one Describer per split, or pass
    ``sample_ids`` to ``summary`` (counts are then restricted to those samples).
    Raises InputError at construction when ``description_dir`` is not a directory (a
    mistyped --desc_dir must not silently train without descriptions).
    """

    def __init__(self, description_dir, strategy: str = "interpolate",
                 max_gap: Optional[int] = None, strict: bool = False,
                 report: Optional[Callable[[str], None]] = None):
        check_alignment_options(strategy, max_gap)
        if not Path(description_dir).is_dir():
            raise InputError(f"{description_dir}: description directory not found")
        self.loader = DescriptionLoader(description_dir, strict=strict, report=report)
        self.strategy = strategy
        self.max_gap = max_gap
        self._cache: dict[str, dict] = {}

    def descriptions(self, sample_id: str) -> dict:
        """The ``{frame: text}`` of ``sample_id``, read once and cached."""
        if sample_id not in self._cache:
            self._cache[sample_id] = self.loader.load(sample_id)[0]
        return self._cache[sample_id]

    def describe(self, sample_id: str, frame_indices, pose=None) -> tuple[list, np.ndarray]:
        """Align ``sample_id``'s descriptions to ``frame_indices`` (original frame numbers);
        ``pose`` is not used (the hook's signature is shared with ``PoseDescriber``)."""
        aligner = TemporalAligner(self.descriptions(sample_id), frame_indices,
                                  strategy=self.strategy, max_gap=self.max_gap)
        aligned, has_description = aligner.align()
        return aligned, np.asarray(has_description, dtype=np.float32)

    def scan(self, sample_ids) -> DescriptionCounts:
        """Read the files of ``sample_ids`` (cached); return their counts."""
        sample_ids = list(sample_ids)
        for sample_id in sample_ids:
            self.descriptions(sample_id)
        return self.loader.counts(sample_ids)

    def summary(self, split: str, sample_ids=None, max_listed: int = 10) -> str:
        """The start-up report of ``split``: one line of counts, then the invalid files.

        With ``sample_ids`` the files are read first and only those samples are counted;
        without, every sample read so far is counted. At most ``max_listed`` invalid files
        are listed (each was already reported once when it was read).
        """
        counts = self.scan(sample_ids) if sample_ids is not None else self.loader.counts()
        lines = [f"descriptions ({split}): {counts.described} of {counts.samples} samples "
                 f"have descriptions; {counts.missing} files missing, {counts.invalid} invalid, "
                 f"{counts.empty} with only empty texts; "
                 f"{counts.mean_described_frames:.1f} described frames per described sample"]
        lines += [f"  invalid: {message}" for message in counts.invalid_files[:max_listed]]
        if len(counts.invalid_files) > max_listed:
            lines.append(f"  ... and {len(counts.invalid_files) - max_listed} more invalid files")
        return "\n".join(lines)

    @property
    def invalid_files(self) -> list:
        """The messages "<path>: <reason>" of every invalid file read so far."""
        return self.loader.invalid_files
