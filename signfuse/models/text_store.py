"""Precomputed description embeddings: one file per dataset and text encoder (docs/descriptions.md s. 4).

With a store, training and inference need no text encoder in memory: each distinct
description text was encoded once, ahead of time, by ``signfuse precompute-text``.

    signfuse precompute-text --desc_dir description --dataset CSL_Daily \\
        --desc_encoder ./pretrained_weight/mt5-base [--out FILE] [--batch_size 64] \\
        [--desc_max_tokens 64] [--device cuda]

The module reads top to bottom:

1. ``encoder_identity(encoder_dir, pooling, max_tokens, seed)``: what makes two encoders give
   the same vectors: sha256 of the directory's config.json, of its weights file(s) (streamed)
   and of its tokenizer files, plus the pooling and --desc_max_tokens ("tiny": the packaged
   config and the random-weight seed). ``identity_hash`` condenses the compared fields.
2. The file: safetensors, one (N, D) float32 tensor ``vectors``; its metadata (JSON strings)
   holds ``format`` ("signfuse-text-store"), ``format_version`` ("1"), ``texts`` (the N
   texts, row order), ``identity`` (the encoder identity) and ``info`` (desc_dir, dataset,
   device, and ``precision``: always "float32"). Written atomically (temporary file, then rename).
   Default place: ``<desc_dir>/<dataset>/text_store.<identity hash, 12 hex>.safetensors``,
   next to the description files (one store per dataset and encoder; a file name that does
   not end in .json is never read as a description).
3. ``EmbeddingStore.open(path, expected_identity)``: validates the file (InputError naming it
   otherwise), refuses a store made by another encoder or settings, and serves
   ``encode(texts) -> (N, D)`` float32 from the memory-mapped file (rows looked up through a
   text -> row dict; nothing is loaded as a whole). A store whose vectors were not encoded in
   float32 (signfuse before this check made them with bf16 autocast on CUDA) is refused with
   the command that rebuilds it: its vectors differ from the online encoder's.
4. ``precompute(...)``: every distinct text of ``<desc_dir>/<dataset>/*.json``; only the texts
   not yet in the store at ``out`` are encoded (batches, tqdm bar, CUDA when present), in
   float32 with autocast off, as the online TextEncoder of a run encodes them, then the store
   is rewritten with the old rows unchanged and the new rows appended.
5. ``register(sub)``: the ``precompute-text`` sub-command, printing one JSON line.

A run that uses a store (``--desc_store FILE``) opens it with
``EmbeddingStore.open(FILE, expected_identity=encoder_identity(<desc encoder>,
max_tokens=<--desc_max_tokens>, seed=<tiny seed>))``.
"""
import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save
from tqdm import tqdm

from signfuse.config import TINY_MT5, TINY_MT5_DIR
from signfuse.data.description_files import read_description_file
from signfuse.errors import InputError, SampleError
from signfuse.models.text_fusion import TextEncoder

STORE_FORMAT = "signfuse-text-store"
FORMAT_VERSION = "1"
# The identity fields that must match for a store to be used; "encoder" (the path as given)
# is only informative (the same weights may sit in another folder on another machine).
IDENTITY_FIELDS = ("config_sha256", "weights", "tokenizer_sha256", "pooling", "max_tokens")
WEIGHT_PATTERNS = ("model*.safetensors", "pytorch_model*.bin")
TOKENIZER_FILES = ("spiece.model", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json", "added_tokens.json")
POOLINGS = ("mean",)  # masked mean over non-pad tokens (TextEncoder)
# The precision of the vectors: float32, no autocast, on any device: a run's online TextEncoder
# encodes so, and a store must give it the same vectors (bf16 autocast moves them by ~1e-2).
STORE_PRECISION = "float32"
SHORT_TEXT = 60  # characters of a text quoted in an error message


# -----------------------------------------------------------------------------
# 1. encoder identity

def _sha256_file(path: Path) -> str:
    """sha256 of a file, read in 1 MiB chunks (weights files are GBs)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sha256_files(paths: list) -> str:
    """One sha256 over several files: of the lines "<file name> <file sha256>" in name order."""
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.name):
        digest.update(f"{path.name} {_sha256_file(path)}\n".encode())
    return digest.hexdigest()


def encoder_identity(encoder_dir, pooling: str = "mean", max_tokens: int = 64, seed: int = 0) -> dict:
    """What determines the vectors of a text: {"encoder", "config_sha256", "weights",
    "tokenizer_sha256", "pooling", "max_tokens"}.

    ``encoder_dir``: a local mT5 directory (weights: its ``model*.safetensors`` files, else its
    ``pytorch_model*.bin`` files, as transformers picks them; hashed in full, a few seconds
    for mT5-base) or "tiny" (the packaged config; ``weights``
    is "random:seed=<seed>", the seed TextEncoder draws the tiny weights from). ``seed`` is
    used for "tiny" only. Raises InputError when the directory has no config.json or no weights.
    """
    if str(encoder_dir) == TINY_MT5:
        directory = TINY_MT5_DIR
        weights = f"random:seed={int(seed)}"
    else:
        directory = Path(encoder_dir)
        if not (directory / "config.json").is_file():
            raise InputError(f"{directory}: not a local mT5 directory (no config.json); point "
                             "--desc_encoder / --mt5_model at a downloaded mT5 folder, or 'tiny'")
        # the files transformers loads: the safetensors ones when there are any
        found = [sorted(directory.glob(pattern)) for pattern in WEIGHT_PATTERNS]
        files = next((group for group in found if group), [])
        if not files:
            raise InputError(f"{directory}: no weights file ({' or '.join(WEIGHT_PATTERNS)}) "
                             "in the text encoder directory")
        weights = _sha256_files(files)
    tokenizer_files = [directory / name for name in TOKENIZER_FILES if (directory / name).is_file()]
    return {
        "encoder": str(encoder_dir),
        "config_sha256": _sha256_file(directory / "config.json"),
        "weights": weights,
        "tokenizer_sha256": _sha256_files(tokenizer_files) if tokenizer_files else None,
        "pooling": pooling,
        "max_tokens": int(max_tokens),
    }


def identity_hash(identity: dict) -> str:
    """sha256 (hex) of the compared identity fields: equal for stores that are interchangeable."""
    compared = {name: identity.get(name) for name in IDENTITY_FIELDS}
    return hashlib.sha256(json.dumps(compared, sort_keys=True).encode()).hexdigest()


def default_store_path(desc_dir, dataset: str, identity: dict) -> Path:
    """``<desc_dir>/<dataset>/text_store.<identity hash, 12 hex>.safetensors``."""
    return Path(desc_dir) / dataset / f"text_store.{identity_hash(identity)[:12]}.safetensors"


def rebuild_command(path, identity: dict = None, info: dict = None) -> str:
    """The ``signfuse precompute-text`` command line that (re)builds the store at ``path``."""
    identity, info = identity or {}, info or {}
    weights = str(identity.get("weights", ""))
    seed = f" --seed {weights.split('=')[1]}" if weights.startswith("random:seed=") else ""
    return (f"signfuse precompute-text --desc_dir {info.get('desc_dir', 'DIR')} "
            f"--dataset {info.get('dataset', 'NAME')} "
            f"--desc_encoder {identity.get('encoder', 'DIR')}{seed} "
            f"--desc_max_tokens {identity.get('max_tokens', 64)} --out {path}")


def _short(text: str) -> str:
    return text if len(text) <= SHORT_TEXT else text[:SHORT_TEXT - 3] + "..."


# -----------------------------------------------------------------------------
# 2. the file

def write_store(path, texts: list, vectors: torch.Tensor, identity: dict, info: dict = None) -> Path:
    """Write a store atomically: ``vectors`` (N, D) float32 row i is the vector of ``texts[i]``.

    The file appears complete or not at all (a temporary file in the same folder, renamed).
    """
    path = Path(path)
    if vectors.dim() != 2 or vectors.shape[0] != len(texts):
        raise ValueError(f"{len(texts)} texts need a ({len(texts)}, D) tensor, got {tuple(vectors.shape)}")
    if len(set(texts)) != len(texts):
        raise ValueError("the texts of a store must be distinct")
    metadata = {
        "format": STORE_FORMAT,
        "format_version": FORMAT_VERSION,
        "texts": json.dumps(list(texts), ensure_ascii=False),
        "identity": json.dumps(identity, sort_keys=True),
        "info": json.dumps(info or {}, sort_keys=True),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        data = save({"vectors": vectors.detach().to("cpu", torch.float32).contiguous()}, metadata)
        with open(tmp, "wb") as f:  # plain open: the user's umask applies (save_file makes 0600)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, SafetensorError) as err:
        raise InputError(f"{path}: cannot write the embedding store ({err})") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _read_json_field(path: Path, metadata: dict, name: str, kind: type, rebuild: str):
    """A metadata field decoded from JSON and checked to be of ``kind``; InputError otherwise
    (``rebuild``: the command line that rebuilds the store)."""
    try:
        value = json.loads(metadata[name])
    except KeyError:
        raise InputError(f"{path}: not a signfuse embedding store (no '{name}' metadata); "
                         f"rebuild it with `{rebuild}`") from None
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: corrupt embedding store ('{name}' metadata is not JSON: "
                         f"{err.msg}); rebuild it with `{rebuild}`") from None
    if not isinstance(value, kind):
        raise InputError(f"{path}: corrupt embedding store ('{name}' metadata is not a "
                         f"{kind.__name__}); rebuild it with `{rebuild}`")
    return value


# -----------------------------------------------------------------------------
# 3. reading

class EmbeddingStore:
    """A store opened for lookups: ``encode(texts) -> (N, D)`` float32, like TextEncoder.encode.

    Attributes: ``path``, ``texts`` (row order), ``identity``, ``info``, ``text_dim``,
    ``device`` (where ``encode`` puts its result; ``to(device)`` changes it). The vectors stay
    in the memory-mapped file; each call reads the rows it needs. Not a torch module: a model
    holding it gets no state-dict keys and no parameters from it. Picklable and deep-copyable
    (the file is reopened on first use).
    """

    def __init__(self, path, texts: list, identity: dict, info: dict, text_dim: int):
        self.path = Path(path)
        self.texts = texts
        self.identity = identity
        self.info = info
        self.text_dim = text_dim
        self.device = torch.device("cpu")
        self._row = {text: i for i, text in enumerate(texts)}
        self._handle = None  # safe_open of the file and its "vectors" slice, opened on first use
        self._vectors = None

    @classmethod
    def open(cls, path, expected_identity: dict = None) -> "EmbeddingStore":
        """Open and check ``path``; with ``expected_identity`` (``encoder_identity(...)``) refuse
        a store made by another encoder or other settings (InputError naming the field and the
        command that rebuilds it)."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: embedding store not found; build it with "
                             f"`{rebuild_command(path, expected_identity)}`")
        try:
            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
                keys = list(f.keys())
                shape = f.get_slice("vectors").get_shape() if "vectors" in keys else None
                dtype = f.get_slice("vectors").get_dtype() if "vectors" in keys else None
        except (SafetensorError, OSError, ValueError) as err:
            raise InputError(f"{path}: not a readable embedding store ({err}); rebuild it with "
                             f"`{rebuild_command(path, expected_identity)}`") from None
        if metadata.get("format") != STORE_FORMAT:
            raise InputError(f"{path}: not a signfuse embedding store (metadata 'format' is "
                             f"{metadata.get('format')!r}, expected {STORE_FORMAT!r}); build one with "
                             f"`{rebuild_command(path, expected_identity)}`")
        if metadata.get("format_version") != FORMAT_VERSION:
            raise InputError(f"{path}: embedding store format version "
                             f"{metadata.get('format_version')!r}, this signfuse reads "
                             f"{FORMAT_VERSION!r}; rebuild it with "
                             f"`{rebuild_command(path, expected_identity)}`")
        rebuild = rebuild_command(path, expected_identity)
        texts = _read_json_field(path, metadata, "texts", list, rebuild)
        identity = _read_json_field(path, metadata, "identity", dict, rebuild)
        info = _read_json_field(path, metadata, "info", dict, rebuild)
        if shape is None or len(shape) != 2 or dtype != "F32" or shape[0] != len(texts):
            raise InputError(f"{path}: corrupt embedding store (tensor 'vectors' is "
                             f"{dtype} {shape}, expected F32 [{len(texts)}, D]); rebuild it with "
                             f"`{rebuild_command(path, identity, info)}`")
        if not all(isinstance(t, str) for t in texts) or len(set(texts)) != len(texts):
            raise InputError(f"{path}: corrupt embedding store (its text list is not distinct "
                             f"strings); rebuild it with `{rebuild_command(path, identity, info)}`")
        precision = info.get("precision", STORE_PRECISION)
        if precision != STORE_PRECISION:
            raise InputError(f"{path}: embedding store encoded in {precision} on {info.get('device', '?')}; "
                             f"runs encode descriptions in {STORE_PRECISION}, so its vectors would differ "
                             f"from theirs; rebuild it with `{rebuild_command(path, identity, info)}`")
        store = cls(path, texts, identity, info, text_dim=shape[1])
        if expected_identity is not None:
            store.check_identity(expected_identity)
        return store

    def check_identity(self, expected: dict) -> None:
        """InputError when the store was not made with ``expected`` (an encoder_identity dict)."""
        differ = [name for name in IDENTITY_FIELDS if self.identity.get(name) != expected.get(name)]
        if not differ:
            return
        what = "; ".join(f"{name} is {self.identity.get(name)!r} in the store, "
                         f"{expected.get(name)!r} expected" for name in differ)
        made_by = self.identity.get("encoder", "an unknown encoder")
        raise InputError(f"{self.path}: embedding store made by another text encoder or settings "
                         f"(made from {made_by}): {what}; rebuild it with "
                         f"`{rebuild_command(self.path, expected, self.info)}`")

    # ---- lookups ----

    def __len__(self):
        return len(self.texts)

    def __contains__(self, text):
        return text in self._row

    def missing(self, texts) -> list:
        """The distinct texts of ``texts`` that have no vector here, in order."""
        return [t for t in dict.fromkeys(texts) if t not in self._row]

    def _rows(self, rows: list) -> torch.Tensor:
        if self._vectors is None:
            try:
                self._handle = safe_open(str(self.path), framework="pt")
                self._vectors = self._handle.get_slice("vectors")
            except (SafetensorError, OSError) as err:
                raise InputError(f"{self.path}: cannot read the embedding store ({err})") from None
        return self._vectors[rows]  # (n, D): reads these rows of the mapped file

    def encode(self, texts) -> torch.Tensor:
        """(N, D) float32 vectors of ``texts`` (a list of str; repeats allowed), on ``device``.

        A text without a vector raises InputError naming the store, the text and the command
        that adds it.
        """
        missing = self.missing(texts)
        if missing:
            more = f" (and {len(missing) - 1} other texts)" if len(missing) > 1 else ""
            raise InputError(
                f"{self.path}: no vector for the description text {_short(missing[0])!r}{more}; "
                f"the descriptions changed since the store was made: update it with "
                f"`{rebuild_command(self.path, self.identity, self.info)}` "
                "(only new texts are encoded)")
        if len(texts) == 0:
            return torch.zeros(0, self.text_dim, device=self.device)
        distinct = list(dict.fromkeys(texts))
        rows = self._rows([self._row[t] for t in distinct])  # (n, D), one read per distinct text
        if len(distinct) < len(texts):
            position = {t: i for i, t in enumerate(distinct)}
            rows = rows[torch.tensor([position[t] for t in texts])]  # (N, D)
        return rows.to(self.device)

    def all_vectors(self) -> torch.Tensor:
        """Every row (len(self), D) float32, in the order of ``texts`` (for rewriting the store)."""
        if not self.texts:
            return torch.zeros(0, self.text_dim)
        return self._rows(list(range(len(self.texts)))).clone()

    def to(self, device) -> "EmbeddingStore":
        self.device = torch.device(device)
        return self

    def close(self) -> None:
        self._vectors = None
        self._handle = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_handle"] = state["_vectors"] = None  # the copy reopens the mapped file
        return state

    def __repr__(self):
        return (f"EmbeddingStore({str(self.path)!r}, texts={len(self)}, dim={self.text_dim}, "
                f"encoder={self.identity.get('encoder')!r})")


# -----------------------------------------------------------------------------
# 4. precompute

def collect_texts(directory: Path) -> tuple:
    """Every distinct text of ``directory/*.json`` (files in name order, texts in order of
    first appearance) -> (texts, number of files, ["<path>: <reason>" of unusable files])."""
    texts, invalid = {}, []
    files = sorted(directory.glob("*.json"))
    for path in files:
        try:
            descriptions, _ = read_description_file(path)
        except SampleError as err:
            invalid.append(str(err))
            continue
        texts.update(dict.fromkeys(descriptions[frame] for frame in sorted(descriptions)))
    return list(texts), len(files), invalid


def _encode_new(texts: list, encoder_dir, batch_size: int, device, max_tokens: int, seed: int,
                progress: bool) -> torch.Tensor:
    """(len(texts), D) float32 on the CPU: TextEncoder vectors, batches of similar length,
    encoded in float32 with autocast off (whatever the caller's context), as a run encodes them."""

    encoder = TextEncoder(encoder_dir, device=device, max_tokens=max_tokens, seed=seed)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # less padding per batch
    out = torch.empty(len(texts), encoder.text_dim)
    with tqdm(total=len(texts), desc="encoding texts", unit="text", disable=not progress,
              file=sys.stderr) as bar:
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            with torch.autocast(encoder.device.type, enabled=False):
                vectors = encoder.encode([texts[i] for i in rows])  # (n, D) float32
            out[rows] = vectors.float().cpu()
            encoder.clear_cache()
            bar.update(len(rows))
    return out


def precompute(desc_dir, dataset: str, encoder_dir, out=None, batch_size: int = 64, device=None,
               max_tokens: int = 64, seed: int = 0, progress: bool = True) -> dict:
    """Build or update the store of ``<desc_dir>/<dataset>/*.json`` for ``encoder_dir``.

    Only texts missing from the store at ``out`` (default: ``default_store_path``) are encoded;
    the rows already there are kept byte for byte and the new ones appended. A file at ``out``
    that is unreadable, made by another encoder/settings or in another precision is rebuilt
    from scratch (the summary says why under "rebuilt"). ``device``: default CUDA when present,
    else CPU; float32 either way. Returns the summary dict printed by ``signfuse precompute-text``.
    """
    if batch_size < 1:
        raise InputError(f"--batch_size: must be at least 1, got {batch_size}")
    if max_tokens < 1:
        raise InputError(f"--desc_max_tokens: must be at least 1, got {max_tokens}")
    directory = Path(desc_dir) / dataset
    if not directory.is_dir():
        raise InputError(f"{directory}: description directory not found (--desc_dir holds one "
                         "folder per dataset)")
    started = time.perf_counter()
    identity = encoder_identity(encoder_dir, max_tokens=max_tokens, seed=seed)
    out = Path(out) if out is not None else default_store_path(desc_dir, dataset, identity)
    texts, files, invalid = collect_texts(directory)
    for message in invalid:  # skipped, counted in the summary, each named once on stderr
        logging.getLogger(__name__).warning("skipped: %s", message)
    if not texts:
        raise InputError(f"{directory}: no description text to encode ({files} .json files, "
                         f"{len(invalid)} of them unusable)")

    old, rebuilt = None, None
    if out.exists():
        try:
            old = EmbeddingStore.open(out, expected_identity=identity)
        except InputError as err:
            rebuilt = str(err)
            logging.getLogger(__name__).warning("rebuilding from scratch: %s", err)
    stored = old.texts if old is not None else []
    new = [t for t in texts if old is None or t not in old]
    try:
        device = torch.device(device if device is not None
                              else "cuda" if torch.cuda.is_available() else "cpu")
    except RuntimeError:
        raise InputError(f"--device {device}: not a device (cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {device}: CUDA is not available on this machine")
    if new or old is None:
        vectors = _encode_new(new, encoder_dir, batch_size, device, max_tokens, seed, progress)
        if old is not None:
            vectors = torch.cat([old.all_vectors(), vectors])  # old rows first, unchanged
            old.close()
        info = {"desc_dir": str(desc_dir), "dataset": dataset, "device": device.type,
                "precision": STORE_PRECISION}
        write_store(out, stored + new, vectors, identity, info)
    summary = {
        "store": str(out),
        "texts_total": len(stored) + len(new),
        "texts_in_descriptions": len(texts),
        "newly_encoded": len(new),
        "description_files": files,
        "invalid_files": len(invalid),
        "identity": identity_hash(identity)[:12],
        "device": device.type,
        "seconds": round(time.perf_counter() - started, 2),
    }
    if rebuilt is not None:
        summary["rebuilt"] = rebuilt
    return summary


# -----------------------------------------------------------------------------
# 5. signfuse precompute-text

