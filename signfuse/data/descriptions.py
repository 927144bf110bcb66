"""Action descriptions: read them from disk, align them to the sampled frames, batch them.

The spec is ``descriptions.md`` sections 1-3. The module reads top to bottom:

1. Reading one file: ``read_description_file(path) -> (descriptions, metadata)`` accepts the
   three shapes (frame map; ``{"frames": map, ...}``; ``{"segments": [...], ...}``) and raises
   ``SampleError("<path>: <reason>")`` on anything else.
2. ``DescriptionLoader(description_dir, strict=False)``: ``load(sample_id)`` reads
   ``<description_dir>/<sample_id>.json``. A missing file is a sample without descriptions;
   an unusable file is counted, reported once, and read as no descriptions (``strict``: it
   raises ``InputError``). ``counts()`` gives the tallies.
3. ``TemporalAligner(descriptions, frame_indices, strategy, max_gap).align()`` maps the
   described original frames onto the sampled ones.
4. ``Describer``: the hook ``SignDataset`` calls (load + align, cached per sample), with the
   start-up ``summary(split)``; ``PoseDescriber``: the same hook for ``--describe rules``,
   the descriptions made from each sample's pose by the rules describer (no file).
5. ``collate_descriptions``: the batch's distinct texts, and per frame two indices into them
   and two weights.
6. ``describe_stats`` / ``format_describe_stats`` / ``describe_stats_command``: the
   ``signfuse describe-stats`` command.

Frame numbers are always ORIGINAL frame numbers: description keys count from the first frame
of the pose file (not from its ``start``), and the sampler's frame numbers include ``start``.
"""
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from signfuse.config import ALIGNMENTS, TINY_MT5
from signfuse.data.labels import load_labels
from signfuse.data.paths import label_path
from signfuse.errors import InputError, SampleError

# A segment file may not describe more frames than this (a typo such as "end": 1e9 would
# otherwise expand into a billion dict entries). Real videos have at most ~10^5 frames.
MAX_SEGMENT_FRAMES = 1_000_000
MAX_FRAME = 2**31 - 1  # larger frame numbers cannot be real (and overflow the aligner's int64)


# ---------------------------------------------------------------------------------------
# 1. Reading one description file
# ---------------------------------------------------------------------------------------

def _json_kind(value) -> str:
    """The JSON name of a decoded value's type, with its article ("an array", "a number")."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return "null"


def _read_json(path: Path):
    """Read ``path`` as UTF-8 JSON (a leading BOM is allowed); return the decoded value.

    Raises SampleError("<path>: <reason>") when the file is missing, unreadable, not UTF-8,
    or not JSON.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SampleError(f"{path}: file not found", kind="missing") from None
    except OSError as err:
        raise SampleError(f"{path}: cannot read the file ({err.strerror})", kind="unreadable") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        bad = raw[err.start]
        raise SampleError(
            f"{path}: not UTF-8 text (byte 0x{bad:02x} at offset {err.start})", kind="description") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise SampleError(
            f"{path}: invalid JSON ({err.msg} at line {err.lineno} column {err.colno})", kind="description") from None
    except RecursionError:
        raise SampleError(f"{path}: invalid JSON (nested too deeply)", kind="description") from None


def _usable_text(text: str) -> Optional[str]:
    """A description text with surrounding whitespace removed; None when nothing is left."""
    text = text.strip()
    return text or None


def _parse_frame_map(path: Path, mapping: dict) -> dict:
    """Read a frame map ``{"<frame>": "<text>"}``; return ``{frame: text}`` without empty texts.

    Keys must be non-negative integers written in decimal digits ("003" is frame 3; two keys
    naming the same frame are an error); texts must be strings.
    """
    descriptions: dict[int, str] = {}
    key_of_frame: dict[int, str] = {}
    for key, text in mapping.items():
        if not (key.isascii() and key.isdigit()):
            raise SampleError(f"{path}: frame key {key!r} is not a non-negative integer", kind="description")
        frame = int(key)
        if frame > MAX_FRAME:
            raise SampleError(f"{path}: frame key {key!r} is beyond the largest frame number {MAX_FRAME}",
                              kind="description")
        if frame in key_of_frame:
            raise SampleError(
                f"{path}: frame keys {key_of_frame[frame]!r} and {key!r} name the same frame", kind="description")
        key_of_frame[frame] = key
        if not isinstance(text, str):
            raise SampleError(
                f"{path}: text of frame {key!r} is {_json_kind(text)}, expected a string", kind="description")
        usable = _usable_text(text)
        if usable is not None:
            descriptions[frame] = usable
    return descriptions


def _segment_bound(path: Path, number: int, segment: dict, name: str) -> int:
    """The ``start`` or ``end`` of segment ``number``: a non-negative integer, else SampleError."""
    if name not in segment:
        raise SampleError(f"{path}: segment {number} has no {name!r}", kind="description")
    value = segment[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SampleError(f"{path}: segment {number}: {name!r} must be a non-negative "
                          f"integer, got {json.dumps(value)}", kind="description")
    if value > MAX_FRAME:
        raise SampleError(f"{path}: segment {number}: {name!r} is beyond the largest frame number {MAX_FRAME}",
                          kind="description")
    return value


def _parse_segments(path: Path, segments) -> dict:
    """Expand ``[{"start", "end", "text"}, ...]`` into ``{frame: text}`` for start <= f < end.

    Segments with an empty text are ignored. Overlapping segments may repeat a text but not
    contradict it (that is an error naming both segments).
    """
    if not isinstance(segments, list):
        raise SampleError(f"{path}: 'segments' is {_json_kind(segments)}, expected an array", kind="description")
    parsed = []
    for number, segment in enumerate(segments):
        if not isinstance(segment, dict):
            raise SampleError(
                f"{path}: segment {number} is {_json_kind(segment)}, expected an object", kind="description")
        start = _segment_bound(path, number, segment, "start")
        end = _segment_bound(path, number, segment, "end")
        if end <= start:
            raise SampleError(
                f"{path}: segment {number}: end ({end}) must be greater than start ({start})", kind="description")
        if "text" not in segment:
            raise SampleError(f"{path}: segment {number} has no 'text'", kind="description")
        if not isinstance(segment["text"], str):
            raise SampleError(f"{path}: segment {number}: 'text' is "
                              f"{_json_kind(segment['text'])}, expected a string", kind="description")
        parsed.append((number, start, end, _usable_text(segment["text"])))
    covered = sum(end - start for _, start, end, text in parsed if text is not None)
    if covered > MAX_SEGMENT_FRAMES:
        raise SampleError(
            f"{path}: segments cover {covered} frames (at most {MAX_SEGMENT_FRAMES})", kind="description")
    descriptions: dict[int, str] = {}
    segment_of_frame: dict[int, int] = {}
    for number, start, end, text in parsed:
        if text is None:
            continue
        for frame in range(start, end):
            if frame in descriptions and descriptions[frame] != text:
                raise SampleError(f"{path}: segments {segment_of_frame[frame]} and {number} "
                                  f"overlap at frame {frame} with different texts", kind="description")
            descriptions[frame] = text
            segment_of_frame.setdefault(frame, number)
    return descriptions


def read_description_file(path) -> tuple[dict, dict]:
    """Read one description file; return ``(descriptions {frame: text}, metadata dict)``.

    Accepted shapes (descriptions.md section 1): a frame map ``{"0": "text", ...}`` (no
    metadata); ``{"frames": {frame map}, ...}``; ``{"segments": [{"start", "end", "text"}],
    ...}``; in the last two every other top-level key is metadata. Texts are stripped of
    surrounding whitespace and empty ones are dropped. Raises SampleError("<path>: <reason>")
    when the file is missing or unusable.
    """
    path = Path(path)
    content = _read_json(path)
    if not isinstance(content, dict):
        raise SampleError(f"{path}: top level is {_json_kind(content)}, expected a JSON object", kind="description")
    if "frames" in content and "segments" in content:
        raise SampleError(f"{path}: has both 'frames' and 'segments' (use one of them)", kind="description")
    if "frames" in content:
        frames = content["frames"]
        if not isinstance(frames, dict):
            raise SampleError(f"{path}: 'frames' is {_json_kind(frames)}, expected an object", kind="description")
        metadata = {k: v for k, v in content.items() if k != "frames"}
        return _parse_frame_map(path, frames), metadata
    if "segments" in content:
        metadata = {k: v for k, v in content.items() if k != "segments"}
        return _parse_segments(path, content["segments"]), metadata
    return _parse_frame_map(path, content), {}


# ---------------------------------------------------------------------------------------
# 2. Loading a sample's descriptions, with counts and reports
# ---------------------------------------------------------------------------------------

DESCRIBED, EMPTY, MISSING, INVALID = "described", "empty", "missing", "invalid"


@dataclass
class FileOutcome:
    """What loading one sample's description file gave.

    ``status``: "described" (at least one text), "empty" (a valid file whose texts are all
    empty), "missing" (no file) or "invalid"; ``frames``: number of described frames;
    ``message``: "<path>: <reason>" for an invalid file.
    """
    status: str
    frames: int = 0
    message: Optional[str] = None


@dataclass
class DescriptionCounts:
    """Tallies over distinct samples: how many had descriptions, no file, a bad file, ..."""
    samples: int = 0
    described: int = 0
    missing: int = 0
    invalid: int = 0
    empty: int = 0
    described_frames: int = 0
    frames_per_sample: list = field(default_factory=list)  # one entry per described sample
    invalid_files: list = field(default_factory=list)      # "<path>: <reason>"

    @property
    def mean_described_frames(self) -> float:
        """Mean number of described frames over the samples that have descriptions (0 if none)."""
        return self.described_frames / self.described if self.described else 0.0


def _log_warning(message: str) -> None:
    """The default reporter: one logging warning."""
    logging.getLogger(__name__).warning("%s", message)


class DescriptionLoader:
    """Reads ``<description_dir>/<sample_id>.json`` files and keeps count of what it found.

    ``load(sample_id) -> (descriptions {int: str}, metadata dict)``. A missing file gives
    ``({}, {})`` and is counted as missing (normal, not an error). An unusable file gives
    ``({}, {})``, is counted as invalid and its message "<path>: <reason>" is passed to
    ``report`` (default: a logging warning) the first time only; with ``strict=True`` it
    raises InputError with that message instead. A valid file whose texts are all empty is
    counted as "empty": a sample without descriptions, not an invalid file.
    Counts are over distinct sample ids (loading a sample again does not count it twice).
    """

    def __init__(self, description_dir, strict: bool = False,
                 report: Optional[Callable[[str], None]] = None):
        self.description_dir = Path(description_dir)
        self.strict = strict
        self.report = report if report is not None else _log_warning
        self.outcomes: dict[str, FileOutcome] = {}

    def path_for(self, sample_id: str) -> Path:
        """The description file of ``sample_id``."""
        return self.description_dir / f"{sample_id}.json"

    def load(self, sample_id: str) -> tuple[dict, dict]:
        """Read the descriptions of ``sample_id``; return ``(descriptions, metadata)``."""
        path = self.path_for(sample_id)
        if not path.exists():
            self.outcomes[sample_id] = FileOutcome(MISSING)
            return {}, {}
        try:
            descriptions, metadata = read_description_file(path)
        except SampleError as err:
            self._record_invalid(sample_id, str(err))
            if self.strict:
                raise InputError(str(err)) from None
            return {}, {}
        status = DESCRIBED if descriptions else EMPTY
        self.outcomes[sample_id] = FileOutcome(status, frames=len(descriptions))
        return descriptions, metadata

    def _record_invalid(self, sample_id: str, message: str) -> None:
        """Count an invalid file; report its message unless it was already reported."""
        previous = self.outcomes.get(sample_id)
        self.outcomes[sample_id] = FileOutcome(INVALID, message=message)
        if previous is None or previous.message != message:
            self.report(message)

    def counts(self, sample_ids=None) -> DescriptionCounts:
        """Tallies over the loaded samples (or over those of ``sample_ids`` already loaded)."""
        ids = self.outcomes if sample_ids is None else [s for s in dict.fromkeys(sample_ids)
                                                        if s in self.outcomes]
        counts = DescriptionCounts()
        for sample_id in ids:
            outcome = self.outcomes[sample_id]
            counts.samples += 1
            setattr(counts, outcome.status, getattr(counts, outcome.status) + 1)
            if outcome.status == DESCRIBED:
                counts.described_frames += outcome.frames
                counts.frames_per_sample.append(outcome.frames)
            if outcome.status == INVALID:
                counts.invalid_files.append(outcome.message)
        return counts

    @property
    def invalid_files(self) -> list:
        """The messages "<path>: <reason>" of every invalid file seen so far."""
        return self.counts().invalid_files


# ---------------------------------------------------------------------------------------
# 3. Temporal alignment
# ---------------------------------------------------------------------------------------

def check_alignment_options(strategy: str, max_gap) -> None:
    """Raise InputError naming the flag when ``strategy`` or ``max_gap`` is not usable."""
    if strategy not in ALIGNMENTS:
        raise InputError(f"--desc_alignment: unknown strategy {strategy!r} "
                         f"(choose from {', '.join(ALIGNMENTS)})")
    if max_gap is not None and (isinstance(max_gap, bool) or not isinstance(max_gap, int)
                                or max_gap < 0):
        raise InputError(f"--max_gap: must be a non-negative number of frames, got {max_gap!r}")


class TemporalAligner:
    """Maps described original frames onto sampled original frames (descriptions.md section 2).

    ``align() -> (aligned, has_description)``: for each sampled frame, ``aligned[i]`` is
    ``[]`` (nothing), ``[(text, 1.0)]`` (exact, nearest, or an interpolation between two equal
    texts) or ``[(text_L, w_L), (text_R, w_R)]`` (interpolation, L first, weights summing to
    1); ``has_description[i]`` is 1 when frame i itself is described, else 0.

    Strategies: ``interpolate`` (exact; else interpolate between L and R; else the one
    neighbour), ``nearest`` (exact; else the nearer of L and R, ties to L), ``exact`` (only
    described frames). ``max_gap`` (frames, default no limit) limits every nearest-neighbour
    choice: the neighbour must be at most ``max_gap`` frames away. It does not limit
    interpolation between two existing neighbours (the spec ties it to the one-sided case).
    Empty or whitespace-only texts count as not described.
    """

    def __init__(self, descriptions: dict, frame_indices, strategy: str = "interpolate",
                 max_gap: Optional[int] = None):
        check_alignment_options(strategy, max_gap)
        items = sorted((int(frame), text) for frame, text in descriptions.items()
                       if isinstance(text, str) and text.strip())
        self.described = np.array([frame for frame, _ in items], dtype=np.int64)
        self.texts = [text for _, text in items]
        self.frame_indices = np.asarray(frame_indices, dtype=np.int64).reshape(-1)
        self.strategy = strategy
        self.max_gap = max_gap

    def align(self) -> tuple[list, list]:
        """Return ``(aligned, has_description)`` for the sampled frames, in their order."""
        count = len(self.frame_indices)
        if len(self.described) == 0:
            return [[] for _ in range(count)], [0] * count
        frames, described = self.frame_indices, self.described
        # right: index of the first described frame >= f (len(described) when none).
        right = np.searchsorted(described, frames, side="left")
        clipped = np.minimum(right, len(described) - 1)
        exact = (right < len(described)) & (described[clipped] == frames)
        left = right - 1  # index of the last described frame < f (-1 when none)
        aligned, has_description = [], []
        for i, f in enumerate(frames.tolist()):
            if exact[i]:
                aligned.append([(self.texts[right[i]], 1.0)])
                has_description.append(1)
                continue
            has_description.append(0)
            aligned.append(self._between(f, int(left[i]), int(right[i])))
        return aligned, has_description

    def _between(self, f: int, left: int, right: int) -> list:
        """The pairs of a frame ``f`` that is not described, given its neighbours' indices."""
        has_left, has_right = left >= 0, right < len(self.described)
        if self.strategy == "exact" or not (has_left or has_right):
            return []
        if self.strategy == "interpolate" and has_left and has_right:
            return self._interpolate(f, left, right)
        if has_left and has_right:
            nearer = left if f - self.described[left] <= self.described[right] - f else right
        else:
            nearer = left if has_left else right
        gap = abs(int(self.described[nearer]) - f)
        if self.max_gap is not None and gap > self.max_gap:
            return []
        return [(self.texts[nearer], 1.0)]

    def _interpolate(self, f: int, left: int, right: int) -> list:
        """Linear interpolation: (R - f)/(R - L) on L's text, (f - L)/(R - L) on R's text."""
        text_l, text_r = self.texts[left], self.texts[right]
        if text_l == text_r:
            return [(text_l, 1.0)]
        frame_l, frame_r = int(self.described[left]), int(self.described[right])
        span = frame_r - frame_l
        return [(text_l, (frame_r - f) / span), (text_r, (f - frame_l) / span)]


# ---------------------------------------------------------------------------------------
# 4. The dataset hook
# ---------------------------------------------------------------------------------------

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


class PoseDescriber:
    """The dataset hook of ``--describe rules``: descriptions made from each sample's pose.

    ``describe(sample_id, frame_indices, pose) -> (aligned, has_description float32 (T,))``,
    like ``Describer``, but the texts come from ``signfuse.describe.rules.RulesDescriber`` run
    on ``pose`` (the sample's ``PoseRecord``; ``SignDataset`` passes it because
    ``needs_pose`` is True) instead of a file. The texts are those ``signfuse describe``
    writes with the same settings, byte for byte, and they cover every frame of the sample.
    Each sample's segments are computed once and cached (per process).
    ``settings``: ``signfuse.describe.rules.rules_settings(...)``'s dict (what a checkpoint
    records); ``warn``: called once when the settings come from another rules version.
    ``pose_files`` ({sample_id: pose file}, or ``set_pose_files``) lets ``descriptions(sample_id)``
    load a pose itself (e.g. to encode every text up front); a pose file that cannot be used
    then gives no descriptions (the sample is skipped where it is loaded).
    """
    needs_pose = True

    def __init__(self, settings: dict, strategy: str = "interpolate", max_gap: Optional[int] = None,
                 warn: Optional[Callable[[str], None]] = None, pose_files: Optional[dict] = None,
                 trust_pickles: bool = False):
        from signfuse.describe.rules import rules_describer_from_settings
        check_alignment_options(strategy, max_gap)
        self.rules = rules_describer_from_settings(settings, warn=warn)
        self.settings = dict(self.rules.settings)
        self.strategy = strategy
        self.max_gap = max_gap
        self._cache: dict[str, list] = {}
        self._texts: dict[str, str] = {}  # one string object per distinct text
        self.set_pose_files(pose_files or {}, trust_pickles)

    def set_pose_files(self, pose_files: dict, trust_pickles: bool = False) -> None:
        """Where ``descriptions(sample_id)`` finds a pose not given to it: {sample_id: path}."""
        self.pose_files, self.trust_pickles = dict(pose_files), trust_pickles

    def segments(self, sample_id: str, pose=None) -> list:
        """``[(start, end, text)]`` of ``sample_id``, computed once from ``pose`` (or from its file
        in ``pose_files``: SampleError when that cannot be used)."""
        if sample_id not in self._cache:
            if pose is None:
                from signfuse.data.pose import load_pose
                if sample_id not in self.pose_files:
                    raise ValueError(f"PoseDescriber: the pose of {sample_id!r} is needed (no pose file known)")
                pose = load_pose(self.pose_files[sample_id], self.trust_pickles)
            self._cache[sample_id] = [(s["start"], s["end"], self._texts.setdefault(s["text"], s["text"]))
                                      for s in self.rules.describe_pose(pose)]
        return self._cache[sample_id]

    def descriptions(self, sample_id: str, pose=None) -> dict:
        """``{frame: text}`` of ``sample_id`` (every frame of the sample); ``{}`` when its pose
        file (from ``pose_files``) cannot be used."""
        try:
            segments = self.segments(sample_id, pose)
        except SampleError:
            return {}
        return {f: text for start, end, text in segments for f in range(start, end)}

    def describe(self, sample_id: str, frame_indices, pose=None) -> tuple[list, np.ndarray]:
        """Align the descriptions made from ``pose`` to ``frame_indices`` (original frame numbers)."""
        if pose is None and sample_id not in self._cache and sample_id not in self.pose_files:
            raise ValueError(f"PoseDescriber.describe({sample_id!r}): the sample's pose is needed")
        aligner = TemporalAligner(self.descriptions(sample_id, pose), frame_indices,
                                  strategy=self.strategy, max_gap=self.max_gap)
        aligned, has_description = aligner.align()
        return aligned, np.asarray(has_description, dtype=np.float32)

    def summary(self, split: str, sample_ids=None, max_listed: int = 10) -> str:
        """The start-up line: where the descriptions come from (no file is read)."""
        s = self.settings
        return (f"descriptions ({split}): made from each pose file by the rules describer (version "
                f"{s['version']}, language {s['language']}, frame size {s['frame_size'][0]}x{s['frame_size'][1]}, "
                f"{s['fps']:g} fps, at most {s['max_tokens']} units per text)")

    @property
    def invalid_files(self) -> list:
        return []


# ---------------------------------------------------------------------------------------
# 5. Batching
# ---------------------------------------------------------------------------------------

def collate_descriptions(aligned_per_sample: list, T: int):
    """Batch the aligned descriptions of B samples padded to T frames.

    Reads, per sample, the list over its frames of ``(text, weight)`` pairs (at most two;
    ``None`` or ``[]`` for a sample without descriptions). Returns
    ``(desc_texts, desc_index (B, T, 2) int64, desc_weight (B, T, 2) float32)``: the distinct
    texts of the batch in order of first appearance, and per frame the indices of its texts
    in that list with their weights; unused slots and frames beyond a sample's length hold
    index -1 and weight 0.
    """
    batch = len(aligned_per_sample)
    index = np.full((batch, T, 2), -1, dtype=np.int64)
    weight = np.zeros((batch, T, 2), dtype=np.float32)
    position: dict[str, int] = {}
    for b, aligned in enumerate(aligned_per_sample):
        aligned = aligned or []
        if len(aligned) > T:
            raise ValueError(f"collate_descriptions: sample {b} has {len(aligned)} frames, "
                             f"more than T={T}")
        for t, pairs in enumerate(aligned):
            if len(pairs) > 2:
                raise ValueError(f"collate_descriptions: sample {b} frame {t} has "
                                 f"{len(pairs)} texts, at most 2 allowed")
            for k, (text, w) in enumerate(pairs):
                index[b, t, k] = position.setdefault(text, len(position))
                weight[b, t, k] = w
    return list(position), torch.from_numpy(index), torch.from_numpy(weight)


# ---------------------------------------------------------------------------------------
# 6. signfuse describe-stats
# ---------------------------------------------------------------------------------------

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


def load_tokenizer(path: str):
    """The tokenizer of a local Hugging Face directory, or of the tiny assets for "tiny"."""
    from transformers import AutoTokenizer  # heavy: only when text length is asked in tokens
    from signfuse.models.mt5 import tiny_mt5_dir
    directory = tiny_mt5_dir() if path == TINY_MT5 else Path(path)
    try:
        return AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: cannot load a tokenizer from this directory ({err})") from None


def describe_stats_command(args) -> str:
    """``signfuse describe-stats``: the report for ``args`` (desc_dir, dataset, split, ...).

    With ``--split`` the samples are those of the split's label file (their video_path
    stems; files missing for them are counted); without, every ``*.json`` of
    ``<desc_dir>/<dataset>/``. With ``--mt5_model`` text lengths are counted in its tokens.
    """
    sample_ids = None
    if args.split is not None:
        labels = load_labels(label_path(args.dataset, args.split,
                                        data_root=getattr(args, "data_root", "."),
                                        label_dir=getattr(args, "label_dir", None)),
                             trust_pickles=getattr(args, "trust_pickles", False))
        sample_ids = [Path(sample["video_path"]).stem for sample in labels.values()]
    mt5_model = getattr(args, "mt5_model", None)
    tokenizer = load_tokenizer(mt5_model) if mt5_model else None
    from signfuse.data.paths import description_dir  # --desc_dir: the root, default <data_root>/description
    desc_root = description_dir(args.dataset, getattr(args, "data_root", "."), args.desc_dir).parent
    stats = describe_stats(desc_root, args.dataset, sample_ids, tokenizer)
    scope = f"split {args.split}" if args.split is not None else "every file"
    return f"dataset: {args.dataset} ({scope})\n" + format_describe_stats(stats)
