"""A whole run: build data, model, optimizer from the command line; train (resumably) or
evaluate; write checkpoints, log.txt, TensorBoard scalars and result files.

Used by ``fine_tuning.py`` and ``signfuse train`` / ``signfuse eval``. Read top to bottom:

    train(args)                     in this process's group (torchrun / deepspeed / one process)
      start_run                     seeds, output folder, run.txt
      agreed_resume_state           last.pth to continue from (every rank finds the same)
      resolve_model_config          the model's configuration, once (settings.py)
      training_data                 descriptions, train and validation datasets
      build_run_model               Uni_Sign (+ fusion, text source), --finetune weights
      make_trainer                  optimizer, schedule, SyncBatchNorm, DDP/DeepSpeed, restored state
      run_epoch (until --epochs)    train_one_epoch, validation, log, checkpoints, last.pth
      finish_run                    replica check, summary
    evaluate(args)                  the checkpoint's settings (settings.py), dev then test
"""
import functools
import json
import sys
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from signfuse.config import SPLITS
from signfuse.data import paths
from signfuse.data.dataset import SignDataset, collate_fn
from signfuse.errors import InputError
from signfuse.training import distributed as D
from signfuse.training import engine
from signfuse.training.checkpoint import atomic_save, atomic_write_text, load_last, load_weights, safe_torch_load, \
    save_last, state_dict_of
from signfuse.training.optim import build_optimizer, build_scheduler
from signfuse.training.settings import apply_checkpoint_settings, args_record, check_text_encoder, \
    describer_settings, plain, record, resolve_describer, resolve_model_config, text_encoder_identity


# ----------------------------------------------------------------------------- data

class ResumableSampler(DistributedSampler):
    """DistributedSampler (shuffled per epoch with ``set_epoch``, padded to a multiple of the
    number of ranks) that yields whole batches only (the last partial batch of each rank is
    dropped, as Uni-Sign's ``drop_last=True`` loader drops it) and can start after the first
    batches of its epoch: a resumed run sees exactly the remaining batches of every rank.

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
        mine = self.remaining()[self.rank::self.num_replicas]
        return iter(mine[:len(self)])

    def __len__(self):
        """This rank's samples in whole batches."""
        mine = -(-max(0, self.total_size - self.consumed) // self.num_replicas)
        return mine // self.batch_size * self.batch_size


def train_batches_per_epoch(n: int, batch_size: int, world_size: int) -> int:
    """Micro-batches of one process in a whole epoch of ``n`` samples: DistributedSampler's
    share (padded), in whole batches (Uni-Sign's ``len(train_dataloader)``)."""
    return -(-n // world_size) // batch_size


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


def build_describer(args, log=print):
    """The description hook of the datasets (None without --use_descriptions):
    ``<desc_dir>/<dataset>/<sample_id>.json`` (``paths.description_dir``), or with --describe
    rules the descriptions made from each sample's pose file (no file is read)."""
    if not args.use_descriptions:
        return None
    from signfuse.data.descriptions import Describer, PoseDescriber
    rules = describer_settings(args)
    if rules is not None:
        return PoseDescriber(rules, strategy=args.desc_alignment, max_gap=args.max_gap,
                             warn=lambda message: log(f"warning: {message}"), trust_pickles=args.trust_pickles)
    folder = paths.description_dir(args.dataset, args.data_root, args.desc_dir)
    if not folder.is_dir():
        raise InputError(f"{folder}: description folder not found (--desc_dir, default <data_root>/description, "
                         f"is the root that holds one folder per dataset, here {args.dataset}/)")
    return Describer(folder, strategy=args.desc_alignment, max_gap=args.max_gap, strict=args.desc_strict)


def rgb_settings(args, split: str):
    """With --rgb_support, the hand crops' settings of ``split``: its video folder
    (``paths.rgb_dir``: Uni-Sign's layout under --data_root, or --rgb_dir), --rgb_crop,
    --rgb_eval_sampling; else None."""
    if not getattr(args, "rgb_support", False):
        return None
    from signfuse.data.hand_crops import RGBSettings
    return RGBSettings(video_dir=paths.rgb_dir(args.dataset, split, args.data_root, args.rgb_dir),
                       crop=args.rgb_crop, eval_sampling=args.rgb_eval_sampling)


def build_dataset(args, split: str, train: bool, describer=None) -> SignDataset:
    """The SignDataset of ``split`` from the run's flags (layout, sampling, descriptions, videos)."""
    label = paths.label_path(args.dataset, split, data_root=args.data_root, label_dir=args.label_dir)
    pose = paths.pose_dir(args.dataset, split, data_root=args.data_root, pose_dir=args.pose_dir)
    ds = SignDataset(label, pose, dataset=args.dataset, split=split, task=args.task,
                     max_length=args.max_length, train=train, seed=args.seed,
                     trust_pickles=args.trust_pickles, describer=describer, rgb=rgb_settings(args, split))
    if getattr(args, "max_samples", None):
        ds.keys = ds.keys[: args.max_samples]
    return ds


def build_loader(ds, args, info: D.DistInfo, train: bool, generator_seed: int = 0) -> DataLoader:
    """Training: this rank's shuffled shard in whole batches (``ResumableSampler``, the last
    partial batch dropped); evaluation: this rank's whole batches of the single-process order
    (``BatchShardSampler``, nothing dropped)."""
    g = torch.Generator()
    g.manual_seed(generator_seed)  # DataLoader seeds its workers from this, not the global RNG
    common = dict(collate_fn=collate_fn, num_workers=args.num_workers, generator=g,
                  persistent_workers=False, pin_memory=info.device.type == "cuda")
    if not train:
        return DataLoader(ds, batch_sampler=BatchShardSampler(len(ds), args.batch_size, info.rank, info.world_size),
                          **common)
    sampler = ResumableSampler(ds, info.world_size, info.rank, shuffle=True, seed=args.seed,
                               batch_size=args.batch_size)
    return DataLoader(ds, batch_size=args.batch_size, sampler=sampler, drop_last=True, **common)


def eval_splits(dataset: str) -> list[str]:
    """dev then test; How2Sign has no dev split."""
    return [s for s in ("dev", "test") if s in SPLITS[dataset]]


@dataclass
class TrainData:
    describer: object           # Describer or None
    train: SignDataset
    val_split: str
    val: SignDataset

    def sample_ids(self) -> list:
        return self.train.sample_ids() + self.val.sample_ids()


def training_data(args, log) -> TrainData:
    """The training split and the validation split (dev; How2Sign: test), with descriptions."""
    describer = build_describer(args, log)
    val_split = eval_splits(args.dataset)[0]
    data = TrainData(describer, build_dataset(args, "train", train=True, describer=describer),
                     val_split, build_dataset(args, val_split, train=False, describer=describer))
    announce_descriptions(describer, {"train": data.train, val_split: data.val}, args.trust_pickles, log)
    return data


def announce_descriptions(describer, datasets: dict, trust_pickles: bool, log) -> None:
    """Tell the describer the pose files of ``datasets`` ({split: dataset}, for --describe rules)
    and log its coverage per split; nothing without descriptions."""
    if describer is None:
        return
    tell_pose_files(describer, datasets.values(), trust_pickles)
    for split, ds in datasets.items():
        log(describer.summary(split, ds.sample_ids()))


def tell_pose_files(describer, datasets, trust_pickles: bool) -> None:
    """--describe rules: tell the describer every sample's pose file, so that it can make any
    sample's descriptions itself (``warm_text_cache`` encodes every text before the run)."""
    if hasattr(describer, "set_pose_files"):
        describer.set_pose_files({sample_id: path for ds in datasets for sample_id, path in ds.pose_files().items()},
                                 trust_pickles)


# ----------------------------------------------------------------------------- model

def read_checkpoint(args) -> dict | None:
    """The --finetune checkpoint, read once (weights_only), or None."""
    return safe_torch_load(args.finetune) if args.finetune else None


def build_run_model(args, info: D.DistInfo, log=print, checkpoint=None, cfg=None, training=False, backbone=None):
    """(Uni_Sign on the run's device, its configuration): the configuration resolved once
    (``resolve_model_config``, unless given), the fusion's text source with
    --use_descriptions, the weights of --finetune (``checkpoint``: its loaded contents).
    ``training``: a pose-only --finetune may start the RGB branch fresh (its backbone from
    ``backbone``, see ``rgb_backbone``), and a branch that cannot learn is said in one line."""
    from signfuse.models.uni_sign import attach_text_source, build_model
    if cfg is None:
        if checkpoint is None and args.finetune:
            checkpoint = read_checkpoint(args)
        cfg = resolve_model_config(args, checkpoint, args.finetune)
    model = build_model(cfg, args.mt5_model, seed=args.seed, desc_encoder=args.desc_encoder)
    if backbone is not None:
        model.rgb_support_backbone[0].load_state_dict(backbone, strict=True)
    if cfg.use_descriptions:
        attach_text_source(model, args)
    report = None
    if args.finetune:
        report = load_weights(model, args.finetune, allow_unexpected=args.finetune_allow_unexpected,
                              log=log if info.is_main else (lambda *_: None), checkpoint=checkpoint,
                              allow_new_rgb=training)
    if training and cfg.rgb_support:
        start_rgb_branch(model, cfg, report, args.seed, log)
    model.to(info.device)
    return model, model.cfg


def rgb_backbone(args, checkpoint, cfg, log=print) -> dict | None:
    """The EfficientNet-B0 weights a trained RGB branch starts from (--rgb_backbone_weights),
    read before any other work (offline without 'imagenet' cached: one line, here); None when
    random ('none'), without --rgb_support, or when --finetune holds the RGB branch's weights
    (then nothing is read or downloaded)."""
    spec = getattr(args, "rgb_backbone_weights", None) or "none"
    if not cfg.rgb_support or spec == "none":
        return None
    from signfuse.models.rgb_branch import has_rgb_weights, load_backbone_weights
    if checkpoint is not None and has_rgb_weights(state_dict_of(checkpoint, args.finetune)):
        log(f"--rgb_backbone_weights {spec}: not used, {args.finetune} holds the RGB branch's weights")
        return None
    return load_backbone_weights(spec)


def start_rgb_branch(model, cfg, report, seed: int, log=print) -> None:
    """Training --rgb_support: with --rgb_gate_init small, a fusion gate that is all zeros after
    loading (Uni-Sign's RGB-pose checkpoints: its zero gate never learns, rgb-pose.md 8.4) gets
    the small init of its last convolution (drawn from ``seed``; every other weight stays the
    checkpoint's); then one warning line when the branch still cannot learn."""
    from signfuse.models.rgb_branch import RGB_PREFIXES, fusion_gate, gate_is_zero, rgb_training_warning
    loaded = report is not None and not any(k.startswith(RGB_PREFIXES) for k in report["missing"])
    if loaded and cfg.rgb_gate_init == "small" and gate_is_zero(model):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            small = fusion_gate(model.fusion_gate[0].out_channels, "small")
        model.fusion_gate[2].load_state_dict(small[2].state_dict())
        log("--rgb_gate_init small: the fusion gate of the checkpoint is all zeros (it cannot learn): "
            "its last convolution starts small")
    warning = rgb_training_warning(cfg, loaded, model)
    if warning:
        log(warning)


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


def checkpoint_dict(model, cfg, args, epoch, result=None, text_encoder=None) -> dict:
    """Uni-Sign's checkpoint format plus plain-data extras (loadable with weights_only): the
    model configuration, the recorded settings (``settings.record``), the text encoder's
    identity, every flag, and with ``result`` the metrics."""
    ckpt = {"model": engine.unwrap(model).state_dict(), "epoch": epoch, "config": plain(asdict(cfg)),
            "settings": record(args), "text_encoder": plain(text_encoder), "args": args_record(args)}
    if result is not None:
        ckpt["metrics"] = plain(result)
    return ckpt


# ----------------------------------------------------------------------------- engines

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


def wrap_model(model, args, info: D.DistInfo, optimizer, scheduler, log=print):
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
    if info.distributed:  # descriptions, RGB: some parameters have no gradient in some steps
        unused = bool(args.use_descriptions or getattr(args, "rgb_support", False))
        model = D.wrap_ddp(model, info, find_unused_parameters=unused)
    return model, engine.Stepper(model, optimizer, scheduler, args.gradient_accumulation_steps,
                                 args.gradient_clipping, scaler, info)


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


# ----------------------------------------------------------------------------- start and resume

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


#: flags whose change between the interrupted run and its continuation changes the result
RESUME_SENSITIVE = ("dataset", "task", "mt5_model", "use_descriptions", "text_fusion_type", "batch_size",
                    "gradient_accumulation_steps", "epochs", "lr", "min_lr", "warmup_epochs", "weight_decay",
                    "seed", "max_length", "max_samples", "label_smoothing", "text_dropout_p",
                    "text_dropout_sample_p", "gradient_clipping", "dtype", "zero_stage", "describe", "language",
                    "frame_size", "fps", "desc_max_tokens", "rgb_support", "rgb_gate_init", "rgb_crop",
                    "rgb_eval_sampling")


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


# ----------------------------------------------------------------------------- train

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


def train(args, data=None) -> dict:
    """Fine-tune (or pre-train: ``data(args, log) -> TrainData`` builds its corpus, default
    ``training_data``); returns the final epoch's log entry (with the best metric). The
    describer's settings are resolved first (``resolve_describer``): the checkpoints record
    them complete."""
    return in_process_group(resolve_describer(args), functools.partial(_train, data_fn=data or training_data))


def _train(args, info: D.DistInfo, data_fn=training_data) -> dict:
    out, log = start_run(args, info)
    resumed = agreed_resume_state(args, out, info, log)
    checkpoint = read_checkpoint(args)
    cfg = resolve_model_config(args, checkpoint, args.finetune)  # once: train takes its settings from its flags
    backbone = rgb_backbone(args, checkpoint, cfg, log)  # before any work: it may be unavailable offline
    data = data_fn(args, log)
    model, cfg = build_run_model(args, info, log, checkpoint, cfg, training=True, backbone=backbone)
    del backbone
    del checkpoint
    warm_text_cache(model, data.describer, data.sample_ids(), log)
    total, fusion = count_parameters(model)
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


# ----------------------------------------------------------------------------- evaluate

def description_modes(args) -> list[bool]:
    """descriptions_off values to evaluate: [False] (on), [True] (off) or both."""
    if not args.use_descriptions:
        return [False]
    return {"on": [False], "off": [True], "both": [False, True]}[args.eval_descriptions]


def evaluate(args, datasets=None) -> dict:
    """--eval: dev then test (How2Sign: test); with descriptions, also (or only) with every
    frame masked (--eval_descriptions both|off, results under "<split>_nodesc"). The settings
    of --finetune's checkpoint apply to the flags not given. ``datasets(args, describer) ->
    {split: dataset}`` picks other splits (pre-training). Returns {split: metrics}."""
    return in_process_group(args, functools.partial(_evaluate, datasets_fn=datasets or eval_datasets))


def eval_datasets(args, describer) -> dict:
    """{split: dataset} of --eval: dev then test (How2Sign: test)."""
    return {split: build_dataset(args, split, train=False, describer=describer) for split in eval_splits(args.dataset)}


def _evaluate(args, info: D.DistInfo, datasets_fn=eval_datasets) -> dict:
    out, log = start_run(args, info)
    checkpoint = read_checkpoint(args)
    if checkpoint is not None:
        args = apply_checkpoint_settings(args, checkpoint, args.finetune, log)
        check_text_encoder(args, checkpoint, args.finetune, log)
    describer = build_describer(args, log)
    model, _ = build_run_model(args, info, log, checkpoint)
    del checkpoint
    ctx = engine.RunContext(args=args, dist=info, output_dir=out, log=log, amp_dtype=amp_dtype(args, info.device))
    datasets = datasets_fn(args, describer)
    announce_descriptions(describer, datasets, args.trust_pickles, log)
    warm_text_cache(model, describer, [i for ds in datasets.values() for i in ds.sample_ids()], log)
    results = {}
    for split, ds in datasets.items():
        loader = build_loader(ds, args, info, train=False)
        for off in description_modes(args):
            t0 = time.time()
            tag = "_nodesc" if off else ""
            res = engine.evaluate(model, loader, ctx, split, descriptions_off=off, tag=tag)
            res["time_s"] = time.time() - t0
            results[split + tag] = res
            log(f"{split}{' (descriptions off)' if off else ''}: " + json.dumps(plain(res)))
    return results
