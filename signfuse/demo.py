"""``signfuse demo``: (being written)"""


def register(sub) -> None:
    sp = sub.add_parser("demo", help="generate synthetic data, train pose-only and gated models, compare")
    sp.set_defaults(func=lambda a: None)
