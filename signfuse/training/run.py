"""A whole run: build data, model, optimizer from the command line; train (resumably) or
evaluate; write checkpoints, log.txt, TensorBoard scalars and result files.

Used by ``fine_tuning.py`` and ``signfuse train`` / ``signfuse eval``.
"""
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from signfuse.config import SPLITS, TINY_MT5, ModelConfig
from signfuse.data import paths
from signfuse.data.dataset import SignDataset, collate_fn
from signfuse.errors import InputError
from signfuse.training import distributed as D
from signfuse.training import engine
from signfuse.training.checkpoint import atomic_save, load_last, load_weights, save_last
from signfuse.training.optim import build_optimizer, build_scheduler


# ----------------------------------------------------------------------------- data

class ResumableSampler(DistributedSampler):
    """DistributedSampler (shuffled per epoch with ``set_epoch``) that can start after the
    first ``skip`` batches of its epoch: a resumed run sees exactly the remaining batches."""

    def __init__(self, dataset, num_replicas, rank, shuffle, seed, batch_size):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self.batch_size, self.skip = batch_size, 0

    def set_start_batch(self, skip: int) -> None:
        self.skip = skip

    def __iter__(self):
        return iter(list(super().__iter__())[self.skip * self.batch_size:])

    def __len__(self):
        return max(0, super().__len__() - self.skip * self.batch_size)


class ShardSampler(Sampler):
    """Evaluation shard: every ``world``-th sample from ``rank``, no padding, no duplicates."""

    def __init__(self, n: int, rank: int, world: int):
        self.indices = list(range(rank, n, world))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self):
        return len(self.indices)


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
    if train:
        sampler = ResumableSampler(ds, info.world_size, info.rank, shuffle=True, seed=args.seed,
                                   batch_size=args.batch_size)
    else:
        sampler = ShardSampler(len(ds), info.rank, info.world_size)
    g = torch.Generator()
    g.manual_seed(generator_seed)  # DataLoader seeds its workers from this, not the global RNG
    return DataLoader(ds, batch_size=args.batch_size, sampler=sampler, collate_fn=collate_fn,
                      num_workers=args.num_workers, generator=g, drop_last=False,
                      persistent_workers=False, pin_memory=info.device.type == "cuda")


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


def _wrap(model, args, info: D.DistInfo, optimizer, scheduler, steps_per_epoch):
    """DDP or DeepSpeed engine around the model; returns (model, stepper)."""
    if use_deepspeed(args):
        import deepspeed
        ds_config = deepspeed_config(args, info)
        engine_, optimizer, _, scheduler = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config,
            dist_init_required=not torch.distributed.is_initialized())
        return engine_, engine.DeepSpeedStepper(engine_)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype(args, info.device) == torch.float16 else None
    if info.distributed:
        ids = [info.device.index] if info.device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=ids, find_unused_parameters=bool(args.use_descriptions))
    return model, engine.Stepper(model, optimizer, scheduler, args.gradient_accumulation_steps,
                                 args.gradient_clipping, scaler)


def use_deepspeed(args) -> bool:
    """--engine deepspeed, or auto under the deepspeed launcher (it passes --local_rank)."""
    if args.engine == "deepspeed":
        return True
    return args.engine == "auto" and args.local_rank is not None


def deepspeed_config(args, info: D.DistInfo) -> dict:
    """Uni-Sign's DeepSpeed settings from its flags (--zero_stage, --offload, --dtype)."""
    cuda = info.device.type == "cuda"
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


def make_writer(output_dir, info):
    if not info.is_main or not output_dir:
        return None
    from torch.utils.tensorboard import SummaryWriter
    return SummaryWriter(log_dir=str(output_dir))


# ----------------------------------------------------------------------------- train

def train(args) -> dict:
    """Fine-tune; returns the final epoch's log entry (with the best metric)."""
    info = D.init_distributed(args.device)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    out = Path(args.output_dir) if args.output_dir else None
    if out and info.is_main:
        out.mkdir(parents=True, exist_ok=True)
    log = RunLog(out, info.is_main)
    describer = build_describer(args)
    train_ds = build_dataset(args, "train", train=True, describer=describer)
    val_split = eval_splits(args.dataset)[0]
    val_ds = build_dataset(args, val_split, train=False, describer=describer)
    if describer is not None:
        log(describer.summary("train", train_ds.sample_ids()))
        log(describer.summary(val_split, val_ds.sample_ids()))
    model, cfg = build_run_model(args, info, log)
    total, fusion = count_parameters(model)
    log(f"model: {total / 1e6:.2f}M parameters" + (f", description fusion ({cfg.text_fusion_type}): "
                                                     f"+{fusion / 1e6:.3f}M" if args.use_descriptions else ""))
    optimizer = build_optimizer(model, args)
    world_batches = -(-len(train_ds) // (args.batch_size * info.world_size))
    steps_per_epoch = -(-world_batches // args.gradient_accumulation_steps)
    scheduler = build_scheduler(optimizer, args, steps_per_epoch)
    state = engine.TrainState()
    resumed = load_last(out, log=log) if (args.resume == "auto" and out) else None
    if args.resume not in ("auto", "none", None) and args.resume:
        resumed = load_last(Path(args.resume), log=log)
        if resumed is None:
            raise InputError(f"{args.resume}: no readable last.pth or last.prev.pth to resume from")
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        log(f"resuming from {resumed['path']}: epoch {resumed['epoch']}, step {resumed['step']}, "
            f"batch {resumed['batch_in_epoch']} of that epoch")
    wrapped, stepper = _wrap(model, args, info, optimizer, scheduler, steps_per_epoch)
    if resumed is not None:
        stepper.load_state_dict(resumed["stepper"])
        state = engine.TrainState(epoch=resumed["epoch"], step=resumed["step"],
                                  batch_in_epoch=resumed["batch_in_epoch"],
                                  best_metric=resumed.get("best_metric"),
                                  nonfinite_skipped=resumed.get("nonfinite_skipped", 0),
                                  history=list(resumed.get("history", [])))
        engine.set_rng_states(resumed["rng"][min(info.rank, len(resumed["rng"]) - 1)])
    writer = make_writer(out, info)
    ctx = engine.RunContext(args=args, dist=info, output_dir=out, writer=writer, log=log,
                            amp_dtype=amp_dtype(args, info.device))

    def resumable_state():
        """Everything needed to continue exactly from here (every rank's RNG states)."""
        return {"model": engine.unwrap(wrapped).state_dict(), "stepper": stepper.state_dict(),
                "epoch": state.epoch, "step": state.step, "batch_in_epoch": state.batch_in_epoch,
                "best_metric": state.best_metric, "nonfinite_skipped": state.nonfinite_skipped,
                "history": state.history, "rng": D.all_gather_objects(engine.rng_states(), info),
                "config": _plain(asdict(cfg)), "args": _plain(vars(args))}

    entry = {}
    max_steps = getattr(args, "max_steps", None)
    while state.epoch < args.epochs:
        epoch = state.epoch
        train_ds.set_epoch(epoch)
        loader = build_loader(train_ds, args, info, train=True, generator_seed=args.seed + epoch)
        loader.sampler.set_epoch(epoch)
        loader.sampler.set_start_batch(state.batch_in_epoch)
        stats = engine.train_one_epoch(wrapped, loader, stepper, state, ctx, resumable_state)
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
        state.history.append(entry)
        log(json.dumps(_plain(entry)))
        if info.is_main and out:
            with open(out / "log.txt", "a", encoding="utf-8") as f:
                f.write(json.dumps(_plain(entry)) + "\n")
            atomic_save(checkpoint_dict(wrapped, cfg, args, epoch), out / f"checkpoint_{epoch}.pth")
        state.epoch, state.batch_in_epoch = epoch + 1, 0
        snapshot = resumable_state()
        if info.is_main and out:
            save_last(snapshot, out)
        D.barrier(info)
        if max_steps and state.step >= max_steps:
            break
    if writer:
        writer.close()
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
    info = D.init_distributed(args.device)
    torch.manual_seed(args.seed)
    out = Path(args.output_dir) if args.output_dir else None
    if out and info.is_main:
        out.mkdir(parents=True, exist_ok=True)
    log = RunLog(out, info.is_main)
    describer = build_describer(args)
    model, cfg = build_run_model(args, info, log)
    ctx = engine.RunContext(args=args, dist=info, output_dir=out, log=log, amp_dtype=amp_dtype(args, info.device))
    results = {}
    for split in eval_splits(args.dataset):
        ds = build_dataset(args, split, train=False, describer=describer)
        if describer is not None:
            log(describer.summary(split, ds.sample_ids()))
        loader = build_loader(ds, args, info, train=False)
        for off in description_modes(args):
            t0 = time.time()
            tag = "_nodesc" if off else ""
            res = engine.evaluate(model, loader, ctx, split, descriptions_off=off, tag=tag)
            res["time_s"] = time.time() - t0
            results[split + tag] = res
            log(f"{split}{' (descriptions off)' if off else ''}: " + json.dumps(_plain(res)))
    return results
