"""The dataset of one split and the function that batches its samples.

``SignDataset[i]`` reads sample i's pose file, picks its frames, splits and normalises
its parts (a dict, see docs/DESIGN.md "Sample and batch"). A sample whose pose file is
unusable comes back as ``{"name", "error"}``: ``collate_fn`` leaves it out of the batch
and lists it in ``skipped`` so that the engine counts and reports it; it is never
replaced by another sample (Uni-Sign's CSL_News loader picks a random one instead).
With ``rgb`` (``--rgb_support``) an item also carries its hand crops (``hand_crops.py``).
"""
from pathlib import Path

import numpy as np
import torch

from signfuse.config import TASKS
from signfuse.data.description_collate import collate_descriptions
from signfuse.data.hand_crops import HANDS, RGBSettings, load_hand_crops, video_file
from signfuse.data.labels import gloss_text, load_labels
from signfuse.data.pose import load_pose, pose_path
from signfuse.data.sampler import sample_frames
from signfuse.data.transforms import (
    PART_NAMES,
    PART_POINTS,
    normalize_parts,
    split_parts,
)
from signfuse.errors import InputError, SampleError


def frame_describer(describer, video_path: str, pose):
    """``frames -> describer.describe(sample_id, frames)`` for one loaded sample (sample_id: the
    stem of its video path; the pose goes along to describers that need it), or None without a
    describer."""
    if describer is None:
        return None
    sample_id = Path(video_path).stem
    extra = {"pose": pose} if getattr(describer, "needs_pose", False) else {}
    return lambda frames: describer.describe(sample_id, frames, **extra)


class SignDataset(torch.utils.data.Dataset):
    """The samples of one split: ``label_path``'s entries, their poses under ``pose_dir``.

    pose_dir is the folder that holds the pose files themselves (``paths.pose_dir`` finds
    it, split sub-folder included). train: random frame sampling from
    ``np.random.default_rng((seed, epoch, index))`` (see ``set_epoch``); else evenly spaced.
    describer: a ``signfuse.data.descriptions.Describer``, or None for no descriptions.
    rgb: ``RGBSettings`` (video folder, crop, evaluation sampling) to add the hand crops, or
    None. Training draws the hand frames from a sub-stream of the same generator.
    """

    def __init__(self, label_path, pose_dir, dataset, split, task="SLT", max_length=256,
                 train=False, seed=42, trust_pickles=False, describer=None, rgb: RGBSettings = None):
        if task not in TASKS:
            raise InputError(f"--task {task}: unknown task, expected one of {', '.join(TASKS)}")
        if max_length < 1:
            raise InputError(f"--max_length {max_length}: must be at least 1")
        self.label_path, self.pose_dir = Path(label_path), Path(pose_dir)
        self.dataset, self.split, self.task = dataset, split, task
        self.max_length, self.train, self.seed = max_length, train, seed
        self.trust_pickles, self.describer, self.rgb = trust_pickles, describer, rgb
        self.labels = load_labels(self.label_path, trust_pickles)
        self.keys = list(self.labels)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Training samples of epoch ``epoch`` draw their frames from (seed, epoch, index)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: int) -> dict:
        sample = self.labels[self.keys[index]]
        try:
            return self.load(index, sample)
        except SampleError as e:
            return {"name": sample["name"], "error": str(e)}

    def load(self, index: int, sample: dict) -> dict:
        pose_file = pose_path(self.pose_dir, sample["video_path"])
        pose = load_pose(pose_file, self.trust_pickles)
        rng = np.random.default_rng((self.seed, self.epoch, index)) if self.train else None
        describe = frame_describer(self.describer, sample["video_path"], pose)
        gloss = gloss_text(sample["gloss"])
        item = make_item(pose, sample["name"], text=sample["text"], gloss=gloss,
                         target=gloss if self.task == "CSLR" else sample["text"],
                         max_length=self.max_length, train=self.train, rng=rng, describe=describe)
        if self.rgb is not None:
            item.update(self.hand_crops(index, pose, sample["video_path"], item["frame_indices"], rng))
        return item

    def hand_crops(self, index: int, pose, sample_video_path: str, frames, rng) -> dict:
        """The six RGB keys of sample ``index`` (see ``hand_crops.load_hand_crops``; boxes from the
        keypoints at the file's precision, as Uni-Sign's). Training and ``random`` evaluation draw
        from a sub-stream of (seed, epoch, index): the same frames whatever the number of workers
        or processes."""
        if self.train or self.rgb.eval_sampling == "random":
            rng = rng if rng is not None else np.random.default_rng((self.seed, self.epoch, index))
            rng = rng.spawn(1)[0]  # depends on the seed sequence only, not on the draws made so far
        return load_hand_crops(pose, frames, video_file(self.rgb, sample_video_path), self.rgb, self.train, rng)

    def sample_ids(self) -> list:
        """The description-file ids of the samples (stems of their video_path)."""
        return [Path(self.labels[k]["video_path"]).stem for k in self.keys]

    def names(self) -> list:
        """The samples' names in dataset order (the order of a single-process evaluation)."""
        return [self.labels[k]["name"] for k in self.keys]

    def pose_files(self) -> dict:
        """{sample_id: pose file} (--describe rules makes descriptions from them)."""
        return {sample_id: pose_path(self.pose_dir, self.labels[k]["video_path"])
                for k, sample_id in zip(self.keys, self.sample_ids(), strict=True)}


def make_item(pose, name: str, text: str = "", gloss: str = "", target: str = "", max_length: int = 256,
              train: bool = False, rng=None, describe=None) -> dict:
    """One sample dict (docs/DESIGN.md) from a loaded PoseRecord: sample its frames, split and
    normalise its parts; ``describe(frames) -> (aligned, has_description)`` adds descriptions."""
    frames = sample_frames(pose.num_frames, max_length, train, rng, pose.start)  # (T,) original numbers
    parts = pose_parts(pose, frames)
    item = {"name": name, "text": text, "gloss": gloss, "target": target, **parts, "frame_indices": frames}
    if describe is not None:
        aligned, has_description = describe(frames)
        item["desc_aligned"] = aligned
        item["has_description"] = np.asarray(has_description, dtype=np.float32)  # (T,)
    return item


def pose_parts(pose, frames) -> dict:
    """The four normalised parts (T, V, 3) float32 of ``frames`` (original frame numbers) of a
    PoseRecord, computed at the file's precision as Uni-Sign does (transforms.py)."""
    return normalize_parts(split_parts(pose.exact_keypoints[frames], pose.scores[frames]))


def pad_last(array: np.ndarray, length: int) -> np.ndarray:
    """``array`` (T, ...) padded to ``length`` frames by repeating its last frame."""
    pad = np.repeat(array[-1:], length - len(array), axis=0)  # (length - T, ...)
    return np.concatenate([array, pad], axis=0)  # (length, ...)


def collate_descriptions_into(batch: dict, samples: list, lengths: list, T: int) -> None:
    """Add desc_texts, desc_index, desc_weight, has_description to ``batch``."""

    aligned = [s.get("desc_aligned", [[] for _ in range(n)]) for s, n in zip(samples, lengths, strict=True)]
    texts, index, weight = collate_descriptions(aligned, T)
    has_description = np.zeros((len(samples), T, 1), np.float32)  # (B, T, 1), 0 on padding
    for i, (s, n) in enumerate(zip(samples, lengths, strict=True)):
        if "has_description" in s:
            has_description[i, :n, 0] = s["has_description"]
    batch["desc_texts"] = list(texts)
    batch["desc_index"] = torch.as_tensor(index, dtype=torch.int64)  # (B, T, 2)
    batch["desc_weight"] = torch.as_tensor(weight, dtype=torch.float32)  # (B, T, 2)
    batch["has_description"] = torch.from_numpy(has_description)


def collate_fn(samples: list) -> dict:
    """Batch the samples of ``SignDataset`` (see docs/DESIGN.md); failed ones go to ``skipped``."""
    ok = [s for s in samples if "error" not in s]
    skipped = [(s["name"], s["error"]) for s in samples if "error" in s]
    lengths = [len(s["frame_indices"]) for s in ok]
    B, T = len(ok), max(lengths, default=0)
    batch = {}
    for name in PART_NAMES:
        V = len(PART_POINTS[name])
        parts = [pad_last(s[name], T) for s in ok]
        batch[name] = torch.from_numpy(np.stack(parts).astype(np.float32, copy=False)) if ok \
            else torch.zeros((0, 0, V, 3), dtype=torch.float32)  # (B, T, V, 3)
    positions = np.arange(T)[None, :]  # (1, T)
    real = positions < np.asarray(lengths, dtype=np.int64).reshape(B, 1)  # (B, T)
    frame_indices = np.full((B, T), -1, dtype=np.int64)
    for i, s in enumerate(ok):
        frame_indices[i, :lengths[i]] = s["frame_indices"]
    batch["attention_mask"] = torch.from_numpy(real.astype(np.int64))  # (B, T)
    batch["frame_indices"] = torch.from_numpy(frame_indices)  # (B, T)
    batch["names"] = [s["name"] for s in ok]
    batch["sentences"] = [s["text"] for s in ok]
    batch["glosses"] = [s["gloss"] for s in ok]
    batch["targets"] = [s["target"] for s in ok]
    batch["skipped"] = skipped
    if any("desc_aligned" in s for s in ok):
        collate_descriptions_into(batch, ok, lengths, T)
    if any("left_sampled_indices" in s for s in ok):
        collate_hands_into(batch, ok)
    return batch


def collate_hands_into(batch: dict, samples: list) -> None:
    """Add the RGB keys (docs/rgb-pose.md section 7): per hand the samples' rows concatenated,
    ``_sampled_indices`` (N,) int64 (positions in each sample's own frames), ``_hands``
    (N, 3, 112, 112) float32, ``_skeletons_norm`` (N, 21, 2) float32, ``_rgb_len`` the rows
    per sample (1 for a dummy hand)."""
    for hand in HANDS:
        keys = (f"{hand}_sampled_indices", f"{hand}_hands", f"{hand}_skeletons_norm")
        for key, dtype, shape in zip(keys, (np.int64, np.float32, np.float32), ((0,), (0, 3, 112, 112), (0, 21, 2)),
                                     strict=True):
            rows = [np.asarray(s[key], dtype=dtype) for s in samples]
            batch[key] = torch.from_numpy(np.concatenate(rows) if rows else np.zeros(shape, dtype))  # (N, ...)
        batch[f"{hand}_rgb_len"] = [len(s[keys[0]]) for s in samples]
