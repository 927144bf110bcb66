"""Optimizer and learning-rate schedule, as Uni-Sign's fine_tuning.py builds them.

Optimizer: AdamW (timm's ``create_optimizer`` with --opt adamw: no weight decay on biases
and norm weights). Schedule: ``transformers.get_scheduler('cosine', ...)`` stepped once per
optimizer step, with Uni-Sign's warm-up and total steps::

    num_warmup_steps   = int(args.warmup_epochs * len(train_dataloader) / args.gradient_accumulation_steps)
    num_training_steps = int(args.epochs * len(train_dataloader) / args.gradient_accumulation_steps)

``len(train_dataloader)`` being the micro-batches of one process in one epoch (the last
partial batch dropped). The learning rate decays to 0: Uni-Sign accepts ``--min-lr`` and does
not use it, nor ``--sched`` (always cosine; other values are refused here).
"""
import torch
from transformers import get_scheduler

from signfuse.errors import InputError


def build_optimizer(model: torch.nn.Module, args) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters; biases and norm weights get no weight decay."""
    if args.opt.lower() != "adamw":
        raise InputError(f"--opt {args.opt}: only adamw is supported (Uni-Sign's optimizer)")
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    groups = [{"params": decay, "weight_decay": args.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=args.lr, eps=args.opt_eps, betas=(0.9, 0.999))


def schedule_steps(args, batches_per_epoch: int) -> tuple[int, int]:
    """(warm-up steps, total steps) of Uni-Sign's schedule for ``batches_per_epoch`` micro-batches
    per process and epoch (Uni-Sign's expressions, evaluated as it evaluates them)."""
    warmup = int(args.warmup_epochs * batches_per_epoch / args.gradient_accumulation_steps)
    total = int(args.epochs * batches_per_epoch / args.gradient_accumulation_steps)
    return warmup, total


def build_scheduler(optimizer, args, batches_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """transformers' cosine schedule with warm-up, one step per optimizer step (Uni-Sign's)."""
    if args.sched != "cosine":
        raise InputError(f"--sched {args.sched}: only cosine is supported (Uni-Sign's schedule)")
    warmup, total = schedule_steps(args, batches_per_epoch)
    return get_scheduler("cosine", optimizer=optimizer, num_warmup_steps=warmup, num_training_steps=total)
