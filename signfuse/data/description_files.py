"""Description files on disk (``docs/descriptions.md``): reading one file, and the loader
that reads a sample's file with counts and reports.

``read_description_file(path) -> (descriptions, metadata)`` accepts the three shapes (frame
map; ``{"frames": map, ...}``; ``{"segments": [...], ...}``) and raises
``SampleError("<path>: <reason>")`` on anything else. ``DescriptionLoader(description_dir,
strict=False)``: ``load(sample_id)`` reads ``<description_dir>/<sample_id>.json``. A missing
file is a sample without descriptions; an unusable file is counted, reported once, and read
as no descriptions (``strict``: it raises ``InputError``). ``counts()`` gives the tallies.
"""
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from signfuse.errors import InputError, SampleError

# A segment file may not describe more frames than this (a typo such as "end": 1e9 would
# otherwise expand into a billion dict entries). Real videos have at most ~10^5 frames.
MAX_SEGMENT_FRAMES = 1_000_000


MAX_FRAME = 2**31 - 1  # larger frame numbers cannot be real (and overflow the aligner's int64)


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

    Accepted shapes (docs/descriptions.md section 1): a frame map ``{"0": "text", ...}`` (no
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
