"""The ``signfuse`` sub-commands: one module per command, each with ``register(sub)`` (its
parser, with ``set_defaults(func=handler)``) and its handler. ``signfuse.cli`` assembles them."""
