"""The patch tensor as a data source: every pass over ``X`` is a map or a reduction over blocks of rows.

The core's relaxations work on ``A[i, j, :] = c_j^(1/q) P_j x_i`` (shape ``(n, k, m)``, :mod:`cnnrelax.core.problem`).
Its only contact with the full data is a few passes (pre-activations, violations, gradient rows, moments, the cone's
gains), each a map over rows or a small sum over rows, and gathers of the few rows a working set holds. A
:class:`PatchSource` offers exactly those, so the same pass runs on an in-memory array, on a memory-mapped ``.npy``
read in blocks, or (registered by its own module) on a dask array:

- ``map_rows(kernel, *row_args)``: ``kernel(A_b, *(arg[b] for arg in row_args))`` on each block ``b`` of rows, the
  outputs (one row per sample: ``(n, k)``, ``(n, m)``...) stacked in row order;
- ``reduce_rows(kernel, *row_args)``: the same calls, the outputs (an array, a number, or a tuple of them) summed
  over the blocks: ``(m,)``, ``(m, m)``, scalars;
- ``take(rows)``: the ``(s, k, m)`` patches of the given rows (a small copy: the working set);
- ``shape``: ``(n, k, m)``; ``X``: the raw ``(n, d)`` data; ``layout``: the patching applied per block.

A kernel is a module-level function, or a :func:`functools.partial` of one binding the arguments that are not rows
(a filter ``w``): it is pickled to run on other processes. A pass over the data ticks :data:`PASSES` once.

Which source serves an array is chosen from the array's type by one registry (:data:`SOURCE_KINDS`, most derived
type first): :class:`numpy.ndarray` is held in memory as one block (results bit-identical to a direct ``einsum``
on the whole tensor), :class:`numpy.memmap` (``np.load(path, mmap_mode="r")``) is read in blocks of at most
:data:`CHUNK_BYTES` of patches, so a pass holds one block in anonymous memory, never a copy of ``X``. Another
backend is one object: a :class:`SourceKind` (``prepare`` validates the array, ``open`` makes its source) passed to
:func:`register_source_kind` with the array type it serves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import InvalidParameterError

__all__ = ["CHUNK_BYTES", "PASSES", "PassCounter", "PatchLayout", "PatchSource", "SourceBase", "BlockedSource",
           "InMemoryPatches", "ChunkedPatches", "SourceKind", "SOURCE_KINDS", "register_source_kind",
           "source_kind", "finite_array", "Kernel", "FloatArray"]

FloatArray = NDArray[np.float64]
R = TypeVar("R")
#: A pass's work on one block: ``kernel(patches_block, *row_arg_blocks) -> per-row outputs or a partial sum``.
Kernel = Callable[..., Any]

#: Bytes of patches a chunked source holds at once (one block of rows): large enough that numpy's per-call cost
#: vanishes against the arithmetic, small enough to be nothing beside a working set.
CHUNK_BYTES = 32 * 2**20
#: :func:`finite_array` checks this many bytes of rows at a time (their mask stays in cache).
FINITE_CHECK_BYTES = 2**20


@dataclass
class PassCounter:
    """Full passes over the patch tensor (``X``) since the last :meth:`reset`."""

    count: int = 0

    def tick(self, passes: int = 1) -> None:
        self.count += passes

    def reset(self) -> int:
        """Zero the count and return what it was."""
        count, self.count = self.count, 0
        return count


#: The process's pass counter (read by ``bench/bench_core.py`` and ``bench/bench_scale.py``).
PASSES = PassCounter()


@dataclass(frozen=True)
class PatchLayout:
    """How rows of ``X`` become patches: ``A[i, j, :] = folded_j * X[i, index[j]]``.

    ``view`` is the paper's setting (non-overlapping blocks, unit weights): ``A`` is ``X.reshape(n, k, m)``, no copy.
    """

    index: NDArray[np.intp]
    folded: FloatArray
    view: bool

    @property
    def k(self) -> int:
        return int(self.index.shape[0])

    @property
    def m(self) -> int:
        return int(self.index.shape[1])

    def apply(self, rows: ArrayLike) -> FloatArray:
        """The ``(b, k, m)`` patches of a ``(b, d)`` block of rows (a view when ``view`` and already float64)."""
        if self.view:
            contiguous: FloatArray = np.ascontiguousarray(rows, dtype=np.float64)
            return contiguous.reshape(contiguous.shape[0], self.k, self.m)
        data = np.asarray(rows, dtype=np.float64)
        gathered: FloatArray = np.ascontiguousarray(data[:, self.index] * self.folded[None, :, None])
        return gathered


class PatchSource(Protocol):
    """The patch tensor behind the pass primitives (module docstring). ``map_rows`` and ``reduce_rows`` are one pass
    each and tick :data:`PASSES` once; ``take`` is not a pass (it reads the given rows only)."""

    @property
    def X(self) -> Any:
        """The raw ``(n, d)`` data."""

    @property
    def layout(self) -> PatchLayout: ...

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(n, k, m)``."""

    def map_rows(self, kernel: Kernel, *row_args: NDArray[Any]) -> NDArray[Any]:
        """The kernel's per-row outputs over all rows, in row order (one pass)."""

    def reduce_rows(self, kernel: Callable[..., R], *row_args: NDArray[Any]) -> R:
        """The sum over blocks of the kernel's outputs (one pass)."""

    def take(self, rows: NDArray[np.intp]) -> FloatArray:
        """The ``(s, k, m)`` patches of ``rows`` (a copy of those rows only)."""

    def dense(self) -> FloatArray:
        """The whole ``(n, k, m)`` tensor: for in-memory callers and tests only (a copy unless the layout is a view);
        a pass uses the primitives."""

    def on_rows(self, rows: NDArray[np.intp]) -> PatchSource:
        """An in-memory source of the given rows only (a small problem from a subset)."""


def _add(total: Any, part: Any) -> Any:
    if isinstance(total, tuple):
        return tuple(_add(a, b) for a, b in zip(total, part, strict=True))
    return total + part


class SourceBase:
    """What every source holds: the raw rows ``X`` as given and the layout that turns them into patches."""

    def __init__(self, X: Any, layout: PatchLayout) -> None:
        self._X = X
        self._layout = layout

    @property
    def X(self) -> Any:
        return self._X

    @property
    def layout(self) -> PatchLayout:
        return self._layout

    @property
    def shape(self) -> tuple[int, int, int]:
        return int(self._X.shape[0]), self._layout.k, self._layout.m


class BlockedSource(SourceBase):
    """The primitives over :meth:`blocks` (a subclass says how blocks of rows are read)."""

    def blocks(self) -> Iterator[tuple[slice, FloatArray]]:
        """``(rows, patches of those rows)`` covering all rows in order."""
        raise NotImplementedError

    def map_rows(self, kernel: Kernel, *row_args: NDArray[Any]) -> NDArray[Any]:
        PASSES.tick()
        out: NDArray[Any] | None = None
        for rows, block in self.blocks():
            part = np.asarray(kernel(block, *(arg[rows] for arg in row_args)))
            if out is None:
                if rows.stop >= self.shape[0] and rows.start == 0:
                    return part  # one block: the kernel's own output
                out = np.empty((self.shape[0],) + part.shape[1:], dtype=part.dtype)
            out[rows] = part
        assert out is not None, "a source has at least one row"
        return out

    def reduce_rows(self, kernel: Callable[..., R], *row_args: NDArray[Any]) -> R:
        PASSES.tick()
        total: Any = None
        for rows, block in self.blocks():
            part = kernel(block, *(arg[rows] for arg in row_args))
            total = part if total is None else _add(total, part)
        result: R = total
        return result

    def take(self, rows: NDArray[np.intp]) -> FloatArray:
        raise NotImplementedError

    def dense(self) -> FloatArray:
        return self._layout.apply(self._X)

    def on_rows(self, rows: NDArray[np.intp]) -> PatchSource:
        picked = np.asarray(self._X[rows], dtype=np.float64)
        return InMemoryPatches(picked, self._layout)


class InMemoryPatches(BlockedSource):
    """An in-memory array: the patch tensor made once (a view of ``X`` for the paper's layout), one block."""

    def __init__(self, X: FloatArray, layout: PatchLayout) -> None:
        data = np.ascontiguousarray(X) if layout.view else X
        super().__init__(data, layout)
        self._patches = layout.apply(data)

    def blocks(self) -> Iterator[tuple[slice, FloatArray]]:
        yield slice(0, self.shape[0]), self._patches

    def take(self, rows: NDArray[np.intp]) -> FloatArray:
        picked: FloatArray = self._patches[rows]
        return picked

    def dense(self) -> FloatArray:
        return self._patches


def block_rows(layout: PatchLayout, d: int, budget: int) -> int:
    """Rows per block so that a block's patches (and its rows of ``X``) stay within ``budget`` bytes."""
    return max(1, budget // (8 * max(d, layout.k * layout.m)))


class ChunkedPatches(BlockedSource):
    """An array read in blocks of rows (a memory map): a pass holds one block's patches, never all of ``X``."""

    def __init__(self, X: Any, layout: PatchLayout, budget: int | None = None) -> None:
        super().__init__(X, layout)
        self.rows_per_block = block_rows(layout, int(X.shape[1]), CHUNK_BYTES if budget is None else budget)

    def blocks(self) -> Iterator[tuple[slice, FloatArray]]:
        n, step = self.shape[0], self.rows_per_block
        for start in range(0, n, step):
            rows = slice(start, min(n, start + step))
            yield rows, self._layout.apply(self._X[rows])

    def take(self, rows: NDArray[np.intp]) -> FloatArray:
        return self._layout.apply(self._X[np.asarray(rows, dtype=np.intp)])


class SourceKind(Protocol):
    """How one type of array becomes a source: validation that reads it the way its passes will, and the source."""

    def prepare(self, X: Any) -> Any:
        """Check that ``X`` is a non-empty 2-D matrix of finite reals (InvalidParameterError naming ``X`` if not);
        return the array the source reads."""

    def open(self, X: Any, layout: PatchLayout) -> PatchSource:
        """The source over the prepared ``X``."""


def _not_finite(parameter: str, count: int, where: tuple[int, ...]) -> InvalidParameterError:
    return InvalidParameterError(
        parameter,
        f"{parameter} contains NaN or infinite values ({count} of them, the first at "
        f"index {where if len(where) > 1 else where[0]}).",
    )


def _check_shape(parameter: str, shape: tuple[int, ...], ndim: int) -> None:
    if len(shape) != ndim:
        expected = "a vector" if ndim == 1 else "a 2-D matrix (n rows, d columns)"
        raise InvalidParameterError(parameter, f"{parameter} must be {expected}, got an array of shape {shape}.")
    if int(np.prod(shape)) == 0:
        raise InvalidParameterError(parameter, f"{parameter} is empty: at least one sample is needed.")


def finite_array(value: ArrayLike, parameter: str, ndim: int) -> FloatArray:
    """``value`` as a float64 array of ``ndim`` dimensions, non-empty and finite (InvalidParameterError if not)."""
    try:
        raw = np.asarray(value)
        if raw.dtype.kind not in "biuf":
            raise TypeError(f"got dtype {raw.dtype}")
        arr = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(
            parameter, f"{parameter} must be an array of real numbers ({exc})."
        ) from None
    _check_shape(parameter, arr.shape, ndim)
    # Checked a block of rows at a time: the mask of a whole X would be an eighth of X again (40 MiB at
    # (100000, 400)), the peak of a solve once its passes hold no copy; the count and the place only on failure.
    step = max(1, FINITE_CHECK_BYTES // (arr.itemsize * max(1, int(np.prod(arr.shape[1:])))))
    if not all(np.isfinite(arr[start:start + step]).all() for start in range(0, arr.shape[0], step)):
        bad = ~np.isfinite(arr)
        raise _not_finite(parameter, int(bad.sum()), tuple(int(i) for i in np.argwhere(bad)[0]))
    return arr


class InMemoryKind:
    """numpy arrays (and anything ``np.asarray`` reads): converted to float64 once, checked whole."""

    def prepare(self, X: Any) -> Any:
        return finite_array(X, "X", 2)

    def open(self, X: Any, layout: PatchLayout) -> PatchSource:
        return InMemoryPatches(X, layout)


class ChunkedKind:
    """Memory maps: checked block by block (no copy of ``X``), read in blocks of :data:`CHUNK_BYTES`."""

    def prepare(self, X: Any) -> Any:
        if not (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer)
                or X.dtype == np.bool_):
            raise InvalidParameterError(
                "X", f"X must be an array of real numbers, got a memory map of dtype {X.dtype}."
            )
        _check_shape("X", tuple(X.shape), 2)
        if np.issubdtype(X.dtype, np.floating):
            step = max(1, CHUNK_BYTES // (X.dtype.itemsize * int(X.shape[1])))
            count, first = 0, None
            for start in range(0, int(X.shape[0]), step):
                bad = ~np.isfinite(X[start:start + step])
                found = int(np.count_nonzero(bad))
                if found and first is None:
                    i, j = np.argwhere(bad)[0]
                    first = (start + int(i), int(j))
                count += found
            if first is not None:
                raise _not_finite("X", count, first)
        return X

    def open(self, X: Any, layout: PatchLayout) -> PatchSource:
        return ChunkedPatches(X, layout)


#: Array type -> how it becomes a source; the most derived registered type of an array wins.
SOURCE_KINDS: dict[type, SourceKind] = {np.ndarray: InMemoryKind(), np.memmap: ChunkedKind()}


def register_source_kind(array_type: type, kind: SourceKind) -> None:
    """Serve arrays of ``array_type`` (and its subclasses) by ``kind``."""
    SOURCE_KINDS[array_type] = kind


def source_kind(X: Any) -> SourceKind:
    """The kind registered for ``X``'s type (nearest in its method resolution order); lists, tuples and other
    array-likes are read into memory."""
    for cls in type(X).__mro__:
        kind = SOURCE_KINDS.get(cls)
        if kind is not None:
            return kind
    if type(X).__module__.startswith("dask.") and not _DASK_REGISTERED:
        return _register_dask_kind(X)
    return SOURCE_KINDS[np.ndarray]


_DASK_REGISTERED: list[bool] = []


def _register_dask_kind(X: Any) -> SourceKind:
    """A dask array met before :mod:`cnnrelax.core.dask_patches` was imported: import it (it registers its kind; the
    core does not import dask otherwise) and look again."""
    from . import dask_patches  # noqa: F401  (imported for its registration)

    _DASK_REGISTERED.append(True)
    return source_kind(X)
