"""Read pose and label pickles without running the code a pickle can carry.

A pickle names functions and classes that ``pickle.load`` imports and calls while it
reads the file, so a crafted ``.pkl`` runs any code it likes (``os.system`` ...). Pose
and label files hold only dicts, lists, numbers, strings and numpy arrays, so
``load_pickle`` reads them through an unpickler that imports nothing else: every name a
file asks for must be in the small table below, and anything outside it stops the read
before it is called. ``trust=True`` (``--trust_pickles``) uses plain ``pickle`` for files
the user vouches for.

Files may be gzip-compressed (Uni-Sign's label files are) or not (its pose files);
the first two bytes tell which.
"""
import builtins
import codecs
import collections
import functools
import gzip
import importlib
import io
import pickle
import types
import zlib
from pathlib import Path

import numpy as np

from signfuse.errors import SampleError

GZIP_MAGIC = b"\x1f\x8b"

# Builtins that pickles of containers and scalars name (protocols 0-2 name them; 3+ use
# opcodes). '__builtin__' is how Python 2 and protocols 0-2 spell 'builtins'.
SAFE_BUILTINS = ("dict", "list", "tuple", "set", "frozenset", "int", "float", "complex",
                 "str", "bytes", "bytearray", "bool")


def _numpy_core(submodule: str):
    """numpy 2 keeps its internals in numpy._core; numpy 1 in numpy.core."""
    try:
        return importlib.import_module(f"numpy._core.{submodule}")
    except ImportError:
        return importlib.import_module(f"numpy.core.{submodule}")


def latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """What protocols 0-2 call to rebuild bytes: ``_codecs.encode(text, 'latin1')``, no other codec."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"bytes encoded with {encoding!r}, expected 'latin1'")
    return codecs.encode(text, "latin1")


@functools.cache
def allowed_globals() -> dict:
    """(module, name) -> object for every global a pose or label pickle may name."""
    multiarray, numeric = _numpy_core("multiarray"), _numpy_core("numeric")
    table = {}
    for module in ("builtins", "__builtin__"):
        for name in SAFE_BUILTINS:
            table[(module, name)] = getattr(builtins, name)
    table[("_codecs", "encode")] = latin1_encode  # bytes, protocols 0-2
    table[("collections", "OrderedDict")] = collections.OrderedDict
    table[("numpy", "ndarray")] = np.ndarray
    table[("numpy", "dtype")] = np.dtype
    # numpy 1 writes numpy.core.*, numpy 2 numpy._core.*: both name the same functions
    for core in ("numpy.core", "numpy._core"):
        table[(f"{core}.multiarray", "_reconstruct")] = multiarray._reconstruct
        table[(f"{core}.multiarray", "scalar")] = multiarray.scalar
        table[(f"{core}.numeric", "_frombuffer")] = numeric._frombuffer  # protocol 5
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25: one class per dtype
    if dtypes is not None:
        for name in dir(dtypes):
            cls = getattr(dtypes, name)
            if isinstance(cls, type) and issubclass(cls, np.dtype):
                table[("numpy.dtypes", name)] = cls
    return types.MappingProxyType(table)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals of ``allowed_globals()``."""

    def __init__(self, file, path, error):
        super().__init__(file)
        self.path, self.error = path, error
        self.allowed = allowed_globals()

    def find_class(self, module, name):
        obj = self.allowed.get((module, name))
        if obj is None:
            raise self.error(
                f"{self.path}: refused to unpickle {module}.{name}: pose and label files hold only "
                f"dicts, lists, numbers, strings and numpy arrays; pass --trust_pickles if you "
                f"trust this file", kind="refused")
        return obj


def read_bytes(path, error=SampleError) -> bytes:
    """The file's bytes, gunzipped when they start with the gzip magic number."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: file not found", kind="missing") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, expected a pickle file", kind="missing") from None
    except OSError as e:
        raise error(f"{path}: cannot read the file ({e.strerror or e})", kind="unreadable") from None
    if not data:
        raise error(f"{path}: empty file, expected a pickle", kind="empty")
    if data[:2] == GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise error(f"{path}: corrupt or truncated gzip data ({e})", kind="unpicklable") from None
    return data


def load_pickle(path, trust: bool = False, error=SampleError):
    """Load the (optionally gzip-compressed) pickle at ``path``.

    Restricted to the globals pose and label files need unless ``trust``. Every problem
    (missing, unreadable, corrupt, truncated, refused) raises ``error`` with a message
    that starts with the path.
    """
    data = read_bytes(path, error)
    try:
        if trust:
            return pickle.loads(data)
        return RestrictedUnpickler(io.BytesIO(data), path, error).load()
    except error:
        raise
    except EOFError:
        raise error(f"{path}: truncated pickle (the data ends before the object does)",
                    kind="unpicklable") from None
    except pickle.UnpicklingError as e:
        raise error(f"{path}: not a readable pickle ({e})", kind="unpicklable") from None
    except Exception as e:  # a corrupt pickle can fail in many ways
        raise error(f"{path}: not a readable pickle ({type(e).__name__}: {e})", kind="unpicklable") from None
