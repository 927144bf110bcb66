"""Optimizer and learning-rate schedule (Uni-Sign's flags: --opt, --lr, --opt-eps,
--weight-decay, --sched, --warmup-epochs, --min-lr)."""
import math

import torch

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


def cosine_lr(step: int, total_steps: int, warmup_steps: int, base_lr: float, min_lr: float) -> float:
    """Linear warm-up from 0 to base_lr over warmup_steps, then cosine from base_lr to min_lr."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer, args, steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per optimizer step schedule: warm-up over --warmup-epochs, cosine to --min-lr at the end."""
    if args.sched != "cosine":
        raise InputError(f"--sched {args.sched}: only cosine is supported")
    total = max(1, args.epochs * steps_per_epoch)
    warmup = int(round(args.warmup_epochs * steps_per_epoch))
    base = args.lr
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: cosine_lr(step, total, warmup, base, args.min_lr) / base)
