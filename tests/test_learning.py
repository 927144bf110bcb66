"""The fusion learns: on the synthetic benchmark, where paired signs share their keypoints and
only the descriptions tell them apart, the gated model trained for a few epochs reaches a lower
held-out loss than the pose-only model trained for the same steps from the same initial
weights (same seed, same batches), through the real training pipeline; and it relies on the
descriptions (without them its held-out loss goes back up).

The margin asserted (LOSS_MARGIN) is well inside the smallest one measured over three seeds
(see MEASURED); the failure message prints the losses.
"""
import pytest

from signfuse.demo.synthetic import make_synthetic
from helpers import heldout_loss

from signfuse.demo.run import parse_run_args, run_flags, run_model, settings
from signfuse.training import run

SEED = 0
# The reduced benchmark: every word is one of the 4 pairs (8 signs, 4 keypoint patterns), every
# sample described: what the descriptions bring is as large as it gets.
DATA = dict(samples=240, n_signs=8, n_pairs=4, desc_fraction=1.0, invalid_files=0)
# desc_off_loss 0: the gated model trains on the translation loss alone (the demo's extra loss
# with every description masked is not what this test is about).
BUDGET = dict(epochs=6, batch_size=8, max_length=16, lr=2e-3, warmup_epochs=0.5, desc_off_loss=0.0)
LOSS_MARGIN = 0.1  # nats per target token
# MEASURED (torch 2.14.1 CPU, 1 thread; transformers' cosine schedule, last partial batch
# dropped, the gate that sets the size of the text update), held-out loss pose-only -> gated
# (gated with descriptions off), seeds 0 / 1 / 2:
#   2.503 -> 2.098 (2.624) / 2.678 -> 2.121 (2.630) / 2.636 -> 2.167 (2.681)
#   margins over pose-only 0.406 / 0.558 / 0.469, descriptions off +0.527 / +0.509 / +0.514:
#   the smallest (0.406) is 4x LOSS_MARGIN; 40-55 s for the two runs. (Twelve epochs: margins
#   0.611 / 0.665 / 0.832 in 90 s.) With the earlier gate (fused = pose + gate * proj(text),
#   which saturated) six epochs gave -0.002 / -0.338 / +0.009, twelve 0.258 / 0.146 / 0.365; and
#   seed 0 with the code before issue 11 gave 0.154 on one machine and 0.044 on another.


def train(root, gated: bool):
    """Train one of the two models; -> (its run's flags with --finetune best_checkpoint.pth)."""
    out = root / ("gated" if gated else "pose_only")
    flags = run_flags(root / "data", out, settings(**BUDGET), SEED, gated)
    run.train(parse_run_args(flags))
    return parse_run_args(flags + ["--finetune", str(out / "best_checkpoint.pth")])


@pytest.mark.slow
def test_gated_model_reaches_a_lower_heldout_loss_than_pose_only(tmp_path):
    make_synthetic(tmp_path / "data", seed=SEED, **DATA)
    args = train(tmp_path, gated=False)
    pose_only = heldout_loss(run_model(args), args, split="test")
    args = train(tmp_path, gated=True)
    model = run_model(args)
    gated = heldout_loss(model, args, split="test")
    gated_off = heldout_loss(model, args, split="test", descriptions_off=True)
    losses = f"held-out loss: pose-only {pose_only:.4f}, gated {gated:.4f}, gated without descriptions {gated_off:.4f}"
    assert gated < pose_only - LOSS_MARGIN, f"{losses} (expected gated lower than pose-only by {LOSS_MARGIN})"
    assert gated_off > gated + LOSS_MARGIN, f"{losses} (expected the descriptions to matter by {LOSS_MARGIN})"
