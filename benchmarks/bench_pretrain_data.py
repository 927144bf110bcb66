"""Pre-training data at CSL-News's scale: the label list and the pose files.

    python benchmarks/bench_pretrain_data.py            # 722,711 entries (~199 MB), 2 workers, 1000 pose files
    python benchmarks/bench_pretrain_data.py --quick    # 20,000 entries, 100 pose files (a few seconds)

1. Start-up and memory per data-loader worker, on a generated label list of CSL-News's size
   (its entries: {"video", "pose", "text"}, ~61 Chinese characters of text each). Two loaders,
   each in a fresh process: Uni-Sign's (``json.load``, then the list sliced for every sample:
   ``annotation[start:end][index]``) and signfuse's (``NewsLabels``: each field packed into one
   byte array). Each process starts ``--workers`` forked data-loader workers that read
   ``--items`` label entries each; every worker reports its memory from
   ``/proc/self/smaps_rollup``: RSS (which counts the pages it shares with its parent) and its
   private memory (the pages it copied: what each worker really adds).
2. Clips per second and worker reading many small pose files: ``--files`` generated pose files
   of ``--frames`` frames (rtmlib's float64 keypoints, one person, as CSL-News's), each read,
   sampled to 256 frames and normalised (``NewsDataset[i]``, training sampling) by one process,
   after ``posix_fadvise(DONTNEED)`` dropped each file's cached pages (cold: read from the disk;
   on a virtual machine the host may still cache them), then again from the page cache (warm).

Writes docs/results/bench_pretrain_data.json (``--out``) with the machine, the settings and the
sizes of the generated corpora.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import add_out_arg, machine_info, write_result

CSL_NEWS_ENTRIES = 722_711
TEXT_CHARS = (30, 92)  # Chinese characters per text, uniform: ~199 MB for 722,711 entries


# ----------------------------------------------------------------------------- generated corpus

def write_label_list(path: Path, entries: int, seed: int = 0) -> int:
    """A JSON label list in CSL-News's format; returns its size in bytes."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(*TEXT_CHARS, size=entries, endpoint=True)
    chars = rng.integers(0x4E00, 0x9FA5, size=int(lengths.sum()), dtype=np.int32)  # CJK ideographs
    text = chars.astype("<u4").tobytes().decode("utf-32-le")
    ends = np.cumsum(lengths)
    with open(path, "w", encoding="utf-8") as f:
        f.write("[")
        for i in range(entries):
            name = f"2019-{1 + i % 12:02d}-{1 + i % 28:02d}_{i:07d}_{i % 97:04d}"
            sep = ", " if i else ""
            f.write(f'{sep}{{"video": "{name}.mp4", "pose": "{name}.pkl", '
                    f'"text": "{text[ends[i] - lengths[i]:ends[i]]}"}}')
        f.write("]")
    return path.stat().st_size


def write_pose_files(folder: Path, files: int, frames: int, seed: int = 0) -> int:
    """``files`` pose files of ``frames`` frames; returns their total size in bytes."""
    import pickle
    rng = np.random.default_rng(seed)
    keypoints = rng.uniform(0.2, 0.8, (frames, 1, 133, 2))  # float64, as rtmlib writes them
    scores = rng.uniform(0.2, 1.0, (frames, 1, 133)).astype(np.float32)
    data = pickle.dumps({"keypoints": keypoints, "scores": scores})
    for i in range(files):
        (folder / f"clip_{i:07d}.pkl").write_bytes(data)
    return len(data) * files


# ----------------------------------------------------------------------------- one loader per process

def memory() -> dict:
    """This process's memory in MiB: rss, pss, private (pages it does not share)."""
    fields = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":")
        fields[key] = int(value.split()[0]) / 1024
    return {"rss": fields["Rss"], "pss": fields["Pss"], "private": fields["Private_Clean"] + fields["Private_Dirty"]}


class UniSignLabels:
    """Uni-Sign's S2T_Dataset_news access pattern: the parsed list, sliced for every sample."""

    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            self.annotation = json.load(f)
        self.start_idx, self.end_idx = 0, int(len(self.annotation) * 0.99)

    def __len__(self):
        return self.end_idx - self.start_idx

    def entry(self, index):
        return self.annotation[self.start_idx:self.end_idx][index]


class LabelItems:
    """A dataset of label entries only (no pose file), which reports the worker's memory."""

    def __init__(self, labels, items: int):
        self.labels, self.items = labels, items

    def __len__(self):
        return self.items

    def __getitem__(self, i):
        entry = self.labels.entry((i * 7919) % len(self.labels))  # spread over the whole list
        return len(entry["text"])


def report(batch):
    import torch.utils.data
    worker = torch.utils.data.get_worker_info()
    return {"worker": worker.id if worker else -1, "time": time.perf_counter(), "n": len(batch), **memory()}


def child_labels(kind: str, path: str, workers: int, items: int) -> dict:
    """Load the label list ``kind``'s way, then read ``items`` entries in each of ``workers`` workers."""
    import torch.utils.data
    from signfuse.data.news import NewsLabels
    before, t0 = memory(), time.perf_counter()
    labels = UniSignLabels(path) if kind == "unisign" else NewsLabels(path)
    startup = time.perf_counter() - t0
    loaded = memory()
    peak = int(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0]) / 1024
    t2 = time.perf_counter()
    for i in range(items):  # the reading speed of one worker, without the loader's own costs
        labels.entry((i * 7919) % len(labels))
    reads = items / (time.perf_counter() - t2)
    ds = LabelItems(labels, items * workers)
    loader = torch.utils.data.DataLoader(ds, batch_size=64, num_workers=workers, collate_fn=report,
                                         multiprocessing_context="fork")
    last = {}
    for r in loader:
        last[r["worker"]] = r
    return {"startup_s": startup, "process_mib_before": before["rss"], "process_rss_mib_loaded": loaded["rss"],
            "process_peak_rss_mib": peak, "entries": len(labels),
            "workers": [{k: round(v, 1) for k, v in r.items() if k in ("rss", "pss", "private")}
                        for _, r in sorted(last.items())],
            "entries_per_s_per_worker": reads}


def child_poses(folder: str, files: int, max_length: int) -> dict:
    """Clips/s of one process reading the pose files (NewsDataset items), warm then cold."""
    from signfuse.data.news import NewsDataset, NewsLabels
    entries = [{"video": f"clip_{i:07d}.mp4", "pose": f"clip_{i:07d}.pkl", "text": "文本"} for i in range(files)]
    label_file = Path(folder) / "labels.json"
    label_file.write_text(json.dumps(entries, ensure_ascii=False), encoding="utf-8")
    ds = NewsDataset(NewsLabels(label_file), folder, "CSL_News", "dev", max_length=max_length, train=True)
    ds.start = 0  # every file (the split does not matter here)
    result = {}
    for i in range(min(files, 10)):  # warm-up: imports, first calls
        ds[i]
    for kind in ("cold", "warm"):
        if kind == "cold":
            drop_cache(Path(folder), files)
        t0 = time.perf_counter()
        for i in range(files):
            assert "error" not in ds[i]
        result[f"clips_per_s_{kind}"] = files / (time.perf_counter() - t0)
    return result


def drop_cache(folder: Path, files: int) -> None:
    """Ask the kernel to drop the cached pages of the pose files (no root needed)."""
    for i in range(files):
        fd = os.open(folder / f"clip_{i:07d}.pkl", os.O_RDONLY)
        try:
            os.fsync(fd)  # written pages must reach the disk before they can be dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def in_child(*argv) -> dict:
    """Run this script's ``--child`` mode in a fresh process; its JSON result."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, __file__, "--child", *map(str, argv)], capture_output=True, text=True,
                       env=env, check=False)
    if r.returncode != 0:
        raise SystemExit(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- main

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--entries", type=int, default=CSL_NEWS_ENTRIES, help="label list entries (CSL-News: 722,711)")
    p.add_argument("--workers", type=int, default=2, help="data-loader workers per loader")
    p.add_argument("--items", type=int, default=4000, help="label entries each worker reads")
    p.add_argument("--files", type=int, default=1000, help="pose files read")
    p.add_argument("--frames", type=int, default=250, help="frames per pose file (CSL-News: ~9.9 s at 25 fps)")
    p.add_argument("--max_length", type=int, default=256)
    p.add_argument("--quick", action="store_true", help="20,000 entries, 500 items per worker, 100 pose files")
    p.add_argument("--tmp", default=None, help="folder for the generated corpus (default: the system's)")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    add_out_arg(p, "pretrain_data")
    args = p.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        out = child_poses(rest[0], int(rest[1]), int(rest[2])) if kind == "poses" else \
            child_labels(kind, rest[0], int(rest[1]), int(rest[2]))
        print(json.dumps(out))
        return out
    if args.quick:
        args.entries, args.items, args.files = 20_000, 500, 100
    info = machine_info()
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        figures = run(args, Path(tmp))
    settings = {k: v for k, v in vars(args).items() if k not in ("child", "out", "tmp")}
    write_result(args.out, figures, settings, info, argv)
    print(json.dumps(figures, indent=1, ensure_ascii=False))
    return figures


def run(args, tmp: Path) -> dict:
    label_file = tmp / "CSL_News_Labels.json"
    t0 = time.perf_counter()
    size = write_label_list(label_file, args.entries)
    print(f"label list: {args.entries} entries, {size / 1e6:.1f} MB ({time.perf_counter() - t0:.0f} s to write)",
          flush=True)
    figures = {"label_list": {"entries": args.entries, "bytes": size}}
    for kind in ("unisign", "packed"):
        figures[kind] = in_child(kind, label_file, args.workers, args.items)
        print(kind, json.dumps(figures[kind]), flush=True)
    label_file.unlink()
    poses = tmp / "poses"
    poses.mkdir()
    figures["pose_files"] = {"files": args.files, "frames": args.frames,
                             "bytes": write_pose_files(poses, args.files, args.frames)}
    figures["pose_files"].update(in_child("poses", poses, args.files, args.max_length))
    figures["ratios"] = ratios(figures)
    return figures


def ratios(f: dict) -> dict:
    """Uni-Sign's loader over signfuse's: start-up, private memory per worker."""
    def private(kind):
        return float(np.mean([w["private"] for w in f[kind]["workers"]]))
    return {"startup_unisign_over_packed": f["unisign"]["startup_s"] / f["packed"]["startup_s"],
            "worker_private_mib_unisign": private("unisign"), "worker_private_mib_packed": private("packed"),
            "worker_private_unisign_over_packed": private("unisign") / max(private("packed"), 1e-9),
            "label_reads_per_s_packed_over_unisign": f["packed"]["entries_per_s_per_worker"]
            / f["unisign"]["entries_per_s_per_worker"]}


if __name__ == "__main__":
    main()
