"""Evaluation splits the mean gate by alignment kind (exact, interpolated, nearest, undescribed):
what TensorBoard and log.txt get per split, and what <split>_gates.npz stores per frame."""
import numpy as np
import torch

from signfuse.models.text_fusion import ALIGNMENT_KINDS, alignment_kinds
from signfuse.training.engine import mean_gate_by_kind


def test_alignment_kinds_of_a_batch():
    # frames: exact (own text), interpolated (two texts), nearest (one text, not its own), none
    index = torch.tensor([[[0, -1], [0, 1], [1, -1], [-1, -1]]])  # (1, 4, 2)
    weight = torch.tensor([[[1.0, 0.0], [0.5, 0.5], [1.0, 0.0], [0.0, 0.0]]])
    has = torch.tensor([[[1.0], [0.0], [0.0], [0.0]]])  # (1, 4, 1)
    kinds = alignment_kinds(index, weight, has)[0].tolist()
    assert [ALIGNMENT_KINDS[k] for k in kinds] == ["exact", "interpolated", "nearest", "undescribed"]


def test_mean_gate_by_kind_by_hand():
    code = {name: i for i, name in enumerate(ALIGNMENT_KINDS)}
    gates = {
        "b": {"gate": np.array([0.9, 0.1, 0.5], np.float32),
              "alignment": np.array([code["exact"], code["undescribed"], code["nearest"]], np.int8)},
        "a": {"gate": np.array([0.7, 0.3], np.float32),
              "alignment": np.array([code["exact"], code["undescribed"]], np.int8)},
    }
    got = mean_gate_by_kind(gates)
    assert set(got) == {"mean_gate_exact", "mean_gate_undescribed", "mean_gate_nearest"}  # no interpolated frame
    assert abs(got["mean_gate_exact"] - 0.8) < 1e-6
    assert abs(got["mean_gate_undescribed"] - 0.2) < 1e-6
    assert abs(got["mean_gate_nearest"] - 0.5) < 1e-6
    assert mean_gate_by_kind({}) == {}
