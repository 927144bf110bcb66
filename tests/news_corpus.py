"""A tiny corpus in CSL-News's layout for the pre-training tests: the synthetic benchmark's pose
files (and with ``videos`` its lossless videos) moved into flat folders, one JSON label list.

    data/CSL_News/CSL_News_Labels.json    [{"video": "<name>.mp4", "pose": "<name>.pkl", "text": ...}]
    dataset/CSL_News/pose_format/<name>.pkl
    dataset/CSL_News/rgb_format/<name>.mp4     (videos)
    description/CSL_News/<name>.json           (the synthetic description files)
"""
import json
from pathlib import Path

from signfuse.data.labels import load_labels
from signfuse.demo.synthetic import make_synthetic
from signfuse.demo.synthetic_video import write_videos

# Texts of the last entries (the held-out ones when there are 400), which the character-split
# tests check by hand: '，' and '？' (made ASCII in references), spaces, an English word.
HELDOUT_TEXTS = ("新闻，报道？ 今天", "天气 很好", "a b，c", "他说？")


def make_news_corpus(root, entries: int = 400, sources: int = 12, videos: bool = False, seed: int = 1,
                     heldout_texts=HELDOUT_TEXTS, dataset: str = "CSL_News") -> dict:
    """Write the corpus under ``root``: ``entries`` entries (400: train [0, 396), held-out the
    last 4) named ``clip_<i>.mp4`` / ``clip_<i>.pkl``, entry i a link to synthetic sample
    i % ``sources`` (its pose file, video, description file and English sentence); the last
    entries get ``heldout_texts``. Returns {"root", "labels" (the written list), "label_file"}."""
    root, src = Path(root), Path(root) / "synthetic"
    make_synthetic(src, samples=sources, seed=seed, min_frames=20, max_frames=76, split=(0.5, 0.25, 0.25))
    if videos:
        write_videos(src)
    folders = {kind: root / "dataset" / dataset / f"{kind}_format" for kind in ("pose", "rgb")}
    desc_dir = root / "description" / dataset
    for folder in (*folders.values(), desc_dir):
        folder.mkdir(parents=True)
    synthetic = []
    for split in ("train", "dev", "test"):
        for name, sample in load_labels(src / "data" / "Synthetic" / f"labels.{split}").items():
            synthetic.append((split, name, sample["text"]))
    labels = []
    for i in range(entries):
        split, name, text = synthetic[i % sources]
        clip = f"clip_{i:04d}"
        (folders["pose"] / f"{clip}.pkl").symlink_to(next((src / "dataset/Synthetic/pose_format").rglob(f"{name}.pkl")))
        if videos:
            (folders["rgb"] / f"{clip}.mp4").symlink_to(src / "dataset/Synthetic/rgb_format" / split / f"{name}.mp4")
        description = src / "description" / "Synthetic" / f"{name}.json"
        if description.exists():
            (desc_dir / f"{clip}.json").symlink_to(description)
        labels.append({"video": f"{clip}.mp4", "pose": f"{clip}.pkl", "text": text})
    for entry, text in zip(labels[len(labels) - len(heldout_texts):], heldout_texts, strict=True):
        entry["text"] = text
    label_file = root / "data" / dataset / f"{dataset}_Labels.json"
    label_file.parent.mkdir(parents=True)
    label_file.write_text(json.dumps(labels, ensure_ascii=False), encoding="utf-8")
    return {"root": root, "labels": labels, "label_file": label_file}
