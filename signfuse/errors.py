"""The two kinds of errors signfuse raises on bad input.

``InputError``: a problem with the run's own inputs (a label file, a checkpoint, the mT5
directory, an embedding store, a command-line value). The run stops before any work; the
CLI prints the message as one line on stderr (no traceback) and exits with status 2.

``SampleError``: a problem with one sample (its pose file, its description file). During
training and evaluation the sample is skipped, counted, and reported with its name at the
end of the epoch; it is never replaced by another sample.

Both messages start with the path of the file at fault and say what is wrong with it.
"""


class SignfuseError(Exception):
    """Base class of the errors signfuse raises on bad input."""


class InputError(SignfuseError):
    """A run-level input (label file, checkpoint, model directory, store, flag) is unusable."""


class SampleError(SignfuseError):
    """One sample's file (pose, description) is unusable; the sample is skipped and counted."""
