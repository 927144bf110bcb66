"""A whole run: build data, model, optimizer from the command line; train (resumably) or
evaluate; write checkpoints, log.txt, TensorBoard scalars and result files.

Used by ``fine_tuning.py`` and ``signfuse train`` / ``signfuse eval``.
"""
import json
import time
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from signfuse.config import SPLITS, ModelConfig
from signfuse.data import paths
from signfuse.data.dataset import SignDataset, collate_fn
from signfuse.errors import InputError
from signfuse.training import distributed as D
from signfuse.training import engine
from signfuse.training.checkpoint import atomic_save, atomic_write_text, load_last, load_weights, save_last
from signfuse.training.optim import build_optimizer, build_scheduler


# ----------------------------------------------------------------------------- data

class ResumableSampler(DistributedSampler):
    """DistributedSampler (shuffled per epoch with ``set_epoch``, padded to a multiple of the
    number of ranks) that can start after the first samples of its epoch: a resumed run sees
    exactly the remaining batches of every rank.

    Rank r's k-th batch holds positions ``r + world * (k * batch_size + j)`` of the epoch's
    padded permutation, so after ``b`` batches per rank the consumed samples are exactly the
    first ``b * batch_size * world`` positions: skipping them and sharding the rest gives every
    rank its remaining batches, and still covers each sample once when the run is resumed
    with another number of processes."""

    def __init__(self, dataset, num_replicas, rank, shuffle, seed, batch_size):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self.batch_size, self.consumed = batch_size, 0

    def set_start_batch(self, skip: int, world_size: int | None = None) -> None:
        """Start after ``skip`` batches of each of the ``world_size`` ranks (default: this run's)."""
        self.consumed = skip * self.batch_size * (world_size or self.num_replicas)

    def epoch_indices(self) -> list:
        """The epoch's padded permutation (DistributedSampler's, before sharding)."""
        n = len(self.dataset)
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            indices = torch.randperm(n, generator=g).tolist()
        else:
            indices = list(range(n))
        padding = self.total_size - n
        if padding > 0 and indices:
            indices += (indices * -(-padding // n))[:padding]
        return indices

    def remaining(self) -> list:
        """The epoch's positions not consumed yet, padded (by repeating its first ones) to a
        multiple of the number of ranks, so that every rank gets as many batches (needed only
        after resuming with another number of processes)."""
        rest = self.epoch_indices()[self.consumed:]
        extra = -len(rest) % self.num_replicas
        if extra and rest:
            rest += (rest * -(-extra // len(rest)))[:extra]
        return rest

    def __iter__(self):
        return iter(self.remaining()[self.rank::self.num_replicas])

    def __len__(self):
        return -(-max(0, self.total_size - self.consumed) // self.num_replicas)


class ShardSampler(Sampler):
    """Evaluation shard: every ``world``-th sample from ``rank``, no padding, no duplicates."""

    def __init__(self, n: int, rank: int, world: int):
        self.indices = list(range(rank, n, world))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self):
        return len(self.indices)


class BatchShardSampler(Sampler):
    """Evaluation shard by whole batches: the batches of a single-process evaluation
    (``batch_size`` consecutive samples), every ``world``-th one from ``rank``. Each batch
    keeps its single-process composition (so its padding and results), no sample is padded
    in or seen twice; the ranks may get one batch more or less than each other."""

    def __init__(self, n: int, batch_size: int, rank: int, world: int):
        batches = [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]
        self.batches = batches[rank::world]

    def __iter__(self):
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)


def build_describer(args, split_log=None):
    """The description hook of the datasets (None without --use_descriptions)."""
    if not args.use_descriptions:
        return None
    from signfuse.data.descriptions import Describer
    desc_dir = Path(args.desc_dir) / args.dataset
    if not desc_dir.is_dir():
        raise InputError(f"{desc_dir}: description folder not found (--desc_dir {args.desc_dir} "
                         f"should hold one sub-folder per dataset, here {args.dataset}/)")
    return Describer(desc_dir, strategy=args.desc_alignment, max_gap=args.max_gap, strict=args.desc_strict)


def build_dataset(args, split: str, train: bool, describer=None) -> SignDataset:
    label = paths.label_path(args.dataset, split, data_root=args.data_root, label_dir=args.label_dir)
    pose = paths.pose_dir(args.dataset, split, data_root=args.data_root, pose_dir=args.pose_dir)
    ds = SignDataset(label, pose, dataset=args.dataset, split=split, task=args.task,
                     max_length=args.max_length, train=train, seed=args.seed,
                     trust_pickles=args.trust_pickles, describer=describer)
    if getattr(args, "max_samples", None):
        ds.keys = ds.keys[: args.max_samples]
    return ds


def build_loader(ds, args, info: D.DistInfo, train: bool, generator_seed: int = 0) -> DataLoader:
    """Training: this rank's shuffled shard (``ResumableSampler``); evaluation: this rank's
    whole batches of the single-process order (``BatchShardSampler``)."""
    g = torch.Generator()
    g.manual_seed(generator_seed)  # DataLoader seeds its workers from this, not the global RNG
    common = dict(collate_fn=collate_fn, num_workers=args.num_workers, generator=g,
                  persistent_workers=False, pin_memory=info.device.type == "cuda")
    if not train:
        return DataLoader(ds, batch_sampler=BatchShardSampler(len(ds), args.batch_size, info.rank, info.world_size),
                          **common)
    sampler = ResumableSampler(ds, info.world_size, info.rank, shuffle=True, seed=args.seed,
                               batch_size=args.batch_size)
    return DataLoader(ds, batch_size=args.batch_size, sampler=sampler, drop_last=False, **common)


def eval_splits(dataset: str) -> list[str]:
    """dev then test; How2Sign has no dev split."""
    return [s for s in ("dev", "test") if s in SPLITS[dataset]]


# ----------------------------------------------------------------------------- model

def model_config(args) -> ModelConfig:
    return ModelConfig.from_args(args)


def build_run_model(args, info: D.DistInfo, log=print):
    """Uni_Sign (+ fusion and its text source with --use_descriptions), weights from
    --finetune, on the run's device."""
    from signfuse.models.uni_sign import build_model
    if args.rgb_support:
        raise InputError("--rgb_support: the RGB branch of Uni-Sign is not part of signfuse yet; "
                         "run without --rgb_support (pose only)")
    cfg = model_config(args)
    model = build_model(cfg, args.mt5_model, seed=args.seed, desc_encoder=args.desc_encoder)
    if args.use_descriptions:
        from signfuse.models.uni_sign import attach_text_source
        attach_text_source(model, args)
    if args.finetune:
        load_weights(model, args.finetune, allow_unexpected=args.finetune_allow_unexpected,
                     log=log if info.is_main else (lambda *_: None))
    model.to(info.device)
    return model, cfg


def warm_text_cache(model, describer, sample_ids, log=print, batch_size: int = 64) -> int:
    """Encode every description text of ``sample_ids`` once, in a fixed order, before the run.

    The frozen text encoder (no --desc_store) caches one vector per text, computed in a batch
    with the other new texts of the batch that first needs it: the vector's last bits depend
    on that batch's padding, so on which batches came first. Filled up front, the cache is
    the same in every process and in a resumed run (same weights as an uninterrupted one,
    the same predictions with one or several processes). Returns the number of texts."""
    source = getattr(model, "text_source", None)
    if describer is None or source is None:
        return 0
    from signfuse.models.text_fusion import TextEncoder
    if not isinstance(source, TextEncoder):  # a precomputed store: fixed vectors already
        return 0
    texts = {t for sample_id in dict.fromkeys(sample_ids)
             for t in describer.descriptions(sample_id).values() if isinstance(t, str) and t}
    texts = sorted(texts, key=lambda t: (len(t), t))
    t0 = time.time()
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            source.encode(texts[start:start + batch_size])
    if texts:
        log(f"descriptions: {len(texts)} distinct texts encoded by the frozen text encoder in "
            f"{time.time() - t0:.1f}s (`signfuse precompute-text` and --desc_store save this at start-up)")
    return len(texts)


def count_parameters(model) -> tuple[int, int]:
    """(all parameters, parameters of the description fusion)."""
    total = sum(p.numel() for p in model.parameters())
    fusion = sum(p.numel() for n, p in model.named_parameters() if n.startswith("text_fusion."))
    return total, fusion


def amp_dtype(args, device: torch.device):
    """bf16/fp16 autocast on CUDA (--dtype); float32 on CPU."""
    if device.type != "cuda":
        return None
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]


def _wrap(model, args, info: D.DistInfo, optimizer, scheduler, steps_per_epoch, log=print):
    """DDP or DeepSpeed engine around the model; returns (model, stepper)."""
    if use_deepspeed(args):
        try:
            import deepspeed
        except ImportError:
            raise InputError("--engine deepspeed (or the deepspeed launcher): DeepSpeed is not installed "
                             "(pip install 'signfuse[deepspeed]'), or use torchrun / --engine torch") from None
        ds_config = deepspeed_config(args, info)
        if info.device.type != "cuda" and args.zero_stage != 0:
            log(f"DeepSpeed on CPU: ZeRO stage 0 and float32 (--zero_stage {args.zero_stage} and --dtype apply on GPU)")
        if not torch.distributed.is_initialized():
            D.init_single_process_group(info)  # DeepSpeed needs a process group, even of one
        engine_, optimizer, _, scheduler = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config,
            dist_init_required=False)
        return engine_, engine.DeepSpeedStepper(engine_, info)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype(args, info.device) == torch.float16 else None
    if info.distributed:
        model = D.wrap_ddp(model, info, find_unused_parameters=bool(args.use_descriptions))
    return model, engine.Stepper(model, optimizer, scheduler, args.gradient_accumulation_steps,
                                 args.gradient_clipping, scaler, info)


def use_deepspeed(args) -> bool:
    """--engine deepspeed, or auto under the deepspeed launcher (it passes --local_rank)."""
    if args.engine == "deepspeed":
        return True
    return args.engine == "auto" and args.local_rank is not None


def deepspeed_config(args, info: D.DistInfo) -> dict:
    """Uni-Sign's DeepSpeed settings from its flags (--zero_stage, --offload, --dtype); on
    CPU ZeRO stage 0 in float32."""
    cuda = info.device.type == "cuda"
    if args.zero_stage not in (0, 1, 2):
        raise InputError(f"--zero_stage {args.zero_stage}: signfuse supports ZeRO stages 0, 1 and 2 (Uni-Sign uses 2); "
                         "stage 3 partitions the weights, which its checkpoints and evaluation do not handle")
    cfg = {
        "train_micro_batch_size_per_gpu": args.batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "gradient_clipping": args.gradient_clipping,
        "zero_optimization": {"stage": args.zero_stage if cuda else 0},
        "bf16": {"enabled": cuda and args.dtype == "bf16"},
        "fp16": {"enabled": cuda and args.dtype == "fp16"},
        "steps_per_print": 10 ** 9,
        "wall_clock_breakdown": False,
    }
    if args.offload and cuda:
        cfg["zero_optimization"]["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    return cfg


# ----------------------------------------------------------------------------- logging

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


# ----------------------------------------------------------------------------- train

#: flags whose change between the interrupted run and its continuation changes the result
RESUME_SENSITIVE = ("dataset", "task", "mt5_model", "use_descriptions", "text_fusion_type", "batch_size",
                    "gradient_accumulation_steps", "epochs", "lr", "min_lr", "warmup_epochs", "weight_decay",
                    "seed", "max_length", "max_samples", "label_smoothing", "text_dropout_p",
                    "text_dropout_sample_p", "gradient_clipping", "dtype", "zero_stage")


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


def _check_resume_args(saved: dict, args, info: D.DistInfo, log) -> None:
    """Warn about flags that differ from the interrupted run's (its continuation will then
    differ from an uninterrupted run)."""
    now = vars(args)
    changed = [f"--{k} {now.get(k)!r} (was {saved.get(k)!r})" for k in RESUME_SENSITIVE
               if k in saved and k in now and saved.get(k) != _plain(now.get(k))]
    if changed:
        log("warning: resuming with other settings than the interrupted run: " + ", ".join(changed))


def train(args) -> dict:
    """Fine-tune; returns the final epoch's log entry (with the best metric)."""
    info = D.init_distributed(args.device, getattr(args, "local_rank", None))
    try:
        result = _train(args, info)
        D.barrier(info)  # end together: a gloo rank leaving early can abort a peer still in a collective
        return result
    finally:
        D.cleanup()


def _train(args, info: D.DistInfo) -> dict:
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
    try:
        resumed, problem = find_resume_state(args, out, log), None
    except InputError as e:  # raised below on every rank together
        resumed, problem = None, str(e)
    if info.distributed:  # every rank reads the file itself: they must agree on what they found
        found = D.all_gather_objects((problem, None if resumed is None else (resumed["path"], resumed["step"])), info)
        problem = next((p for p, _ in found if p), None)
        marks = [m for _, m in found]
        if problem is None and any(m != marks[0] for m in marks):
            raise InputError(f"--resume {args.resume}: the processes found different states to resume from "
                             f"({', '.join(f'rank {r}: {m}' for r, m in enumerate(marks))}); --output_dir must "
                             "be on a file system that every process (every node) sees")
    if problem:
        raise InputError(problem)
    describer = build_describer(args)
    train_ds = build_dataset(args, "train", train=True, describer=describer)
    val_split = eval_splits(args.dataset)[0]
    val_ds = build_dataset(args, val_split, train=False, describer=describer)
    if describer is not None:
        log(describer.summary("train", train_ds.sample_ids()))
        log(describer.summary(val_split, val_ds.sample_ids()))
    model, cfg = build_run_model(args, info, log)
    warm_text_cache(model, describer, train_ds.sample_ids() + val_ds.sample_ids(), log)
    total, fusion = count_parameters(model)
    log(f"model: {total / 1e6:.2f}M parameters" + (f", description fusion ({cfg.text_fusion_type}): "
                                                     f"+{fusion / 1e6:.3f}M" if args.use_descriptions else ""))
    optimizer = build_optimizer(model, args)
    world_batches = -(-len(train_ds) // (args.batch_size * info.world_size))
    steps_per_epoch = -(-world_batches // args.gradient_accumulation_steps)
    scheduler = build_scheduler(optimizer, args, steps_per_epoch)
    state = engine.TrainState()
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        log(f"resuming from {resumed['path']}: epoch {resumed['epoch']}, step {resumed['step']}, "
            f"batch {resumed['batch_in_epoch']} of that epoch")
        _check_resume_args(resumed.get("args", {}), args, info, log)
    wrapped, stepper = _wrap(model, args, info, optimizer, scheduler, steps_per_epoch, log)
    saved_world = 1
    if resumed is not None:
        stepper.load_state_dict(resumed["stepper"])
        saved_world = int(resumed.get("world_size", len(resumed.get("ranks", [])) or 1))
        per_rank = resumed.get("ranks") or [{"rng": r} for r in resumed.get("rng", [])]
        mine = per_rank[min(info.rank, len(per_rank) - 1)]
        state = engine.TrainState(epoch=resumed["epoch"], step=resumed["step"],
                                  batch_in_epoch=resumed["batch_in_epoch"],
                                  best_metric=resumed.get("best_metric"),
                                  nonfinite_skipped=resumed.get("nonfinite_skipped", 0),
                                  history=list(resumed.get("history", [])))
        if state.batch_in_epoch > 0:
            if saved_world == info.world_size:
                state.epoch_sums = mine.get("epoch_sums")
                state.epoch_skipped = list(mine.get("epoch_skipped", []))
            else:  # other ranks: the epoch continues from the first unseen sample
                log(f"warning: the interrupted run had {saved_world} processes, this one {info.world_size}: "
                    "the epoch continues from its first unseen sample (not bit-identical to an uninterrupted run)")
                if info.is_main:
                    state.epoch_sums = list(np.sum([r.get("epoch_sums") or [0.0] * len(engine.EPOCH_SUMS)
                                                    for r in per_rank], axis=0))
                    state.epoch_skipped = [s for r in per_rank for s in r.get("epoch_skipped", [])]
        engine.set_rng_states(mine["rng"])
        if info.is_main and out:  # log.txt: the epochs of the saved state (later lines came after it)
            atomic_write_text(out / "log.txt", "".join(json.dumps(_plain(e)) + "\n" for e in state.history))
        del resumed
    writer = make_writer(out, info, purge_step=state.step + 1 if state.step else None)
    ctx = engine.RunContext(args=args, dist=info, output_dir=out, writer=writer, log=log,
                            amp_dtype=amp_dtype(args, info.device))
    net = engine.unwrap(wrapped)

    def resumable_state():
        """Everything needed to continue exactly from here: the weights, the optimizer and
        schedule, where the run is, and every rank's RNG states and epoch sums. Called on
        every rank (it gathers); rank 0's return value is saved."""
        stepper_state = stepper.state_dict()
        if stepper.sharded:  # one partition of the optimizer state per rank, gathered on rank 0
            shards = D.gather_objects(_to_cpu(stepper_state["optimizer"]), info)
            stepper_state = {**stepper_state, "optimizer": shards}
        per_rank = D.all_gather_objects({"rng": engine.rng_states(), "epoch_sums": state.epoch_sums,
                                         "epoch_skipped": state.epoch_skipped}, info)
        return {"model": net.state_dict(), "stepper": stepper_state,
                "epoch": state.epoch, "step": state.step, "batch_in_epoch": state.batch_in_epoch,
                "best_metric": state.best_metric, "nonfinite_skipped": state.nonfinite_skipped,
                "history": state.history, "world_size": info.world_size, "ranks": per_rank,
                "config": _plain(asdict(cfg)), "args": _plain(vars(args))}

    entry = state.history[-1] if state.history else {}
    max_steps = getattr(args, "max_steps", None)
    if state.epoch >= args.epochs:
        log(f"the run is already complete ({state.epoch} of {args.epochs} epochs); raise --epochs to train more")
    while state.epoch < args.epochs and not (max_steps and state.step >= max_steps):
        epoch = state.epoch
        train_ds.set_epoch(epoch)
        loader = build_loader(train_ds, args, info, train=True, generator_seed=args.seed + epoch)
        loader.sampler.set_epoch(epoch)
        loader.sampler.set_start_batch(state.batch_in_epoch, saved_world)
        if saved_world != info.world_size and state.batch_in_epoch:
            state.batch_in_epoch = loader.sampler.consumed // (args.batch_size * info.world_size)
        saved_world = info.world_size
        stats = engine.train_one_epoch(wrapped, loader, stepper, state, ctx, resumable_state)
        D.broadcast_buffers(net, info)  # rank 0's BatchNorm statistics everywhere before evaluating
        entry = {"epoch": epoch, "step": state.step, **stats, "lr": stepper.lr()}
        every = max(1, getattr(args, "eval_every_epochs", 1))
        if (epoch + 1) % every == 0 or epoch + 1 == args.epochs:
            val_loader = build_loader(val_ds, args, info, train=False)
            result = engine.evaluate(wrapped, val_loader, ctx, val_split)
            name, value, higher = engine.main_metric(result, args.task)
            entry.update({f"{val_split}_{k}": v for k, v in result.items()})
            if engine.is_better(value, state.best_metric, higher):
                state.best_metric = value
                if info.is_main and out:
                    atomic_save(checkpoint_dict(wrapped, cfg, args, epoch, result), out / "best_checkpoint.pth")
                log(f"epoch {epoch}: new best {val_split} {name} {value:.2f}")
            if writer:
                for k, v in result.items():
                    writer.add_scalar(f"{val_split}/{k}", v, epoch)
        if writer:
            writer.add_scalar("epoch/train_loss", stats["train_loss"], epoch)
            if "mean_gate" in stats:
                writer.add_scalar("epoch/mean_gate", stats["mean_gate"], epoch)
                writer.add_scalar("epoch/described_frame_share", stats["described_frame_share"], epoch)
            writer.flush()
        entry["best_metric"] = state.best_metric
        state.history.append(_plain(entry))
        log(json.dumps(_plain(entry)))
        if info.is_main and out:
            with open(out / "log.txt", "a", encoding="utf-8") as f:
                f.write(json.dumps(_plain(entry)) + "\n")
            atomic_save(checkpoint_dict(wrapped, cfg, args, epoch), out / f"checkpoint_{epoch}.pth")
        state.epoch, state.batch_in_epoch = epoch + 1, 0
        state.epoch_sums, state.epoch_skipped = None, []
        snapshot = resumable_state()
        if info.is_main and out:
            save_last(snapshot, out)
        del snapshot
        D.barrier(info)
    if writer:
        writer.close()
    if info.distributed:
        D.broadcast_buffers(net, info)
        digest = D.check_replicas(net, info)
        log(f"replicas: the {info.world_size} processes hold identical weights (sha256 {digest})")
        entry = {**entry, "weights_sha256": digest}
    if describer is not None and describer.invalid_files:
        log(f"description files that could not be used (their samples trained without descriptions): "
            f"{len(describer.invalid_files)}")
    return entry


def description_modes(args) -> list[bool]:
    """descriptions_off values to evaluate: [False] (on), [True] (off) or both."""
    if not args.use_descriptions:
        return [False]
    return {"on": [False], "off": [True], "both": [False, True]}[args.eval_descriptions]


def checkpoint_dict(model, cfg, args, epoch, result=None) -> dict:
    """Uni-Sign's checkpoint format plus plain-data extras (loadable with weights_only)."""
    ckpt = {"model": engine.unwrap(model).state_dict(), "epoch": epoch,
            "config": _plain(asdict(cfg)), "args": _plain(vars(args))}
    if result is not None:
        ckpt["metrics"] = _plain(result)
    return ckpt


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


def _plain(obj):
    """Only plain types (so weights_only loading and json both accept it)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


# ----------------------------------------------------------------------------- evaluate

def evaluate(args) -> dict:
    """--eval: dev then test (How2Sign: test); with descriptions, also (or only) with every
    frame masked (--eval_descriptions both|off, results under "<split>_nodesc").
    Returns {split: metrics}."""
    info = D.init_distributed(args.device, getattr(args, "local_rank", None))
    try:
        result = _evaluate(args, info)
        D.barrier(info)  # end together: a gloo rank leaving early can abort a peer still in a collective
        return result
    finally:
        D.cleanup()


def _evaluate(args, info: D.DistInfo) -> dict:
    torch.manual_seed(args.seed)
    out = Path(args.output_dir) if args.output_dir else None
    if out and info.is_main:
        out.mkdir(parents=True, exist_ok=True)
    D.barrier(info)
    log = RunLog(out, info.is_main)
    describer = build_describer(args)
    model, cfg = build_run_model(args, info, log)
    ctx = engine.RunContext(args=args, dist=info, output_dir=out, log=log, amp_dtype=amp_dtype(args, info.device))
    results, datasets = {}, {}
    for split in eval_splits(args.dataset):
        datasets[split] = ds = build_dataset(args, split, train=False, describer=describer)
        if describer is not None:
            log(describer.summary(split, ds.sample_ids()))
    warm_text_cache(model, describer, [i for ds in datasets.values() for i in ds.sample_ids()], log)
    for split, ds in datasets.items():
        loader = build_loader(ds, args, info, train=False)
        for off in description_modes(args):
            t0 = time.time()
            tag = "_nodesc" if off else ""
            res = engine.evaluate(model, loader, ctx, split, descriptions_off=off, tag=tag)
            res["time_s"] = time.time() - t0
            results[split + tag] = res
            log(f"{split}{' (descriptions off)' if off else ''}: " + json.dumps(_plain(res)))
    return results
