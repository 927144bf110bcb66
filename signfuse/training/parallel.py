"""The engines around a run's model: DDP or DeepSpeed (``wrap_model``), DeepSpeed's settings from
Uni-Sign's flags, and autocast's dtype."""

import torch

from signfuse.errors import InputError
from signfuse.training import distributed as D
from signfuse.training import engine


def amp_dtype(args, device: torch.device):
    """bf16/fp16 autocast on CUDA (--dtype); float32 on CPU."""
    if device.type != "cuda":
        return None
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]



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
