"""What every run does around its work: join and leave the process group (``in_process_group``),
seeds and output folder (``start_run``), the run's log (``RunLog``) and TensorBoard writer."""
import sys
from pathlib import Path

import numpy as np
import torch

from signfuse.training import distributed as D
from signfuse.training.parallel import use_deepspeed


class RunLog:
    """Prints (rank 0) and appends to ``<output_dir>/run.txt``."""

    def __init__(self, output_dir, is_main: bool):
        self.path = Path(output_dir) / "run.txt" if output_dir and is_main else None
        self.is_main = is_main

    def __call__(self, *parts):
        if not self.is_main:
            return
        line = " ".join(str(p) for p in parts)
        print(line, flush=True)
        if self.path:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line + "\n")



def make_writer(output_dir, info, purge_step=None):
    """TensorBoard writer of rank 0; a resumed run hides the events logged after its state
    was saved (``purge_step``)."""
    if not info.is_main or not output_dir:
        return None
    from torch.utils.tensorboard import SummaryWriter
    return SummaryWriter(log_dir=str(output_dir), purge_step=purge_step)



def in_process_group(args, body):
    """``body(args, info)`` in this process's group (torchrun, deepspeed, or one process);
    every process ends it together."""
    info = D.init_distributed(args.device, getattr(args, "local_rank", None), deepspeed=use_deepspeed(args))
    try:
        result = body(args, info)
        D.barrier(info)  # end together: a gloo rank leaving early can abort a peer still in a collective
        return result
    finally:
        if not D.cleanup():
            print(f"warning (rank {info.rank}): {D.GROUP_HELD_WARNING} (report this)", file=sys.stderr)



def start_run(args, info: D.DistInfo) -> tuple:
    """Seeds, the output folder (rank 0 makes it) and the run's log: (output dir or None, log)."""
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    out = Path(args.output_dir) if args.output_dir else None
    if out and info.is_main:
        out.mkdir(parents=True, exist_ok=True)
    D.barrier(info)
    log = RunLog(out, info.is_main)
    if info.distributed:
        log(f"distributed: {info.world_size} processes ({'DeepSpeed' if use_deepspeed(args) else 'DDP'}, "
            f"{torch.distributed.get_backend()}), {args.batch_size} samples per process and micro-batch")
    return out, log
