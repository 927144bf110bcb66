"""Batching descriptions: the batch's distinct texts, and per frame two indices into them
and two weights (``collate_descriptions``)."""
import numpy as np
import torch


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
