"""The benchmarks' interval for a median (order statistics) against a brute-force count, and
benchmarks/pool_ratios.py on hand-written result files of bench_vs_unisign.py."""
import itertools
import json
import subprocess
import sys
from pathlib import Path

import helpers  # noqa: F401 (puts the repository on sys.path for benchmarks.common)
import pytest
from benchmarks.common import median_interval

POOL = Path(__file__).resolve().parents[1] / "benchmarks" / "pool_ratios.py"


def test_median_interval_hand_computed():
    assert median_interval(list(range(9, 0, -1))) == {"low": 2, "high": 8, "coverage": 1 - 20 / 512, "n": 9}
    ci = median_interval(list(range(1, 26)))
    assert (ci["low"], ci["high"]) == (8, 18) and ci["coverage"] == pytest.approx(0.95671, abs=1e-5)
    assert median_interval([3, 1, 2, 5, 4]) == {"low": None, "high": None, "coverage": None, "n": 5}  # n < 6 at 95 %


@pytest.mark.parametrize("n", range(6, 15))
def test_median_interval_coverage_by_counting_every_sign_pattern(n):
    """With a continuous distribution each value falls below the true median with probability 1/2,
    independently; the interval [k-th smallest, k-th largest] holds the median exactly when at
    least k values lie below it and at least k above. Counting that over all 2**n patterns gives
    the coverage, which must match the reported one and be at least 95 %, and k must be the
    largest such (k + 1 would fall under 95 %)."""
    ci = median_interval([float(i) for i in range(n)])
    k = int(ci["low"]) + 1  # values 0..n-1: the k-th smallest is k - 1

    def covered(k):
        return sum(k <= sum(p) <= n - k for p in itertools.product((0, 1), repeat=n)) / 2 ** n
    assert ci["high"] == n - k
    assert ci["coverage"] == pytest.approx(covered(k), abs=1e-12) and covered(k) >= 0.95
    assert covered(k + 1) < 0.95


def write_run(path: Path, signfuse: list, unisign: list, commit: str = "abc") -> None:
    figures = {"pose-only training step": {"repeats_ms": {"signfuse": signfuse, "unisign": unisign},
                                           "ratio_unisign_over_signfuse": 1.0}}
    path.write_text(json.dumps({"command": "python benchmarks/bench_vs_unisign.py", "commit": commit,
                                "cpu": "test", "figures": figures}))


def test_pool_ratios_per_run_and_pooled(tmp_path):
    # run a: ratios 1.0, 1.1, 0.9, 1.2, 0.8, 1.05, 0.95 (median 1.0); run b: 2.0 x 6 (median 2.0)
    a = [1.0, 1.1, 0.9, 1.2, 0.8, 1.05, 0.95]
    write_run(tmp_path / "a.json", [100.0] * 7, [100.0 * r for r in a])
    write_run(tmp_path / "b.json", [50.0] * 6, [100.0] * 6)
    out = tmp_path / "pooled.json"
    r = subprocess.run([sys.executable, str(POOL), str(tmp_path / "a.json"), str(tmp_path / "b.json"),
                        "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    result = json.loads(out.read_text())
    run_a, run_b = result["runs"]
    assert run_a["median_ratio"] == 1.0 and run_a["repeats"] == 7 and run_a["repeats_at_or_above_1"] == 4
    assert run_a["interval_95"] == [0.8, 1.2]  # n = 7: k = 1 (k = 2 covers only 87.5 %)
    assert run_b["median_ratio"] == 2.0 and run_b["interval_95"] == [2.0, 2.0]
    pooled = result["pooled"]
    assert pooled["repeats"] == 13 and pooled["median_ratio"] == 1.2  # 7th of 0.8, 0.9, ..., 1.2, 2.0 x 6
    assert pooled["interval_95"] == [0.95, 2.0]  # n = 13: 3rd smallest and 3rd largest
    assert result["run_medians"] == {"median": 1.5, "min": 1.0, "max": 2.0, "at_or_above_1": 2, "runs": 2}
    assert result["command"].startswith("python benchmarks/pool_ratios.py")


def test_pool_ratios_names_a_file_without_the_section(tmp_path):
    bad = tmp_path / "eval_only.json"
    bad.write_text(json.dumps({"figures": {"evaluation batch": {"signfuse_ms": 1.0}}}))
    r = subprocess.run([sys.executable, str(POOL), str(bad)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines() == [f"{bad}: no section 'pose-only training step' with repeats_ms "
                                             "(sections: ['evaluation batch'])"]
