"""Resuming a run from ``last.pth`` (``--resume``): find the state every rank agrees on, warn about
changed settings, restore the position, sums and RNG states."""
from pathlib import Path

import numpy as np

from signfuse.errors import InputError
from signfuse.flags import RESUME_SENSITIVE
from signfuse.training import distributed as D
from signfuse.training import engine
from signfuse.training.checkpoint import load_last
from signfuse.training.parallel import use_deepspeed
from signfuse.training.settings import plain


def find_resume_state(args, out, log) -> dict | None:
    """The state to continue from: --resume auto (<output_dir>/last.pth, else last.prev.pth;
    none: a new run) or --resume DIR (must hold one); None for --resume none."""
    resume = (args.resume or "none").strip()
    if resume.lower() in ("none", "no", "false", ""):
        return None
    if resume == "auto":
        if out is None:
            raise InputError("--resume auto: needs --output_dir (where last.pth is written)")
        state = load_last(out, log=log, deepspeed=use_deepspeed(args))
        if state is None:
            log(f"--resume auto: no last.pth in {out}, starting a new run")
        return state
    folder = Path(resume)
    if folder.is_file():
        folder = folder.parent
    state = load_last(folder, log=log, deepspeed=use_deepspeed(args))
    if state is None:
        raise InputError(f"{resume}: no last.pth or last.prev.pth to resume from")
    return state



def agreed_resume_state(args, out, info: D.DistInfo, log) -> dict | None:
    """``find_resume_state`` on every rank (each reads the file itself); they must agree on
    what they found, and a problem stops every rank together."""
    try:
        resumed, problem = find_resume_state(args, out, log), None
    except InputError as e:  # raised below on every rank together
        resumed, problem = None, str(e)
    if info.distributed:
        found = D.all_gather_objects((problem, None if resumed is None else (resumed["path"], resumed["step"])), info)
        problem = next((p for p, _ in found if p), None)
        marks = [m for _, m in found]
        if problem is None and any(m != marks[0] for m in marks):
            raise InputError(f"--resume {args.resume}: the processes found different states to resume from "
                             f"({', '.join(f'rank {r}: {m}' for r, m in enumerate(marks))}); --output_dir must "
                             "be on a file system that every process (every node) sees")
    if problem:
        raise InputError(problem)
    return resumed



def check_resume_args(saved: dict, args, log) -> None:
    """Warn about flags that differ from the interrupted run's (its continuation will then
    differ from an uninterrupted run)."""
    now = vars(args)
    changed = [f"--{k} {now.get(k)!r} (was {saved.get(k)!r})" for k in RESUME_SENSITIVE
               if k in saved and k in now and saved.get(k) != plain(now.get(k))]
    if changed:
        log("warning: resuming with other settings than the interrupted run: " + ", ".join(changed))



def restored_state(resumed: dict, info: D.DistInfo, log) -> tuple:
    """(TrainState, world size of the interrupted run) from a last.pth, with this rank's RNG
    states restored; after a change of the number of processes the epoch's sums are merged
    (rank 0) and the epoch continues from its first unseen sample."""
    saved_world = int(resumed.get("world_size", len(resumed.get("ranks", [])) or 1))
    per_rank = resumed.get("ranks") or [{"rng": r} for r in resumed.get("rng", [])]
    mine = per_rank[min(info.rank, len(per_rank) - 1)]
    state = engine.TrainState(epoch=resumed["epoch"], step=resumed["step"], batch_in_epoch=resumed["batch_in_epoch"],
                              best_metric=resumed.get("best_metric"),
                              nonfinite_skipped=resumed.get("nonfinite_skipped", 0),
                              history=list(resumed.get("history", [])))
    if state.batch_in_epoch > 0 and saved_world == info.world_size:
        state.epoch_sums = mine.get("epoch_sums")
        state.epoch_skipped = list(mine.get("epoch_skipped", []))
    elif state.batch_in_epoch > 0:
        log(f"warning: the interrupted run had {saved_world} processes, this one {info.world_size}: "
            "the epoch continues from its first unseen sample (not bit-identical to an uninterrupted run)")
        if info.is_main:
            state.epoch_sums = list(np.sum([r.get("epoch_sums") or [0.0] * len(engine.EPOCH_SUMS)
                                            for r in per_rank], axis=0))
            state.epoch_skipped = [s for r in per_rank for s in r.get("epoch_skipped", [])]
    engine.set_rng_states(mine["rng"])
    return state, saved_world
