"""The training and evaluation loops: ``train_one_epoch`` and ``evaluate``.

Both work the same in one process, under torchrun (DDP) and under DeepSpeed; the
difference is hidden in the ``Stepper`` (how a loss becomes an optimizer step).
Evaluation shards the data over ranks without padding, and computes BLEU from summed
n-gram statistics and ROUGE/WER from the gathered predictions, so its numbers equal a
single-process evaluation.
"""
import contextlib
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from signfuse import metrics
from signfuse.errors import InputError, SignfuseError
from signfuse.models.text_fusion import ALIGNMENT_KINDS, alignment_kinds
from signfuse.training import distributed as D
from signfuse.training.checkpoint import save_last


class NonFiniteLossError(SignfuseError):
    """The loss became NaN or inf; the message names the step and the batch's samples."""


@dataclass
class RunContext:
    """What the loops need besides the model and the data: devices, precision, outputs."""
    args: object
    dist: D.DistInfo
    output_dir: Path | None = None
    writer: object = None              # TensorBoard SummaryWriter (rank 0) or None
    log: object = print                # rank-0 printer
    amp_dtype: torch.dtype | None = None  # bf16/fp16 autocast on CUDA; None: float32
    sync_bn: bool = False              # SyncBatchNorm layers: every rank must run every forward
    after_micro_batch: object = None   # (state, micro-batches of the epoch) -> None, e.g. --quick_break's save

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.dist.device.type, dtype=self.amp_dtype)


@dataclass
class TrainState:
    """Where a run is: saved in last.pth, so that a killed run continues exactly."""
    epoch: int = 0
    step: int = 0             # optimizer steps since the start
    batch_in_epoch: int = 0   # micro-batches of this epoch already consumed
    best_metric: float | None = None
    nonfinite_skipped: int = 0
    history: list = field(default_factory=list)
    epoch_sums: list | None = None  # this rank's running sums of the epoch (engine.EPOCH_SUMS)
    epoch_skipped: list = field(default_factory=list)  # this rank's unloadable samples of the epoch
    # not saved: every saved state is at a step boundary, where both are empty
    pending: int = 0          # micro-batches accumulated since the last optimizer step
    step_bad: list = field(default_factory=list)  # (micro-batch, names) of this step's non-finite losses


def to_device(batch: dict, device: torch.device) -> dict:
    """Tensors to ``device``; lists of names and texts stay as they are."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def unwrap(model):
    """The Uni_Sign module inside a DDP or DeepSpeed wrapper."""
    return getattr(model, "module", model)


def rng_states() -> dict:
    """Every random generator a training step draws from (saved at each step boundary)."""
    states = {"torch": torch.get_rng_state(), "python": random.getstate(),
              "numpy": [v.tolist() if isinstance(v, np.ndarray) else v for v in np.random.get_state()]}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    py = states["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npst = states["numpy"]
    np.random.set_state((npst[0], np.asarray(npst[1], dtype=np.uint32), *npst[2:]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class Stepper:
    """Backward and optimizer step for a plain or DDP model: gradient accumulation over
    ``accum`` micro-batches, clipping, a GradScaler for fp16, the per-step LR schedule.

    Per micro-batch: ``with stepper.micro_batch(boundary, sync)``: forward and
    ``backward(loss)``; at the last micro-batch of a step (``boundary``): ``finish()``
    (gradient sync when DDP's own could not run, unscale, clip: returns the gradient norm),
    then ``apply()`` (optimizer and schedule step) or ``discard()`` (a skipped step)."""

    #: DDP needs every rank to run the forward of a step's last micro-batch (its gradient
    #: all-reduce hooks are armed there); the engine checks it with one flag per step
    ddp = False
    #: a non-finite gradient norm after finish() means the step must not be applied
    checks_grad_norm = True

    def __init__(self, model, optimizer, scheduler, accum: int, clip: float, scaler=None, dist_info=None):
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.accum, self.clip, self.scaler = max(1, accum), clip, scaler
        self.dist = dist_info or D.DistInfo()
        self.ddp = hasattr(model, "no_sync") and self.dist.distributed
        self.checks_grad_norm = scaler is None  # with fp16 the GradScaler skips such steps itself
        self._manual_sync = False

    def params(self):
        return [p for p in self.model.parameters() if p.requires_grad]

    def micro_batch(self, boundary: bool, sync: bool = True):
        """Context of one micro-batch's forward and backward. Gradients are all-reduced by DDP
        on the last micro-batch of a step (``boundary``) when every rank has a batch
        (``sync``); else they accumulate locally and ``finish()`` all-reduces them."""
        if not self.ddp:
            return contextlib.nullcontext()
        if boundary:
            self._manual_sync = not sync
        if boundary and sync:
            return contextlib.nullcontext()
        return self.model.no_sync()

    def backward(self, loss: torch.Tensor) -> None:
        loss = loss / self.accum
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def finish(self) -> float:
        """All-reduce (if DDP could not), unscale, clip; returns the gradient norm before clipping."""
        if self._manual_sync:
            D.allreduce_gradients(self.params(), self.dist)
            self._manual_sync = False
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.params(), self.clip if self.clip and self.clip > 0 else float("inf"))
        return float(norm)

    def apply(self):
        """Optimizer step, schedule step, gradients cleared."""
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return None

    def discard(self) -> None:
        """A skipped step: the gradients are dropped, the schedule still advances."""
        self._manual_sync = False
        if self.scaler:
            self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()

    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    # sharded optimizer states (DeepSpeed ZeRO) are gathered by the caller
    sharded = False

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler else None}

    def load_state_dict(self, sd: dict) -> None:
        self.optimizer.load_state_dict(sd["optimizer"])
        self.scheduler.load_state_dict(sd["scheduler"])
        if self.scaler and sd.get("scaler"):
            self.scaler.load_state_dict(sd["scaler"])


class DeepSpeedStepper(Stepper):
    """The same interface over a DeepSpeed engine, which does accumulation, clipping,
    mixed precision and ZeRO itself (configured from Uni-Sign's flags).

    The engine is told where each step ends (``set_gradient_accumulation_boundary``), so
    that its steps fall exactly where signfuse's do (every ``accum`` micro-batches of the run,
    as its own counter would put them); ``engine.step()`` is called once per optimizer step.
    """

    ddp = False
    checks_grad_norm = False

    def __init__(self, engine, dist_info=None):
        self.model = engine
        self.accum = engine.gradient_accumulation_steps()
        self.dist = dist_info or D.DistInfo()
        opt = engine.optimizer
        # ZeRO and DeepSpeed's bf16 optimizer keep one partition of the state per rank
        self.sharded = engine.zero_optimization_stage() > 0 or type(opt).__name__ in ("BF16_Optimizer",)

    def micro_batch(self, boundary: bool, sync: bool = True):
        self.model.set_gradient_accumulation_boundary(bool(boundary))
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        self.model.backward(loss)

    def finish(self) -> float:
        return float("nan")  # known after the engine's step

    def apply(self):
        self.model.step()
        norm = self.model.get_global_grad_norm()
        return float(norm) if norm is not None else float("nan")

    def discard(self) -> None:
        """DeepSpeed's own optimizers (ZeRO, bf16, fp16) find the non-finite gradients themselves
        (they were all-reduced to every rank), skip the update and clear their buffers; with
        the plain optimizer (ZeRO stage 0 in float32: CPU) the gradients are dropped here and
        the schedule advances, as with torch."""
        if self.model.optimizer is not getattr(self.model, "basic_optimizer", self.model.optimizer):
            if not (self.model.bfloat16_enabled() or self.model.fp16_enabled()):
                raise NonFiniteLossError("a non-finite step cannot be skipped with DeepSpeed ZeRO in float32 "
                                         "(it has no overflow check): use --dtype bf16/fp16 or --zero_stage 0")
            self.model.step()
            return
        self.model.zero_grad()
        self.model.optimizer.zero_grad(set_to_none=True)
        if self.model.lr_scheduler is not None:
            self.model.lr_scheduler.step()

    def lr(self) -> float:
        return self.model.get_lr()[0]

    def state_dict(self) -> dict:
        """This rank's optimizer state (one partition of it when ``sharded``) and the schedule."""
        return {"optimizer": self.model.optimizer.state_dict(),
                "scheduler": self.model.lr_scheduler.state_dict() if self.model.lr_scheduler else None}

    def load_state_dict(self, sd: dict) -> None:
        """``sd["optimizer"]``: the state dict, or with a sharded optimizer the list of every
        rank's partition (same world size as when it was saved)."""
        opt = self.model.optimizer
        if self.sharded:
            shards = sd["optimizer"]
            if not isinstance(shards, list) or len(shards) != self.dist.world_size:
                have = len(shards) if isinstance(shards, list) else 1
                raise InputError(f"the saved optimizer state is split over {have} ranks (DeepSpeed ZeRO/bf16), "
                                 f"this run has {self.dist.world_size}: resume with the same number of processes, "
                                 "or start a new run from the weights with --finetune <output_dir>/last.pth")
            opt.load_state_dict(shards, load_optimizer_states=True, load_from_fp32_weights=True)
        else:
            opt.load_state_dict(sd["optimizer"])
        if sd.get("scheduler") and self.model.lr_scheduler:
            self.model.lr_scheduler.load_state_dict(sd["scheduler"])


def _zero_loss(model) -> torch.Tensor:
    """A zero loss touching every trainable parameter: lets a rank whose whole batch failed
    to load take part in the gradient all-reduce without changing the weights."""
    return sum(p.sum() * 0.0 for p in model.parameters() if p.requires_grad)


EPOCH_SUMS = ("loss_sum", "n_loss", "samples", "gate_sum", "gate_n", "desc_frames", "frames")
#: why the samples of a micro-batch are not trained when another rank's micro-batch is empty
SYNC_BN_SKIP = ("not trained: another process's micro-batch had no loadable sample, and with synchronised "
                "BatchNorm (--sync_bn) every process must run each forward")


def train_one_epoch(model, loader, stepper: Stepper, state: TrainState, ctx: RunContext,
                    resumable_state=None) -> dict:
    """One pass over ``loader`` (starting after ``state.batch_in_epoch`` micro-batches when
    resuming, with the running sums of the epoch in ``state.epoch_sums``). Returns the
    epoch's training statistics.

    An optimizer step ends every ``stepper.accum`` micro-batches counted over the whole run,
    as Uni-Sign's DeepSpeed engine counts them: the micro-batches left at the end of an epoch
    go into the first step of the next (``state.pending``). ``resumable_state()`` builds the
    dict saved as last.pth every ``--save_every_steps`` optimizer steps, and at the epoch's
    last step when micro-batches follow it (see ``_save_if_due``).

    Collectives (identical on every rank, so that no rank waits alone): under DDP one flag
    per step before the forward of its last micro-batch (does a rank have no sample?), with
    SyncBatchNorm one flag per micro-batch (the same question), and with several ranks one
    flag per step after its backward (non-finite loss or gradient).
    """
    model.train()
    total = len(loader) + state.batch_in_epoch  # the loader was built to skip consumed batches
    sums = _open_epoch(state)
    t0, samples_at_start = time.time(), sums["samples"]
    bar = tqdm(loader, total=total, initial=state.batch_in_epoch, disable=not ctx.dist.is_main,
               desc=f"epoch {state.epoch}", dynamic_ncols=True, leave=False)
    try:  # the bar is cleared before any error message
        for batch in bar:
            boundary = state.pending + 1 >= stepper.accum
            state.epoch_skipped += batch.get("skipped", [])
            batch, out, loss = _micro_batch(model, batch, stepper, boundary, state, ctx)
            _add_to_sums(sums, batch, out, loss)
            state.batch_in_epoch += 1
            state.pending += 1
            if boundary:
                _optimizer_step(stepper, state, ctx, sums)
                _save_if_due(state, ctx, resumable_state, stepper.accum, batches_left=total - state.batch_in_epoch)
            if ctx.after_micro_batch is not None:
                ctx.after_micro_batch(state, total)
            bar.set_postfix(_progress(sums, stepper, samples_at_start, t0))
    finally:
        bar.close()
    state.epoch_sums = [sums[k] for k in EPOCH_SUMS]
    return _epoch_statistics(state, ctx, t0)


def _open_epoch(state: TrainState) -> dict:
    """The epoch's running sums: restored from ``state`` when resuming inside the epoch, else zeros."""
    if state.batch_in_epoch == 0 or state.epoch_sums is None:
        state.epoch_sums, state.epoch_skipped = [0.0] * len(EPOCH_SUMS), []
    return dict(zip(EPOCH_SUMS, state.epoch_sums, strict=True))


def _micro_batch(model, batch: dict, stepper: Stepper, boundary: bool, state: TrainState, ctx: RunContext):
    """Forward and backward of one micro-batch. Returns (batch on the device, model output or
    None, finite loss or None). A rank without a sample (or, with SyncBatchNorm, any rank
    without one) backpropagates a zero loss, so that every rank takes part in the all-reduce."""
    info = ctx.dist
    batch = to_device(batch, info.device)
    empty = len(batch["names"]) == 0
    if ctx.sync_bn and D.any_over_ranks(empty, info) and not empty:
        state.epoch_skipped += [(name, SYNC_BN_SKIP) for name in batch["names"]]
        empty = True
    sync = not D.any_over_ranks(empty, info) if (boundary and stepper.ddp) else True
    with stepper.micro_batch(boundary, sync):
        with ctx.autocast():
            out = None if empty else model(batch)
            loss = _zero_loss(model) if empty else out["loss"]
        finite = bool(torch.isfinite(loss.detach()).item())
        if not finite:
            state.step_bad.append((state.batch_in_epoch, list(batch["names"])))
        stepper.backward(loss)  # a non-finite loss too: every rank takes part in the all-reduce
    return batch, out, (loss if finite and not empty else None)


def _add_to_sums(sums: dict, batch: dict, out, loss) -> None:
    """Add a trained micro-batch (finite loss) to the epoch's running sums."""
    if loss is None:
        return
    sums["loss_sum"] += float(loss.detach())
    sums["n_loss"] += 1
    sums["samples"] += len(batch["names"])
    if out.get("gate") is not None:
        mask = batch["attention_mask"].unsqueeze(-1).to(out["gate"].dtype)  # (B, T, 1)
        sums["gate_sum"] += float((out["gate"].detach() * mask).sum())
        sums["gate_n"] += float(mask.sum())
        sums["desc_frames"] += float((batch["has_description"] * mask).sum())
        sums["frames"] += float(mask.sum())


def _optimizer_step(stepper: Stepper, state: TrainState, ctx: RunContext, sums: dict) -> None:
    """The end of an optimizer step: gradient sync and clipping, then the update, or (a
    non-finite loss or gradient on some rank) an error or a skipped step; TensorBoard scalars."""
    info = ctx.dist
    grad_norm = stepper.finish()
    bad_grad = stepper.checks_grad_norm and not math.isfinite(grad_norm)
    flags = np.array([float(len(state.step_bad)), float(bad_grad)])
    if info.distributed:
        flags = D.sum_over_ranks(flags, info)
    if flags.any():
        _nonfinite_step(state.step_bad, bool(flags[0]), state, ctx, state.batch_in_epoch - 1)
        stepper.discard()
    else:
        applied = stepper.apply()
        grad_norm = applied if applied is not None else grad_norm
    state.step_bad, state.pending = [], 0
    state.step += 1
    state.epoch_sums = [sums[k] for k in EPOCH_SUMS]
    if info.is_main and ctx.writer is not None:
        ctx.writer.add_scalar("train/loss", sums["loss_sum"] / max(1, sums["n_loss"]), state.step)
        ctx.writer.add_scalar("train/lr", stepper.lr(), state.step)
        ctx.writer.add_scalar("train/grad_norm", grad_norm, state.step)


def _save_if_due(state: TrainState, ctx: RunContext, resumable_state, accum: int, batches_left: int) -> None:
    """last.pth after this optimizer step: every --save_every_steps steps, and at the epoch's
    last step when micro-batches follow it (they end inside the next epoch's first step, so
    the end of this epoch is no step boundary where a state could be saved). The end of the
    epoch itself is saved by the run (when it is a step boundary)."""
    if resumable_state is None or ctx.output_dir is None or batches_left == 0:
        return
    every = getattr(ctx.args, "save_every_steps", 0) or 0
    if (every > 0 and state.step % every == 0) or batches_left < accum:
        snapshot = resumable_state()
        if ctx.dist.is_main:
            save_last(snapshot, ctx.output_dir)


def _progress(sums: dict, stepper: Stepper, samples_at_start: float, t0: float) -> dict:
    """The progress bar's figures: running loss, learning rate, speed."""
    elapsed = max(time.time() - t0, 1e-9)
    return {"loss": f"{sums['loss_sum'] / max(1, sums['n_loss']):.4f}", "lr": f"{stepper.lr():.2e}",
            "speed": f"{(sums['samples'] - samples_at_start) / elapsed:.1f} samples/s"}


def _epoch_statistics(state: TrainState, ctx: RunContext, t0: float) -> dict:
    """The epoch's statistics summed over ranks; every rank's unloadable samples reported together."""
    info = ctx.dist
    all_skipped = [s for part in D.all_gather_objects(state.epoch_skipped, info) for s in part]
    totals = D.sum_over_ranks(np.array(state.epoch_sums, dtype=np.float64), info)
    stats = {"train_loss": totals[0] / max(1, totals[1]), "train_samples": int(totals[2]),
             "skipped_samples": len(all_skipped), "epoch_time_s": time.time() - t0}
    if state.nonfinite_skipped:
        stats["nonfinite_skipped_steps"] = state.nonfinite_skipped
    if totals[4] > 0:
        stats["mean_gate"] = totals[3] / totals[4]
        stats["described_frame_share"] = totals[5] / max(1, totals[6])
    if all_skipped:
        ctx.log(f"epoch {state.epoch}: skipped {len(all_skipped)} samples that could not be loaded:")
        for name, err in all_skipped[:50]:
            ctx.log(f"  {name}: {err}")
        if len(all_skipped) > 50:
            ctx.log(f"  ... and {len(all_skipped) - 50} more")
    return stats


def _nonfinite_step(step_bad: list, bad_loss: bool, state: TrainState, ctx: RunContext, last_batch: int) -> None:
    """A step with a NaN/inf loss (on some rank) or gradient: stop with NonFiniteLossError
    naming the step and the samples, or (``--skip_nonfinite``) count it and go on. Called on
    every rank with the same flags."""
    info = ctx.dist
    parts = D.all_gather_objects(step_bad, info) if info.distributed else [step_bad]
    batches = sorted({i for part in parts for i, _ in part})
    names = [n for part in parts for _, ns in part for n in ns]
    what = "loss" if bad_loss else "gradient (finite loss)"
    where = (f"optimizer step {state.step + 1} (epoch {state.epoch}, "
             + (f"micro-batch {', '.join(map(str, batches))}" if batches else f"the step ending at micro-batch {last_batch}")
             + " of the epoch)")
    if names:
        where += f", samples: {', '.join(names[:16])}" + (f" and {len(names) - 16} more" if len(names) > 16 else "")
    if not getattr(ctx.args, "skip_nonfinite", False):
        raise NonFiniteLossError(f"non-finite {what} at {where}; lower --lr, check these samples, or rerun "
                                 "with --skip_nonfinite to skip such steps (counted in log.txt)")
    state.nonfinite_skipped += 1
    ctx.log(f"warning: non-finite {what} at {where}: step skipped ({state.nonfinite_skipped} so far)")


def _dataset_positions(loader) -> dict | None:
    """{sample name: position in the dataset} of an evaluation loader's dataset (the order of a
    single-process evaluation), or None when the dataset does not say (no ``names()``)."""
    names = getattr(getattr(loader, "dataset", None), "names", None)
    return None if names is None else {name: i for i, name in enumerate(names())}


@torch.no_grad()
def evaluate(model, loader, ctx: RunContext, split: str, descriptions_off: bool = False,
             write_files: bool = True, tag: str = "", predicted: bool = False) -> dict:
    """Generate for every sample of ``loader`` (this rank's shard), gather over ranks,
    post-process, score. Rank 0 writes ``<split>_tmp_pres.txt`` / ``_tmp_refs.txt`` and,
    with descriptions, ``<split>_gates.npz``. Returns the metrics (same on every rank).
    ``predicted``: every frame reads the description predictor's vector; when the loader's
    batches carry descriptions, the mean cosine of the predictions to them is reported too."""
    info, task = ctx.dist, ctx.args.task
    net = unwrap(model)
    net.prediction_cosine = [0.0, 0.0, 0]
    mine = _generate_shard(net, loader, ctx, f"{split}{tag}", descriptions_off, predicted)
    result = {}
    if task == "SLT":  # BLEU from summed statistics; the rest from gathered predictions
        stats = D.sum_over_ranks(metrics.bleu_statistics(mine["preds"], mine["refs"]), info)
        result.update(metrics.bleu_from_statistics(stats))
    gathered = D.all_gather_objects(mine, info)
    names, preds, refs = _in_dataset_order(gathered, loader if info.distributed else None)
    skipped = [s for g in gathered for s in g["skipped"]]
    if not names:
        raise SignfuseError(f"eval {split}: no sample could be loaded, nothing to score "
                            f"({len(skipped)} failed, e.g. {skipped[:1]})")
    full = metrics.compute_metrics(preds, refs, task)
    result.update({k: v for k, v in full.items() if not k.startswith("bleu")})
    if task != "SLT":
        result.update(full)
    result["samples"], result["skipped_samples"] = len(names), len(skipped)
    if predicted:
        raw, centred, frames = D.sum_over_ranks(np.array(net.prediction_cosine, dtype=np.float64), info)
        if frames > 0:  # the predictor's similarity to the true texts' vectors, over the frames that have one
            result.update(predictor_cosine=raw / frames, predictor_cosine_normalised=centred / frames,
                          predictor_frames=int(frames))
    gates = {k: v for g in gathered for k, v in g["gates"].items()}
    result.update(mean_gate_by_kind(gates))
    if info.is_main and write_files and ctx.output_dir is not None:
        metrics.write_results(ctx.output_dir, split + tag, names, preds, refs)
        if gates:
            save_gates(Path(ctx.output_dir) / f"{split}{tag}_gates.npz", gates)
    if skipped:
        ctx.log(f"eval {split}: {len(skipped)} samples could not be loaded and are not scored: "
                + ", ".join(f"{n} ({e})" for n, e in skipped[:10]))
    return result


def _generate_shard(net, loader, ctx: RunContext, label: str, descriptions_off: bool, predicted: bool = False) -> dict:
    """This rank's predictions: {"names", "preds", "refs" (post-processed), "skipped", "gates"
    (per sample with descriptions: gate, has_description, frame_indices over its frames)}."""
    args, info = ctx.args, ctx.dist
    net.eval()
    mine = {"names": [], "preds": [], "refs": [], "skipped": [], "gates": {}}
    for batch in tqdm(loader, disable=not info.is_main, desc=f"eval {label}", dynamic_ncols=True, leave=False):
        mine["skipped"] += batch.get("skipped", [])
        if len(batch["names"]) == 0:
            continue
        batch = to_device(batch, info.device)
        with ctx.autocast():
            hyps = net.generate(batch, descriptions_off=descriptions_off, predicted=predicted) \
                if net.cfg.use_descriptions else net.generate(batch)
        if net.cfg.use_descriptions and not descriptions_off and not predicted:
            gate = net.last_gate  # (B, T, 1) from the fusion of this batch
            kinds = alignment_kinds(batch["desc_index"], batch["desc_weight"], batch["has_description"])  # (B, T)
            for b, name in enumerate(batch["names"]):
                n = int(batch["attention_mask"][b].sum())
                mine["gates"][name] = {"gate": gate[b, :n, 0].float().cpu().numpy(),
                                       "has_description": batch["has_description"][b, :n, 0].cpu().numpy(),
                                       "frame_indices": batch["frame_indices"][b, :n].cpu().numpy(),
                                       "alignment": kinds[b, :n].to(torch.int8).cpu().numpy()}
        mine["names"] += batch["names"]
        mine["preds"] += [metrics.postprocess_prediction(h, args.dataset, args.task) for h in hyps]
        mine["refs"] += [metrics.postprocess_reference(r, args.dataset, args.task) for r in batch["targets"]]
    return mine


def _in_dataset_order(gathered: list, loader=None) -> tuple[list, list, list]:
    """(names, predictions, references) of every rank; in the dataset's order (that of a
    single-process evaluation) when ``loader``'s dataset says it."""
    rows = [row for g in gathered for row in zip(g["names"], g["preds"], g["refs"], strict=True)]
    positions = _dataset_positions(loader) if loader is not None else None
    if positions is not None:
        rows.sort(key=lambda row: positions.get(row[0], len(positions)))
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def mean_gate_by_kind(gates: dict) -> dict:
    """{"mean_gate_<kind>": mean gate over the split's frames of that alignment kind} (exact,
    interpolated, nearest, undescribed: text_fusion.ALIGNMENT_KINDS), for the kinds present."""
    if not gates:
        return {}
    gate = np.concatenate([g["gate"] for _, g in sorted(gates.items())])  # (frames,)
    kind = np.concatenate([g["alignment"] for _, g in sorted(gates.items())])  # (frames,)
    return {f"mean_gate_{name}": float(gate[kind == code].mean())
            for code, name in enumerate(ALIGNMENT_KINDS) if (kind == code).any()}


def save_gates(path: Path, gates: dict) -> None:
    """Per-sample gate values over the sampled frames, with has_description and the
    original frame numbers: ``<name>/gate``, ``<name>/has_description``, ``<name>/frame_indices``."""
    arrays = {f"{name}/{key}": value for name, d in sorted(gates.items()) for key, value in d.items()}
    np.savez_compressed(path, **arrays)


def main_metric(result: dict, task: str) -> tuple[str, float, bool]:
    """(name, value, higher_is_better) of the number that picks best_checkpoint.pth."""
    if task == "SLT":
        return "bleu4", result["bleu4"], True
    if task == "ISLR":
        return "top1_acc_pi", result["top1_acc_pi"], True
    return "wer", result["wer"], False


def is_better(value: float, best: float | None, higher: bool) -> bool:
    if best is None or (isinstance(best, float) and math.isnan(best)):
        return True
    return value > best if higher else value < best
