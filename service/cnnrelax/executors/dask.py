"""Run jobs on a Dask cluster, by scheduler address: the :class:`~cnnrelax.executors.base.Executor` for scale-out.

Selected by ``--dask-scheduler tcp://HOST:PORT`` (``CNNRELAX_DASK_SCHEDULER``). The web process only
*connects* to a scheduler (``distributed.Client(address)``); it never starts a cluster of its own.

Workers are independent of the API's filesystem: they may run on any machine that reaches the scheduler.

- The mathematics: each Dask task is :func:`run_dask_ticket`, which runs
  :func:`~cnnrelax.executors.worker.execute_job` (so :func:`cnnrelax.jobs.run_job`), the one place the
  mathematics runs, with the same :class:`~cnnrelax.executors.base.JobTicket` in and
  :class:`~cnnrelax.executors.base.JobOutcome` out. Solves, trials and experiment cells are all tickets. A
  ticket sent to the cluster carries its dataset's arrays, never a path on the API's disk; with
  ``CNNRELAX_DASK_SHARED_DATA_DIR`` (the data directory as the workers see it) a solve on a dataset stored as
  ``X.npy`` and ``y.npy`` carries that path instead and runs with ``X`` spread over the workers
  (:mod:`cnnrelax.executors.sharded`).
- The SQLite store (on the API's host only) is the source of truth. The
  :class:`~cnnrelax.executors.dispatcher.Dispatcher` claims jobs, records outcomes under their attempt, requeues a
  job whose run was lost, and gives up after ``MAX_ATTEMPTS``. This executor only moves tickets to the
  cluster and outcomes back.
- TLS: with ``CNNRELAX_DASK_TLS_CA_FILE``, ``CNNRELAX_DASK_TLS_CERT`` and ``CNNRELAX_DASK_TLS_KEY`` the API
  connects to a ``tls://`` scheduler with a ``distributed.security.Security`` (:func:`dask_security`).
- Cancellation, time limit, progress: Dask cannot interrupt a running task, so the task runs with a
  :class:`DaskJobControl` whose ``should_stop`` looks (at most every ``CANCEL_POLL_S``) at a
  ``distributed.Event`` named after the job and attempt, which :meth:`DaskExecutor.cancel` sets from the
  web process; the time limit is the ticket's, counted from the task's start. A task whose Dask future
  was released (the executor abandoned the run, or the web process went away) stops as "orphaned".
  Progress goes into a ``distributed.Variable`` named after the job and attempt (at most every
  ``PROGRESS_WRITE_S``); a thread of the web process reads the Variables of the tickets in flight and
  writes them with :meth:`~cnnrelax.store.Store.set_progress` under the ticket's attempt, as local
  workers do. Events (trials, rounds, cells) go the same way through a ``distributed.Queue`` per run into
  :meth:`~cnnrelax.store.Store.append_events`; a finished task's last progress and events are copied before
  its outcome is resolved, so a job's log holds every trial before its ``end`` event. The Event, Variable
  and Queue are removed when the ticket finishes. A task announces its start in its Variable, and the
  dispatcher's hard stop (a run still going 1 s after a cancel request or its time limit, counted from that
  start) abandons that run alone (:meth:`DaskExecutor.hard_stop`): its outcome is recorded at once, its
  future cancelled; no other run and no worker is touched.

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

import asyncio
import concurrent.futures as cf
import dataclasses
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from ..store import Store, load_dataset_file
from ..types import JobStatus, StopReason
from .base import (
    PROGRESS_WRITE_S,
    BaseJobControl,
    Executor,
    JobOutcome,
    JobTicket,
    hard_stop_outcome,
)
from .sharded import SHARDED_KINDS, run_sharded_ticket, sharded_files
from .worker import execute_job, warm_worker

log = logging.getLogger("cnnrelax.dask")

#: Seconds one connection attempt to the scheduler may take.
CONNECT_TIMEOUT_S = 3.0
#: Seconds between two looks at the scheduler (liveness and worker count) while connected.
HEARTBEAT_S = 0.5
#: Seconds between two connection attempts while the scheduler is unreachable.
RECONNECT_S = 1.0
#: Tickets handed to the cluster beyond its thread count, so no worker waits on a round trip.
PREFETCH_PER_THREAD = 1
#: Seconds between two reads of the progress Variables of the tickets in flight (web process).
PROGRESS_POLL_S = 0.25


def dask_security(settings: Any) -> Any:
    """The ``distributed.security.Security`` of the API's connection to the scheduler, from the settings.

    Parameters
    ----------
    settings : cnnrelax.settings.Settings
        ``dask_tls_ca_file``, ``dask_tls_cert`` and ``dask_tls_key`` (PEM files).

    Returns
    -------
    distributed.security.Security or None
        None when none of the three is set (plain TCP); else TLS required, the scheduler's certificate checked
        against the CA, the API presenting its own certificate. Raises ``ValueError`` naming a missing or
        unreadable file.
    """
    names = ("dask_tls_ca_file", "dask_tls_cert", "dask_tls_key")
    values = {name: getattr(settings, name, None) for name in names}
    if all(value is None for value in values.values()):
        return None
    for name, value in values.items():
        variable = "CNNRELAX_" + name.upper()
        if value is None:
            needed = ", ".join("CNNRELAX_" + n.upper() for n in names)
            raise ValueError(f"{variable} is not set: Dask over TLS needs {needed}.")
        if not Path(value).is_file():
            raise ValueError(f"{variable}={value} is not a readable file.")
    from distributed.security import Security

    return Security(tls_ca_file=str(values["dask_tls_ca_file"]), tls_client_cert=str(values["dask_tls_cert"]),
                    tls_client_key=str(values["dask_tls_key"]), require_encryption=True)


class SchedulerUnavailable(ConnectionError):
    """The Dask scheduler is unreachable (or lost a submitted task); the job is requeued."""


def stop_event_name(job_id: str, attempt: int) -> str:
    """The ``distributed.Event`` that asks one run (job and attempt) to stop."""
    return f"cnnrelax-stop-{job_id}-{attempt}"


def progress_variable_name(job_id: str, attempt: int) -> str:
    """The ``distributed.Variable`` one run (job and attempt) publishes its progress in."""
    return f"cnnrelax-progress-{job_id}-{attempt}"


def events_queue_name(job_id: str, attempt: int) -> str:
    """The ``distributed.Queue`` one run (job and attempt) publishes its events in (batches of JSON text)."""
    return f"cnnrelax-events-{job_id}-{attempt}"


class DaskJobControl(BaseJobControl):
    """Control of a job running as a Dask task: no SQLite, only the scheduler.

    - ``should_stop``: the time limit (counted from the task's start), and at most every ``CANCEL_POLL_S``
      the run's stop Event (set by :meth:`DaskExecutor.cancel`) and whether the task's future was released
      (the run was abandoned, or the web process went away: "orphaned").
    - ``progress``: at most every ``PROGRESS_WRITE_S``, ``{"seq", "done", "total", "state"}`` (the partial
      state as JSON text) into the run's progress Variable, which the web process copies into the store.
    """

    def __init__(self, ticket: JobTicket, client: Any = None, task_key: Any = None) -> None:
        super().__init__(ticket.time_limit_s)
        self.ticket = ticket
        self.stop_name = stop_event_name(ticket.job_id, ticket.attempt)
        self.progress_name = progress_variable_name(ticket.job_id, ticket.attempt)
        self.task_key = task_key
        self._client = client
        self._seq = 0

    def _get_client(self) -> Any:
        if self._client is None:
            from distributed import get_client

            self._client = get_client()
        return self._client

    def _released(self) -> bool:
        """True when the worker was told to forget this task (its future is no longer wanted)."""
        if self.task_key is None:
            return False
        try:
            from distributed import get_worker

            task = get_worker().state.tasks.get(self.task_key)
        except Exception:  # noqa: BLE001 - not on a worker (a test): nothing to watch
            return False
        return task is None or task.state in ("cancelled", "released", "forgotten")

    def poll(self) -> StopReason | None:
        if self._released():
            return "orphaned"
        try:
            from distributed import Event

            if Event(self.stop_name, client=self._get_client()).is_set():
                return "cancelled"
        except Exception:  # noqa: BLE001 - the scheduler is away for a moment: look again later
            log.debug("could not read the stop event %s", self.stop_name, exc_info=True)
        return None

    def announce_start(self) -> None:
        """Publish ``seq`` 0 in the progress Variable: the web process then times the run from now."""
        try:
            from distributed import Variable

            Variable(self.progress_name, client=self._get_client()).set(
                {"seq": 0, "done": 0, "total": 0, "state": None})
        except Exception:  # noqa: BLE001 - best effort: the web process then times the run from its submission
            log.debug("could not announce the start of %s", self.progress_name, exc_info=True)

    def publish_progress(self, done: int, total: int, partial_state: dict[str, Any]) -> None:
        self._seq += 1
        state = json.dumps(partial_state, separators=(",", ":")) if partial_state else None
        try:
            from distributed import Variable

            Variable(self.progress_name, client=self._get_client()).set(
                {"seq": self._seq, "done": int(done), "total": int(total), "state": state})
        except Exception:  # noqa: BLE001 - progress is best effort; the outcome is what counts
            log.debug("could not publish progress to %s", self.progress_name, exc_info=True)

    def publish_events(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        """One batch into the run's events Queue (JSON text: no float or key survives msgpack differently)."""
        try:
            from distributed import Queue

            Queue(events_queue_name(self.ticket.job_id, self.ticket.attempt), client=self._get_client()).put(
                json.dumps(events, separators=(",", ":"), allow_nan=False))
        except Exception:  # noqa: BLE001 - events are best effort; the outcome is what counts
            log.debug("could not publish events of %s", self.ticket.job_id, exc_info=True)


def run_dask_ticket(ticket: JobTicket) -> JobOutcome:
    """The Dask task: :func:`~cnnrelax.executors.worker.execute_job` with a :class:`DaskJobControl`.

    The ticket carries its arrays (no dataset path); the task touches no file of the API's.
    """
    try:
        from distributed import get_worker

        key = get_worker().get_current_task()
    except Exception:  # noqa: BLE001 - called outside a worker (a test)
        key = None
    control = DaskJobControl(ticket, task_key=key)
    control.announce_start()
    return execute_job(ticket, control)


async def _read_variables(client: Any, names: list[str]) -> list[Any]:
    """The values of the Variables ``names`` (None for one not set), read concurrently."""
    from distributed import Variable

    async def one(name: str) -> Any:
        try:
            return await Variable(name, client=client).get(timeout=0.01, asynchronous=True)
        except (TimeoutError, asyncio.TimeoutError):
            return None

    return list(await asyncio.gather(*(one(name) for name in names), return_exceptions=True))


class _WarmUpPlugin(WorkerPlugin):  # type: ignore[misc]  # distributed enters untyped (Any)
    """A Dask worker plugin: import the core and solve a tiny problem once when a worker starts."""

    name = "cnnrelax-warm-up"
    idempotent = True

    def setup(self, worker: Any) -> None:  # noqa: ARG002 - the WorkerPlugin signature
        try:
            warm_worker()
        except Exception:  # noqa: BLE001 - a failed warm-up only costs the first job some time
            log.exception("warm-up on a Dask worker failed")


@dataclass
class _Run:
    """A ticket in flight on the cluster, as the web process tracks it."""

    outcome: cf.Future[JobOutcome]
    task: Any
    ticket: JobTicket
    submitted: float = field(default_factory=time.monotonic)
    stop_set: bool = False
    progress_seq: int = 0
    started: float | None = None


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
                 prefetch_per_thread: int = PREFETCH_PER_THREAD, security: Any = "settings",
                 shared_data_dir: str | Path | None = None) -> None:
        """Connect (in the background, from :meth:`start`) to ``scheduler_address``.

        The job store is given as ``store`` (or the path of its SQLite file, ``database_path``); only the web
        process uses it (datasets are loaded into the tickets, progress is copied into it). ``workers`` (the
        local-pool size setting) is accepted and ignored: the cluster's own thread count sets :attr:`capacity`.
        ``security`` is a ``distributed.security.Security`` (or None: plain TCP); by default it is built from
        the settings ``CNNRELAX_DASK_TLS_CA_FILE``, ``CNNRELAX_DASK_TLS_CERT`` and ``CNNRELAX_DASK_TLS_KEY``
        (:func:`dask_security`). ``shared_data_dir`` is the store's data directory as the workers see it (a shared
        volume; ``CNNRELAX_DASK_SHARED_DATA_DIR``): a solve on a dataset stored as ``X.npy`` and ``y.npy`` then runs
        with ``X`` spread over the workers (:mod:`cnnrelax.executors.sharded`) instead of inside its ticket.
        """
        if security == "settings":
            from ..settings import Settings

            security = dask_security(Settings())
        if store is None:
            if database_path is None:
                raise ValueError("DaskExecutor needs the job store: pass database_path or store")
            store = Store(Path(database_path).parent, database_name=Path(database_path).name)
        database_path = str(store.path)
        del workers
        self.store = store
        self.scheduler_address = scheduler_address
        self.database_path = str(database_path)
        self.connect_timeout_s = connect_timeout_s
        self.heartbeat_s = heartbeat_s
        self.reconnect_s = reconnect_s
        self.prefetch_per_thread = prefetch_per_thread
        self.security = security
        self.shared_data_dir = None if shared_data_dir is None else Path(shared_data_dir)
        self.state = ClusterState()
        self._client: Any = None
        self._lock = threading.RLock()
        self._outstanding: dict[str, _Run] = {}
        self._stopping = threading.Event()
        self._kick = threading.Event()
        self._thread: threading.Thread | None = None
        # The relay thread: cancel requests out, progress in, and the clean-up of finished runs.
        self._relay_kick = threading.Event()
        self._relay_thread: threading.Thread | None = None
        self._cancels: set[str] = set()
        self._finished: list[_Run] = []
        self._events_lock = threading.Lock()

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
            if self._relay_thread is None or not self._relay_thread.is_alive():
                self._relay_thread = threading.Thread(target=self._relay, name="cnnrelax-dask-relay", daemon=True)
                self._relay_thread.start()

    def submit(self, ticket: JobTicket) -> cf.Future[JobOutcome]:
        """Submit one ticket (its dataset's arrays inside) as a Dask task; the future resolves to its outcome."""
        outcome: cf.Future[JobOutcome] = cf.Future()
        outcome.set_running_or_notify_cancel()
        task_function = run_dask_ticket
        sharded = self._sharded_ticket(ticket)
        if sharded is not None:
            ticket, task_function = sharded, run_sharded_ticket
        elif ticket.dataset_path is not None and ticket.arrays is None:
            try:
                arrays = load_dataset_file(ticket.dataset_path)
            except FileNotFoundError:
                outcome.set_result(JobOutcome(JobStatus.failed, None, "The job's dataset is no longer stored.", 0.0))
                return outcome
            ticket = dataclasses.replace(ticket, arrays=arrays, dataset_path=None)
        with self._lock:
            client = self._client
            if client is None or not self.state.connected:
                outcome.set_exception(SchedulerUnavailable(self._unavailable_sentence()))
                return outcome
            key = f"cnnrelax-{ticket.kind}-{ticket.job_id}-{ticket.attempt}-{uuid.uuid4().hex[:8]}"
            task = client.submit(task_function, ticket, key=key, pure=False)
            self._outstanding[key] = _Run(outcome, task, ticket)
        task.add_done_callback(lambda done, key=key: self._task_done(key, done))
        return outcome

    def _sharded_ticket(self, ticket: JobTicket) -> JobTicket | None:
        """The ticket with its dataset's directory as the workers see it, when the job runs sharded: a shared data
        directory is configured, the kind is one :data:`~cnnrelax.executors.sharded.SHARDED_KINDS`, and the dataset
        is stored as ``X.npy`` and ``y.npy``; else None (its arrays travel in the ticket)."""
        if (self.shared_data_dir is None or ticket.dataset_path is None or ticket.arrays is not None
                or ticket.kind not in SHARDED_KINDS or sharded_files(ticket.dataset_path) is None):
            return None
        try:
            relative = Path(ticket.dataset_path).resolve().relative_to(self.store.data_dir.resolve())
        except ValueError:  # not under the data directory the workers share: its arrays travel
            return None
        return dataclasses.replace(ticket, dataset_path=str(self.shared_data_dir / relative))

    def cancel(self, job_id: str) -> None:
        """Set the stop Event of the job's run (from the relay thread, so the caller never waits on the
        scheduler); the task's ``should_stop`` sees it within ``CANCEL_POLL_S``. (Dask cannot interrupt a
        running task, and cancelling its future would only lose the outcome.)"""
        with self._lock:
            self._cancels.add(job_id)
        self._relay_kick.set()

    def started_at(self, job_id: str) -> float | None:
        """When the web process saw the job's task announce its start (None: not yet)."""
        with self._lock:
            for run in self._outstanding.values():
                if run.ticket.job_id == job_id:
                    return run.started
        return None

    def hard_stop(self, job_id: str, reason: StopReason) -> bool:
        """Abandon this job's run alone: its outcome resolves now, its Dask future is cancelled (the task sees
        it released at its next look and stops). Dask cannot kill one task: restarting its worker would end the
        other tasks that worker holds, so no worker is restarted."""
        with self._lock:
            key = next((key for key, run in self._outstanding.items() if run.ticket.job_id == job_id), None)
            run = self._outstanding.pop(key) if key is not None else None
            if run is not None:
                self._finished.append(run)
            client = self._client
        if run is None:
            return True
        if client is not None:
            try:
                client.cancel([run.task], force=True)
            except Exception:  # noqa: BLE001 - the scheduler may be gone; the task dies with it
                log.debug("could not cancel the Dask task of %s", job_id, exc_info=True)
        if not run.outcome.done():
            run.outcome.set_result(hard_stop_outcome(
                reason, run.ticket, "its Dask task was abandoned (it stops at its next look)",
                time.monotonic() - (run.started or run.submitted)))
        self._relay_kick.set()
        return True

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
        its next look, seeing its future released: "orphaned") and reconnect if the link is down."""
        self._fail_outstanding(SchedulerUnavailable("The job's run on the Dask cluster was abandoned."),
                               cancel_tasks=True)
        self._kick.set()

    def shutdown(self) -> None:
        """Close the connection; tickets in flight fail (the dispatcher requeues their jobs)."""
        self._stopping.set()
        self._kick.set()
        self._relay_kick.set()
        for thread in (self._thread, self._relay_thread):
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
        try:
            if task.status == "finished" and not entry.outcome.done():
                self._copy_run_tail(entry)  # its last progress and events reach the store before its outcome
        finally:
            with self._lock:  # the relay then removes the run's names (not before its tail was copied)
                self._finished.append(entry)
            self._relay_kick.set()
        outcome = entry.outcome
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
            self._finished.extend(entries)
            client = self._client
        if cancel_tasks and client is not None and entries and self.state.connected:
            # A task still running sees its future released at its next look ("orphaned") and stops.
            try:
                client.cancel([entry.task for entry in entries], force=True)
            except Exception:  # noqa: BLE001 - the scheduler may be gone; the tasks die with it
                log.debug("could not cancel abandoned Dask tasks", exc_info=True)
        for entry in entries:
            if not entry.outcome.done():
                entry.outcome.set_exception(error)
        self._relay_kick.set()

    # -- events: the runs' Queues into the store's event log ----------------------------------------
    def _drain_events(self, client: Any, run: _Run) -> None:
        """Move the batches waiting in ``run``'s events Queue into the job's event log, in order (one mover at
        a time: the relay thread and a task's completion both drain)."""
        from distributed import Queue

        with self._events_lock:
            queue = Queue(events_queue_name(run.ticket.job_id, run.ticket.attempt), client=client)
            for batch in queue.get(batch=True):  # every batch waiting, without waiting for more
                events = [(str(name), dict(data)) for name, data in json.loads(batch)]
                self.store.append_events(run.ticket.job_id, run.ticket.attempt, events)

    def _copy_run_tail(self, run: _Run) -> None:
        """A finished run's last progress and events, copied into the store (best effort) before its outcome is
        recorded, so the job's log holds every trial before its ``end`` event."""
        with self._lock:
            client = self._client if self.state.connected else None
        if client is None:
            return
        try:
            from distributed import Variable

            value = Variable(progress_variable_name(run.ticket.job_id, run.ticket.attempt), client=client).get(
                timeout=1)
            if isinstance(value, dict) and int(value.get("seq", 0)) > run.progress_seq:
                run.progress_seq = int(value["seq"])
                state = json.loads(value["state"]) if value.get("state") else None
                self.store.set_progress(run.ticket.job_id, run.ticket.attempt, int(value["done"]),
                                        int(value["total"]), state)
            self._drain_events(client, run)
        except Exception:  # noqa: BLE001 - the scheduler may be gone: the outcome still counts
            log.debug("could not copy the last progress and events of %s", run.ticket.job_id, exc_info=True)

    # -- the relay: cancel requests out, progress in, clean-up --------------------------------------
    def _relay(self) -> None:
        while not self._stopping.is_set():
            try:
                self._relay_step()
            except Exception:  # noqa: BLE001 - the relay must outlive a bad moment (the scheduler going away)
                log.debug("dask relay step failed", exc_info=True)
            self._relay_kick.wait(PROGRESS_POLL_S)
            self._relay_kick.clear()

    def _relay_step(self) -> None:
        """Set the stop Events of cancelled runs, copy fresh progress and events into the store, drop finished
        runs' names."""
        from distributed import Event, Queue, Variable

        with self._lock:
            client = self._client if self.state.connected else None
            cancels, self._cancels = self._cancels, set()
            finished, self._finished = self._finished, []
            running = list(self._outstanding.values())
        if client is None:
            return  # the scheduler is gone: the runs in flight fail and their names with it
        for run in running:
            if run.ticket.job_id in cancels and not run.stop_set:
                Event(stop_event_name(run.ticket.job_id, run.ticket.attempt), client=client).set()
                run.stop_set = True
        now = time.monotonic()
        polled = [run for run in running if now - run.submitted >= PROGRESS_WRITE_S or run.started is None]
        if polled:
            names = [progress_variable_name(run.ticket.job_id, run.ticket.attempt) for run in polled]
            values = client.sync(_read_variables, client, names, callback_timeout=10)
            for run, value in zip(polled, values, strict=True):
                if isinstance(value, dict) and run.started is None:
                    run.started = now  # the task announced its start (seq 0) or already reported progress
                if not isinstance(value, dict) or int(value.get("seq", 0)) <= run.progress_seq:
                    continue
                run.progress_seq = int(value["seq"])
                state = json.loads(value["state"]) if value.get("state") else None
                # The same call and attempt guard as a local worker's progress write.
                self.store.set_progress(run.ticket.job_id, run.ticket.attempt, int(value["done"]),
                                        int(value["total"]), state)
        for run in running:
            if run.started is not None:
                self._drain_events(client, run)
        for run in finished:
            if run.stop_set:
                Event(stop_event_name(run.ticket.job_id, run.ticket.attempt), client=client).clear()
            # Every run announces its start there, so every run's Variable goes.
            Variable(progress_variable_name(run.ticket.job_id, run.ticket.attempt), client=client).delete()
            Queue(events_queue_name(run.ticket.job_id, run.ticket.attempt), client=client).close()

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
            client = Client(self.scheduler_address, timeout=self.connect_timeout_s, set_as_default=False,
                            security=self.security)
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
