"""Start-up for one process, torchrun (DDP) or the deepspeed launcher, and the few
collective operations the engine needs. Only rank 0 writes files and logs.

torchrun and deepspeed both set RANK, WORLD_SIZE and LOCAL_RANK in the environment
(deepspeed also passes --local_rank on the command line). NCCL on GPU, gloo on CPU.
"""
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from signfuse.errors import InputError


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


def init_distributed(device_name: str | None = None) -> DistInfo:
    """Join the process group when launched by torchrun/deepspeed; else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_name, local_rank)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=device)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


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


def sum_over_ranks(values: np.ndarray, info: DistInfo) -> np.ndarray:
    """Element-wise sum of a float64/int64 array over ranks (BLEU statistics, counters)."""
    if not info.distributed:
        return values
    t = torch.as_tensor(np.asarray(values, dtype=np.float64))
    if dist.get_backend() == "nccl":
        t = t.to(info.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().numpy()


def broadcast_object(obj, info: DistInfo):
    """Rank 0's ``obj`` on every rank."""
    if not info.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
