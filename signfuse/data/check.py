"""``signfuse check-data``: scan a dataset's files and report every problem before a run.

Training skips an unusable sample and counts it; this command finds them all up front. For
one split it reads, in order:

1. the label file: any problem with it (missing, refused pickle, wrong type ...) is one
   entry for the label file itself, and the split has no samples to check;
2. each sample's pose file through ``load_pose`` (its SampleError message is the reason and
   its ``kind`` the kind of problem, POSE_PROBLEM_KINDS; nothing is checked twice here), then
   the pose pipeline of evaluation (``sample_frames``,
   ``split_parts``, ``normalize_parts``), whose output must be finite;
3. with ``use_descriptions``, each sample's description file through ``DescriptionLoader``:
   a missing file is normal and only counted; an invalid file is reported (the sample then
   trains without descriptions, so it stays usable); described frames at or beyond the end of
   the pose file are reported as a warning; descriptions that ``TemporalAligner`` cannot
   align to the sampled frames (training would stop) make the sample unusable;
4. with ``rgb_support``, each usable sample's video (``<rgb_dir>/<video_path>``, the folder
   ``paths.rgb_dir`` finds): missing, unreadable, or fewer frames than its pose file
   (``video.check_video``; kinds VIDEO_PROBLEM_KINDS). A sample whose hands are never
   confident (mean score > 0.3) needs no video: its video is never opened, here as in training.

``check_split(...) -> CheckReport``: counts per kind of problem, the problems (name, path,
reason), the usable and unusable samples, and ``format()``. A problem is an "error" when it
makes a sample (or the whole split) unusable, else a "warning".
"""
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from signfuse.data import paths
from signfuse.data.alignment import TemporalAligner
from signfuse.data.dataset import pose_parts
from signfuse.data.description_files import DescriptionLoader
from signfuse.data.hand_crops import HANDS, hand_candidates
from signfuse.data.labels import load_labels
from signfuse.data.pose import load_pose, pose_path
from signfuse.data.sampler import sample_frames
from signfuse.data.video import check_video
from signfuse.errors import InputError, SampleError

ERROR, WARNING = "error", "warning"

# The kind of problem reported for each SampleError.kind of load_pose (errors.SAMPLE_ERROR_KINDS).
POSE_PROBLEM_KINDS = {
    "missing": "missing pose file",
    "refused": "refused pickle",
    "unreadable": "unreadable pose file",
    "empty": "unreadable pose file",
    "unpicklable": "unreadable pose file",
    "non_finite": "non-finite values",
    "range": "coordinates out of range",
    "no_frames": "no frames",
    "start_end": "bad start/end",
    "frame_count": "frame count mismatch",
    "type": "wrong shape or type",
    "shape": "wrong shape or type",
}
OTHER_POSE_PROBLEM = "unusable pose file"
PIPELINE_PROBLEM = "non-finite after normalisation"
LABEL_PROBLEM = "label file"
POSE_DIR_PROBLEM = "pose folder"
DESC_DIR_PROBLEM = "description folder"
INVALID_DESCRIPTION = "invalid description file"
FRAMES_BEYOND_POSE = "described frames beyond the pose file"
UNALIGNABLE_DESCRIPTION = "description cannot be aligned"
# The kind of problem reported for each SampleError.kind of video.check_video (--rgb_support).
VIDEO_PROBLEM_KINDS = {"missing": "missing video", "video": "unreadable video", "frame_count": "too few video frames"}
OTHER_VIDEO_PROBLEM = "unusable video"
VIDEO_DIR_PROBLEM = "video folder"


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
    video_dir: Optional[str] = None  # with rgb_support only
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
        if self.video_dir is not None:
            lines.append(f"  videos: {self.video_dir}")
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


def pose_problem_kind(error: SampleError) -> str:
    """The kind of problem of a load_pose error, from its ``kind`` (see POSE_PROBLEM_KINDS)."""
    return POSE_PROBLEM_KINDS.get(error.kind, OTHER_POSE_PROBLEM)


def split_message(message: str, path) -> str:
    """The reason of a "<path>: <reason>" message (the message itself if it does not start so)."""
    prefix = f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def check_pipeline(record, path, max_length: int) -> np.ndarray:
    """Evaluation's frames of ``record`` (original frame numbers); SampleError when they
    normalise to NaN or infinite values."""
    frames = sample_frames(record.num_frames, max_length, train=False, start=record.start)  # (T,)
    with np.errstate(all="ignore"):  # the overflow is what this check reports
        parts = pose_parts(record, frames)
    bad = {name: int(np.count_nonzero(~np.isfinite(part))) for name, part in parts.items()}
    if any(bad.values()):
        where = ", ".join(f"{n} in {name}" for name, n in bad.items() if n)
        largest = float(np.abs(record.keypoints[record.start:record.end]).max())
        raise SampleError(f"{path}: the normalised pose holds NaN or infinite values ({where}); keypoints "
                          f"reach {largest:.3g}, too large to normalise in float32 (the body box's size "
                          f"overflows)", kind="range")
    return frames


def check_pose(report, name, path, trust_pickles, max_length) -> Optional[tuple]:
    """Load ``path`` and run the pipeline; count the sample as usable or add its problem.

    Returns (frames of the pose file, sampled original frame numbers (T,), the PoseRecord),
    None when the sample is unusable.
    """
    try:
        record = load_pose(path, trust_pickles)
    except SampleError as e:
        report.add(name, path, split_message(str(e), path), pose_problem_kind(e))
        report.unusable += 1
        return None
    try:
        frames = check_pipeline(record, path, max_length)
    except SampleError as e:
        report.add(name, path, split_message(str(e), path), PIPELINE_PROBLEM)
        report.unusable += 1
        return None
    report.usable += 1
    return len(record.keypoints), frames, record


def needs_video(record) -> bool:
    """Some hand is confident in some frame of the sample: training may read its video (else never)."""
    scores = record.scores[record.start:record.end]  # (N, 133)
    return any(len(hand_candidates(scores, hand)[0]) for hand in HANDS)


def check_sample_video(report, name, record, video_folder, video_path: str) -> bool:
    """--rgb_support: the video of a sample that needs one (``needs_video``) must open and have
    at least the frames of its pose file (its problem is added to ``report``). video_folder None:
    the split's folder is missing (reported once). True when the video makes the sample unusable."""
    if not needs_video(record):
        return False
    if video_folder is None:
        return True
    video = Path(video_folder) / video_path
    try:
        check_video(video, min_frames=len(record.keypoints))
    except SampleError as e:
        report.add(name, video, split_message(str(e), video), VIDEO_PROBLEM_KINDS.get(e.kind, OTHER_VIDEO_PROBLEM))
        return True
    return False


def description_loader(report, dataset, split, data_root, desc_dir):
    """The DescriptionLoader of the split's description folder, or None (reported) when it is missing."""
    desc_folder = paths.description_dir(dataset, data_root, desc_dir)
    report.desc_dir = str(desc_folder)
    if desc_folder.is_dir():
        return DescriptionLoader(desc_folder, report=lambda message: None)
    report.add(f"{split} descriptions", desc_folder, "description folder not found: set --desc_dir "
               "to the folder that holds <dataset>/<sample_id>.json", DESC_DIR_PROBLEM)
    return None


def video_folder(report, dataset, split, data_root, rgb_dir):
    """--rgb_support: the split's video folder (``paths.rgb_dir``), or None (reported) when missing."""
    try:
        folder = paths.rgb_dir(dataset, split, data_root, rgb_dir)
    except InputError as e:
        path = report.video_dir = str(e).split(": ", 1)[0]
        report.add(f"{split} videos", path, split_message(str(e), path) + " (every sample whose hands are "
                   "confident somewhere needs its video: those are unusable)", VIDEO_DIR_PROBLEM)
        return None
    report.video_dir = str(folder)
    return folder


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
    num_frames, frames, _ = pose
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
                max_length: int = 256, rgb_support: bool = False, rgb_dir=None) -> CheckReport:
    """Scan ``dataset``/``split``: label file, pose files, with ``use_descriptions`` the
    description files (``<desc_dir or data_root/description>/<dataset>/<sample_id>.json``), with
    ``rgb_support`` the videos (``paths.rgb_dir(dataset, split, data_root, rgb_dir)``).

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

    loader = description_loader(report, dataset, split, data_root, desc_dir) if use_descriptions else None
    videos = video_folder(report, dataset, split, data_root, rgb_dir) if rgb_support else None
    for sample in labels.values():
        name, unusable = sample["name"], report.unusable
        pose = check_pose(report, name, pose_path(folder, sample["video_path"]), trust_pickles, max_length)
        if loader is not None:
            check_description(report, loader, name, Path(sample["video_path"]).stem, pose)
        if rgb_support and pose is not None and check_sample_video(report, name, pose[2], videos,
                                                                   sample["video_path"]):
            if report.unusable == unusable:  # not already counted for its description
                report.usable -= 1
                report.unusable += 1

    if loader is not None:
        counts = loader.counts()
        report.descriptions = {"described": counts.described, "missing": counts.missing,
                               "invalid": counts.invalid, "empty": counts.empty}
    return report


