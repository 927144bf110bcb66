"""``signfuse train`` (and ``fine_tuning.py``): fine-tune with Uni-Sign's flags."""
from signfuse.flags import add_run_args, check_run_args
from signfuse.training import run


def run_training(args, evaluate_only: bool):
    """Train, or evaluate (``eval``, or ``--eval``), after checking the run's flags once."""
    check_run_args(args)
    if evaluate_only or args.eval:
        return run.evaluate(args)
    return run.train(args)


def register(sub) -> None:
    text = "fine-tune (same flags as fine_tuning.py)"
    sp = sub.add_parser("train", help=text, description=text)
    add_run_args(sp)
    sp.set_defaults(func=lambda args: run_training(args, evaluate_only=False))
