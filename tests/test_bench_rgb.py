"""benchmarks/bench_rgb.py --quick: our RGB data path and the Uni-Sign-style one (decord) give the
same crops, indices and skeletons, call by call; the staged run of our path too; and the RGB-pose
model with its gate at zero gives the pose-only loss. Timings are not checked."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_rgb.py"

try:
    import decord  # noqa: F401 - optional (the 'bench' extra)
    HAVE_DECORD = True
except ImportError:
    HAVE_DECORD = False


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_rgb") / "bench_rgb.json"
    done = subprocess.run([sys.executable, str(BENCH), "--quick", "--out", str(out)], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout, json.loads(out.read_text())


@pytest.mark.slow
def test_both_data_paths_give_the_same_crops(quick_run):
    stdout, result = quick_run
    assert len(result["data"]) == 3
    for video in result["data"]:
        digests = video["digests"]
        assert len(digests["ours"]) == result["repeats"] == 2
        assert len(set(digests["ours"])) == 2  # each repeat draws other frames: the digests are of real crops
        assert digests["ours staged"] == digests["ours"]
        if HAVE_DECORD:
            assert digests["Uni-Sign-style"] == digests["ours"]
            assert video["decoded_frames_identical"] is True
            assert video["ratio_ours_over_unisign"] > 0
        else:
            assert "Uni-Sign-style" not in digests and video["decoded_frames_identical"] is None
        assert 0 < video["frames_read_per_sample"] <= video["sampled_frames"]
    assert ("decord is not installed" in stdout) is not HAVE_DECORD
    assert stdout.count(": identical (digests") == 3 and "DIFFERENT" not in stdout


@pytest.mark.slow
def test_zero_gate_loss_equals_pose_only_and_the_result_names_its_run(quick_run):
    _, result = quick_run
    for batch in result["step"]["batches"]:
        assert batch["loss_rgb_gate_zero"] == batch["loss_pose_only"]
        assert batch["crops_per_hand"] == batch["B"] * 4  # ceil(10% of T=32) per sample
    assert result["command"].startswith("python benchmarks/bench_rgb.py --quick --out ")
    assert result["commit"] is None or re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", result["commit"])
    assert result["cpu"] and result["torch"] and result["date"]
