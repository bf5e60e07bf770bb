"""Run jobs on a Dask cluster, by scheduler address: the :class:`~cnnrelax.executor.Executor` for scale-out.

Selected by ``--dask-scheduler tcp://HOST:PORT`` (``CNNRELAX_DASK_SCHEDULER``). The web process only
*connects* to a scheduler (``distributed.Client(address)``); it never starts a cluster of its own.

What stays exactly as with local worker processes:

- The mathematics: each Dask task is :func:`run_dask_ticket`, which is the local workers' own
  :func:`~cnnrelax.executor.run_local_ticket` (so :func:`~cnnrelax.executor.execute_job`, then
  :func:`cnnrelax.jobs.run_job`), with the same :class:`~cnnrelax.executor.JobTicket` in and
  :class:`~cnnrelax.executor.JobOutcome` out. Solves, trials and experiment cells are all tickets.
- The SQLite store is the source of truth. The :class:`~cnnrelax.executor.Dispatcher` claims jobs,
  records outcomes under their attempt, requeues a job whose run was lost, and gives up after
  ``MAX_ATTEMPTS``. This executor only moves tickets to the cluster and outcomes back.
- Cancellation and progress: Dask cannot interrupt a running task, so the task's ``should_stop`` polls
  the job's row in the store (the cancel flag, the attempt, the time limit) exactly as a local worker
  does, and writes progress there. Workers therefore need the service's data dir at the same path, on
  the same host (``compose.yaml`` mounts one volume at ``/data`` on the API and on every worker): SQLite's
  WAL does not work over a network filesystem.

Faults:

- A worker killed mid-task: the scheduler reruns the task on another worker (up to its
  ``distributed.scheduler.allowed-failures``); past that the task fails with ``KilledWorker``, the
  dispatcher requeues the job and it is submitted again.
- The scheduler unreachable: :meth:`DaskExecutor.healthy` is false (so ``/readyz`` answers 503),
  :attr:`DaskExecutor.capacity` is 0 (so the dispatcher claims nothing: accepted jobs stay ``queued``),
  tickets in flight fail (their jobs are requeued), and a background thread reconnects; once the
  scheduler and at least one worker are back, the queue drains.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from .executor import Executor, JobOutcome, JobTicket, _warm_worker, run_local_ticket
from .store import Store

log = logging.getLogger("cnnrelax.dask")

#: Seconds one connection attempt to the scheduler may take.
CONNECT_TIMEOUT_S = 3.0
#: Seconds between two looks at the scheduler (liveness and worker count) while connected.
HEARTBEAT_S = 0.5
#: Seconds between two connection attempts while the scheduler is unreachable.
RECONNECT_S = 1.0
#: Tickets handed to the cluster beyond its thread count, so no worker waits on a round trip.
PREFETCH_PER_THREAD = 1


class SchedulerUnavailable(ConnectionError):
    """The Dask scheduler is unreachable (or lost a submitted task); the job is requeued."""


def run_dask_ticket(ticket: JobTicket, database_path: str) -> JobOutcome:
    """The Dask task: the local workers' :func:`~cnnrelax.executor.run_local_ticket`, on a Dask worker.

    The control polls the job's SQLite row (cancel flag, attempt) and enforces the time limit; its
    "orphaned" check watches the worker's own parent (the Dask nanny), as a local worker watches the
    web process.
    """
    return run_local_ticket(ticket, database_path, os.getppid())


class _WarmUpPlugin(WorkerPlugin):
    """A Dask worker plugin: import the core and solve a tiny problem once when a worker starts."""

    name = "cnnrelax-warm-up"
    idempotent = True

    def setup(self, worker: Any) -> None:  # noqa: ARG002 - the WorkerPlugin signature
        try:
            _warm_worker()
        except Exception:  # noqa: BLE001 - a failed warm-up only costs the first job some time
            log.exception("warm-up on a Dask worker failed")


@dataclass
class ClusterState:
    """What the executor last saw of the cluster."""

    connected: bool = False
    workers: int = 0
    threads: int = 0
    error: str | None = "not connected yet"
    checked_at: float = 0.0


class DaskExecutor(Executor):
    """Tickets as Dask tasks on the cluster behind ``scheduler_address``; outcomes as ``cf.Future``."""

    def __init__(self, scheduler_address: str, database_path: str | None = None, *, store: Store | None = None,
                 workers: int | None = None, connect_timeout_s: float = CONNECT_TIMEOUT_S,
                 heartbeat_s: float = HEARTBEAT_S, reconnect_s: float = RECONNECT_S,
                 prefetch_per_thread: int = PREFETCH_PER_THREAD) -> None:
        """Connect (in the background, from :meth:`start`) to ``scheduler_address``.

        The job store is given as ``database_path`` or ``store`` (its file must be reachable at the same
        path on the workers). ``workers`` (the local-pool size setting) is accepted and ignored: the
        cluster's own thread count sets :attr:`capacity`.
        """
        if database_path is None:
            if store is None:
                raise ValueError("DaskExecutor needs the job store: pass database_path or store")
            database_path = str(store.path)
        del workers
        self.scheduler_address = scheduler_address
        self.database_path = str(database_path)
        self.connect_timeout_s = connect_timeout_s
        self.heartbeat_s = heartbeat_s
        self.reconnect_s = reconnect_s
        self.prefetch_per_thread = prefetch_per_thread
        self.state = ClusterState()
        self._client: Any = None
        self._lock = threading.RLock()
        self._outstanding: dict[str, tuple[cf.Future[JobOutcome], Any]] = {}
        self._stopping = threading.Event()
        self._kick = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the Executor interface -------------------------------------------------------------------
    @property
    def capacity(self) -> int:  # type: ignore[override]  # a live figure, not a constant
        """Jobs the dispatcher may have in flight: the cluster's threads (plus prefetch); 0 when unreachable."""
        state = self.state
        if not state.connected or state.workers == 0:
            return 0
        return state.threads * (1 + self.prefetch_per_thread)

    def start(self) -> None:
        """Start the background thread that connects, watches the scheduler and reconnects."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stopping.clear()
                self._thread = threading.Thread(target=self._supervise, name="cnnrelax-dask", daemon=True)
                self._thread.start()

    def submit(self, ticket: JobTicket) -> cf.Future[JobOutcome]:
        """Submit one ticket as a Dask task; the returned future resolves to its outcome."""
        outcome: cf.Future[JobOutcome] = cf.Future()
        outcome.set_running_or_notify_cancel()
        with self._lock:
            client = self._client
            if client is None or not self.state.connected:
                outcome.set_exception(SchedulerUnavailable(self._unavailable_sentence()))
                return outcome
            key = f"cnnrelax-{ticket.kind}-{ticket.job_id}-{ticket.attempt}-{uuid.uuid4().hex[:8]}"
            task = client.submit(run_dask_ticket, ticket, self.database_path, key=key, pure=False)
            self._outstanding[key] = (outcome, task)
        task.add_done_callback(lambda done, key=key: self._task_done(key, done))
        return outcome

    def cancel(self, job_id: str) -> None:
        """Nothing to do: the task's ``should_stop`` reads the cancel flag from the store (Dask cannot
        interrupt a running task, and cancelling its future would only lose the outcome)."""

    def healthy(self) -> bool:
        """True when the scheduler answers and at least one worker is registered."""
        state = self.state
        return state.connected and state.workers > 0

    def describe(self) -> str:
        """One sentence on the cluster, for ``/readyz`` and logs."""
        state = self.state
        if not state.connected:
            return self._unavailable_sentence()
        if state.workers == 0:
            return f"The Dask scheduler at {self.scheduler_address} has no workers."
        return (f"The Dask scheduler at {self.scheduler_address} answers with {state.workers} worker(s), "
                f"{state.threads} thread(s).")

    def restart(self) -> None:
        """Fail every ticket in flight (their jobs are requeued; a task still running on a worker stops at
        its next look at the store, which then names a newer attempt) and reconnect if the link is down."""
        self._fail_outstanding(SchedulerUnavailable("The job's run on the Dask cluster was abandoned."),
                               cancel_tasks=True)
        self._kick.set()

    def shutdown(self) -> None:
        """Close the connection; tickets in flight fail (the dispatcher requeues their jobs)."""
        self._stopping.set()
        self._kick.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        self._fail_outstanding(SchedulerUnavailable("The service is shutting down."), cancel_tasks=False)
        self._close_client()

    # -- outcomes ---------------------------------------------------------------------------------
    def _task_done(self, key: str, task: Any) -> None:
        """A Dask future finished, errored or was cancelled: resolve the matching outcome future."""
        with self._lock:
            entry = self._outstanding.pop(key, None)
        if entry is None:
            return
        outcome, _ = entry
        if outcome.done():
            return
        try:
            status = task.status
            if status == "finished":
                outcome.set_result(task.result(timeout=30))
            elif status == "error":
                outcome.set_exception(task.exception(timeout=30))
            else:  # cancelled or lost with the scheduler
                outcome.set_exception(SchedulerUnavailable(f"The Dask task ended {status}: the scheduler went away."))
        except BaseException as exc:  # noqa: BLE001 - whatever happened, the dispatcher must hear of it
            if not outcome.done():
                outcome.set_exception(SchedulerUnavailable(f"The task's outcome was lost ({type(exc).__name__})."))

    def _fail_outstanding(self, error: BaseException, *, cancel_tasks: bool) -> None:
        with self._lock:
            entries = list(self._outstanding.values())
            self._outstanding.clear()
            client = self._client
        if cancel_tasks and client is not None and entries and self.state.connected:
            try:
                client.cancel([task for _, task in entries], force=True)
            except Exception:  # noqa: BLE001 - the scheduler may be gone; the tasks die with it
                log.debug("could not cancel abandoned Dask tasks", exc_info=True)
        for outcome, _ in entries:
            if not outcome.done():
                outcome.set_exception(error)

    # -- the connection ---------------------------------------------------------------------------
    def _unavailable_sentence(self) -> str:
        reason = self.state.error or "not connected"
        return f"The Dask scheduler at {self.scheduler_address} is unreachable ({reason})."

    def _set_state(self, **changes: Any) -> None:
        previous = self.state
        self.state = ClusterState(**{**previous.__dict__, **changes, "checked_at": time.monotonic()})
        if previous.connected != self.state.connected or (previous.workers == 0) != (self.state.workers == 0):
            log.info("dask cluster: %s", self.describe(), extra={"scheduler": self.scheduler_address})

    def _close_client(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            try:
                client.close(timeout=2)
            except Exception:  # noqa: BLE001 - closing a client whose scheduler died may complain
                log.debug("closing the Dask client failed", exc_info=True)

    def _connect(self) -> None:
        from distributed import Client

        try:
            client = Client(self.scheduler_address, timeout=self.connect_timeout_s, set_as_default=False)
        except Exception as exc:  # noqa: BLE001 - unreachable: say so and try again later
            self._set_state(connected=False, workers=0, threads=0, error=f"{type(exc).__name__}: {exc}")
            return
        try:
            client.register_plugin(_WarmUpPlugin(), name=_WarmUpPlugin.name)
        except Exception:  # noqa: BLE001 - warm-up is an optimisation
            log.warning("could not register the warm-up plugin on the Dask cluster", exc_info=True)
        with self._lock:
            self._client = client
        self._heartbeat()

    def _heartbeat(self) -> None:
        """Ask the scheduler for its worker count; on any failure mark the link down and drop the client."""
        with self._lock:
            client = self._client
        if client is None:
            return
        try:
            if client.status != "running":
                raise SchedulerUnavailable(f"client {client.status}")
            info = client.scheduler_info(n_workers=0)
            self._set_state(connected=True, workers=int(info.get("n_workers", 0)),
                            threads=int(info.get("total_threads", 0)), error=None)
        except Exception as exc:  # noqa: BLE001 - the scheduler went away
            self._set_state(connected=False, workers=0, threads=0, error=f"{type(exc).__name__}: {exc}")
            self._fail_outstanding(SchedulerUnavailable(self._unavailable_sentence()), cancel_tasks=False)
            self._close_client()

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            try:
                if self._client is None:
                    self._connect()
                else:
                    self._heartbeat()
            except Exception:  # noqa: BLE001 - the supervisor must outlive a bad moment
                log.exception("dask supervisor step failed")
            wait = self.heartbeat_s if self.state.connected else self.reconnect_s
            self._kick.wait(wait)
            self._kick.clear()
