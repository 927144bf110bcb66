"""RGB branch speed: the hand-crop data path (ours vs Uni-Sign's), and the training step (pose-only vs RGB-pose).

    nice -n 10 python benchmarks/bench_rgb.py --out docs/results/bench_rgb.json   # 4 min wall, 1m45 CPU (2 busy cores)
    python benchmarks/bench_rgb.py --quick      # CI: 256x256 videos, 2 repeats, B=2, T=32, 1 layer (15 s CPU)

1. Data path per sample (docs/rgb-pose.md sections 2-7), side by side in one run on the same videos
   and the same drawn frames: **ours** is ``signfuse.data.hand_crops.load_hand_crops`` (PyAV
   reader, ``signfuse.data.video``); **Uni-Sign-style** is written below the way Uni-Sign's
   ``load_support_rgb_dict`` works: decord ``VideoReader(path, num_threads=1, ctx=cpu(0))``,
   ``seek(0)``, ``get_batch(frame numbers)``, then a loop over the frames that cuts, resizes and
   normalises each crop (torchvision ``ToTensor`` + ``Normalize``) into a preallocated tensor. It
   uses our selection, box and cut functions (the same numbers as Uni-Sign's, golden-tested), so
   the difference measured is the reader and the orchestration; it leaves out Uni-Sign's
   ``copy.deepcopy`` of the whole frame before each crop, which only flatters it. Both draw the
   hands' frames from ``np.random.RandomState(repeat)`` (Uni-Sign's ``np.random.choice``), so each
   repeat reads the same frames in both; the crops, indices and skeletons must be byte-identical
   (checked on every call; digests in the JSON). A third, staged run of our path times each
   step (selection, decode, crop+resize, normalise) and must give the same bytes too.
   Videos (written here with PyAV's libx264, single-threaded): a textured background that pans,
   two drawn hands where the synthetic pose puts them, every hand frame confident, so each hand
   gets ceil(10%) of the sampled frames: 512x512 yuv420p crf 23 with one keyframe (GOP 250, 3
   B-frames) of 200 frames; 1500 frames with GOP 25 (the pose sampler keeps 256 of them); and
   lossless libx264rgb (qp 0, preset ultrafast) of 200 frames on a plain background, as
   ``make-synthetic --videos`` writes them.
2. Training step (forward + backward; no optimizer step) of pose-only vs RGB-pose Uni_Sign at
   Uni-Sign's widths (pose 64/128/256, mT5-base's d_model 768 from
   tests/data/mt5-base-config.json, 2 encoder + 2 decoder layers, vocabulary 32128, random weights, the
   tiny tokenizer; as bench_step.py), float32, train mode, T=64, ~10% of the frames of each hand
   with a crop, ``--rgb_gate_init small`` (a branch that learns; with Uni-Sign's zero gate autograd
   still computes the branch's gradients, as zeros). Check: with the gate set to zero, the
   RGB-pose loss equals pose-only's (eval mode).

Clocks: CPU time of this process (``time.process_time``: what the work costs, without the
interference of other processes on a shared machine; decord's and PyAV's threads included),
1 torch / OpenMP thread, single-threaded decoding. Wall times are in the JSON as well.
Calls interleaved repeat by repeat (the order rotated), medians reported (minima in the JSON).
"ours/Uni-Sign" below 1: our path costs less.
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core: before NumPy and torch start their thread pools
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import av  # noqa: E402
import numpy as np  # noqa: E402
import PIL  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from common import build_language_model, command_line, machine_info, pose_batch, write_json  # noqa: E402
from signfuse.data.hand_crops import (HAND_POINTS, HANDS, IMAGE_SIZE, MEAN, STD, RGBSettings, crop_hands,  # noqa: E402
                                      cut_hand, dummy_hand, hand_boxes, hand_item, load_hand_crops,
                                      select_positions, skeletons_norm)
from signfuse.data.pose import PoseRecord  # noqa: E402
from signfuse.data.sampler import sample_frames  # noqa: E402
from signfuse.demo.synthetic_video import BACKGROUND, render_frames  # noqa: E402
from signfuse.data.video import frame_pts, open_video, read_frames  # noqa: E402

try:
    import decord  # Uni-Sign's reader: optional (pip install decord, or the 'bench' extra)
except ImportError:
    decord = None

MAX_LENGTH = 256  # Uni-Sign's --max_length: the pose sampler keeps at most this many frames
# name -> (frames, size, codec, encoder options)
VIDEOS = {
    "512x512 crf23 GOP250 B3, 200 frames": (200, 512, "libx264", {"crf": "23", "g": "250", "bf": "3"}),
    "512x512 crf23 GOP25 B3, 1500 frames": (1500, 512, "libx264", {"crf": "23", "g": "25", "bf": "3"}),
    "512x512 lossless rgb, 200 frames": (200, 512, "libx264rgb", {"qp": "0", "preset": "ultrafast"}),
}
QUICK_VIDEOS = {
    "256x256 crf23 GOP250 B3, 60 frames": (60, 256, "libx264", {"crf": "23", "g": "250", "bf": "3"}),
    "256x256 crf23 GOP25 B3, 300 frames": (300, 256, "libx264", {"crf": "23", "g": "25", "bf": "3"}),
    "256x256 lossless rgb, 60 frames": (60, 256, "libx264rgb", {"qp": "0", "preset": "ultrafast"}),
}


# ----------------------------------------------------------------------------- synthetic pose and videos

def hand_shape() -> np.ndarray:
    """(21, 2) COCO-WholeBody hand points around the wrist (0, 0), about 1 unit long, fingers up."""
    points = [(0.0, 0.0)]
    for angle in np.linspace(-0.9, 0.6, 5):  # thumb .. little finger
        for reach in (0.35, 0.6, 0.8, 1.0):
            points.append((reach * math.sin(angle), -reach * math.cos(angle)))
    return np.asarray(points)


def synthetic_pose(frames: int, seed: int) -> PoseRecord:
    """Two hands moving on smooth paths (sometimes near the frame's edge), turning, every hand
    point confident (scores 0.4 - 1, so each fingertip minimum differs): every frame is a candidate."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames)[:, None]  # (N, 1)
    keypoints = np.zeros((frames, 133, 2), np.float32)
    scores = np.zeros((frames, 133), np.float32)
    for hand, (cx, phase) in zip(HANDS, ((0.35, 0.0), (0.65, 2.0)), strict=True):
        centre = np.concatenate([cx + 0.3 * np.sin(t / 37 + phase), 0.5 + 0.4 * np.cos(t / 51 + phase)], 1)  # (N, 2)
        angle = 0.6 * np.sin(t / 23 + phase)  # (N, 1)
        size = 0.07 + 0.02 * np.sin(t / 29 + phase)  # (N, 1): hand length, fraction of the frame
        x, y = hand_shape()[:, 0], hand_shape()[:, 1]  # (21,)
        rotated = np.stack([x * np.cos(angle) - y * np.sin(angle), x * np.sin(angle) + y * np.cos(angle)], -1)  # (N, 21, 2)
        points = centre[:, None] + size[:, :, None] * rotated + rng.normal(0, 0.002, (frames, 21, 2))
        keypoints[:, HAND_POINTS[hand]] = points
        scores[:, HAND_POINTS[hand]] = rng.uniform(0.4, 1.0, (frames, 21))
    return PoseRecord(keypoints=keypoints, scores=scores, start=0, end=frames)


def write_video(path: Path, pose: PoseRecord, size: int, codec: str, options: dict, seed: int) -> None:
    """Frames: the two hands drawn (render_frames) on a textured background that pans, with slight
    noise; lossless (libx264rgb) videos on make-synthetic's plain background, as it writes them."""
    plain = codec == "libx264rgb"
    rng = np.random.default_rng(seed)
    texture = Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8))
    texture = np.asarray(texture.resize((2 * size, 2 * size), Image.Resampling.BICUBIC))  # (2S, 2S, 3)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=25)
        stream.width = stream.height = size
        stream.pix_fmt = "rgb24" if codec == "libx264rgb" else "yuv420p"
        stream.options = {"preset": "medium", **options}
        stream.codec_context.thread_count = 1
        for start in range(0, len(pose.keypoints), 50):
            hands = render_frames(pose.keypoints[start:start + 50], (size, size))  # (n, S, S, 3)
            drawn = (hands != np.asarray(BACKGROUND, np.uint8)).any(-1)  # (n, S, S): hand pixels
            for i, image in enumerate(hands):
                k = start + i
                ox, oy = int(size / 2 + size / 3 * math.sin(k / 40)), int(size / 2 + size / 3 * math.cos(k / 53))
                if not plain:
                    frame = texture[oy:oy + size, ox:ox + size].astype(np.int16) + rng.integers(-2, 3, (size, size, 1))
                    image = np.where(drawn[i][..., None], image, frame.clip(0, 255)).astype(np.uint8)  # (S, S, 3)
                out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())


def make_samples(folder: Path, videos: dict) -> list:
    """[(name, pose, frames (T,) the pose sampler's evaluation frames, video path)], videos written."""
    samples = []
    for i, (name, (frames, size, codec, options)) in enumerate(videos.items()):
        pose = synthetic_pose(frames, seed=i)
        path = folder / f"video{i}.mp4"
        write_video(path, pose, size, codec, options, seed=i)
        samples.append((name, pose, sample_frames(pose.num_frames, MAX_LENGTH, train=False), path))
    return samples


# ----------------------------------------------------------------------------- the data paths

def ours(pose, frames, path, seed: int) -> dict:
    """signfuse's path: load_hand_crops, training-style draw from Uni-Sign's generator."""
    return load_hand_crops(pose, frames, path, RGBSettings(video_dir=str(path.parent)), train=True,
                           rng=np.random.RandomState(seed))


def ours_staged(pose, frames, path, seed: int, clock) -> tuple:
    """The steps of load_hand_crops one by one: (its output, {stage: seconds on ``clock``})."""
    times, t = {}, clock()
    scores = pose.scores[frames]  # (T, 133)
    rng = np.random.RandomState(seed)
    positions = {hand: select_positions(scores, hand, "random", rng) for hand in HANDS}
    present = [p for p in positions.values() if p is not None]
    if not present:
        return {**dummy_hand("left"), **dummy_hand("right")}, times
    union = np.unique(np.concatenate(present))  # (U,)
    times["select"], t = clock() - t, clock()
    images = read_frames(path, frames[union], min_frames=len(pose.keypoints))  # (U, H, W, 3)
    times["decode"], t = clock() - t, clock()
    points = {hand: None if p is None else pose.keypoints[frames[p]][:, HAND_POINTS[hand]]
              for hand, p in positions.items()}  # (k, 21, 2)
    crops, _ = crop_hands(images, union, positions, points, "unisign")
    times["crop+resize"], t = clock() - t, clock()
    out = {**hand_item("left", crops["left"]), **hand_item("right", crops["right"])}
    times["normalise"] = clock() - t
    return out, times


def unisign_decode(path, frame_numbers) -> np.ndarray:
    """Uni-Sign's ``load_video_support_rgb``: (U, H, W, 3) uint8."""
    vr = decord.VideoReader(str(path), num_threads=1, ctx=decord.cpu(0))
    vr.seek(0)
    images = vr.get_batch(list(frame_numbers)).asnumpy()
    del vr
    return images


def unisign_style(pose, frames, path, seed: int, transform, clock) -> tuple:
    """Uni-Sign's orchestration (load_support_rgb_dict) around decord: (output, {"decode": seconds})."""
    scores = pose.scores[frames]  # (T, 133)
    rng = np.random.RandomState(seed)
    positions = {hand: select_positions(scores, hand, "random", rng) for hand in HANDS}
    present = [p for p in positions.values() if p is not None]
    if not present:
        return {**dummy_hand("left"), **dummy_hand("right")}, {"decode": 0.0}
    union = np.unique(np.concatenate(present))  # (U,)
    t = clock()
    images = unisign_decode(path, frames[union])  # (U, H, W, 3)
    decode = clock() - t
    height, width = images.shape[1:3]
    points = {hand: None if p is None else pose.keypoints[frames[p]][:, HAND_POINTS[hand]]
              for hand, p in positions.items()}  # (k, 21, 2)
    left_boxes, right_boxes, side = hand_boxes(points["left"], points["right"], width, height)
    if side == 0:
        return {**dummy_hand("left"), **dummy_hand("right")}, {"decode": decode}
    boxes = {"left": left_boxes, "right": right_boxes}
    hands = {hand: torch.zeros(len(p), 3, IMAGE_SIZE, IMAGE_SIZE) for hand, p in positions.items() if p is not None}
    done = {hand: 0 for hand in HANDS}
    for row, image in enumerate(images):  # frame by frame, left then right, as Uni-Sign
        for hand in hands:
            i = done[hand]
            if i < len(positions[hand]) and union[row] == positions[hand][i]:
                cut = cut_hand(image, boxes[hand][i], side, "unisign")
                crop = Image.fromarray(cut).convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE))
                hands[hand][i] = transform(crop)  # (3, 112, 112)
                done[hand] += 1
    out = {}
    for hand in HANDS:
        if hand not in hands:
            out.update(dummy_hand(hand))
            continue
        out[f"{hand}_sampled_indices"] = positions[hand].astype(np.int64)
        out[f"{hand}_hands"] = hands[hand].numpy()
        out[f"{hand}_skeletons_norm"] = skeletons_norm(points[hand], boxes[hand], side, width, height)
    return out, {"decode": decode}


def digest(out: dict) -> str:
    """sha256 of the six RGB keys (names, dtypes, shapes and bytes), in a fixed order."""
    h = hashlib.sha256()
    for key in sorted(out):
        a = np.ascontiguousarray(out[key])
        h.update(f"{key}|{a.dtype}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def check_same(a: dict, b: dict, what: str) -> None:
    assert sorted(a) == sorted(b), (what, sorted(a), sorted(b))
    for key in a:
        x, y = np.asarray(a[key]), np.asarray(b[key])
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), f"{what}: {key} differs"


# ----------------------------------------------------------------------------- part 1: measure the data paths

def time_call(fn, clock):
    """(result, seconds on ``clock``, wall seconds) of one call."""
    c, w = clock(), time.perf_counter()
    result = fn()
    return result, clock() - c, time.perf_counter() - w


def measure_video(name, pose, frames, path, repeats: int, clock) -> dict:
    """Per-sample times of the paths on one video, interleaved; every call's output compared."""
    from torchvision import transforms
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    calls = {"ours": lambda s: (ours(pose, frames, path, s), {}),
             "ours staged": lambda s: ours_staged(pose, frames, path, s, clock)}
    if decord is not None:
        calls["Uni-Sign-style"] = lambda s: unisign_style(pose, frames, path, s, transform, clock)
    names = list(calls)
    for n in names:  # warm-up: library start-up, file cache
        calls[n](repeats)
    cpu, wall = {n: [] for n in names}, {n: [] for n in names}
    stages, digests, read = {n: {} for n in names}, {n: [] for n in names}, []
    for r in range(repeats):
        outs = {}
        for n in names[r % len(names):] + names[:r % len(names)]:
            (outs[n], parts), c, w = time_call(lambda: calls[n](r), clock)  # noqa: B023 - called at once
            cpu[n].append(c)
            wall[n].append(w)
            for stage, seconds in parts.items():
                stages[n].setdefault(stage, []).append(seconds)
        for n in names:
            check_same(outs["ours"], outs[n], f"{name}, repeat {r}: {n} vs ours")
            digests[n].append(digest(outs[n]))
        indices = [outs["ours"][f"{hand}_sampled_indices"] for hand in HANDS]
        read.append(len(np.unique(np.concatenate([i for i in indices if i[0] >= 0] or [[]]))))
    return {"cpu": cpu, "wall": wall, "stages": stages, "digests": digests, "frames_read": read}


def same_frames(pose, frames, path) -> bool | None:
    """Whether PyAV (ours) and decord return identical pixels for 40 frames spread over the video."""
    if decord is None:
        return None
    numbers = frames[np.linspace(0, len(frames) - 1, 40).round().astype(int)]
    return bool(np.array_equal(read_frames(path, numbers), unisign_decode(path, numbers)))


def index_time(path, repeats: int, clock) -> float:
    """Median seconds of opening the video and demuxing it for its timestamps (part of our decode)."""
    times = []
    for _ in range(repeats):
        t = clock()
        container, stream = open_video(path)
        with container:
            frame_pts(container, stream, path)
        times.append(clock() - t)
    return statistics.median(times)


def ms(seconds: list) -> float:
    return round(1000 * statistics.median(seconds), 2)


def measure_data(args, folder: Path, clock) -> list:
    """Part 1: one result dict per video."""
    results = []
    for name, pose, frames, path in make_samples(folder, QUICK_VIDEOS if args.quick else VIDEOS):
        m = measure_video(name, pose, frames, path, args.repeats, clock)
        with av.open(str(path)) as c:
            kbps = round(path.stat().st_size * 8 / 1000 / float(c.duration / av.time_base), 1)
        result = {"video": name, "kbit_per_s": kbps, "pose_frames": len(pose.keypoints),
                  "sampled_frames": len(frames), "frames_read_per_sample": round(statistics.mean(m["frames_read"]), 1),
                  "ms_per_sample": {n: ms(v) for n, v in m["cpu"].items()},
                  "min_ms_per_sample": {n: round(1000 * min(v), 2) for n, v in m["cpu"].items()},
                  "wall_ms_per_sample": {n: ms(v) for n, v in m["wall"].items()},
                  "stages_ms": {n: {s: ms(v) for s, v in st.items()} for n, st in m["stages"].items() if st},
                  "index_ms": round(1000 * index_time(path, args.repeats, clock), 2),
                  "decoded_frames_identical": same_frames(pose, frames, path),
                  "digests": m["digests"]}
        unisign = result["ms_per_sample"].get("Uni-Sign-style")
        result["ratio_ours_over_unisign"] = round(result["ms_per_sample"]["ours"] / unisign, 3) if unisign else None
        fastest = result["min_ms_per_sample"]
        result["ratio_of_minima"] = round(fastest["ours"] / fastest["Uni-Sign-style"], 3) if unisign else None
        results.append(result)
    return results


# ----------------------------------------------------------------------------- part 2: training step

def rgb_keys(B: int, T: int, seed: int) -> dict:
    """The RGB keys of a batch (docs/rgb-pose.md section 7): per sample and hand ceil(10% of T) sorted
    positions, random normalised crops and skeletons in [0, 1]."""
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    k = math.ceil(0.1 * T)
    batch = {}
    for hand in HANDS:
        indices = np.concatenate([np.sort(rng.choice(T, size=k, replace=False)) for _ in range(B)])  # (B*k,)
        batch[f"{hand}_sampled_indices"] = torch.from_numpy(indices.astype(np.int64))
        batch[f"{hand}_hands"] = torch.randn(B * k, 3, IMAGE_SIZE, IMAGE_SIZE, generator=g)
        batch[f"{hand}_skeletons_norm"] = torch.rand(B * k, 21, 2, generator=g)
        batch[f"{hand}_rgb_len"] = [k] * B
    return batch


def build_step_models(args) -> tuple:
    """(shared language model, {"pose-only": Uni_Sign, "RGB-pose": Uni_Sign}) around one mT5:
    the same pose encoder weights (seed), the RGB one with --rgb_gate_init small."""
    from signfuse.config import ModelConfig
    from signfuse.models.uni_sign import Uni_Sign

    shared = build_language_model(args.layers, args.vocab, torch.device("cpu"), seed=0)
    models = {}
    for name, rgb in (("pose-only", False), ("RGB-pose", True)):
        cfg = ModelConfig(dataset="Synthetic", d_model=shared["config"]["d_model"], rgb_support=rgb,
                          rgb_gate_init="small")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            models[name] = Uni_Sign(cfg, shared["mt5"], shared["tokenizer"])
    return shared, models


def gate_zero_loss(model, batch) -> float:
    """The RGB-pose loss in eval mode with the fusion gate's last convolution set to zero (then restored)."""
    last = model.fusion_gate[2]
    saved = {k: v.clone() for k, v in last.state_dict().items()}
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
        loss = model.eval()(batch)["loss"].item()
    last.load_state_dict(saved)
    return loss


def fwd_bwd(model, batch) -> None:
    model.zero_grad(set_to_none=True)
    model(batch)["loss"].backward()


def measure_step(args, clock) -> dict:
    """Part 2: forward+backward time of both models per batch size, interleaved, after the
    zero-gate check of every batch (before any train-mode step moves the BatchNorm statistics)."""
    shared, models = build_step_models(args)
    result = {"config_source": shared["source"], "d_model": shared["config"]["d_model"],
              "layers": shared["config"]["num_layers"], "vocab": shared["config"]["vocab_size"],
              "pose_widths": list(models["pose-only"].cfg.gcn_channels),
              "rgb_parameters": sum(p.numel() for p in models["RGB-pose"].parameters())
              - sum(p.numel() for p in models["pose-only"].parameters()), "batches": []}
    batches = {B: {**pose_batch(B, args.frames, seed=B), **rgb_keys(B, args.frames, seed=B)} for B in args.batches}
    for B, batch in batches.items():
        with torch.no_grad():
            pose_loss = models["pose-only"].eval()(batch)["loss"].item()
        result["batches"].append({"B": B, "T": args.frames, "crops_per_hand": len(batch["left_sampled_indices"]),
                                  "loss_pose_only": pose_loss,
                                  "loss_rgb_gate_zero": gate_zero_loss(models["RGB-pose"], batch)})
    names = list(models)
    for m in models.values():
        m.train()
    for entry in result["batches"]:
        times = {n: [] for n in names}
        for r in range(args.warmup + args.steps):
            for n in names[r % 2:] + names[:r % 2]:
                _, seconds, _ = time_call(lambda: fwd_bwd(models[n], batches[entry["B"]]), clock)  # noqa: B023
                if r >= args.warmup:
                    times[n].append(seconds)
        entry["ms_per_step"] = {n: ms(v) for n, v in times.items()}
        entry["ratio_rgb_over_pose"] = round(statistics.median(times["RGB-pose"])
                                             / statistics.median(times["pose-only"]), 2)
    return result


# ----------------------------------------------------------------------------- report

def machine() -> dict:
    """common.machine_info() (date, commit, CPU, threads, load, versions) and the video stack's versions."""
    return {**machine_info(), "av": av.__version__,
            "ffmpeg_libavcodec": ".".join(map(str, av.library_versions["libavcodec"])),
            "decord": getattr(decord, "__version__", None), "pillow": PIL.__version__,
            "clock": "process (CPU time of this process, all its threads)"}


def print_data(results: list) -> None:
    names = list(results[0]["ms_per_sample"])
    print(f"\n1. data path per sample (ms CPU time, median): {', '.join(names)}")
    print(f"{'video':<38}{'kbit/s':>7}{'read':>6}" + "".join(f"{n:>16}" for n in names)
          + f"{'ours/Uni-Sign':>15}{'(of minima)':>13}")
    for r in results:
        ratio, ratio_min = r["ratio_ours_over_unisign"], r["ratio_of_minima"]
        print(f"{r['video']:<38}{r['kbit_per_s']:>7.0f}{r['frames_read_per_sample']:>6.0f}"
              + "".join(f"{r['ms_per_sample'][n]:>16.1f}" for n in names)
              + (f"{ratio:>14.2f}x{ratio_min:>12.2f}x" if ratio else f"{'-':>15}{'-':>13}"))
    print("where the time goes (ms CPU, median per stage; 'index': open + demux for timestamps, part of ours' decode):")
    for r in results:
        staged = "  ".join(f"{s} {v:.1f}" for s, v in r["stages_ms"]["ours staged"].items())
        unisign = r["stages_ms"].get("Uni-Sign-style", {}).get("decode")
        print(f"  {r['video']:<38} ours: {staged}  (index {r['index_ms']:.1f})"
              + (f"; Uni-Sign-style decode {unisign:.1f}" if unisign is not None else ""))
    for r in results:
        same = len(set(r["digests"]["ours"])) and all(r["digests"][n] == r["digests"]["ours"] for n in names)
        frames = {True: "identical", False: "DIFFERENT", None: "not compared"}[r["decoded_frames_identical"]]
        print(f"check {r['video']}: {len(r['digests']['ours'])} samples, crops/indices/skeletons of "
              f"{' = '.join(names)}: {'identical' if same else 'DIFFERENT'} (digests {r['digests']['ours'][0]} ...); "
              f"decoded frames PyAV vs decord: {frames}")


def print_step(step: dict) -> None:
    print(f"\n2. training step, forward + backward (ms CPU time, median), float32, train mode: mT5 "
          f"d_model {step['d_model']}, {step['layers']}+{step['layers']} layers, vocabulary {step['vocab']} "
          f"({step['config_source']}), pose widths {step['pose_widths']}, RGB branch "
          f"+{step['rgb_parameters']:,} parameters, gate init small")
    print(f"{'B':>3}{'T':>5}{'crops/hand':>12}{'pose-only':>12}{'RGB-pose':>12}{'ratio':>8}")
    for b in step["batches"]:
        t = b["ms_per_step"]
        print(f"{b['B']:>3}{b['T']:>5}{b['crops_per_hand']:>12}{t['pose-only']:>12.1f}{t['RGB-pose']:>12.1f}"
              f"{b['ratio_rgb_over_pose']:>7.2f}x")
    for b in step["batches"]:
        same = "equal" if b["loss_rgb_gate_zero"] == b["loss_pose_only"] else "DIFFERENT"
        print(f"check B={b['B']}: with the gate set to zero the RGB-pose loss {b['loss_rgb_gate_zero']:.6f} "
              f"and the pose-only loss {b['loss_pose_only']:.6f} are {same} (eval mode, before any step)")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=11, help="timed calls per path and video (median)")
    p.add_argument("--batches", type=int, nargs="+", default=[2, 4], help="batch sizes of the step timing")
    p.add_argument("--frames", type=int, default=64, help="T of the step timing")
    p.add_argument("--layers", type=int, default=2, help="mT5 encoder and decoder layers")
    p.add_argument("--vocab", type=int, default=32128)
    p.add_argument("--steps", type=int, default=4, help="timed steps per model and batch size (median)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--skip_step", action="store_true", help="measure the data path only")
    p.add_argument("--quick", action="store_true", help="256x256 videos of 60/300 frames, 2 repeats, "
                   "B=2, T=32, 1 layer, vocabulary 8192, 2 steps without warm-up (CI)")
    p.add_argument("--out", default=None, help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.batches, args.frames, args.layers, args.vocab = 2, [2], 32, 1, 8192
        args.steps, args.warmup = 2, 0
    torch.set_num_threads(1)
    clock = time.process_time
    result = {"command": command_line(argv, __file__), **machine(), "repeats": args.repeats}
    m = result
    print(f"machine: {m['cpu']}, {m['cpus']} CPUs, {m['threads']} torch thread, nice {m['niceness']}, load average "
          f"{m['load_average'][0]}, Python {m['python']}, torch {m['torch']}, PyAV {m['av']} (libavcodec "
          f"{m['ffmpeg_libavcodec']}), decord {m['decord']}, Pillow {m['pillow']}; commit {m['commit']}")
    if decord is None:
        print("decord is not installed (pip install decord, or the 'bench' extra): measuring signfuse's path only")
    print(f"settings: CPU time (time.process_time), single-threaded decoding, pose sampler max_length {MAX_LENGTH} "
          f"(evaluation frames), hands drawn with np.random.RandomState(repeat); {args.repeats} repeats, paths "
          "interleaved, medians")
    with tempfile.TemporaryDirectory() as folder:
        result["data"] = measure_data(args, Path(folder), clock)
    print_data(result["data"])
    if not args.skip_step:
        result["step"] = measure_step(args, clock)
        print_step(result["step"])
    result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    if args.out:
        write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
