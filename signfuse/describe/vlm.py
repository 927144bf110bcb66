"""The ``vlm`` describer: descriptions of video segments by a local vision-language model.

``signfuse describe --describer vlm --vlm_model DIR`` cuts each sample's frames [start, end)
into segments of ``--segment_frames`` frames (16), shows the model ``--vlm_frames`` frames of
each segment (4, evenly spaced, tiled left to right and top to bottom into one image of
``--vlm_image_size`` pixels), with a prompt that asks for what can be seen of the hands
(handshape, location, movement) and the face, never for meaning; ``--pose_hints`` adds the
rules describer's texts of those frames to the prompt. Greedy decoding, ``--max_new_tokens``.
The file is the one ``signfuse describe`` writes (``command.file_bytes``), its segments
``{"start", "end", "text", "attributes": {"frames": shown frame numbers[, "pose_hints"]}}``.

- The model is a local Hugging Face directory loaded by ``AutoModelForImageTextToText`` and
  ``AutoProcessor`` with ``local_files_only``: nothing is ever downloaded.
- Segments of several samples are generated in batches of ``--vlm_batch_size``; on running out
  of GPU memory the batch is halved and tried again (down to 1). Prompts of one batch have the
  same length unless pose hints make them differ (then they are left-padded).
- ``--shard K/N`` (K = 0 .. N-1) describes every N-th sample from the K-th, so N GPUs (or
  machines) can share a dataset; resumable: a file is written (atomically) once all its
  segments are done, and a rerun skips files whose generator, pose and video hashes match.
- Videos: frame k of the video is pose frame k (``signfuse.data.video.read_frames``), in the
  RGB branch's layout (``paths.rgb_dir``, ``--rgb_dir``).
"""
import hashlib
import math
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from signfuse.data import paths
from signfuse.data.pose import load_pose
from signfuse.data.video import read_frames
from signfuse.describe.rules import RulesDescriber, default_language
from signfuse.describe.write import (
    DescribeSummary,
    dataset_samples,
    file_bytes,
    is_up_to_date,
    settings_from_args,
    sha256_of,
    write_atomic,
)
from signfuse.errors import InputError, SampleError

VLM_VERSION = "1"
GENERATOR_NAME = "signfuse-vlm"
PROMPTS = {
    "en": ("These are {n} frames of one short part of a sign language video, in time order from left to "
           "right and top to bottom. Describe in one short sentence only what can be seen of the signer's "
           "hands (handshape, where they are, how they move) and face (mouth, eyebrows, head). Do not say "
           "what is signed or what it means."),
    "zh": ("这是一段手语视频中一个短片段的{n}帧，按时间顺序从左到右、从上到下排列。请用一句简短的话只描述能看到的"
           "打手语者的手（手形、位置、如何移动）和面部（嘴、眉毛、头部）。不要说打的是什么或它的意思。"),
}
HINTS = {"en": " Pose measurements of these frames: {hints}.", "zh": "这些帧的姿态测量：{hints}。"}


def parse_shard(text: str) -> tuple:
    """'K/N' -> (K, N) with 0 <= K < N; InputError otherwise."""
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise InputError(f"--shard {text}: expected K/N, e.g. 0/4") from None
    if not 0 <= k < n:
        raise InputError(f"--shard {text}: expected 0 <= K < N")
    return k, n


# ---------------------------------------------------------------------------------------
# Segments, images and prompts
# ---------------------------------------------------------------------------------------

def segment_plan(start: int, end: int, segment_frames: int, shown: int) -> list:
    """``[(start, end, shown frame numbers)]`` of consecutive segments covering [start, end)."""
    plan = []
    for s in range(start, end, segment_frames):
        e = min(s + segment_frames, end)
        frames = np.unique(np.round(np.linspace(s, e - 1, min(shown, e - s))).astype(np.int64))
        plan.append((s, e, frames.tolist()))
    return plan


def tile(frames: np.ndarray, size: int):
    """One RGB PIL image of side ``size``: ``frames`` (K, H, W, 3) uint8 in a grid, row by row,
    each scaled (bilinear, aspect kept) into its cell on black."""
    from PIL import Image
    cols = math.ceil(math.sqrt(len(frames)))
    rows = math.ceil(len(frames) / cols)
    cell = size // cols
    canvas = Image.new("RGB", (cols * cell, rows * cell))
    for i, frame in enumerate(frames):
        image = Image.fromarray(frame)
        scale = cell / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.BILINEAR)
        x, y = (i % cols) * cell + (cell - image.width) // 2, (i // cols) * cell + (cell - image.height) // 2
        canvas.paste(image, (x, y))
    return canvas


def pose_hints(rules_segments: list, start: int, end: int, max_hints: int = 3) -> str:
    """The distinct rules texts over frames [start, end), in order, at most ``max_hints``."""
    texts = []
    for s in rules_segments:
        if s["start"] < end and s["end"] > start and s["text"] not in texts:
            texts.append(s["text"])
    return " / ".join(texts[:max_hints])


def prompt_text(processor, language: str, shown: int, hints: str) -> str:
    """The model's prompt: its chat template with one image and the instruction, when it has
    one, else the image token and the instruction."""
    text = PROMPTS[language].format(n=shown) + (HINTS[language].format(hints=hints) if hints else "")
    if getattr(processor, "chat_template", None):
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
        return processor.apply_chat_template(messages, add_generation_prompt=True)
    return f"{getattr(processor, 'image_token', '<image>')}\n{text}"


# ---------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------

def model_digest(directory: Path) -> str:
    """SHA-256 over the model's config.json and the names and sizes of its weight files."""
    h = hashlib.sha256((directory / "config.json").read_bytes())
    for path in sorted(directory.iterdir()):
        if path.suffix in (".safetensors", ".bin", ".pt", ".pth"):
            h.update(f"{path.name}:{path.stat().st_size}".encode())
    return h.hexdigest()


def is_out_of_memory(err: Exception) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()


class VLMDescriber:
    """A local image-text-to-text model describing segments, greedily, in batches."""

    def __init__(self, model_dir, language: str = "en", segment_frames: int = 16, shown: int = 4,
                 image_size: int = 448, max_new_tokens: int = 48, rules=None, device=None, dtype: str = "auto",
                 batch_size: int = 8, report=None):
        from transformers import AutoModelForImageTextToText, AutoProcessor
        self.dir = Path(model_dir) if model_dir else None
        if self.dir is None or not (self.dir / "config.json").is_file():
            raise InputError(f"--vlm_model {model_dir}: not a local Hugging Face model directory (no config.json)")
        for name, value in (("--segment_frames", segment_frames), ("--vlm_frames", shown),
                            ("--vlm_image_size", image_size), ("--max_new_tokens", max_new_tokens),
                            ("--vlm_batch_size", batch_size)):
            if value < 1:
                raise InputError(f"{name} {value}: expected a positive number")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = {"auto": torch.bfloat16 if self.device.type == "cuda" else torch.float32,
                      "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
        try:
            self.processor = AutoProcessor.from_pretrained(self.dir, local_files_only=True)
            self.model = AutoModelForImageTextToText.from_pretrained(self.dir, local_files_only=True, dtype=self.dtype)
        except (OSError, ValueError, KeyError) as err:
            raise InputError(f"--vlm_model {model_dir}: cannot load an image-text-to-text model and its "
                             f"processor ({err})") from None
        self.model.to(self.device).eval()
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        tokenizer.padding_side = "left"  # batched generation of a decoder-only model
        self.language, self.segment_frames, self.shown = language, segment_frames, shown
        self.image_size, self.max_new_tokens, self.rules = image_size, max_new_tokens, rules
        self.report = report if report is not None else (lambda message: print(message, file=sys.stderr))
        self.batch_size = batch_size

    def generator(self) -> dict:
        parameters = {"model": self.dir.name, "model_sha256": model_digest(self.dir), "language": self.language,
                      "segment_frames": self.segment_frames, "vlm_frames": self.shown,
                      "image_size": self.image_size, "max_new_tokens": self.max_new_tokens,
                      "dtype": str(self.dtype).replace("torch.", ""), "prompt": PROMPTS[self.language],
                      "pose_hints": self.rules.generator() if self.rules is not None else None}
        return {"name": GENERATOR_NAME, "version": VLM_VERSION, "parameters": parameters}

    def requests(self, pose, video) -> list:
        """``[(start, end, attributes, prompt, image)]`` of one sample (reads its video)."""
        plan = segment_plan(pose.start, pose.end, self.segment_frames, self.shown)
        wanted = sorted({f for _, _, frames in plan for f in frames})
        frames = read_frames(video, wanted, min_frames=pose.end)  # (K, H, W, 3)
        row = {f: i for i, f in enumerate(wanted)}
        rules_segments = self.rules.describe_pose(pose) if self.rules is not None else []
        out = []
        for s, e, shown in plan:
            hints = pose_hints(rules_segments, s, e) if self.rules is not None else ""
            attributes = {"frames": shown, **({"pose_hints": hints} if self.rules is not None else {})}
            out.append((s, e, attributes, prompt_text(self.processor, self.language, len(shown), hints),
                        tile(frames[[row[f] for f in shown]], self.image_size)))
        return out

    def generate(self, prompts: list, images: list) -> list:
        """Greedy texts for ``prompts`` with their ``images`` (one call)."""
        inputs = self.processor(text=prompts, images=images, return_tensors="pt", padding=True).to(self.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        with torch.inference_mode():
            out = self.model.generate(**inputs, do_sample=False, num_beams=1, max_new_tokens=self.max_new_tokens)
        if not self.model.config.is_encoder_decoder:
            out = out[:, inputs["input_ids"].shape[1]:]
        texts = self.processor.batch_decode(out, skip_special_tokens=True)
        return [" ".join(text.split()) for text in texts]

    def generate_all(self, prompts: list, images: list) -> list:
        """Texts for every prompt, ``self.batch_size`` at a time; on out-of-memory the batch is
        halved (for the rest of the run) and tried again, down to 1."""
        texts, i = [], 0
        while i < len(prompts):
            size = self.batch_size
            try:
                texts += self.generate(prompts[i:i + size], images[i:i + size])
                i += size
            except (RuntimeError, MemoryError) as err:
                if not is_out_of_memory(err) or size == 1:
                    raise
                self.batch_size = max(1, size // 2)
                self.report(f"signfuse: warning: out of memory with {size} segments per batch; "
                            f"{self.batch_size} from now on")
                self._free_memory()
        return texts

    def _free_memory(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------
# The dataset
# ---------------------------------------------------------------------------------------

class Pending:
    """A sample whose segments wait for the model."""

    def __init__(self, sample_id: str, out_file: Path, hashes: tuple, requests: list):
        self.sample_id, self.out_file, self.requests = sample_id, out_file, requests
        self.pose_sha256, self.video_sha256 = hashes


def prepare(describer: VLMDescriber, generator: dict, task: tuple, out_dir: Path, overwrite: bool,
            trust_pickles: bool):
    """The Pending of one sample, or None when its file is up to date; SampleError when its pose
    file or video cannot be used."""
    sample_id, pose_file, video_file = task
    out_file = out_dir / f"{sample_id}.json"
    hashes = sha256_of(pose_file), sha256_of(video_file)
    if not overwrite and is_up_to_date(out_file, generator, hashes[0], {"video_sha256": hashes[1]}):
        return None
    return Pending(sample_id, out_file, hashes, describer.requests(load_pose(pose_file, trust_pickles), video_file))


def flush(describer: VLMDescriber, generator: dict, pending: list) -> int:
    """Generate every segment of ``pending`` and write their files; the number written."""
    requests = [r for item in pending for r in item.requests]
    texts = iter(describer.generate_all([r[3] for r in requests], [r[4] for r in requests]))
    for item in pending:
        segments = [{"start": s, "end": e, "text": next(texts), "attributes": a} for s, e, a, _, _ in item.requests]
        write_atomic(item.out_file, file_bytes(generator, item.pose_sha256, segments,
                                               {"video_sha256": item.video_sha256}))
    written = len(pending)
    pending.clear()
    return written


def describe_dataset_vlm(args, progress: bool = True):
    """``signfuse describe --describer vlm``: this shard's samples; the summary."""

    k, n = parse_shard(args.shard)
    rules = RulesDescriber(settings_from_args(args)) if args.pose_hints else None
    describer = VLMDescriber(args.vlm_model, args.language or default_language(args.dataset), args.segment_frames,
                             args.vlm_frames, args.vlm_image_size, args.max_new_tokens, rules=rules,
                             device=args.device, dtype=args.vlm_dtype, batch_size=args.vlm_batch_size)
    tasks, duplicates = dataset_samples(args, videos=True)
    tasks = tasks[k::n]
    out_dir = paths.description_dir(args.dataset, args.data_root, args.desc_dir)  # <desc_dir>/<dataset>
    out_dir.mkdir(parents=True, exist_ok=True)
    generator = describer.generator()
    summary = DescribeSummary(str(out_dir), generator, samples=len(tasks), duplicates=duplicates)
    pending = []
    for task in tqdm(tasks, desc="describe (vlm)", unit="video", disable=not progress):
        try:
            item = prepare(describer, generator, task, out_dir, args.overwrite, args.trust_pickles)
        except SampleError as err:
            summary.skipped.append(f"{task[0]}: {err}")
            continue
        if item is None:
            summary.up_to_date += 1
            continue
        pending.append(item)
        if sum(len(p.requests) for p in pending) >= 4 * describer.batch_size:
            summary.written += flush(describer, generator, pending)
    summary.written += flush(describer, generator, pending)
    return summary
