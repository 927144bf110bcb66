"""Which frames of a sample the model sees.

Uni-Sign keeps every frame of a sample of at most ``max_length`` frames; of a longer one it
takes ``max_length`` distinct frames at random, sorted. We do the same at training time;
at evaluation time we take evenly spaced frames instead (Uni-Sign samples at random there
too), so that evaluation is deterministic. The result is the **original frame numbers**
(``start`` added): descriptions are aligned to them.
"""
import numpy as np


def sample_frames(num_frames: int, max_length: int, train: bool, rng=None, start: int = 0) -> np.ndarray:
    """Original frame numbers (int64, sorted, distinct) of the frames to use.

    num_frames: the sample's duration (end - start); max_length: the most frames kept;
    train: random (from ``rng``, a np.random.Generator) or evenly spaced (first and last
    frame included); start: the sample's first frame in its pose file.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1, got {max_length}")
    if num_frames <= max_length:
        indices = np.arange(num_frames, dtype=np.int64)
    elif train:
        rng = np.random.default_rng() if rng is None else rng
        indices = np.sort(rng.choice(num_frames, size=max_length, replace=False)).astype(np.int64)
    else:
        # spacing (num_frames - 1) / (max_length - 1) > 1, so rounding keeps them distinct
        indices = np.floor(np.linspace(0, num_frames - 1, max_length) + 0.5).astype(np.int64)
    return indices + start
