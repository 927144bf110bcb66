"""Speed of the rules describer: videos per second per CPU core on 100-frame videos.

Two figures, both on one process with one thread (so per core), on CPU time
(``time.process_time``, which other processes sharing the machine do not inflate):
- ``describe``: ``RulesDescriber.describe`` on the keypoints already in memory (what
  ``--describe rules`` costs a data-loader worker per sample);
- ``command``: what ``signfuse describe`` does per video: read and hash the pose file, load
  it, describe it, write the JSON file atomically (``describe_file``).
The videos are synthetic signers (``make-synthetic``'s renderer) of exactly 100 frames.

    python benchmarks/bench_describe.py [--videos 200] [--language en] [--out docs/results/bench_describe.json]
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core: before NumPy starts its thread pools
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import pickle  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from common import machine_info, machine_line, write_result  # noqa: E402
from signfuse.demo.synthetic import build_lexicon, render_sample  # noqa: E402
from signfuse.describe.write import describe_file  # noqa: E402
from signfuse.describe.rules import RulesDescriber, rules_settings  # noqa: E402

FRAMES = 100


def make_videos(n: int, seed: int = 0) -> list:
    """``n`` synthetic pose dicts of exactly ``FRAMES`` frames, 2-5 signs each."""
    lexicon = build_lexicon()
    words = list(lexicon)
    videos = []
    for i in range(n):
        rng = np.random.default_rng((seed, i))
        sentence = list(rng.choice(words, size=rng.integers(2, 6)))
        s = render_sample(lexicon, sentence, np.random.default_rng((seed, 1, i)), min_frames=FRAMES,
                          max_frames=FRAMES, mouthing=0.3, face_rng=np.random.default_rng((seed, 4, i)))
        assert len(s.keypoints) == FRAMES
        videos.append({"keypoints": s.keypoints, "scores": s.scores})
    return videos


def per_second(fn, items: list, repeats: int) -> float:
    """Items per CPU-second of ``fn`` over ``items`` (the best of ``repeats`` passes)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        for item in items:
            fn(item)
        best = min(best, time.process_time() - start)
    return len(items) / best


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--language", default="en", choices=("en", "zh"))
    p.add_argument("--out", default=None, help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    info = machine_info()

    settings = rules_settings("Synthetic", language=args.language)
    describer = RulesDescriber(settings)
    videos = make_videos(args.videos)
    arrays = [(v["keypoints"][:, 0], v["scores"][:, 0]) for v in videos]
    describe_rate = per_second(lambda a: describer.describe(*a), arrays, args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for i, v in enumerate(videos):
            (tmp / f"v{i:05d}.pkl").write_bytes(pickle.dumps(v, protocol=4))
        files = sorted(tmp.glob("*.pkl"))
        command_rate = per_second(lambda f: describe_file(describer, f, f.with_suffix(".json"), True, False),
                                  files, args.repeats)
        segments = [len(json.loads(f.with_suffix(".json").read_text())["segments"]) for f in files]

    figures = {"segments_per_video": round(float(np.mean(segments)), 1),
               "describe_videos_per_s_per_core": round(describe_rate, 1),
               "command_videos_per_s_per_core": round(command_rate, 1)}
    run = {"videos": args.videos, "frames_per_video": FRAMES, "repeats": args.repeats, "statistic": "best pass",
           "clock": "process", "describer": settings}
    result = {"settings": run, "figures": figures}
    if args.out:
        result = write_result(args.out, figures, run, info, argv, __file__)
    print(machine_line(info))
    print(f"settings: {settings}; {args.videos} videos of {FRAMES} frames, "
          f"{figures['segments_per_video']} segments per video; CPU time, best of {args.repeats}")
    print(f"rules describer, keypoints in memory: {figures['describe_videos_per_s_per_core']:.1f} videos/s per core")
    print("signfuse describe per video (read, hash, load, describe, write): "
          f"{figures['command_videos_per_s_per_core']:.1f} videos/s per core")
    return result


if __name__ == "__main__":
    main()
