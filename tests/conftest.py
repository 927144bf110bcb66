"""Shared test helpers: where the shared spec and data are, and small generated datasets.

Import the plain helpers with ``from conftest import GOLDEN_DIR, make_pose, write_pickle``.
"""
import gzip
import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
GOLDEN_DIR = Path(__file__).resolve().parents[2] / "shared" / "spec" / "golden"  # Uni-Sign's numbers
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # real label files (CSL_Daily)


def make_pose(num_frames: int, persons: int = 1, seed: int = 0, stacked: bool = False, **extra) -> dict:
    """A plausible pose-file dict: ``keypoints`` per frame (P, 133, 2) in [0.2, 0.8],
    ``scores`` (P, 133) in [0.5, 1.0], as lists over frames (or stacked arrays); ``extra``
    (e.g. start=, end=) is added as is."""
    rng = np.random.default_rng(seed)
    keypoints = rng.uniform(0.2, 0.8, (num_frames, persons, 133, 2)).astype(np.float32)
    scores = rng.uniform(0.5, 1.0, (num_frames, persons, 133)).astype(np.float32)
    if not stacked:
        keypoints, scores = list(keypoints), list(scores)
    return {"keypoints": keypoints, "scores": scores, **extra}


def write_pickle(path, obj, compress: bool = False) -> Path:
    """Pickle ``obj`` to ``path`` (gzip-compressed with ``compress``, as label files are)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = pickle.dumps(obj)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def make_label(name: str, index: int = 0) -> dict:
    return {"name": name, "text": f"sentence {index}", "gloss": [f"g{index}", "w"],
            "video_path": f"{name}.mp4"}


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Every test runs torch on one thread: tiny models are faster so (far faster on a busy
    machine), and the pinned numbers of the model tests are one-thread numbers."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def golden_dir() -> Path:
    if not GOLDEN_DIR.is_dir():
        pytest.skip(f"{GOLDEN_DIR} is absent")
    return GOLDEN_DIR


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture
def unisign_layout(tmp_path):
    """Factory: write a small dataset in Uni-Sign's layout under ``tmp_path`` and describe it.

    ``make(lengths=(30, 12), dataset="CSL_Daily", split="test", split_subdir=False, poses=None)``
    writes ``data/<dataset>/labels.<split>`` (gzip pickle, one sample per length, names
    ``S00000i_P0000_T00``) and one pose file per sample under
    ``dataset/<dataset>/pose_format[/<split>]`` (``poses[i]`` replaces the generated dict).
    Returns a namespace: root, label_path, pose_dir, names, poses.
    """
    def make(lengths=(30, 12), dataset="CSL_Daily", split="test", split_subdir=False, poses=None):
        root = tmp_path / "root"
        pose_dir = root / "dataset" / dataset / "pose_format"
        if split_subdir:
            pose_dir = pose_dir / split
        names = [f"S{i:06d}_P0000_T00" for i in range(len(lengths))]
        labels = {name: make_label(name, i) for i, name in enumerate(names)}
        label_path = write_pickle(root / "data" / dataset / f"labels.{split}", labels, compress=True)
        poses = list(poses) if poses is not None else [make_pose(n, seed=i) for i, n in enumerate(lengths)]
        for name, pose in zip(names, poses):
            write_pickle(pose_dir / f"{name}.pkl", pose)
        return SimpleNamespace(root=root, label_path=label_path, pose_dir=pose_dir, names=names,
                               labels=labels, poses=poses)
    return make
