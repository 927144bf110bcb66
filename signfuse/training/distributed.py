"""Start-up for one process, torchrun (DDP) or the deepspeed launcher, and the few
collective operations the engine needs. Only rank 0 writes files and logs.

torchrun and deepspeed both set RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT
in the environment (deepspeed also passes --local_rank on the command line). NCCL on GPU,
gloo on CPU.
"""
import contextlib
import gc
import hashlib
import os
import shutil
import sys
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from signfuse.errors import InputError, SignfuseError

#: printed (stderr) by a process whose group outlived ``cleanup`` (see ``import_before_the_group``)
GROUP_HELD_WARNING = "the process group is still held after leaving it; its threads run on into interpreter exit"


class ReplicaMismatchError(SignfuseError):
    """The ranks of a data-parallel run hold different weights at the end of training."""


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(name: str | None, local_rank: int = 0) -> torch.device:
    """--device: 'cpu', 'cuda', 'cuda:N'; default CUDA (this process's GPU) when present."""
    if name in (None, "", "auto"):
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"--device {name}: no CUDA device is available on this machine (use --device cpu)")
        if name == "cuda":
            name = f"cuda:{local_rank}"
    return torch.device(name)


def init_distributed(device_name: str | None = None, local_rank: int | None = None,
                     deepspeed: bool = False) -> DistInfo:
    """Join the process group when launched by torchrun/deepspeed; else a single process.

    ``local_rank``: the launcher's --local_rank, used when LOCAL_RANK is not in the
    environment (old deepspeed launchers). ``deepspeed``: the run will use DeepSpeed (imported
    before the group, see ``import_before_the_group``)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", local_rank if local_rank is not None else 0))
    if world > 1 and not ("MASTER_ADDR" in os.environ and "MASTER_PORT" in os.environ):
        raise InputError(f"WORLD_SIZE={world} but MASTER_ADDR/MASTER_PORT are not set: start several "
                         "processes with torchrun or the deepspeed launcher")
    device = pick_device(device_name, local_rank)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        import_before_the_group(deepspeed)
        dist.init_process_group(backend=backend)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=device)


_single_store_folder: str | None = None  # the file store's folder of a group of one


def init_single_process_group(info: DistInfo) -> None:
    """A process group of one (DeepSpeed wants one even for a single process started without
    a launcher): a file store in a temporary folder, no network port."""
    os.environ.setdefault("LOCAL_RANK", str(info.local_rank))  # deepspeed.initialize requires it
    global _single_store_folder
    _single_store_folder = tempfile.mkdtemp(prefix="signfuse_pg_")  # removed by cleanup()
    store = os.path.join(_single_store_folder, "store")
    backend = "nccl" if info.device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, init_method=f"file://{store}", rank=0, world_size=1)


def import_before_the_group(deepspeed: bool = False) -> None:
    """Import, before the default group exists, the modules that would otherwise keep it for
    good: torch.distributed.fsdp (imported by transformers' modeling_utils) takes the default
    group as a default argument value (``process_group=dist.group.WORLD``) when imported after
    init_process_group, and DeepSpeed imported after it keeps references that its own
    destroy_process_group does not drop. A group kept so is not freed by ``cleanup``: its gloo
    threads run on into interpreter exit, where one of them can abort the process (SIGABRT,
    "terminate called without an active exception") after all the work is done."""
    import torch.distributed.fsdp  # noqa: F401 (here: its import is this function's work)
    if deepspeed:
        try:
            import deepspeed as _  # noqa: F401
        except ImportError:  # said in one line where the engine is made (run.wrap_model)
            pass


def cleanup() -> bool:
    """Leave the process group and free it (its gloo or NCCL threads end here, not during
    interpreter exit). True when the group is gone; False when something still holds it."""
    if not (dist.is_available() and dist.is_initialized()):
        return True
    group = weakref.ref(dist.group.WORLD)
    gc.collect()  # DDP reducers and engines in reference cycles hold the group
    deepspeed_comm = sys.modules.get("deepspeed.comm")
    if deepspeed_comm is not None and deepspeed_comm.is_initialized():
        _unlink_deepspeed_shm_buffer(dist.get_rank())
        deepspeed_comm.destroy_process_group()  # also drops DeepSpeed's own references to its groups
    else:
        dist.destroy_process_group()
    gc.collect()
    _remove_single_store_folder()
    return group() is None


def deepspeed_shm_buffer(rank: int) -> Path:
    """Where DeepSpeed's CPU communication keeps this rank's shared-memory all-reduce buffer
    (69 MB) when every rank runs on this machine: named by user id, MASTER_ADDR, MASTER_PORT and
    rank. DeepSpeed (0.19) creates it and never unlinks it, so each CPU run would leave its
    buffers in /dev/shm (RAM) until the machine restarts."""
    return Path("/dev/shm") / "_".join(["deepspeed_allreduce_buffer", str(os.getuid()),
                                        os.environ.get("MASTER_ADDR", ""), os.environ.get("MASTER_PORT", ""),
                                        str(rank)])


def _unlink_deepspeed_shm_buffer(rank: int) -> None:
    """Unlink this rank's buffer once the run is over. Safe while peers still use it: every rank
    mapped every buffer when the group started, and a mapping outlives its name."""
    with contextlib.suppress(OSError):  # none (GPU run, one process, other launcher) or gone
        os.unlink(deepspeed_shm_buffer(rank))


def _remove_single_store_folder() -> None:
    global _single_store_folder
    if _single_store_folder is not None:
        shutil.rmtree(_single_store_folder, ignore_errors=True)
        _single_store_folder = None


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def all_gather_objects(obj, info: DistInfo) -> list:
    """A list with every rank's ``obj`` (rank order); [obj] for a single process."""
    if not info.distributed:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def gather_objects(obj, info: DistInfo) -> list | None:
    """Every rank's ``obj`` on rank 0 (rank order), None on the other ranks."""
    if not info.distributed:
        return [obj]
    out = [None] * info.world_size if info.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def sum_over_ranks(values: np.ndarray, info: DistInfo) -> np.ndarray:
    """Element-wise sum of a float64/int64 array over ranks (BLEU statistics, counters)."""
    if not info.distributed:
        return values
    t = torch.as_tensor(np.asarray(values, dtype=np.float64))
    if dist.get_backend() == "nccl":
        t = t.to(info.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().numpy()


def any_over_ranks(flag: bool, info: DistInfo) -> bool:
    """True when ``flag`` is true on at least one rank (every rank gets the same answer)."""
    if not info.distributed:
        return bool(flag)
    return bool(sum_over_ranks(np.array([1.0 if flag else 0.0]), info)[0] > 0)


def allreduce_gradients(params, info: DistInfo, bucket_bytes: int = 64 * 2 ** 20) -> None:
    """Average the gradients of ``params`` over ranks (what DDP does in backward), in flat
    buckets; a parameter without a gradient counts as zeros. Used for the rare optimizer
    steps that DDP's own hooks cannot serve (a rank whose micro-batch had no sample)."""
    if not info.distributed:
        return
    grads = []
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        grads.append(p.grad)
    bucket, size = [], 0
    for g in grads + [None]:
        if g is not None:
            bucket.append(g)
            size += g.numel() * g.element_size()
        if bucket and (g is None or size >= bucket_bytes):
            flat = torch._utils._flatten_dense_tensors(bucket)
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            flat /= info.world_size
            for t, synced in zip(bucket, torch._utils._unflatten_dense_tensors(flat, bucket), strict=True):
                t.copy_(synced)
            bucket, size = [], 0


def uses_sync_batchnorm(sync_bn: bool, info: DistInfo) -> bool:
    """--sync_bn applies to multi-process runs on GPU (SyncBatchNorm needs CUDA tensors); CPU
    runs (gloo) and single processes keep plain BatchNorm."""
    return bool(sync_bn) and info.distributed and info.device.type == "cuda"


def sync_batchnorm(model: torch.nn.Module, sync_bn: bool, info: DistInfo) -> torch.nn.Module:
    """``model`` with its BatchNorm layers synchronised across processes when
    ``uses_sync_batchnorm`` (as Uni-Sign converts its model before DDP/DeepSpeed); the same
    parameters and state-dict keys. Unchanged otherwise."""
    if not uses_sync_batchnorm(sync_bn, info):
        return model
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)


def wrap_ddp(model: torch.nn.Module, info: DistInfo, find_unused_parameters: bool = False):
    """DistributedDataParallel for training with signfuse's engine.

    ``broadcast_buffers=False``: DDP would otherwise broadcast rank 0's buffers (BatchNorm
    statistics) in every forward, a collective that a rank whose micro-batch failed to load
    (no forward) would miss; the buffers are broadcast once per epoch instead
    (``broadcast_buffers``). Training forwards use batch statistics, so the weights are the
    same either way."""
    ids = [info.device.index] if info.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=ids, broadcast_buffers=False, find_unused_parameters=find_unused_parameters)


@torch.no_grad()
def broadcast_buffers(module: torch.nn.Module, info: DistInfo) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank: the ranks see different
    batches, so their running statistics drift apart (DDP re-broadcasts them before every
    forward, DeepSpeed never); evaluation and checkpoints use rank 0's."""
    if not info.distributed:
        return
    for buf in module.buffers():
        dist.broadcast(buf.data, src=0)


def state_digest(state_dict: dict) -> str:
    """sha256 over the names, dtypes, shapes and bytes of a state dict's tensors (sorted by
    name): equal digests mean bit-identical weights."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name]
        if not torch.is_tensor(t):
            continue
        t = t.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(state_dict[name].shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def check_replicas(module: torch.nn.Module, info: DistInfo) -> str:
    """Verify that every rank holds bit-identical weights and buffers; returns the digest.

    Raises ReplicaMismatchError naming the ranks that differ from rank 0 (a broken gradient
    all-reduce, a rank that skipped a step alone, non-deterministic kernels on one GPU...)."""
    digest = state_digest(module.state_dict())
    digests = all_gather_objects(digest, info)
    differ = [r for r, d in enumerate(digests) if d != digests[0]]
    if differ:
        raise ReplicaMismatchError(
            f"the weights of rank(s) {', '.join(map(str, differ))} differ from rank 0's at the end of "
            f"training (sha256 {digests[0][:12]} on rank 0); the checkpoints hold rank 0's weights")
    return digest
