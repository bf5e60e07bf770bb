"""Rows of an ``.npy`` file read on demand: a lazily opened array that travels as its path, never as its data.

:class:`NpyRows` has ``shape``, ``dtype``, ``ndim`` and ``__getitem__``, so ``dask.array.from_array`` takes it:
each chunk task opens the file memory-mapped, copies its rows out and closes it, so a worker holds the rows of
the chunks it computes (anonymous memory), and no mapping of the whole file stays in its address space.
Pickling an ``np.memmap`` would copy its data; pickling an :class:`NpyRows` sends ``(path, shape, dtype)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class NpyRows:
    """The array stored in the ``.npy`` file at ``path`` (C order), read slice by slice."""

    path: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]

    @classmethod
    def open(cls, path: Path | str) -> "NpyRows":
        """Read the header only (shape and dtype); raises ``ValueError`` for a Fortran-ordered or object array."""
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
        try:
            if mapped.dtype.hasobject or (mapped.ndim > 1 and not mapped.flags.c_contiguous):
                raise ValueError(f"{path}: only C-ordered numeric .npy files can be read by rows")
            return cls(str(path), tuple(int(s) for s in mapped.shape), mapped.dtype)
        finally:
            del mapped

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        mapped = np.load(self.path, mmap_mode="r", allow_pickle=False)
        try:
            return np.array(mapped[key])  # a copy: the mapping closes with ``mapped``
        finally:
            del mapped
