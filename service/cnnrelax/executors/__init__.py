"""Where jobs run: an :class:`Executor` (local worker processes, or a Dask cluster) fed by a :class:`Dispatcher`.

- :mod:`.base`: the ticket in, the outcome out, :class:`BaseJobControl` (deadline, stop polling, progress
  pacing) and the :class:`Executor` interface.
- :mod:`.worker`: the worker entry point every executor runs, :func:`execute_job` (it runs
  :func:`cnnrelax.jobs.run_job`, the job function the CLI runs in-process too).
- :mod:`.local`: :class:`LocalProcessExecutor`, spawned worker processes each stoppable alone.
- :mod:`.dask`: :class:`~.dask.DaskExecutor`, tickets as Dask tasks (imported only when configured).
- :mod:`.dispatcher`: :class:`Dispatcher`, the store's queue to the executor and outcomes back.

A new executor subclasses :class:`Executor` (and :class:`BaseJobControl` for its workers' side), runs
:func:`execute_job` wherever its workers are, and is chosen in :func:`build_executor`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import MIB, BaseJobControl, Executor, JobControl, JobOutcome, JobTicket, WorkerDied
from .dispatcher import Dispatcher
from .local import LocalProcessExecutor
from .worker import execute_job

if TYPE_CHECKING:
    from ..settings import Settings
    from ..store import Store

__all__ = ["BaseJobControl", "Dispatcher", "Executor", "JobControl", "JobOutcome", "JobTicket",
           "LocalProcessExecutor", "WorkerDied", "build_executor", "execute_job"]


def build_executor(settings: Settings, store: Store) -> Executor:
    """The executor the settings ask for: the Dask executor when ``dask_scheduler`` is set, else local processes.

    Parameters
    ----------
    settings : Settings
        ``dask_scheduler``, ``workers``, ``log_level``, ``worker_memory_limit_mb``.
    store : Store
        The job store (local workers poll its file; the Dask executor copies progress into it).

    Returns
    -------
    Executor
        Not started yet.
    """
    if settings.dask_scheduler:
        from .dask import DaskExecutor

        return DaskExecutor(settings.dask_scheduler, store=store, workers=settings.workers,
                            shared_data_dir=settings.dask_shared_data_dir)
    return LocalProcessExecutor(str(store.path), settings.workers, settings.log_level,
                                memory_limit_bytes=settings.worker_memory_limit_mb * MIB)
