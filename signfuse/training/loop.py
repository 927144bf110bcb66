"""The training run: ``Trainer`` (everything held between epochs), the epoch loop (train,
validate, log, checkpoints, ``last.pth``) and ``train_in_group`` (the run in one process of its group)."""
import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from signfuse.training import distributed as D
from signfuse.training import engine
from signfuse.training.checkpoint import atomic_save, atomic_write_text, save_last
from signfuse.training.inputs import TrainData, build_loader, training_data
from signfuse.training.model_setup import (
    build_run_model,
    checkpoint_dict,
    count_model_parameters,
    read_checkpoint,
    rgb_backbone,
    warm_text_cache,
)
from signfuse.training.optim import build_optimizer, build_scheduler
from signfuse.training.parallel import amp_dtype, wrap_model
from signfuse.training.resume import (
    agreed_resume_state,
    check_resume_args,
    restored_state,
)
from signfuse.training.samplers import train_batches_per_epoch
from signfuse.training.session import RunLog, make_writer, start_run
from signfuse.training.settings import (
    plain,
    resolve_model_config,
    text_encoder_identity,
)


@dataclass
class Trainer:
    """Everything a training run holds between its epochs."""
    args: object
    info: D.DistInfo
    log: RunLog
    out: Path | None
    cfg: object                 # the resolved ModelConfig (frozen)
    text_encoder: dict | None   # identity of the description encoder, recorded in checkpoints
    data: TrainData
    model: object               # the model, wrapped (DDP / DeepSpeed engine) or not
    stepper: engine.Stepper
    state: engine.TrainState
    ctx: engine.RunContext
    saved_world: int            # processes of the run whose state this one continues

    @property
    def net(self):
        return engine.unwrap(self.model)

    def checkpoint(self, epoch: int, result=None) -> dict:
        return checkpoint_dict(self.model, self.cfg, self.args, epoch, result, self.text_encoder)

    def resumable_state(self) -> dict:
        """Everything needed to continue exactly from here: the weights, the optimizer and
        schedule, where the run is, and every rank's RNG states and epoch sums. Called on
        every rank (it gathers); rank 0's return value is saved."""
        state, info = self.state, self.info
        stepper_state = self.stepper.state_dict()
        if self.stepper.sharded:  # one partition of the optimizer state per rank, gathered on rank 0
            stepper_state = {**stepper_state, "optimizer": D.gather_objects(_to_cpu(stepper_state["optimizer"]), info)}
        per_rank = D.all_gather_objects({"rng": engine.rng_states(), "epoch_sums": state.epoch_sums,
                                         "epoch_skipped": state.epoch_skipped}, info)
        return {**self.checkpoint(state.epoch), "stepper": stepper_state, "step": state.step,
                "batch_in_epoch": state.batch_in_epoch, "best_metric": state.best_metric,
                "nonfinite_skipped": state.nonfinite_skipped, "history": state.history,
                "world_size": info.world_size, "ranks": per_rank}



def make_trainer(args, info, log, out, model, data: TrainData, resumed: dict | None) -> Trainer:
    """Optimizer and Uni-Sign's schedule, SyncBatchNorm (--sync_bn, GPU processes), the
    DDP/DeepSpeed wrapper, and the interrupted run's state when resuming."""
    optimizer = build_optimizer(model, args)
    batches = train_batches_per_epoch(len(data.train), args.batch_size, info.world_size)
    scheduler = build_scheduler(optimizer, args, batches)
    state, saved_world = engine.TrainState(), 1
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        log(f"resuming from {resumed['path']}: epoch {resumed['epoch']}, step {resumed['step']}, "
            f"batch {resumed['batch_in_epoch']} of that epoch")
        check_resume_args(resumed.get("args", {}), args, log)
    model = D.sync_batchnorm(model, args.sync_bn, info)
    wrapped, stepper = wrap_model(model, args, info, optimizer, scheduler, log)
    if resumed is not None:
        stepper.load_state_dict(resumed["stepper"])
        state, saved_world = restored_state(resumed, info, log)
        if info.is_main and out:  # log.txt: the epochs of the saved state (later lines came after it)
            atomic_write_text(out / "log.txt", "".join(json.dumps(plain(e)) + "\n" for e in state.history))
    ctx = engine.RunContext(args=args, dist=info, output_dir=out, log=log, amp_dtype=amp_dtype(args, info.device),
                            writer=make_writer(out, info, purge_step=state.step + 1 if state.step else None),
                            sync_bn=D.uses_sync_batchnorm(args.sync_bn, info))
    return Trainer(args, info, log, out, model.cfg, text_encoder_identity(args), data, wrapped, stepper, state,
                   ctx, saved_world)



def epoch_loader(t: Trainer, epoch: int) -> DataLoader:
    """The epoch's training loader, after the micro-batches the run already consumed."""
    t.data.train.set_epoch(epoch)
    loader = build_loader(t.data.train, t.args, t.info, train=True, generator_seed=t.args.seed + epoch)
    loader.sampler.set_epoch(epoch)
    loader.sampler.set_start_batch(t.state.batch_in_epoch, t.saved_world)
    if t.saved_world != t.info.world_size and t.state.batch_in_epoch:
        t.state.batch_in_epoch = loader.sampler.consumed // (t.args.batch_size * t.info.world_size)
    t.saved_world = t.info.world_size
    return loader



def validate(t: Trainer, epoch: int) -> dict:
    """Evaluate on the validation split; a new best metric writes best_checkpoint.pth."""
    split, args = t.data.val_split, t.args
    result = engine.evaluate(t.model, build_loader(t.data.val, args, t.info, train=False), t.ctx, split)
    name, value, higher = engine.main_metric(result, args.task)
    if engine.is_better(value, t.state.best_metric, higher):
        t.state.best_metric = value
        if t.info.is_main and t.out:
            atomic_save(t.checkpoint(epoch, result), t.out / "best_checkpoint.pth")
        t.log(f"epoch {epoch}: new best {split} {name} {value:.2f}")
    if t.ctx.writer:
        for k, v in result.items():
            t.ctx.writer.add_scalar(f"{split}/{k}", v, epoch)
    return {f"{split}_{k}": v for k, v in result.items()}



def run_epoch(t: Trainer) -> dict:
    """One epoch: train, validate when due, log, save; returns its log.txt entry."""
    args, state, epoch = t.args, t.state, t.state.epoch
    stats = engine.train_one_epoch(t.model, epoch_loader(t, epoch), t.stepper, state, t.ctx, t.resumable_state)
    D.broadcast_buffers(t.net, t.info)  # rank 0's BatchNorm statistics everywhere before evaluating
    entry = {"epoch": epoch, "step": state.step, **stats, "lr": t.stepper.lr()}
    if (epoch + 1) % max(1, args.eval_every_epochs) == 0 or epoch + 1 == args.epochs:
        entry.update(validate(t, epoch))
    writer = t.ctx.writer
    if writer:
        writer.add_scalar("epoch/train_loss", stats["train_loss"], epoch)
        if "mean_gate" in stats:
            writer.add_scalar("epoch/mean_gate", stats["mean_gate"], epoch)
            writer.add_scalar("epoch/described_frame_share", stats["described_frame_share"], epoch)
        writer.flush()
    entry["best_metric"] = state.best_metric
    state.history.append(plain(entry))
    t.log(json.dumps(plain(entry)))
    if t.info.is_main and t.out:
        with open(t.out / "log.txt", "a", encoding="utf-8") as f:
            f.write(json.dumps(plain(entry)) + "\n")
        atomic_save(t.checkpoint(epoch), t.out / f"checkpoint_{epoch}.pth")
        drop_old_checkpoints(t.out, epoch, getattr(args, "keep_checkpoints", None))
    end_epoch(t)
    return entry



def drop_old_checkpoints(out: Path, epoch: int, keep: int | None) -> None:
    """--keep_checkpoints N: only the newest N ``checkpoint_<epoch>.pth`` stay (None or 0: all)."""
    if not keep or keep < 1:
        return
    for path in out.glob("checkpoint_*.pth"):
        number = path.stem[len("checkpoint_"):]
        if number.isdigit() and int(number) <= epoch - keep:
            path.unlink(missing_ok=True)


def quick_break_saver(t: Trainer):
    """--quick_break N (pre-training, as Uni-Sign): rank 0 overwrites ``checkpoint.pth`` (the
    weights, as ``checkpoint_<epoch>.pth``) after every N micro-batches of an epoch, or once at
    the epoch's end when N <= 0; training goes on. None without the flag (fine-tuning)."""
    every = getattr(t.args, "quick_break", None)
    if every is None or not (t.info.is_main and t.out):
        return None

    def save(state, batches_in_epoch: int) -> None:
        done = state.batch_in_epoch
        if (every > 0 and done % every == 0) or (every <= 0 and done == batches_in_epoch):
            atomic_save(t.checkpoint(state.epoch), t.out / "checkpoint.pth")
    return save


def training_over(t: Trainer) -> bool:
    return t.state.epoch >= t.args.epochs or bool(t.args.max_steps and t.state.step >= t.args.max_steps)



def end_epoch(t: Trainer) -> None:
    """Move the state to the next epoch and write last.pth, when the epoch ends at a step
    boundary; when its last micro-batches wait for the next epoch's first step (Uni-Sign's
    accumulation runs across epochs), last.pth stays the one of the epoch's last step (a
    resumed run trains those micro-batches again). At the end of the run they are dropped,
    as Uni-Sign never applies them."""
    state = t.state
    state.epoch, state.batch_in_epoch = state.epoch + 1, 0
    state.epoch_sums, state.epoch_skipped = None, []
    if state.pending and not training_over(t):
        D.barrier(t.info)
        return
    state.pending = 0
    snapshot = t.resumable_state()
    if t.info.is_main and t.out:
        save_last(snapshot, t.out)
    del snapshot
    D.barrier(t.info)



def finish_run(t: Trainer, entry: dict) -> dict:
    """Close the writer; with several processes check that they hold the same weights."""
    if t.ctx.writer:
        t.ctx.writer.close()
    if t.info.distributed:
        D.broadcast_buffers(t.net, t.info)
        digest = D.check_replicas(t.net, t.info)
        t.log(f"replicas: the {t.info.world_size} processes hold identical weights (sha256 {digest})")
        entry = {**entry, "weights_sha256": digest}
    describer = t.data.describer
    if describer is not None and describer.invalid_files:
        t.log(f"description files that could not be used (their samples trained without descriptions): "
              f"{len(describer.invalid_files)}")
    return entry



def train_in_group(args, info: D.DistInfo, data_fn=None) -> dict:
    """Train in one process of the group; ``data_fn(args, log) -> TrainData`` (default
    ``training_data``; pre-training: its corpus)."""
    out, log = start_run(args, info)
    resumed = agreed_resume_state(args, out, info, log)
    checkpoint = read_checkpoint(args)
    cfg = resolve_model_config(args, checkpoint, args.finetune)  # once: train takes its settings from its flags
    backbone = rgb_backbone(args, checkpoint, cfg, log)  # before any work: it may be unavailable offline
    data = (data_fn or training_data)(args, log)
    model, cfg = build_run_model(args, info, log, checkpoint, cfg, training=True, backbone=backbone)
    del backbone
    del checkpoint
    warm_text_cache(model, data.describer, data.sample_ids(), log)
    total, fusion = count_model_parameters(model)
    log(f"model: {total / 1e6:.2f}M parameters" + (f", description fusion ({cfg.text_fusion_type}): "
                                                     f"+{fusion / 1e6:.3f}M" if cfg.use_descriptions else ""))
    t = make_trainer(args, info, log, out, model, data, resumed)
    t.ctx.after_micro_batch = quick_break_saver(t)
    del resumed
    entry = t.state.history[-1] if t.state.history else {}
    if training_over(t):
        log(f"the run is already complete ({t.state.epoch} of {args.epochs} epochs); raise --epochs to train more")
    while not training_over(t):
        entry = run_epoch(t)
    return finish_run(t, entry)



def _to_cpu(obj):
    """``obj`` with its tensors moved to the CPU (before sending it to another rank)."""
    if torch.is_tensor(obj):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        moved = {k: _to_cpu(v) for k, v in obj.items()}
        return OrderedDict(moved) if isinstance(obj, OrderedDict) else moved
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    if type(obj) is tuple:
        return tuple(_to_cpu(v) for v in obj)
    return obj
