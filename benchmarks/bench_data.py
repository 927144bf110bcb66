"""Data pipeline speed: signfuse's array operations vs a per-frame Python loop.

    python benchmarks/bench_data.py --clock process   # 100 files of 200 frames, best of 5
    python benchmarks/bench_data.py --quick           # CI: 10 files, 1 repeat

Per sample: read the pose file, pick the frames, split the parts and normalise them
(docs/unisign-compat.md sections 1-3). The loop version below is written the way Uni-Sign's
loader does it (a Python loop over frames per part, Python min/max over the box points);
the two must give the same arrays, which the benchmark checks before timing them. It
prints samples per second of both and the ratio, and writes them with the machine and the
settings to docs/results/bench_data.json (``--out``).
"""
import argparse
import pickle
import tempfile
from pathlib import Path

import numpy as np

from common import CLOCK_HELP, CLOCKS, add_out_arg, machine_info, machine_line, write_result
from signfuse.data.pose import load_pose
from signfuse.data.sampler import sample_frames
from signfuse.data.transforms import PART_NAMES, normalize_parts, split_parts

THR = 0.3
LOOP_POINTS = {
    "body": [0] + list(range(3, 11)),
    "left": list(range(91, 112)),
    "right": list(range(112, 133)),
    "face_all": list(range(23, 40, 2)) + list(range(83, 91)) + [53],
}


# ---- the per-frame loop version (the way Uni-Sign's datasets.py works) ----

def loop_frame_numbers(duration, max_length, start):
    if duration <= max_length:
        return [start + i for i in range(duration)]
    step = (duration - 1) / (max_length - 1)  # evenly spaced, as signfuse evaluates
    return [start + int(np.floor(k * step + 0.5)) for k in range(max_length)]


def loop_body_box(body):
    confident = body[body[..., 2] > THR][:, :2]
    if len(confident) < 4:
        return None
    xmin, xmax = min(confident[:, 0]), max(confident[:, 0])  # Python min/max over the points
    ymin, ymax = min(confident[:, 1]), max(confident[:, 1])
    scale = max(xmax - xmin, ymax - ymin)
    if scale == 0:
        return None
    return np.array([(xmin + xmax - scale) / 2, (ymin + ymax - scale) / 2], np.float32), scale


def loop_pipeline(path, max_length):
    with open(path, "rb") as f:
        pose = pickle.load(f)
    start = pose.get("start", 0)
    duration = pose.get("end", len(pose["scores"])) - start
    frames = loop_frame_numbers(duration, max_length, start)
    skeletons = [pose["keypoints"][i] for i in frames]
    confs = [pose["scores"][i] for i in frames]
    return loop_parts(skeletons, confs)


def loop_parts(skeletons, confs):
    """Split and normalise frame by frame: skeletons, confs are lists over frames."""
    parts, box = {}, None
    for part in PART_NAMES:
        points, scores = [], []
        for skeleton, conf in zip(skeletons, confs, strict=True):  # one frame at a time
            xy = skeleton[0][LOOP_POINTS[part]]
            if part in ("left", "right"):
                xy = xy - xy[0]
            elif part == "face_all":
                xy = xy - xy[-1]
            points.append(xy)
            scores.append(conf[0][LOOP_POINTS[part]])
        result = np.concatenate([np.stack(points), np.stack(scores)[..., None]], axis=-1)
        if part == "body":
            box = loop_body_box(result)
        if box is None:
            parts[part] = np.zeros(result.shape, np.float32)
            continue
        corner, scale = box
        if part == "body":
            result[..., :2] = ((result[..., :2] - corner) / scale - 0.5) * 2
        else:
            result[..., :2] = result[..., :2] / scale
        result = np.clip(result, -1, 1)
        result[result[..., 2] <= THR] = 0
        parts[part] = result.astype(np.float32)
    return parts


# ---- signfuse's version ----

def vector_pipeline(path, max_length):
    pose = load_pose(path)
    frames = sample_frames(pose.num_frames, max_length, train=False, start=pose.start)
    return normalize_parts(split_parts(pose.keypoints[frames], pose.scores[frames]))


def vector_parts(keypoints, scores):
    return normalize_parts(split_parts(keypoints, scores))


def write_pose_files(folder, count, frames, persons, seed):
    """Pose files as Uni-Sign's are: lists over frames of (P, 133, 2) and (P, 133) arrays."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        keypoints = rng.uniform(0.1, 0.9, (frames, persons, 133, 2)).astype(np.float32)
        scores = rng.uniform(0.0, 1.0, (frames, persons, 133)).astype(np.float32)
        path = Path(folder) / f"sample{i:04d}.pkl"
        path.write_bytes(pickle.dumps({"keypoints": list(keypoints), "scores": list(scores)}))
        paths.append(path)
    return paths


def rates(fns, inputs, repeats, clock="wall"):
    """Best samples-per-second of each ``fn(*args)`` over ``repeats`` passes through ``inputs``,
    on ``clock`` (see common.CLOCKS).

    The functions take turns within each pass, so that a busy machine slows them alike.
    """
    now = CLOCKS[clock]
    best = [0.0] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = now()
            for args in inputs:
                fn(*args)
            best[i] = max(best[i], len(inputs) / (now() - t0))
    return best


def check_equal(paths, max_length):
    """Both pipelines give the same arrays (atol 1e-6) on every file, before any timing."""
    for path in paths:
        want, got = loop_pipeline(path, max_length), vector_pipeline(path, max_length)
        for name in PART_NAMES:
            assert got[name].dtype == np.float32 and got[name].shape == want[name].shape, name
            np.testing.assert_allclose(got[name], want[name], atol=1e-6, rtol=0, err_msg=f"{path} {name}")


def measure(args) -> dict:
    """{what: (loop samples/s, signfuse samples/s)} for the whole pipeline and normalising alone."""
    with tempfile.TemporaryDirectory() as folder:
        paths = write_pose_files(folder, args.samples, args.frames, args.persons, args.seed)
        check_equal(paths, args.max_length)
        runs = [(path, args.max_length) for path in paths]
        whole = rates([loop_pipeline, vector_pipeline], runs, args.repeats, args.clock)
        # the split+normalise step alone, on frames already in memory (the same for both)
        poses = [load_pose(path) for path in paths]
        frames = [(p.keypoints[:, None], p.scores[:, None]) for p in poses]  # (T, 1, 133, 2), (T, 1, 133)
        alone = rates([lambda k, s: loop_parts(list(k), list(s)), lambda k, s: vector_parts(k[:, 0], s[:, 0])],
                      frames, args.repeats, args.clock)
    return {"load + sample + split + normalise": whole, "split + normalise only": alone}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100, help="pose files to generate")
    parser.add_argument("--frames", type=int, default=200, help="frames per pose file")
    parser.add_argument("--persons", type=int, default=1, help="persons per frame")
    parser.add_argument("--max_length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5, help="passes; the best is reported")
    parser.add_argument("--clock", default="wall", choices=CLOCKS, help=CLOCK_HELP)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="10 files, 1 repeat (for CI)")
    add_out_arg(parser, "data")
    args = parser.parse_args()
    if args.quick:
        args.samples, args.repeats = 10, 1
    info = machine_info()
    measured = measure(args)

    figures = {"samples_per_s": {what: {"per-frame loop": round(loop, 1), "signfuse": round(vector, 1),
                                        "speed_up": round(vector / loop, 1)}
                                 for what, (loop, vector) in measured.items()},
               "outputs_equal": "atol 1e-6 on every file"}
    settings = {"samples": args.samples, "frames": args.frames, "persons": args.persons,
                "max_length": args.max_length, "repeats": args.repeats, "statistic": "best pass",
                "clock": args.clock, "seed": args.seed, "quick": args.quick, "processes": 1}
    write_result(args.out, figures, settings, info)
    print(machine_line(info))
    print(f"settings: {args.samples} pose files x {args.frames} frames x {args.persons} person(s), "
          f"max_length {args.max_length}, best of {args.repeats}, one process, {args.clock} clock")
    print("outputs: equal (atol 1e-6) on every file")
    print(f"{'samples/s':<40}{'per-frame loop':>16}{'signfuse':>12}{'speed-up':>10}")
    for what, f in figures["samples_per_s"].items():
        print(f"{what:<40}{f['per-frame loop']:>16.1f}{f['signfuse']:>12.1f}{f['speed_up']:>9.1f}x")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
