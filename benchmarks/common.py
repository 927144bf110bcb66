"""Helpers shared by the benchmarks: the run's identity and result file, mT5-base shape,
synthetic batches, timing.

The benchmarks import it as ``from common import ...`` (they run as scripts from any folder:
``python benchmarks/bench_text.py``). Each writes its figures to ``docs/results/bench_<name>.json``
(``--out``) with ``write_result``: the command, commit, CPU, torch version, date, settings and figures.
"""
import datetime
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from transformers import MT5Config, MT5ForConditionalGeneration

from signfuse.data.descriptions import TemporalAligner, collate_descriptions
from signfuse.demo.lexicon import DESCRIPTION_PHRASES, WORDS

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"
MT5_BASE_JSON = REPO / "tests" / "data" / "mt5-base-config.json"  # google/mt5-base's config.json (no weights)
PART_POINTS = {"body": 9, "left": 21, "right": 21, "face_all": 18}


def mt5_base_config(layers=None, vocab=None) -> tuple:
    """(config dict, source path): mt5-base's shape, with ``layers`` encoder and decoder layers
    and ``vocab`` tokens when given (None: the real 12 layers / 250112 tokens)."""
    config = {k: v for k, v in json.loads(MT5_BASE_JSON.read_text()).items() if not k.startswith("_")}
    if layers is not None:
        config["num_layers"] = config["num_decoder_layers"] = layers
    if vocab is not None:
        config["vocab_size"] = vocab
    return config, str(MT5_BASE_JSON.relative_to(REPO))


# ----------------------------------------------------------------------------- the run's identity and result file

def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo; the platform's processor string elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit():
    """HEAD's commit, with "+dirty" when the working tree differs from it (result files under
    docs/results/ aside); None outside a git checkout."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    try:
        head = git("rev-parse", "HEAD")
        changed = git("status", "--porcelain", "--", ".", ":(exclude)docs/results")
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if changed else "")


def load_average() -> list:
    """The 1, 5 and 15 minute load averages (other processes competing for the CPUs)."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else []


def machine_info(device=None) -> dict:
    """Where and when a benchmark runs: date, commit, CPU model and count, torch threads,
    niceness, load average now, versions (and the GPU when ``device`` is one)."""
    info = {"date": datetime.date.today().isoformat(), "commit": git_commit(), "cpu": cpu_model(),
            "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "niceness": os.nice(0) if hasattr(os, "nice") else None, "load_average": load_average(),
            "platform": platform.platform(), "python": platform.python_version(), "numpy": np.__version__,
            "torch": torch.__version__}
    if device is not None and torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def command_line(argv=None, script=None) -> str:
    """The benchmark's command, from the repository root: ``python benchmarks/bench_x.py ARGS``
    (``argv``: the arguments given to ``main``, None: this process's; ``script``: the
    benchmark's file, None: this process's)."""
    script = Path(script or sys.argv[0]).resolve()
    script = script.relative_to(REPO) if script.is_relative_to(REPO) else Path(script.name)
    return shlex.join(["python", str(script), *(sys.argv[1:] if argv is None else argv)])


def write_json(path, result: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")


def write_result(path, figures: dict, settings: dict, info: dict, argv=None, script=None) -> dict:
    """Write ``{command, date, commit, cpu, ..., settings, figures, load_average_end}`` to ``path``
    (JSON); ``info``: machine_info() taken when the run started; ``argv``, ``script``: see
    command_line. Returns what it wrote."""
    result = {"command": command_line(argv, script), **info, "settings": settings, "figures": figures,
              "load_average_end": load_average()}
    write_json(path, result)
    return result


def add_out_arg(parser, name: str) -> None:
    """``--out FILE``: the result file (default docs/results/bench_<name>.json)."""
    parser.add_argument("--out", default=str(RESULTS / f"bench_{name}.json"),
                        help=f"result file (JSON; default docs/results/bench_{name}.json)")


def pick_device(name=None) -> torch.device:
    return torch.device(name if name else "cuda" if torch.cuda.is_available() else "cpu")


def model_size(args, device: torch.device, vocab: bool = True) -> None:
    """Fill ``args.layers`` (and with ``vocab``, ``args.vocab``) of the mT5-base shape: mT5-base's
    12 layers and 250112 tokens with ``--full`` or on a GPU, else what was given, else 2 and 32128."""
    gpu = device.type == "cuda"
    args.layers = 12 if args.full else args.layers or (12 if gpu else 2)
    if vocab:
        args.vocab = 250112 if args.full else args.vocab or (250112 if gpu else 32128)


def set_threads(threads) -> None:
    """``--threads N``: torch's CPU threads (None: torch's default, one per core)."""
    if threads:
        torch.set_num_threads(threads)


def start(args, vocab: bool = True) -> torch.device:
    """A benchmark's start: its device (--device), torch's threads (--threads) and the model
    size (``model_size``); returns the device."""
    device = pick_device(args.device)
    set_threads(args.threads)
    model_size(args, device, vocab=vocab)
    return device


def machine_line(info: dict) -> str:
    """One line of machine_info(): CPU, threads, niceness, load average, versions, commit."""
    gpu = f", GPU {info['gpu']}" if "gpu" in info else ""
    load = info["load_average"][0] if info["load_average"] else "unknown"
    return (f"machine: {info['cpu']}, {info['cpus']} CPUs ({info['threads']} torch threads){gpu}, "
            f"nice {info['niceness']}, load average {load}, Python {info['python']}, "
            f"torch {info['torch']}, NumPy {info['numpy']}; commit {info['commit']}")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CLOCKS = {"wall": time.perf_counter, "process": time.process_time}
CLOCK_HELP = ("wall: elapsed time (GPU work included); process: CPU time of this process, all "
              "threads (with --threads 1 on a CPU machine that other processes share, it is "
              "what the work costs, without their interference)")


def timed(fn, device, clock: str = "wall") -> float:
    """Seconds of one call of ``fn`` on ``clock`` (GPU work included: synchronised)."""
    now = CLOCKS[clock]
    sync(device)
    start = now()
    fn()
    sync(device)
    return now() - start


def median_ms(seconds: list) -> float:
    return 1000 * statistics.median(seconds)


def median_interval(values: list, level: float = 0.95) -> dict:
    """A distribution-free confidence interval for the median of independent ``values``: the
    k-th smallest and k-th largest value, k the largest whose binomial tail
    P(Binomial(n, 1/2) <= k - 1) stays within (1 - level) / 2. ``coverage`` is the interval's
    exact level (at least ``level``; e.g. n = 9: 2nd to 8th value, 96.1 %; n = 25: 8th to
    18th, 95.7 %); ``low`` and ``high`` are None when n is too small for ``level`` (n < 6 at 95 %)."""
    v, n = sorted(values), len(values)
    tail, k = 0.0, 0
    while k < n and tail + math.comb(n, k) / 2 ** n <= (1 - level) / 2:
        tail += math.comb(n, k) / 2 ** n
        k += 1
    if k == 0:
        return {"low": None, "high": None, "coverage": None, "n": n}
    return {"low": v[k - 1], "high": v[n - k], "coverage": 1 - 2 * tail, "n": n}


# ----------------------------------------------------------------------------- synthetic data

def description_pool(size: int, seed: int = 0) -> list:
    """``size`` distinct description texts: two or three phrases of the synthetic lexicon."""
    rng = np.random.default_rng(seed)
    pool = {}
    while len(pool) < size:
        k = int(rng.integers(2, 4))
        pool[", ".join(rng.choice(DESCRIPTION_PHRASES, size=k, replace=False))] = None
    return list(pool)


def description_batch(B: int, T: int, pool: list, every: int = 8, seed: int = 0) -> dict:
    """Description keys of a batch (docs/DESIGN.md): about one described frame in ``every``,
    texts drawn from ``pool`` (so some repeat across frames and samples), interpolated between
    described frames by TemporalAligner. Also returns ``aligned`` (per sample, per frame)."""
    rng = np.random.default_rng(seed)
    frames = np.arange(T)
    aligned_all, has_all = [], []
    for _ in range(B):
        described = np.sort(rng.choice(T, size=max(1, T // every), replace=False))
        texts = rng.choice(len(pool), size=len(described))
        aligned, has = TemporalAligner({int(f): pool[i] for f, i in zip(described, texts, strict=True)},
                                       frames).align()
        aligned_all.append(aligned)
        has_all.append(has)
    desc_texts, desc_index, desc_weight = collate_descriptions(aligned_all, T)
    return {"desc_texts": desc_texts, "desc_index": desc_index, "desc_weight": desc_weight,
            "has_description": torch.tensor(has_all, dtype=torch.float32).unsqueeze(-1),
            "aligned": aligned_all}


def pose_batch(B: int, T: int, seed: int = 0, target_words: int = 12) -> dict:
    """Pose keys of a batch (docs/DESIGN.md): random normalised parts, every frame real."""
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    batch = {name: torch.rand(B, T, V, 3, generator=g) * 2 - 1 for name, V in PART_POINTS.items()}
    batch["attention_mask"] = torch.ones(B, T, dtype=torch.long)
    batch["frame_indices"] = torch.arange(T).expand(B, T).clone()
    sentences = [" ".join(rng.choice(WORDS, size=target_words)) for _ in range(B)]
    batch.update(names=[f"s{i}" for i in range(B)], sentences=sentences, glosses=[""] * B,
                 targets=sentences, skipped=[])
    return batch


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


# ----------------------------------------------------------------------------- Uni_Sign variants

# name -> (use_descriptions, text_fusion_type, text source: "online" TextEncoder or "store")
VARIANTS = {
    "pose-only": (False, "gating", None),
    "gating + online": (True, "gating", "online"),
    "gating + store": (True, "gating", "store"),
    "cross_attn + online": (True, "cross_attn", "online"),
    "cross_attn + store": (True, "cross_attn", "store"),
}


def build_language_model(layers, vocab, device, seed=0) -> dict:
    """The shared pieces of every variant: mT5 of mt5-base's shape with random weights
    (``layers`` encoder and decoder layers, ``vocab`` tokens), the tiny tokenizer, and the
    mT5 config dict and where it came from."""
    from transformers import AutoTokenizer
    from signfuse.config import TINY_MT5_DIR

    config, source = mt5_base_config(layers=layers, vocab=vocab)
    return {"mt5": mt5_from_config_dict(config, seed=seed).to(device),
            "tokenizer": AutoTokenizer.from_pretrained(TINY_MT5_DIR),
            "config": config, "source": source}


def build_text_encoder(config: dict, tokenizer, device, seed=1):
    """The online text source: TextEncoder over a frozen mT5 encoder of ``config``'s shape
    (its own random weights, as the frozen description encoder is a separate copy)."""
    from transformers import MT5Config, MT5EncoderModel
    from signfuse.models.text_fusion import TextEncoder

    values = {k: v for k, v in config.items() if k != "tie_word_embeddings"}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = MT5EncoderModel(MT5Config(**values))
    return TextEncoder(encoder=encoder, tokenizer=tokenizer, device=device)


def write_pool_store(text_encoder, pool: list, folder) -> Path:
    """The store of ``pool`` made by ``text_encoder`` (as precompute-text makes it), under ``folder``."""
    from signfuse.models.text_store import write_store

    path = write_store(Path(folder) / "store.safetensors", pool, text_encoder.encode(pool).cpu(),
                       {"encoder": "benchmark"})
    text_encoder.clear_cache()
    return path


def build_variant(name: str, shared: dict, text_sources: dict, device, seed=0):
    """Uni_Sign for ``name`` (see VARIANTS) around the shared mT5, its ``text_source`` taken
    from ``text_sources`` ("online"/"store"); the pose encoder's weights depend on ``seed``
    only, so every variant starts from the same pose encoder."""
    from signfuse.config import ModelConfig
    from signfuse.models.uni_sign import Uni_Sign

    use_descriptions, fusion, source = VARIANTS[name]
    cfg = ModelConfig(dataset="Synthetic", use_descriptions=use_descriptions,
                      text_fusion_type=fusion, text_dim=shared["config"]["d_model"],
                      d_model=shared["config"]["d_model"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Uni_Sign(cfg, shared["mt5"], shared["tokenizer"])
    if source is not None:
        model.text_source = text_sources[source]
    return model.to(device)


def synthetic_batch(B: int, T: int, pool: list, device, seed=0) -> dict:
    """A full training batch: pose keys, targets and description keys, on ``device``."""
    batch = pose_batch(B, T, seed)
    descriptions = description_batch(B, T, pool, seed=seed)
    descriptions.pop("aligned")
    batch.update(descriptions)
    return to_device(batch, device)


def _proc_status_kib(field: str) -> int:
    """A "<field>: N kB" line of /proc/self/status, in bytes (0 where there is none)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def rss_bytes() -> int:
    """Resident set size of this process now (Linux VmRSS; 0 elsewhere)."""
    return _proc_status_kib("VmRSS")


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (Linux VmHWM). Not resource.ru_maxrss: a child
    process inherits its parent's ru_maxrss across fork and exec, VmHWM starts afresh."""
    return _proc_status_kib("VmHWM")


def mt5_from_config_dict(config: dict, seed: int = 0) -> MT5ForConditionalGeneration:
    """Random weights of any mT5 shape (benchmarks), e.g. the mt5-base-config.json (tests/data/).

    Keys starting with '_' (comments) are dropped. MT5Config always ties the output layer to
    the embedding; when the dict says ``tie_word_embeddings: false`` (mt5-base), the
    ``lm_head`` gets its own weight as in the real model, the encoder and decoder still sharing
    the ``shared`` embedding.
    """
    values = {k: v for k, v in config.items() if not k.startswith("_")}
    tie = values.pop("tie_word_embeddings", True)
    mt5_config = MT5Config(**values)
    mt5_config.tie_word_embeddings = tie
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MT5ForConditionalGeneration(mt5_config)
    if not tie:
        model.encoder.set_input_embeddings(model.shared)
        model.decoder.set_input_embeddings(model.shared)
    return model
