"""``signfuse pretrain`` and ``pre_training.py``: Uni-Sign's stages 1 and 2 on a JSON corpus
in CSL-News's format (``signfuse/training/pretrain.py``); the flags of fine-tuning plus
--quick_break and --label_file."""
from signfuse.flags import add_pretrain_args, check_run_args
from signfuse.training.pretrain import pretrain

HELP = "pre-train (Uni-Sign stages 1 and 2) on a JSON corpus in CSL-News's format; --eval: its held-out entries"


def run_pretrain(args):
    check_run_args(args)
    return pretrain(args)


def register(sub) -> None:
    sp = sub.add_parser("pretrain", help=HELP, description=HELP)
    add_pretrain_args(sp)
    sp.set_defaults(func=run_pretrain)
