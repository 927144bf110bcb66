"""The fusion learns: on the synthetic benchmark, where paired signs share their keypoints and
only the descriptions tell them apart, the gated model trained for a few steps reaches a lower
held-out loss than the pose-only model trained for the same steps from the same initial
weights (same seed, same batches), through the real training pipeline.

The margin asserted (LOSS_MARGIN) is well below the one measured (see MEASURED); the failure
message prints both losses.
"""
import pytest

from signfuse.data.synthetic import make_synthetic
from signfuse.demo import build_model, heldout_loss, parse_run_args, run_flags, settings
from signfuse.training import run

SEED = 0
# The reduced benchmark: every word is one of the 4 pairs (8 signs, 4 keypoint patterns), every
# sample described: what the descriptions bring is as large as it gets.
DATA = dict(samples=240, n_signs=8, n_pairs=4, desc_fraction=1.0, invalid_files=0)
BUDGET = dict(epochs=6, batch_size=8, max_length=16, lr=2e-3, warmup_epochs=0.5)
LOSS_MARGIN = 0.05  # nats per target token
# MEASURED (torch 2.13 CPU, 1 thread), held-out loss pose-only -> gated: seed 0 (the test's)
# 2.577 -> 2.423, seed 1 2.794 -> 2.506, seed 2 2.623 -> 2.561; about 75 s for both runs.


def train_and_score(root, gated: bool) -> float:
    s = settings(**BUDGET)
    out = root / ("gated" if gated else "pose_only")
    flags = run_flags(root / "data", out, s, SEED, gated)
    run.train(parse_run_args(flags))
    args = parse_run_args(flags + ["--finetune", str(out / "best_checkpoint.pth")])
    return heldout_loss(build_model(args), args, split="test")


@pytest.mark.slow
def test_gated_model_reaches_a_lower_heldout_loss_than_pose_only(tmp_path):
    make_synthetic(tmp_path / "data", seed=SEED, **DATA)
    pose_only = train_and_score(tmp_path, gated=False)
    gated = train_and_score(tmp_path, gated=True)
    assert gated < pose_only - LOSS_MARGIN, (
        f"held-out loss: gated {gated:.4f}, pose-only {pose_only:.4f} (expected gated lower by {LOSS_MARGIN})")
