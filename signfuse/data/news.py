"""Pre-training corpora in CSL-News's format: one JSON label list for every split.

The label file (``data/CSL_News/CSL_News_Labels.json``) is a list of
``{"video": "<name>.mp4", "pose": "<name>.pkl", "text": "..."}``; the pose files are
``<pose_dir>/<pose>`` and the videos ``<rgb_dir>/<video>`` (flat folders). Uni-Sign's split:
train is entries [0, int(0.99 N)), dev and test are both [int(0.99 N), N), in file order.

At CSL-News's scale (722,711 entries, 199 MB) a list of Python dicts costs about a
gigabyte, and every data-loader worker that touches it copies the pages it touches (each
access changes reference counts). ``NewsLabels`` keeps each field as one UTF-8 byte array
plus offsets (numpy): workers share those pages untouched, and an item decodes only its own
three strings. Uni-Sign slices the whole list for every sample; nothing here copies it.

A sample's frames: every frame of its pose file (no start/end window, as Uni-Sign's CSL-News
loader); more than ``max_length`` frames: a sorted random subset in training, evenly spaced at
evaluation (Uni-Sign draws at random there too). A sample that cannot be loaded is skipped and
counted (``collate_fn``), never replaced by another one.
"""
import json
from pathlib import Path

import numpy as np

from signfuse.data.dataset import SignDataset, frame_describer, make_item
from signfuse.data.labels import kind
from signfuse.data.pose import pose_record
from signfuse.errors import InputError, SampleError
from signfuse.safe_pickle import load_pickle

FIELDS = ("video", "pose", "text")
TRAIN_SHARE = 0.99  # Uni-Sign: train = [0, int(0.99 N)), dev = test = [int(0.99 N), N)


def split_range(n: int, split: str) -> tuple[int, int]:
    """[start, end) of ``split`` among ``n`` entries (Uni-Sign's split, in file order)."""
    cut = int(n * TRAIN_SHARE)
    if split == "train":
        return 0, cut
    if split in ("dev", "test"):
        return cut, n
    raise InputError(f"split {split!r}: a JSON corpus has train, dev and test (dev and test are the same entries)")


class PackedStrings:
    """Strings kept as one UTF-8 byte array and their offsets: ``packed[i]`` decodes string i."""

    def __init__(self, strings: list):
        encoded = [s.encode("utf-8") for s in strings]
        self.offsets = np.zeros(len(encoded) + 1, dtype=np.int64)  # (n + 1,)
        np.cumsum([len(b) for b in encoded], out=self.offsets[1:])
        self.data = np.frombuffer(b"".join(encoded), dtype=np.uint8)  # (total bytes,)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        return self.data[self.offsets[i]:self.offsets[i + 1]].tobytes().decode("utf-8")

    @property
    def nbytes(self) -> int:
        return self.data.nbytes + self.offsets.nbytes


class NewsLabels:
    """A JSON label list, checked and packed (``PackedStrings`` per field)."""

    def __init__(self, path):
        self.path = Path(path)
        entries = read_label_list(self.path)
        for i, entry in enumerate(entries):
            check_entry(self.path, i, entry)
        self.fields = {f: PackedStrings([e[f] for e in entries]) for f in FIELDS}

    def __len__(self) -> int:
        return len(self.fields["video"])

    def entry(self, i: int) -> dict:
        return {f: self.fields[f][i] for f in FIELDS}

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.fields.values())


def read_label_list(path: Path) -> list:
    """The parsed JSON list of ``path``; any problem is one InputError naming the file."""
    if not path.is_file():
        raise InputError(f"{path}: label file not found")
    try:
        with open(path, encoding="utf-8") as f:
            entries = json.load(f)
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not a UTF-8 JSON label list (byte {e.start}: {e.reason})") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not a JSON label list: {e.msg} at line {e.lineno} column {e.colno}") from None
    if not isinstance(entries, list):
        raise InputError(f"{path}: the JSON label file holds {kind(entries)}, expected a list of "
                         f"{{\"video\", \"pose\", \"text\"}} (CSL-News's format)")
    if not entries:
        raise InputError(f"{path}: the label list is empty")
    return entries


def check_entry(path: Path, i: int, entry) -> None:
    if not isinstance(entry, dict):
        raise InputError(f"{path}: entry {i} is {kind(entry)}, expected a dict with video, pose, text")
    for field in FIELDS:
        if field not in entry:
            raise InputError(f"{path}: entry {i} has no '{field}' (an entry needs video, pose, text)")
        if not isinstance(entry[field], str):
            raise InputError(f"{path}: entry {i}: '{field}' is {kind(entry[field])}, expected a str")
    for field in ("video", "pose"):
        if not entry[field]:
            raise InputError(f"{path}: entry {i}: '{field}' is empty")


def load_news_pose(path, trust_pickles: bool = False):
    """A pose file of the corpus as a PoseRecord over all its frames (a 'start'/'end' in the
    file is ignored, as Uni-Sign's CSL-News loader ignores it)."""
    pose = load_pickle(path, trust=trust_pickles, error=SampleError)
    if isinstance(pose, dict):
        pose = {k: v for k, v in pose.items() if k not in ("start", "end")}
    return pose_record(pose, path)


class NewsDataset(SignDataset):
    """One split of a JSON corpus; the same items as ``SignDataset`` (docs/DESIGN.md), named by
    their ``video`` entry (as Uni-Sign names them). ``labels``: a ``NewsLabels`` shared by the
    splits; ``max_samples``: only the first N entries of the split."""

    def __init__(self, labels: NewsLabels, pose_dir, dataset, split, max_length=256, train=False, seed=42,
                 trust_pickles=False, describer=None, rgb=None, max_samples=None):
        if max_length < 1:
            raise InputError(f"--max_length {max_length}: must be at least 1")
        self.news, self.label_path, self.pose_dir = labels, labels.path, Path(pose_dir)
        self.dataset, self.split, self.task = dataset, split, "SLT"
        self.max_length, self.train, self.seed = max_length, train, seed
        self.trust_pickles, self.describer, self.rgb = trust_pickles, describer, rgb
        self.start, self.end = split_range(len(labels), split)
        if max_samples:
            self.end = min(self.end, self.start + max_samples)
        self.epoch = 0

    def __len__(self) -> int:
        return self.end - self.start

    def entry(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self.news.entry(self.start + index)

    def __getitem__(self, index: int) -> dict:
        entry = self.entry(index)
        try:
            return self.load_entry(index, entry)
        except SampleError as e:
            return {"name": entry["video"], "error": str(e)}

    def load_entry(self, index: int, entry: dict) -> dict:
        pose = load_news_pose(self.pose_dir / entry["pose"], self.trust_pickles)
        rng = np.random.default_rng((self.seed, self.epoch, index)) if self.train else None
        describe = frame_describer(self.describer, entry["video"], pose)
        item = make_item(pose, entry["video"], text=entry["text"], target=entry["text"],
                         max_length=self.max_length, train=self.train, rng=rng, describe=describe)
        if self.rgb is not None:
            item.update(self.hand_crops(index, pose, entry["video"], item["frame_indices"], rng))
        return item

    def names(self) -> list:
        """The samples' names in dataset order (the order of a single-process evaluation)."""
        return [self.news.fields["video"][i] for i in range(self.start, self.end)]

    def sample_ids(self) -> list:
        """The description-file ids of the samples (stems of their video)."""
        return [Path(name).stem for name in self.names()]

    def pose_files(self) -> dict:
        """{sample_id: pose file} (--describe rules makes descriptions from them)."""
        poses = self.news.fields["pose"]
        return {Path(name).stem: self.pose_dir / poses[self.start + i] for i, name in enumerate(self.names())}
