"""``signfuse check-data``: scan a dataset's files and report every problem before a run.

Training skips an unusable sample and counts it; this command finds them all up front. For
one split it reads, in order:

1. the label file: any problem with it (missing, refused pickle, wrong type ...) is one
   entry for the label file itself, and the split has no samples to check;
2. each sample's pose file through ``load_pose`` (its SampleError message is the reason,
   nothing is checked twice here), then the pose pipeline of evaluation (``sample_frames``,
   ``split_parts``, ``normalize_parts``), whose output must be finite;
3. with ``use_descriptions``, each sample's description file through ``DescriptionLoader``:
   a missing file is normal and only counted; an invalid file is reported (the sample then
   trains without descriptions, so it stays usable); described frames at or beyond the end of
   the pose file are reported as a warning; descriptions that ``TemporalAligner`` cannot
   align to the sampled frames (training would stop) make the sample unusable.

``check_split(...) -> CheckReport``: counts per kind of problem, the problems (name, path,
reason), the usable and unusable samples, and ``format()``. A problem is an "error" when it
makes a sample (or the whole split) unusable, else a "warning".
"""
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from signfuse.config import DATASETS
from signfuse.data import paths
from signfuse.data.descriptions import DescriptionLoader, TemporalAligner
from signfuse.data.labels import load_labels
from signfuse.data.pose import load_pose, pose_path
from signfuse.data.sampler import sample_frames
from signfuse.data.transforms import normalize_parts, split_parts
from signfuse.errors import InputError, SampleError

ERROR, WARNING = "error", "warning"

# Kinds of pose-file problems, told apart by words of load_pose's messages (first match).
POSE_PROBLEM_KINDS = (
    ("missing pose file", ("file not found", "is a directory")),
    ("refused pickle", ("refused to unpickle",)),
    ("unreadable pose file", ("truncated", "not a readable pickle", "corrupt", "empty file", "cannot read")),
    ("non-finite values", ("NaN or infinite",)),
    ("coordinates out of range", ("too large to normalise",)),
    ("no frames", ("zero frames",)),
    ("bad start/end", ("start/end", "'start' is", "'end' is")),
    ("frame count mismatch", ("frames of keypoints but",)),
    ("wrong shape or type", ("shape", "wrong type", "expected a sequence", "not an array", "no 'keypoints'",
                             "no 'scores'")),
)
OTHER_POSE_PROBLEM = "unusable pose file"
PIPELINE_PROBLEM = "non-finite after normalisation"
LABEL_PROBLEM = "label file"
POSE_DIR_PROBLEM = "pose folder"
DESC_DIR_PROBLEM = "description folder"
INVALID_DESCRIPTION = "invalid description file"
FRAMES_BEYOND_POSE = "described frames beyond the pose file"
UNALIGNABLE_DESCRIPTION = "description cannot be aligned"


@dataclass(frozen=True)
class Problem:
    """One thing wrong: ``name`` (sample, or the split's file), ``path``, ``reason``."""
    name: str
    path: str
    reason: str
    kind: str
    severity: str = ERROR


@dataclass
class CheckReport:
    """What ``check_split`` found in one split."""
    dataset: str
    split: str
    label_path: Optional[str] = None
    pose_dir: Optional[str] = None
    desc_dir: Optional[str] = None  # with descriptions only
    samples: int = 0
    usable: int = 0
    unusable: int = 0
    problems: list = field(default_factory=list)  # [Problem]
    descriptions: Optional[dict] = None  # described / missing / invalid / empty sample counts

    def add(self, name, path, reason, kind, severity=ERROR) -> None:
        self.problems.append(Problem(str(name), str(path), reason, kind, severity))

    @property
    def counts(self) -> dict:
        """Kind of problem -> number of problems of that kind."""
        return dict(Counter(problem.kind for problem in self.problems))

    @property
    def entries(self) -> list:
        """(name, path, reason) of every problem, in the order found."""
        return [(p.name, p.path, p.reason) for p in self.problems]

    @property
    def ok(self) -> bool:
        """True when every sample can be used (warnings allowed)."""
        return not any(problem.severity == ERROR for problem in self.problems)

    def format(self) -> str:
        """The report as text: the files, the sample counts, problems by kind, then each problem."""
        lines = [f"{self.dataset} {self.split}: {self.samples} samples, {self.usable} usable, "
                 f"{self.unusable} unusable",
                 f"  labels: {self.label_path}", f"  poses: {self.pose_dir}"]
        if self.descriptions is not None:
            d = self.descriptions
            lines += [f"  descriptions: {self.desc_dir}",
                      f"  descriptions: {d['described']} of {self.samples} samples described; "
                      f"{d['missing']} description files missing, {d['invalid']} invalid, "
                      f"{d['empty']} with only empty texts"]
        if self.problems:
            lines.append("  problems by kind: " + ", ".join(f"{kind} {n}" for kind, n in self.counts.items()))
        for severity in (ERROR, WARNING):
            for p in (p for p in self.problems if p.severity == severity):
                lines.append(f"  {severity}: {p.name}: {p.path}: {p.reason}")
        return "\n".join(lines)


def pose_problem_kind(reason: str) -> str:
    """The kind of a load_pose message's reason (see POSE_PROBLEM_KINDS)."""
    for kind, words in POSE_PROBLEM_KINDS:
        if any(word in reason for word in words):
            return kind
    return OTHER_POSE_PROBLEM


def split_message(message: str, path) -> str:
    """The reason of a "<path>: <reason>" message (the message itself if it does not start so)."""
    prefix = f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def check_pipeline(record, path, max_length: int) -> np.ndarray:
    """Evaluation's frames of ``record`` (original frame numbers); SampleError when they
    normalise to NaN or infinite values."""
    frames = sample_frames(record.num_frames, max_length, train=False, start=record.start)  # (T,)
    with np.errstate(all="ignore"):  # the overflow is what this check reports
        parts = normalize_parts(split_parts(record.keypoints[frames], record.scores[frames]))
    bad = {name: int(np.count_nonzero(~np.isfinite(part))) for name, part in parts.items()}
    if any(bad.values()):
        where = ", ".join(f"{n} in {name}" for name, n in bad.items() if n)
        largest = float(np.abs(record.keypoints[record.start:record.end]).max())
        raise SampleError(f"{path}: the normalised pose holds NaN or infinite values ({where}); keypoints "
                          f"reach {largest:.3g}, too large to normalise in float32 (the body box's size "
                          f"overflows)")
    return frames


def check_pose(report, name, path, trust_pickles, max_length) -> Optional[tuple]:
    """Load ``path`` and run the pipeline; count the sample as usable or add its problem.

    Returns (frames of the pose file, sampled original frame numbers (T,)), None when the
    sample is unusable.
    """
    try:
        record = load_pose(path, trust_pickles)
    except SampleError as e:
        reason = split_message(str(e), path)
        report.add(name, path, reason, pose_problem_kind(reason))
        report.unusable += 1
        return None
    try:
        frames = check_pipeline(record, path, max_length)
    except SampleError as e:
        report.add(name, path, split_message(str(e), path), PIPELINE_PROBLEM)
        report.unusable += 1
        return None
    report.usable += 1
    return len(record.keypoints), frames


def check_description(report, loader, name, sample_id, pose) -> None:
    """Read ``sample_id``'s description file and align it; add its problems to ``report``.

    pose: ``check_pose``'s (frames of the pose file, sampled frames), None when the sample
    is unusable (then only the file itself is checked).
    """
    descriptions, _ = loader.load(sample_id)
    outcome = loader.outcomes[sample_id]
    path = loader.path_for(sample_id)
    if outcome.message is not None:
        report.add(name, path, split_message(outcome.message, path), INVALID_DESCRIPTION, WARNING)
    if pose is None or not descriptions:
        return
    num_frames, frames = pose
    beyond = sorted(frame for frame in descriptions if frame >= num_frames)
    if beyond:
        listed = ", ".join(map(str, beyond[:5])) + (f" ... ({len(beyond)} in all)" if len(beyond) > 5 else "")
        verb = "frame {} is" if len(beyond) == 1 else "frames {} are"
        report.add(name, path, f"described {verb.format(listed)} at or beyond the end of the pose file, which "
                               f"has {num_frames} frames (0 to {num_frames - 1}): no sampled frame can be one of "
                               f"them (a description of another video, or frames counted from another origin?)",
                   FRAMES_BEYOND_POSE, WARNING)
    try:  # what training does with the file; any failure here would stop a run
        TemporalAligner(descriptions, frames).align()
    except Exception as e:  # noqa: BLE001 - reported, whatever it is
        report.add(name, path, f"the descriptions cannot be aligned to the sampled frames "
                               f"({type(e).__name__}: {e}); training with descriptions would stop here",
                   UNALIGNABLE_DESCRIPTION)
        report.usable -= 1
        report.unusable += 1


def check_split(dataset: str, split: str, data_root=".", label_dir=None, pose_dir=None, desc_dir=None,
                use_descriptions: bool = False, trust_pickles: bool = False,
                max_length: int = 256) -> CheckReport:
    """Scan ``dataset``/``split``: label file, pose files, and with ``use_descriptions`` the
    description files (``<desc_dir or data_root/description>/<dataset>/<sample_id>.json``).

    Raises InputError only for an unknown dataset or split, or max_length < 1; every problem
    of the files is in the report.
    """
    paths.check_split(dataset, split)
    if max_length < 1:
        raise InputError(f"--max_length {max_length}: must be at least 1")
    report = CheckReport(dataset, split)
    try:
        labels_file = paths.label_path(dataset, split, data_root, label_dir)
        report.label_path = str(labels_file)
        labels = load_labels(labels_file, trust_pickles)
    except InputError as e:
        path = report.label_path = report.label_path or str(e).split(": ", 1)[0]
        report.add(Path(path).name, path, split_message(str(e), path), LABEL_PROBLEM)
        return report
    report.samples = len(labels)

    try:
        folder = paths.pose_dir(dataset, split, data_root, pose_dir)
        report.pose_dir = str(folder)
    except InputError as e:
        path = report.pose_dir = str(e).split(": ", 1)[0]
        report.add(f"{split} poses", path, split_message(str(e), path), POSE_DIR_PROBLEM)
        report.unusable = len(labels)
        return report

    loader = None
    if use_descriptions:
        desc_folder = Path(desc_dir if desc_dir is not None else Path(data_root) / "description") / dataset
        report.desc_dir = str(desc_folder)
        if desc_folder.is_dir():
            loader = DescriptionLoader(desc_folder, report=lambda message: None)
        else:
            report.add(f"{split} descriptions", desc_folder, "description folder not found: set --desc_dir "
                       "to the folder that holds <dataset>/<sample_id>.json", DESC_DIR_PROBLEM)

    for sample in labels.values():
        name = sample["name"]
        pose = check_pose(report, name, pose_path(folder, sample["video_path"]), trust_pickles, max_length)
        if loader is not None:
            check_description(report, loader, name, Path(sample["video_path"]).stem, pose)

    if loader is not None:
        counts = loader.counts()
        report.descriptions = {"described": counts.described, "missing": counts.missing,
                               "invalid": counts.invalid, "empty": counts.empty}
    return report


def cmd_check_data(args) -> None:
    """Print the report of each split; exit status 1 when a sample (or a split) is unusable."""
    splits = [args.split] if args.split is not None else list(paths.splits(args.dataset))
    reports = [check_split(args.dataset, split, args.data_root, args.label_dir, args.pose_dir,
                           args.desc_dir, args.use_descriptions, args.trust_pickles, args.max_length)
               for split in splits]
    for report in reports:
        print(report.format())
    usable, unusable = sum(r.usable for r in reports), sum(r.unusable for r in reports)
    failed = [r.split for r in reports if not r.ok]
    verdict = f"splits with problems: {', '.join(failed)}" if failed else "every sample is usable"
    print(f"check-data {args.dataset}: {usable} usable, {unusable} unusable samples; {verdict}")
    if failed:
        raise SystemExit(1)


def register(sub) -> None:
    sp = sub.add_parser("check-data", help="scan a dataset's label, pose and description files and "
                                           "report every problem (exit status 1 if a sample is unusable)")
    sp.add_argument("--dataset", required=True, choices=DATASETS)
    sp.add_argument("--split", default=None, help="one split (default: every split of the dataset)")
    sp.add_argument("--data_root", default=".", help="root of Uni-Sign's layout")
    sp.add_argument("--label_dir", default=None, help="folder of labels.<split> (overrides --data_root)")
    sp.add_argument("--pose_dir", default=None, help="folder of the pose .pkl files (overrides --data_root)")
    sp.add_argument("--desc_dir", default=None, help="folder with one sub-folder of description files per "
                                                     "dataset (default: <data_root>/description)")
    sp.add_argument("--use_descriptions", action="store_true", help="also check the description files")
    sp.add_argument("--trust_pickles", action="store_true",
                    help="load pickles with the unrestricted unpickler (only for files you trust)")
    sp.add_argument("--max_length", type=int, default=256, help="frames sampled per video at most")
    sp.set_defaults(func=cmd_check_data)
