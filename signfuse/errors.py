"""The two kinds of errors signfuse raises on bad input.

``InputError``: a problem with the run's own inputs (a label file, a checkpoint, the mT5
directory, an embedding store, a command-line value). The run stops before any work; the
CLI prints the message as one line on stderr (no traceback) and exits with status 2.

``SampleError``: a problem with one sample (its pose file, its description file, its video).
During training and evaluation the sample is skipped, counted, and reported with its name at
the end of the epoch; it is never replaced by another sample. It carries a ``kind`` (one of
SAMPLE_ERROR_KINDS), set where it is raised, so that the problems can be counted by kind
(``signfuse check-data``) without reading the message: ``SampleError(message, kind="missing")``.

Both messages start with the path of the file at fault and say what is wrong with it.
"""

# What can be wrong with one sample's file (SampleError.kind):
SAMPLE_ERROR_KINDS = (
    "missing",      # the file does not exist (or is a directory)
    "unreadable",   # the operating system cannot read it
    "empty",        # the file has no bytes
    "unpicklable",  # not a pickle: truncated, corrupt, corrupt gzip data
    "refused",      # the restricted unpickler refused a global (--trust_pickles lifts it)
    "type",         # the content is of the wrong type or lacks a key ('keypoints', 'scores', ...)
    "shape",        # an array of the wrong shape, or values that are not numbers
    "no_frames",    # zero frames
    "frame_count",  # keypoints and scores cover different numbers of frames
    "start_end",    # 'start' / 'end' not integers with 0 <= start < end <= frames
    "non_finite",   # NaN or infinite values
    "range",        # values too large to normalise in float32
    "description",  # a description file that is not valid (not UTF-8, not JSON, wrong layout)
    "video",        # a video that cannot be opened or decoded
    "other",        # not said by the code that raised it (tests/test_data_pose.py checks that
                    # every SampleError raised inside signfuse names its kind)
)


class SignfuseError(Exception):
    """Base class of the errors signfuse raises on bad input."""


class InputError(SignfuseError):
    """A run-level input (label file, checkpoint, model directory, store, flag) is unusable."""

    def __init__(self, message: str, kind: str = None):
        super().__init__(message)
        self.kind = kind  # optional: the SAMPLE_ERROR_KINDS name when the problem has one


class SampleError(SignfuseError):
    """One sample's file (pose, description, video) is unusable; the sample is skipped and
    counted. ``kind``: one of SAMPLE_ERROR_KINDS (what is wrong, for counting)."""

    def __init__(self, message: str, kind: str = "other"):
        if kind not in SAMPLE_ERROR_KINDS:
            raise ValueError(f"SampleError kind {kind!r} is not one of {', '.join(SAMPLE_ERROR_KINDS)}")
        super().__init__(message)
        self.kind = kind

    def __reduce__(self):  # picklable (worker processes), kind included
        return type(self), (str(self), self.kind)
