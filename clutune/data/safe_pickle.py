"""A pickle reader that runs no code: only the plain types dataset files are made of.

``pickle.load`` calls whatever callable a file names, so a crafted file in a data folder would run code as the
user. The CIFAR-10 python release is a pickle: per batch a dict of ``data`` (a uint8 numpy array), ``labels``
(ints), ``filenames`` and ``batch_label`` (Python 2 strings, read as latin-1). Its pickles (protocol 2, written by
Python 2 with numpy 1) name exactly three globals: ``numpy.core.multiarray._reconstruct``, ``numpy.ndarray`` and
``numpy.dtype``. Re-pickled copies written by Python 3 add ``_codecs.encode`` (bytes at protocol 2), numpy 2's
``numpy._core`` spellings, and ``_frombuffer`` (protocol 5). Those, and only those, are admitted; dicts, lists,
strings, bytes and numbers need no global at all. An array's dtype must be a plain number type (no objects).
"""

from __future__ import annotations

import io
import math
import pickle
from typing import Any

import numpy as np
from numpy._core import multiarray as _multiarray
from numpy._core import numeric as _numeric

from clutune.guards.memory_check import machine_memory_bytes


class ForbiddenGlobal(pickle.UnpicklingError):
    """The file names a callable outside the admitted plain types: it is refused, never called."""


def _plain_dtype(*args: Any) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.hasobject or dtype.kind not in "biufcSU":
        raise ForbiddenGlobal(f"array dtype {dtype} is not a plain number or text type")
    return dtype


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as Python 3 pickles bytes at protocol 2: latin-1 only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise ForbiddenGlobal(f"_codecs.encode with {encoding!r} is not how bytes are pickled")
    return text.encode("latin-1")


class TooLarge(pickle.UnpicklingError):
    """The file asks for an array larger than this machine's memory: refused before it is allocated."""

    def __init__(self, nbytes: int, shape: tuple[int, ...]) -> None:
        super().__init__(f"an array of shape {shape}")
        self.nbytes = nbytes


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """numpy writes shape (0,) here and the data in a later step; a crafted shape would allocate it all now."""
    if subtype is not np.ndarray:
        raise ForbiddenGlobal("only plain numpy arrays may be reconstructed")
    shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
    if not all(isinstance(n, int) and n >= 0 for n in shape):
        raise ForbiddenGlobal(f"array shape {shape!r} is not a tuple of sizes")
    nbytes = math.prod(shape) * _plain_dtype(dtype).itemsize
    if nbytes > machine_memory_bytes():
        raise TooLarge(nbytes, shape)
    return _multiarray._reconstruct(subtype, shape, dtype)


def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    return _numeric._frombuffer(buffer, _plain_dtype(dtype), shape, order)


ADMITTED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _plain_dtype,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _latin1_encode,
}


class PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        found = ADMITTED.get((module, name))
        if found is None:
            raise ForbiddenGlobal(f"it names {module}.{name}, which a data file has no use for")
        return found


def load_plain(stream: io.BufferedIOBase, encoding: str = "latin1") -> Any:
    """``pickle.load(stream, encoding=...)`` admitting only the globals above (:class:`ForbiddenGlobal`
    otherwise, before anything named is called)."""
    return PlainUnpickler(stream, encoding=encoding).load()


__all__ = ["ADMITTED", "ForbiddenGlobal", "PlainUnpickler", "TooLarge", "load_plain"]
