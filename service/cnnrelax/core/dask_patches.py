"""The patch tensor of a dask array: every pass over ``X`` runs on the Dask workers that hold (or read) its rows.

Registered with :func:`cnnrelax.core.patches.register_source_kind` for ``dask.array.Array``, so
``make_problem(X_dask, y)`` solves with ``X`` spread over a cluster (whichever scheduler is current: a
``distributed.Client``, ``worker_client()`` inside a task, or dask's threads without one). ``X`` is chunked by rows
only (whole rows per block; a column-chunked array is rechunked once). What travels, per pass:

- ``map_rows(kernel, *row_args)``: one task per block of rows, ``kernel(patches(X_b), *args_b)``, run where the block
  is (its chunk persisted on a worker, or read there from a file just before); each task is sent its rows' slice of
  every row argument (``(n_b, k)`` pre-activation weights, ``(n_b,)`` labels) and sends back its per-row outputs.
  Both are of order ``n k`` (``X / m``), never ``X``'s ``n d``.
- ``reduce_rows(kernel, *row_args)``: the same tasks, their outputs (``(m,)``, ``(m, m)``, numbers) summed pairwise in
  a fixed balanced tree *on the workers*; one sum comes back.
- ``take(rows)``: one task per block holding some of ``rows``; only those rows (the working set) come back.
- validation (:meth:`DaskKind.prepare`): shape and dtype from the array's metadata, finiteness as one count per block
  (and the first bad index), computed on the workers: ``X`` is never computed on the driver.

The tree is fixed by the chunking, not by timing, so a solve gives the same bits every run on the same chunks; on a
problem that fits in memory it equals the in-memory answer up to the order of the sums (about ``1e-15`` relative).
:data:`TRAFFIC` counts the bytes sent to and received from the tasks (row arguments and results; ``bench/`` reads
it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence, TypeVar

import dask
import dask.array as da
import numpy as np
from numpy.typing import NDArray

from ..errors import InvalidParameterError
from .patches import (
    PASSES,
    InMemoryPatches,
    Kernel,
    PatchLayout,
    PatchSource,
    SourceBase,
    _add,
    _check_shape,
    _not_finite,
    register_source_kind,
)

__all__ = ["DaskKind", "DaskPatches", "TRAFFIC", "Traffic"]

FloatArray = NDArray[np.float64]
R = TypeVar("R")


@dataclass
class Traffic:
    """Bytes of arrays sent to pass tasks (row arguments) and received from them (results), since :meth:`reset`."""

    sent: int = 0
    received: int = 0

    def reset(self) -> tuple[int, int]:
        out, self.sent, self.received = (self.sent, self.received), 0, 0
        return out


#: The process's count of what its dask passes moved.
TRAFFIC = Traffic()


def _nbytes(value: Any) -> int:
    if isinstance(value, tuple):
        return sum(_nbytes(part) for part in value)
    return int(np.asarray(value).nbytes)


def _boxed(value: Any) -> NDArray[np.object_]:
    """A block's output as a one-element object array (dask's blocks are arrays; a partial sum may be a tuple)."""
    box = np.empty(1, dtype=object)
    box[0] = value
    return box


def _run_kernel(rows: FloatArray, *args: Any, kernel: Kernel, layout: PatchLayout) -> NDArray[np.object_]:
    """On a worker: the kernel on one block's patches (made from its rows of ``X`` by the layout)."""
    return _boxed(kernel(layout.apply(rows), *args))


def _pick(rows: FloatArray, local: NDArray[np.intp]) -> NDArray[np.object_]:
    """On a worker: the block's rows at ``local`` (a gather of the working set)."""
    return _boxed(np.ascontiguousarray(rows[local], dtype=np.float64))


def _nonfinite(rows: FloatArray) -> NDArray[np.object_]:
    """On a worker: how many entries of a block are not finite, and the first (block-local index)."""
    bad = ~np.isfinite(rows)
    count = int(np.count_nonzero(bad))
    if not count:
        return _boxed((0, None))
    i, j = np.argwhere(bad)[0]
    return _boxed((count, (int(i), int(j))))


def _unbox(box: NDArray[np.object_]) -> Any:
    return box[0]


def _unboxed_add(total: Any, part: Any) -> Any:
    return _add(_unbox(total) if isinstance(total, np.ndarray) and total.dtype == object else total,
                _unbox(part) if isinstance(part, np.ndarray) and part.dtype == object else part)


def _tree_sum(parts: list[Any]) -> Any:
    """A balanced tree of pairwise sums of delayed boxed values (fixed by their order: the same bits every run)."""
    add = dask.delayed(_unboxed_add, pure=True)
    if len(parts) == 1:
        return dask.delayed(_unbox, pure=True)(parts[0])
    while len(parts) > 1:
        parts = [add(parts[i], parts[i + 1]) if i + 1 < len(parts) else parts[i] for i in range(0, len(parts), 2)]
    return parts[0]


def on_blocks(X: Any, function: Callable[..., NDArray[np.object_]],
              per_block: Sequence[tuple[Any, ...] | None] | None = None, **kwargs: Any) -> list[Any]:
    """One delayed task per row block of ``X``: ``function(block, *per_block[b], **kwargs)``, boxed.

    Each task depends on its block's key alone (a chunk persisted on a worker, or the task that reads it from a
    file), so the scheduler runs it where the block is and the block never moves; the arguments in
    ``per_block[b]`` (slices of row arguments) are embedded in that task only. Blocks with ``per_block[b] is None``
    get no task (their entry is None).
    """
    run = dask.delayed(function, pure=True)
    tasks: list[Any] = []
    for b, block in enumerate(X.to_delayed(optimize_graph=True).ravel()):
        args = () if per_block is None else per_block[b]
        tasks.append(None if args is None else run(block, *args, **kwargs))
    return tasks


class DaskPatches(SourceBase):
    """A row-chunked dask array of ``X`` as a :class:`~cnnrelax.core.patches.PatchSource` (module docstring)."""

    def __init__(self, X: Any, layout: PatchLayout) -> None:
        super().__init__(X, layout)  # X: the dask array (never computed whole)
        self.offsets = np.concatenate([[0], np.cumsum(X.chunks[0])]).astype(np.intp)

    def _tasks(self, kernel: Kernel, row_args: tuple[NDArray[Any], ...]) -> list[Any]:
        per_block: list[tuple[Any, ...] | None] = []
        for start, stop in zip(self.offsets[:-1], self.offsets[1:], strict=True):
            pieces = tuple(np.ascontiguousarray(np.asarray(arg)[start:stop]) for arg in row_args)
            TRAFFIC.sent += sum(piece.nbytes for piece in pieces)
            per_block.append(pieces)
        return on_blocks(self._X, _run_kernel, per_block, kernel=kernel, layout=self._layout)

    def map_rows(self, kernel: Kernel, *row_args: NDArray[Any]) -> NDArray[Any]:
        PASSES.tick()
        parts = [_unbox(box) for box in dask.compute(*self._tasks(kernel, row_args))]
        TRAFFIC.received += sum(_nbytes(part) for part in parts)
        if len(parts) == 1:
            return np.asarray(parts[0])
        out: NDArray[Any] = np.concatenate([np.asarray(part) for part in parts], axis=0)
        return out

    def reduce_rows(self, kernel: Callable[..., R], *row_args: NDArray[Any]) -> R:
        PASSES.tick()
        (total,) = dask.compute(_tree_sum(self._tasks(kernel, row_args)))
        TRAFFIC.received += _nbytes(total)
        result: R = total
        return result

    def _rows(self, rows: NDArray[np.intp]) -> FloatArray:
        """The raw rows of ``X`` at ``rows`` (in that order), gathered on the cluster: one task per block that holds
        some of them; only those rows come back."""
        rows = np.asarray(rows, dtype=np.intp).reshape(-1)
        TRAFFIC.sent += rows.nbytes
        d = int(self._X.shape[1])
        if rows.size == 0:
            return np.zeros((0, d))
        unique, inverse = np.unique(rows, return_inverse=True)
        owner = np.searchsorted(self.offsets, unique, side="right") - 1
        per_block: list[tuple[Any, ...] | None] = [None] * (len(self.offsets) - 1)
        for b in np.unique(owner).tolist():
            per_block[b] = (unique[owner == b] - self.offsets[b],)
        tasks = [task for task in on_blocks(self._X, _pick, per_block) if task is not None]
        picked = np.concatenate([_unbox(box) for box in dask.compute(*tasks)], axis=0)
        TRAFFIC.received += picked.nbytes
        out: FloatArray = picked[inverse.reshape(-1)]
        return out

    def take(self, rows: NDArray[np.intp]) -> FloatArray:
        return self._layout.apply(self._rows(rows))

    def dense(self) -> FloatArray:
        raise NotImplementedError(
            "The whole patch tensor of a dask array is not brought to one process: a pass over X must use the "
            "source's map_rows, reduce_rows or take (cnnrelax.core.patches).")

    def on_rows(self, rows: NDArray[np.intp]) -> PatchSource:
        return InMemoryPatches(self._rows(rows), self._layout)


class DaskKind:
    """Dask arrays: checked on the workers (a count of non-finite entries per block), served by :class:`DaskPatches`."""

    def prepare(self, X: Any) -> Any:
        dtype = np.dtype(X.dtype)
        if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer) or dtype == np.bool_):
            raise InvalidParameterError("X", f"X must be an array of real numbers, got a dask array of dtype {dtype}.")
        if any(np.isnan(size) for size in X.shape):
            raise InvalidParameterError(
                "X", "X is a dask array of unknown row count: call compute_chunk_sizes() on it first.")
        _check_shape("X", tuple(int(s) for s in X.shape), 2)
        if X.numblocks[1] != 1:
            X = X.rechunk({1: -1})  # whole rows per block: a patch never spans two blocks
        if dtype != np.float64:
            X = X.astype(np.float64)
        if np.issubdtype(dtype, np.floating):
            found = [_unbox(box) for box in dask.compute(*on_blocks(X, _nonfinite))]
            count = sum(c for c, _ in found)
            if count:
                starts = np.concatenate([[0], np.cumsum(X.chunks[0])])
                block, (i, j) = next((b, first) for b, (c, first) in enumerate(found) if c)
                raise _not_finite("X", count, (int(starts[block]) + i, j))
        return X

    def open(self, X: Any, layout: PatchLayout) -> PatchSource:
        return DaskPatches(X, layout)


register_source_kind(da.Array, DaskKind())
