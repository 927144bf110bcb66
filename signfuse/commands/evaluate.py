"""``signfuse eval``: evaluate dev then test, with the flags of ``fine_tuning.py``."""
from signfuse.commands.train import run_training
from signfuse.flags import add_run_args


def register(sub) -> None:
    text = "evaluate dev then test (same flags as fine_tuning.py)"
    sp = sub.add_parser("eval", help=text, description=text)
    add_run_args(sp)
    sp.set_defaults(func=lambda args: run_training(args, evaluate_only=True))
