"""Lint as part of the test command: `ruff check` (pyflakes F and bugbear B, configured in
pyproject.toml's [tool.ruff]) finds nothing in the code, the tests, the benchmarks and tools."""
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

CHECKED = ["signfuse", "tests", "benchmarks", "tools", "fine_tuning.py"]


def test_ruff_finds_nothing():
    ruff = Path(sys.executable).parent / "ruff"  # installed with the test extras, next to the interpreter
    assert ruff.is_file(), f"{ruff}: not installed (pip install -e '.[test]' installs ruff)"
    result = subprocess.run([str(ruff), "check", "--no-cache", "--output-format", "concise", *CHECKED],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        pytest.fail(f"ruff check {' '.join(CHECKED)}:\n{result.stdout}{result.stderr}", pytrace=False)
