"""``signfuse describe``: write the action descriptions of a dataset's videos.

For each sample of the dataset (every split, or ``--split``), in Uni-Sign's layout
(``signfuse.data.paths``), it reads the pose file and writes
``<desc_dir>/<dataset>/<sample_id>.json`` (``sample_id``: the stem of the sample's
``video_path``) in the segments form of docs/descriptions.md: top-level ``generator`` (name,
version, every parameter) and ``pose_sha256`` (of the pose file's bytes), then
``segments``, one per line, covering every frame of the sample ([start, end) of the pose
file, the whole file when it has no start/end) in original frame numbers.

- Files are written atomically (a temporary file in the same folder, then a rename).
- A file whose ``generator`` and ``pose_sha256`` equal what would be written is up to date
  and skipped; ``--overwrite`` rewrites it anyway.
- ``--workers N`` processes describe the samples; the files do not depend on N.
- A pose file that cannot be used (SampleError) is skipped, counted and named in the summary,
  as in training; the other samples are written.
"""
import hashlib
import json
import multiprocessing
import os
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from signfuse.data import paths
from signfuse.data.labels import load_labels
from signfuse.data.news import NewsLabels
from signfuse.data.pose import load_pose, pose_path
from signfuse.describe.rules import RulesDescriber, rules_settings
from signfuse.errors import InputError, SampleError

WRITTEN, UP_TO_DATE, SKIPPED = "written", "up to date", "skipped"


@dataclass
class DescribeSummary:
    """What one ``signfuse describe`` run did."""
    out_dir: str
    generator: dict
    samples: int = 0
    written: int = 0
    up_to_date: int = 0
    skipped: list = field(default_factory=list)      # "<sample_id>: <path>: <reason>"
    duplicates: list = field(default_factory=list)   # sample ids named by more than one label entry

    def format(self) -> str:
        lines = [f"describe: {self.samples} samples -> {self.out_dir}: {self.written} written, "
                 f"{self.up_to_date} up to date, {len(self.skipped)} skipped (unusable pose file)"]
        lines += [f"  skipped: {message}" for message in self.skipped]
        if self.duplicates:
            lines.append(f"  {len(self.duplicates)} sample ids appear in more than one label entry "
                         f"(described once): {', '.join(self.duplicates[:10])}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# One file
# ---------------------------------------------------------------------------------------

def file_bytes(generator: dict, pose_sha256: str, segments: list, extra=None) -> bytes:
    """The bytes of a description file: metadata (``extra``: more top-level keys), then one
    segment per line (UTF-8 JSON)."""
    head = json.dumps({"generator": generator, "pose_sha256": pose_sha256, **(extra or {})}, ensure_ascii=False)
    body = ",\n".join(json.dumps(segment, ensure_ascii=False) for segment in segments)
    return (head[:-1] + ', "segments": [\n' + body + "\n]}\n").encode("utf-8")


def is_up_to_date(path: Path, generator: dict, pose_sha256: str, extra=None) -> bool:
    """True when ``path`` holds descriptions made with ``generator`` from the same pose bytes
    (and the same ``extra`` top-level values)."""
    try:
        content = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return (isinstance(content, dict) and content.get("generator") == generator
            and content.get("pose_sha256") == pose_sha256 and isinstance(content.get("segments"), list)
            and all(content.get(k) == v for k, v in (extra or {}).items()))


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path``, then rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def sha256_of(path: Path) -> str:
    """SHA-256 of a file's bytes; SampleError when it cannot be read."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except FileNotFoundError:
        raise SampleError(f"{path}: file not found", kind="missing") from None
    except OSError as err:
        raise SampleError(f"{path}: cannot read the file ({err.strerror})", kind="unreadable") from None
    return h.hexdigest()


def describe_file(describer, pose_file: Path, out_file: Path, overwrite: bool, trust_pickles: bool) -> str:
    """Describe one pose file into ``out_file``; return WRITTEN or UP_TO_DATE (SampleError
    when the pose file cannot be used)."""
    digest = sha256_of(pose_file)
    generator = describer.generator()
    if not overwrite and is_up_to_date(out_file, generator, digest):
        return UP_TO_DATE
    segments = describer.describe_pose(load_pose(pose_file, trust_pickles))
    write_atomic(out_file, file_bytes(generator, digest, segments))
    return WRITTEN


# ---------------------------------------------------------------------------------------
# The dataset
# ---------------------------------------------------------------------------------------

def dataset_samples(args, videos: bool = False) -> tuple:
    """``([(sample_id, pose file[, video file])], duplicate ids)`` of the dataset's splits, in
    label order (videos: in the RGB branch's layout, ``--rgb_dir``)."""
    splits = [args.split] if args.split else list(paths.splits(args.dataset))
    if paths.label_path(args.dataset, splits[0], args.data_root, args.label_dir).suffix == ".json":
        return json_corpus_samples(args, videos)
    samples, duplicates = {}, []
    for split in splits:
        labels = load_labels(paths.label_path(args.dataset, split, args.data_root, args.label_dir),
                             args.trust_pickles)
        folder = paths.pose_dir(args.dataset, split, args.data_root, args.pose_dir)
        video_folder = paths.rgb_dir(args.dataset, split, args.data_root, args.rgb_dir) if videos else None
        for sample in labels.values():
            sample_id = Path(sample["video_path"]).stem
            if sample_id in samples:
                duplicates.append(sample_id)
                continue
            samples[sample_id] = (pose_path(folder, sample["video_path"]),) + \
                ((video_folder / sample["video_path"],) if videos else ())
    return [(sample_id, *files) for sample_id, files in samples.items()], duplicates


def json_corpus_samples(args, videos: bool = False) -> tuple:
    """``dataset_samples`` of a pre-training corpus (one JSON label list for every split, read
    once): sample id = the stem of its video, pose file ``<pose_dir>/<pose>``."""
    labels = NewsLabels(paths.label_path(args.dataset, "train", args.data_root, args.label_dir))
    folder = paths.pose_dir(args.dataset, "train", args.data_root, args.pose_dir)
    video_folder = paths.rgb_dir(args.dataset, "train", args.data_root, args.rgb_dir) if videos else None
    samples, duplicates = {}, []
    for i in range(len(labels)):
        entry = labels.entry(i)
        sample_id = Path(entry["video"]).stem
        if sample_id in samples:
            duplicates.append(sample_id)
            continue
        samples[sample_id] = (folder / entry["pose"],) + ((video_folder / entry["video"],) if videos else ())
    return [(sample_id, *files) for sample_id, files in samples.items()], duplicates


_WORKER = {}  # the describer and options of a worker process


def _init_worker(settings: dict, out_dir: str, overwrite: bool, trust_pickles: bool) -> None:
    _WORKER.update(describer=RulesDescriber(settings), out_dir=Path(out_dir), overwrite=overwrite,
                   trust_pickles=trust_pickles)


def _describe_task(task: tuple) -> tuple:
    """(sample_id, status, message) of one sample in a worker."""
    sample_id, pose_file = task
    out_file = _WORKER["out_dir"] / f"{sample_id}.json"
    try:
        status = describe_file(_WORKER["describer"], Path(pose_file), out_file, _WORKER["overwrite"],
                               _WORKER["trust_pickles"])
    except SampleError as err:
        return sample_id, SKIPPED, str(err)
    return sample_id, status, ""


def run_tasks(tasks: list, init_args: tuple, workers: int, progress: bool):
    """Yield ``_describe_task``'s results in the order of ``tasks``, over ``workers`` processes."""
    bar = tqdm(total=len(tasks), desc="describe", unit="video", disable=not progress, mininterval=1.0)
    if workers <= 1:
        _init_worker(*init_args)
        results = map(_describe_task, tasks)
        pool = None
    else:
        pool = multiprocessing.get_context().Pool(workers, initializer=_init_worker, initargs=init_args)
        results = pool.imap(_describe_task, tasks, chunksize=max(1, min(32, len(tasks) // (4 * workers))))
    try:
        for result in results:
            bar.update(1)
            yield result
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()


def settings_from_args(args) -> dict:
    """The rules describer's settings for the command-line flags (defaults per dataset)."""
    return rules_settings(args.dataset, language=args.language, frame_size=args.frame_size, fps=args.fps,
                          max_tokens=args.desc_max_tokens, clauses=getattr(args, "rules_clauses", "all"))


def describe_dataset(args, progress: bool = True) -> DescribeSummary:
    """``signfuse describe`` with the rules describer: write every sample's file; the summary."""
    if args.workers < 1:
        raise InputError(f"--workers {args.workers}: expected at least 1")
    settings = settings_from_args(args)
    out_dir = paths.description_dir(args.dataset, args.data_root, args.desc_dir)  # <desc_dir or data_root/description>/<dataset>
    tasks, duplicates = dataset_samples(args)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = DescribeSummary(str(out_dir), RulesDescriber(settings).generator(), samples=len(tasks),
                              duplicates=duplicates)
    init_args = (settings, str(out_dir), args.overwrite, args.trust_pickles)
    for sample_id, status, message in run_tasks(tasks, init_args, args.workers, progress):
        if status == SKIPPED:
            summary.skipped.append(f"{sample_id}: {message}")
        elif status == WRITTEN:
            summary.written += 1
        else:
            summary.up_to_date += 1
    return summary


