"""benchmarks/bench_gpu.py --tiny on CPU: the GPU benchmark's code runs end to end (every model,
DDP and DeepSpeed through signfuse's engine code) and its result file has, for every row, finite
figures and the device's name. It claims nothing about a GPU: no timing is checked."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SUBPROCESS_ENV

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"
ROWS = "0,1,2,3"  # pose-only, gated, RGB-pose with DDP; pose-only with DeepSpeed (compiled rows: tests/test_compile.py)


@pytest.mark.slow
def test_tiny_run_writes_every_row_with_finite_figures(tmp_path):
    out = tmp_path / "bench_gpu_tiny.json"
    done = subprocess.run([sys.executable, str(BENCH), "--tiny", "--rows", ROWS, "--out", str(out)],
                          capture_output=True, text=True, timeout=1800, env=SUBPROCESS_ENV)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    figures = result["figures"]
    assert figures["device"].startswith("CPU") and figures["not_run"] == []
    rows = figures["rows"]
    assert [(r["model"], r["compile"], r["engine"]) for r in rows] == [
        ("pose-only", False, "ddp"), ("gated", False, "ddp"), ("RGB-pose", False, "ddp"),
        ("pose-only", False, "deepspeed")]
    for row in rows:
        assert row["device"] == figures["device"]
        for key in ("ms_per_step", "samples_per_s", "peak_memory_mib", "first_step_s"):
            assert math.isfinite(row[key]) and row[key] > 0, (row["model"], key)
        assert row["losses_finite"] and len(row["ms_all"]) == result["settings"]["steps"]
    assert result["settings"]["tiny"] and result["settings"]["claim"].startswith("none")
    assert "bench_gpu.py --tiny" in result["command"]
    for line in ("pose-only", "gated", "RGB-pose", "written:"):
        assert line in done.stdout
