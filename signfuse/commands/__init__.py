"""The sub-commands of ``signfuse``, one module each: its parser (``register(sub)``) and its handler."""
