"""benchmarks/demo_spread.py: each row's BLEU-4 on disjoint chunks of the test split and its
difference to pose-only on the same chunk, from a finished demo's prediction files (here written by
hand, with scores known: a translation equal to its reference scores 100, one sharing no word 0)."""
import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "demo_spread.py"
RIGHT = ["happy big hot yes", "sad small cold no", "yes no hot cold", "big sad happy small"]
WRONG = "go go go go go"


def write_row(folder: Path, tag: str, good: list, names=None) -> None:
    """Prediction and reference files of one row: sample i is translated right where good[i]."""
    names = names or [f"s{i}" for i in range(len(RIGHT))]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"test{tag}_tmp_refs.txt").write_text(
        "".join(f"sample: {n}, ground-truth: {r}\n" for n, r in zip(names, RIGHT, strict=True)))
    (folder / f"test{tag}_tmp_pres.txt").write_text(
        "".join(f"sample: {n}, prediction: {r if g else WRONG}\n" for n, r, g in zip(names, RIGHT, good, strict=True)))


def demo_dir(tmp_path: Path) -> Path:
    d = tmp_path / "demo"
    write_row(d / "pose_only" / "eval", "", [True, True, False, False])  # chunks: 100, 0
    for tag in ("", "_predicted"):
        write_row(d / "gated" / "eval", tag, [True] * 4)  # 100, 100
    write_row(d / "gated" / "eval", "_nodesc", [False, False, True, True])  # 0, 100
    write_row(d / "cross_attn" / "eval", "", [True] * 4)
    write_row(d / "cross_attn" / "eval", "_nodesc", [True, True, False, False])  # as pose-only
    return d


def run(tmp_path, d, *extra):
    out = tmp_path / "spread.json"
    done = subprocess.run([sys.executable, str(BENCH), "--seed", "0", "--demo_dir", str(d), "--init_seeds",
                           "--chunk", "2", "--chunks", "2", "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return done, (json.loads(out.read_text()) if out.exists() else None)


def test_chunks_and_differences_to_pose_only(tmp_path):
    done, result = run(tmp_path, demo_dir(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    f = result["figures"]
    assert f["pose-only"]["chunks"] == [100.0, 0.0]
    assert f["gated (descriptions)"]["chunks"] == [100.0, 100.0]
    assert f["gated (descriptions off)"]["chunks minus pose-only"] == [-100.0, 100.0]
    assert f["gated (descriptions off)"]["chunks more than 2.0 below pose-only"] == 1
    assert f["cross-attention (descriptions off)"]["chunks minus pose-only"] == [0.0, 0.0]
    assert f["cross-attention (descriptions off)"]["chunks more than 2.0 below pose-only"] == 0
    assert f["gated (descriptions)"]["chunk spread"] == {"min": 100.0, "max": 100.0, "range": 0.0}
    assert result["settings"]["test videos"] == 4


def test_a_row_of_another_test_split_is_refused(tmp_path):
    d = demo_dir(tmp_path)
    write_row(d / "cross_attn" / "eval", "", [True] * 4, names=["a", "b", "c", "d"])
    done, _ = run(tmp_path, d)
    assert done.returncode != 0 and "cross-attention (descriptions): another test split" in done.stderr


def test_more_chunks_than_videos_is_refused(tmp_path):
    done, _ = run(tmp_path, demo_dir(tmp_path), "--chunks", "3")
    assert done.returncode != 0 and "3 chunks of 2 need 6 test videos, the split has 4" in done.stderr
