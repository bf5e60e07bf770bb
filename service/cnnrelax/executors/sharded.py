"""A solve on a stored dataset with ``X`` spread over the Dask workers (issue 20): the dataset opened as a dask array.

Used by :class:`~cnnrelax.executors.dask.DaskExecutor` when ``CNNRELAX_DASK_SHARED_DATA_DIR`` says where the workers
see the API's data directory (a volume they share), for a solve whose dataset is stored as ``X.npy`` and ``y.npy``
in its directory (``<data_dir>/datasets/<id>/``). Then the ticket carries the dataset's path as the workers see it,
not its arrays, and the job runs as :func:`run_sharded_ticket`:

- the *driver* (the solver loop, its LPs, the working set) runs in that Dask task, seceded from its worker's thread
  pool (``distributed.worker_client``), so the worker's thread is free for the passes;
- ``X`` is :func:`open_sharded_dataset`: a dask array of row chunks of about
  :data:`~cnnrelax.core.patches.CHUNK_BYTES`, each read from the memory-mapped ``X.npy`` by the task that needs it
  (:class:`~cnnrelax.core.npy_rows.NpyRows`: the path travels, not the data). Every pass of the solve runs as tasks
  on the workers (:mod:`cnnrelax.core.dask_patches`); the driver gets per-row results (``X / m`` in size), sums and
  the working set's rows. ``y`` (``n`` numbers) is read by the driver.

Why not persisted: reading the chunks at every pass keeps each worker's memory at a chunk per thread whatever the
size of ``X``, so a dataset larger than the whole cluster's memory still solves; the file's pages stay in the
host's page cache between passes. ``persist=True`` (for a caller that knows the cluster holds ``X``) keeps the
chunks in the workers' memory instead (``bench/bench_scale_dask.py`` measures both).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..core.npy_rows import NpyRows
from ..core.patches import CHUNK_BYTES
from ..types import JobKind
from .base import JobOutcome, JobTicket

#: The job kinds that run sharded when their dataset allows it.
SHARDED_KINDS = frozenset({JobKind.solve})


def sharded_files(path: Path | str) -> tuple[Path, Path] | None:
    """``(X.npy, y.npy)`` of a dataset stored as a directory of the two, else None (an ``.npz`` from before)."""
    directory = Path(path)
    x_path, y_path = directory / "X.npy", directory / "y.npy"
    if directory.is_dir() and x_path.is_file() and y_path.is_file():
        return x_path, y_path
    return None


def open_sharded_dataset(path: Path | str, client: Any = None, *, persist: bool = False,
                         chunk_bytes: int = CHUNK_BYTES) -> tuple[Any, np.ndarray]:
    """``X`` of the dataset directory ``path`` as a dask array of row chunks read by the workers, and ``y``.

    Parameters
    ----------
    path : a dataset's directory holding ``X.npy`` and ``y.npy``, as the process running this sees it (and the
        workers: the same path).
    client : the ``distributed.Client`` (needed with ``persist`` only; the passes use the current client).
    persist : keep the chunks in the workers' memory (``client.persist``, waited for) instead of reading them at
        every pass.
    chunk_bytes : bytes of ``X`` per chunk.

    Returns
    -------
    ``(X, y)``: a ``dask.array.Array`` (never computed here) and ``y`` in memory.
    """
    import dask.array as da
    from dask.base import tokenize

    files = sharded_files(path)
    if files is None:
        raise FileNotFoundError(f"{path} holds no X.npy and y.npy")
    x_path, y_path = files
    rows = NpyRows.open(x_path)
    row_bytes = max(1, int(np.prod(rows.shape[1:])) * rows.dtype.itemsize)
    chunk_rows = max(1, chunk_bytes // row_bytes)
    y = np.load(y_path, allow_pickle=False)
    if persist:
        if client is None:
            raise ValueError("persist=True needs the distributed client")
        return persisted_evenly(rows, chunk_rows, client), y
    stat = os.stat(x_path)
    # inline_array: each chunk's read is a task of its own with no dependency, so the scheduler starts reads only as
    # workers free up (a worker holds the chunks it computes, not every chunk at once).
    X = da.from_array(rows, chunks=(chunk_rows,) + rows.shape[1:], asarray=True, inline_array=True,
                      meta=np.empty((0,) * rows.ndim, dtype=rows.dtype),
                      name="npy-rows-" + tokenize(str(x_path), stat.st_mtime_ns, stat.st_size, chunk_rows))
    return X, y


def persisted_evenly(rows: NpyRows, chunk_rows: int, client: Any) -> Any:
    """The rows as a dask array whose chunks are read by, and kept on, the workers in contiguous even shares (the
    first blocks on the first worker, and so on), each read where it stays: the scheduler's own placement can leave
    one worker with half as much again as another, and a worker limited to a little more than its share then dies."""
    import dask
    import dask.array as da
    from distributed import wait

    workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
    n = rows.shape[0]
    starts = list(range(0, n, chunk_rows))
    read = dask.delayed(rows.__getitem__, pure=True)
    parts = []
    for b, start in enumerate(starts):
        stop = min(n, start + chunk_rows)
        block = da.from_delayed(read(slice(start, stop)), shape=(stop - start,) + rows.shape[1:], dtype=rows.dtype)
        parts.append(client.persist(block, workers=[workers[b * len(workers) // len(starts)]],
                                    allow_other_workers=False))
    X = da.concatenate(parts, axis=0)
    wait(X)
    return X


def run_sharded_ticket(ticket: JobTicket) -> JobOutcome:
    """The Dask task of a solve on a sharded dataset: open ``X`` (the ticket's ``dataset_path``, the workers' view of
    the dataset's directory) as a dask array, then run the ticket as :func:`~cnnrelax.executors.dask.run_dask_ticket`
    does, seceded from the worker's thread pool so that the passes' tasks can run on every worker, this one too."""
    from distributed import worker_client

    from .dask import run_dask_ticket

    if ticket.dataset_path is None:
        return run_dask_ticket(ticket)
    with worker_client():
        try:
            arrays = open_sharded_dataset(ticket.dataset_path)
        except FileNotFoundError:
            from ..types import JobStatus

            return JobOutcome(JobStatus.failed, None, "The job's dataset is no longer stored.", 0.0)
        return run_dask_ticket(dataclasses.replace(ticket, arrays=arrays, dataset_path=None))
