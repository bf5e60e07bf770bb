"""The state behind the routes: settings, store, dispatcher, waiters, metrics, body parser and purge of one app.

Routes stay thin: they translate HTTP to these calls and the records back to schemas. Every call takes the
caller's owner (tenant); reads take ``sees`` (the owner, or ``None`` for an admin key).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import threading
import time
from datetime import datetime, timezone
from typing import Any

from starlette.concurrency import run_in_threadpool

from ..dataset_files import dataset_digest
from ..executors import Dispatcher, build_executor
from ..experiments.specs import PhaseTransitionSpec, RotatedDigitsSpec
from ..pricing import check_time_limit, estimate_cost
from ..settings import Settings
from ..specs import DataShape, Limits, ProblemSize, SolveSpec
from ..store import (
    ANONYMOUS,
    IdempotencyConflict,
    JobRecord,
    QueuedWorkFull,
    QueueFull,
    Store,
    StoreFault,
)
from ..types import TERMINAL_STATUSES, JobKind, JobStatus
from .bodies import BodyParser
from .metrics import ServiceMetrics
from .problems import ApiError

log = logging.getLogger("cnnrelax.api")

#: The longest ``?wait=`` a GET may hold (seconds).
MAX_WAIT_S = 30.0


def timestamp(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, tz=timezone.utc)


class JobWaiters:
    """Lets ``GET ...?wait=`` sleep until a job changes, woken from the dispatcher's threads."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._events: dict[str, set[asyncio.Event]] = {}
        self._lock = threading.Lock()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def register(self, job_id: str) -> asyncio.Event:
        event = asyncio.Event()
        with self._lock:
            self._events.setdefault(job_id, set()).add(event)
        return event

    def unregister(self, job_id: str, event: asyncio.Event) -> None:
        with self._lock:
            events = self._events.get(job_id)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._events[job_id]

    def notify(self, job_id: str) -> None:
        """Wake the waiters of ``job_id`` (safe from any thread)."""
        with self._lock:
            events = list(self._events.get(job_id, ()))
        if events and self._loop is not None and not self._loop.is_closed():
            for event in events:
                self._loop.call_soon_threadsafe(event.set)


class Service:
    """One app's service: created with the app, started and stopped by its lifespan."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = ServiceMetrics()
        self.waiters = JobWaiters()
        self.store: Store | None = None
        self.dispatcher: Dispatcher | None = None
        self.parser = BodyParser(settings.max_inline_numbers, max_constraint_numbers=settings.max_constraint_numbers)
        self.limits = Limits(max_matrix_entries=settings.max_matrix_entries,
                             max_patch_entries=settings.max_patch_entries, max_trials=settings.max_trials)
        self._purge_stop = threading.Event()
        self._purger: threading.Thread | None = None

    # -- life cycle -------------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.waiters.bind(loop)
        self.store = Store(self.settings.data_dir)
        self.store.start_checkpointer()
        executor = build_executor(self.settings, self.store)
        self.dispatcher = Dispatcher(self.store, executor, default_time_limit_s=self.settings.job_time_limit_s,
                                     write_retry_s=self.settings.store_write_retry_s)
        self.dispatcher.on_finished.append(self._job_finished)
        self.dispatcher.on_started.append(lambda job: self.waiters.notify(job.id))
        self.metrics.watch_store(self.store, lambda: self.dispatcher.running if self.dispatcher else 0)
        self.dispatcher.start()
        self._purge_stop.clear()
        self._purger = threading.Thread(target=self._purge_loop, name="cnnrelax-purge", daemon=True)
        self._purger.start()

    def stop(self) -> None:
        self._purge_stop.set()
        if self._purger is not None:
            self._purger.join(timeout=10)
        self.parser.close()
        if self.dispatcher is not None:
            self.dispatcher.stop()
        if self.store is not None:
            self.store.stop_checkpointer()

    # -- retention and disk -----------------------------------------------------------------------
    def purge(self, now: float | None = None) -> tuple[list[str], list[str]]:
        """Delete finished jobs past ``job_retention_s`` (and their figures), then datasets unused past
        ``dataset_retention_s`` that no queued or running job needs, files no row names past their grace
        (``cnnrelax.store.ORPHAN_GRACE_S``), and uploads in parts past ``upload_expiry_s`` since their last part.

        Parameters
        ----------
        now : float, optional
            The time to count from (seconds since the epoch); default now.

        Returns
        -------
        tuple of list of str
            The ids of the jobs and of the datasets deleted.
        """
        store = self.require_store()
        now = time.time() if now is None else now
        jobs, datasets = store.purge(jobs_before=now - self.settings.job_retention_s,
                                     datasets_before=now - self.settings.dataset_retention_s, now=now)
        for job_id in jobs:
            self._remove_figures(job_id)
        uploads = store.purge_uploads(now)  # uploads in parts past CNNRELAX_UPLOAD_EXPIRY_S since their last part
        if jobs or datasets or uploads:
            log.info("purged expired jobs and datasets", extra={"jobs": len(jobs), "datasets": len(datasets),
                                                                "uploads": len(uploads)})
        return jobs, datasets

    def _purge_loop(self) -> None:
        while not self._purge_stop.wait(min(self.settings.purge_interval_s, 3600.0)):
            try:
                self.purge()
            except Exception:  # noqa: BLE001 - tried again at the next interval
                log.exception("purge failed")

    def free_bytes(self) -> int:
        """Free bytes on the data dir's filesystem."""
        return int(shutil.disk_usage(self.settings.data_dir).free)

    def require_space(self, needed: int = 0) -> None:
        """507 when the data dir has less than ``min_free_bytes`` (plus ``needed``) free; 503 or 507 while the
        store refuses writes (a probe write at most each second tells when it takes them again)."""
        free = self.free_bytes()
        if free < self.settings.min_free_bytes + needed:
            raise disk_full_error(f"The data directory has {free} bytes free, less than the {needed} this request "
                                  f"needs plus the {self.settings.min_free_bytes} kept free (CNNRELAX_MIN_FREE_BYTES)")
        store = self.store
        if store is not None and store.fault is not None:
            fault = store.writable()
            if fault is not None:
                raise store_fault_error(fault)

    def _job_finished(self, job: JobRecord, status: JobStatus, run_time_s: float) -> None:
        self.metrics.job_finished(job.kind, status, run_time_s)
        self.waiters.notify(job.id)

    def require_store(self) -> Store:
        if self.store is None:
            raise ApiError(503, "The service is starting or stopping; try again shortly.",
                           headers={"Retry-After": "1"})
        return self.store

    # -- jobs -------------------------------------------------------------------------------------
    def price(self, spec: SolveSpec | PhaseTransitionSpec | RotatedDigitsSpec, size: ProblemSize | None = None
              ) -> float:
        """The job's estimated CPU-seconds (:mod:`cnnrelax.pricing`); 422 when past the job time limit."""
        estimate = estimate_cost(spec, size)
        check_time_limit(spec, estimate, self.settings.job_time_limit_s)
        return round(estimate.cpu_s, 3)

    def submit(self, kind: JobKind, request: dict[str, Any] | str, *, idempotency_key: str | None,
               dataset_id: str | None = None, time_limit_s: float | None = None,
               progress_total: int | None = None, owner: str = ANONYMOUS,
               estimated_cpu_s: float | None = None) -> tuple[JobRecord, bool]:
        """Queue a checked job of ``owner`` (blocking: call from a worker thread); return it and whether it is new.

        ``request`` is the job's spec: a typed spec's JSON text (stored as it is), or a normalised dict;
        ``estimated_cpu_s`` its price (:meth:`price`), counted against the owner's queued work.
        """
        store = self.require_store()
        if self.dispatcher is None or not self.dispatcher.alive():
            raise ApiError(503, "The job dispatcher is not running; no job can be accepted now.",
                           headers={"Retry-After": "5"})
        self.require_space()
        per_owner = self.settings.max_queued_per_key if self.settings.api_keys or self.settings.admin_api_keys \
            else None
        try:
            job, created = store.create_job(kind, request, idempotency_key=idempotency_key, dataset_id=dataset_id,
                                            time_limit_s=time_limit_s, max_queue_depth=self.settings.max_queue_depth,
                                            progress_total=progress_total, owner=owner,
                                            max_queued_per_owner=per_owner, estimated_cpu_s=estimated_cpu_s,
                                            max_queued_cpu_s_per_owner=self.settings.max_queued_cpu_s_per_key)
        except IdempotencyConflict as exc:
            raise ApiError(409, "This Idempotency-Key was already used with a different request body (for job "
                                f"{exc.job_id}); use a new key for a new request.", title="Idempotency-Key reused",
                           job_id=exc.job_id) from None
        except QueueFull as exc:
            self.metrics.rejected.inc()
            if exc.per_owner:
                raise ApiError(429, f"This API key already has {exc.depth} jobs waiting, the most one key may queue "
                                    f"(CNNRELAX_MAX_QUEUED_PER_KEY = {self.settings.max_queued_per_key}); retry "
                                    "when some have started.", title="Too many queued jobs",
                               headers={"Retry-After": "5"}, limit=self.settings.max_queued_per_key) from None
            raise ApiError(429, f"The queue is full ({exc.depth} jobs waiting); retry after a few seconds.",
                           title="Queue full", headers={"Retry-After": "2"}) from None
        except QueuedWorkFull as exc:
            self.metrics.rejected.inc()
            raise queued_work_error(exc, self.settings.workers) from None
        if created:
            log.info("job queued", extra={"job_id": job.id, "kind": kind})
            self.dispatcher.wake()
        return job, created

    def accept_solve(self, spec: SolveSpec, arrays: tuple[Any, Any] | None, *, owner: str,
                     sees: str | None, idempotency_key: str | None,
                     kind: JobKind = JobKind.solve) -> tuple[JobRecord, bool]:
        """Check a solve once, from shapes alone, and queue it (blocking: call from a worker thread).

        Inline ``arrays`` (``X``, ``y`` parsed from ``data``) become a dataset of ``owner``: the stored spec
        names it by ``dataset_id`` (the content address), so no job row carries megabytes of numbers. A
        ``dataset_id`` must be one ``sees`` holds (``None``: any); its check reads the dataset's metadata
        (``n``, ``d``, the smallest label), never its arrays. The problem is built once, by the worker.

        Parameters
        ----------
        spec : SolveSpec
            The solve, as built from the request.
        arrays : tuple of ndarray, optional
            Inline ``X`` and ``y``.
        owner, sees : str
            The caller's tenant, and whose datasets it may name.
        idempotency_key : str, optional
            The request's ``Idempotency-Key``.
        kind : JobKind
            ``solve``, or ``certify`` for a :class:`~cnnrelax.specs.CertifySpec`.

        Returns
        -------
        tuple
            The job and whether it is new.
        """
        store = self.require_store()
        data = self.data_shape(spec, arrays, sees)
        if arrays is not None:
            spec = spec.model_copy(update={"dataset_id": dataset_digest(*arrays)})
        spec.check(data, self.limits)
        estimated_cpu_s = self.price(spec, spec.size(data))
        if arrays is not None:  # stored once, as the tenant's dataset; the job names it
            self.require_space(int(arrays[0].nbytes + arrays[1].nbytes))
            store.put_dataset(arrays[0], arrays[1], "inline", owner=owner)
        return self.submit(kind, spec.model_dump_json(), idempotency_key=idempotency_key,
                           dataset_id=spec.dataset_id, time_limit_s=spec.time_limit_s, progress_total=spec.trials,
                           owner=owner, estimated_cpu_s=estimated_cpu_s)

    def data_shape(self, spec: SolveSpec, arrays: tuple[Any, Any] | None, sees: str | None) -> DataShape | None:
        """What the boundary knows of a spec's data: inline ``arrays``, or the stored dataset's metadata that ``sees``
        may read (404 naming ``dataset_id`` when there is none); ``None`` for a planted problem."""
        if arrays is not None:
            return DataShape(int(arrays[0].shape[0]), int(arrays[0].shape[1]), labels=arrays[1])
        if spec.dataset_id is None:
            return None
        record = self.require_store().get_dataset(spec.dataset_id, owner=sees)
        if record is None:
            raise dataset_not_found("dataset_id", spec.dataset_id)
        return DataShape(record.n, record.d, record.y_min, record.y_min_index)

    async def wait_for(self, job_id: str, kind: str, wait: float, *, owner: str | None = None,
                       with_request: bool = True) -> JobRecord | None:
        """The job, after holding up to ``wait`` seconds for it to reach a terminal state.

        While it waits it re-reads only the job's status (never the row with its request and result), then
        reads the job once.
        """
        store = self.require_store()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(max(wait, 0.0), MAX_WAIT_S)
        while True:
            event = self.waiters.register(job_id)
            try:
                status = await run_in_threadpool(store.get_job_status, job_id, kind, owner=owner)
                remaining = deadline - loop.time()
                if status is None:
                    return None
                if status in TERMINAL_STATUSES or remaining <= 0:
                    return await run_in_threadpool(
                        lambda: store.get_job(job_id, kind, owner=owner, with_request=with_request))
                try:
                    await asyncio.wait_for(event.wait(), timeout=min(remaining, 1.0))
                except asyncio.TimeoutError:
                    pass
            finally:
                self.waiters.unregister(job_id, event)

    def delete(self, job_id: str, kind: str, owner: str | None = None) -> tuple[JobRecord, bool] | None:
        """DELETE of a job (blocking): a queued or finished job is removed, a running one asked to stop.

        A removed job takes its figures with it, and the dataset made from its inline ``data`` when no other job
        of its owner names it. Return the job (a removed queued job as cancelled, a finished one as it was, a
        running one with its cancel request) and whether it was removed; ``None`` when ``owner`` has no such job.
        """
        store = self.require_store()
        job = store.get_job(job_id, kind, owner=owner, with_request=False)
        if job is None:
            return None
        for _ in range(2):  # a job that starts, or ends, between the read and the write is looked at once more
            removed = store.delete_job(job_id) if job.status != JobStatus.running else None
            if removed is not None:
                self._forget(removed)
                if removed.status == JobStatus.queued:
                    removed = dataclasses.replace(removed, status=JobStatus.cancelled, cancel_requested=True,
                                                  error="Deleted before it started.", finished_at=time.time())
                return removed, True
            cancelled = self.cancel(job_id, kind, owner)
            if cancelled is None:
                return None
            if not cancelled.terminal:
                return cancelled, False
            job = cancelled
        return job, False

    def _remove_figures(self, job_id: str) -> None:
        """Delete a job's rendered figures, every format (``<data_dir>/figures/<id>.*``)."""
        for path in (self.require_store().data_dir / "figures").glob(f"{job_id}.*"):
            path.unlink(missing_ok=True)

    def _forget(self, job: JobRecord) -> None:
        """What goes with a removed job: its figures (every format) and its inline dataset no one else uses."""
        store = self.require_store()
        self._remove_figures(job.id)
        if job.dataset_id is not None:
            store.release_inline_dataset(job.dataset_id, job.owner)
        self.waiters.notify(job.id)
        log.info("job deleted", extra={"job_id": job.id, "status": job.status})

    def cancel(self, job_id: str, kind: str, owner: str | None = None) -> JobRecord | None:
        """Cancel a queued job of ``owner`` (``None``: anyone's), or ask a running one to stop (blocking)."""
        store = self.require_store()
        # An experiment's answer shows its spec (a solve's does not show its request).
        job = store.get_job(job_id, kind, owner=owner, with_request=kind == JobKind.experiment)
        if job is None or job.terminal:
            return job
        job = store.request_cancel(job_id)
        if self.dispatcher is not None:
            self.dispatcher.cancel(job_id)
        self.waiters.notify(job_id)
        if job is not None:
            log.info("cancel requested", extra={"job_id": job_id, "status": job.status})
        return job


def dataset_not_found(parameter: str, dataset_id: str) -> ApiError:
    """The 404 of a request naming a dataset this tenant does not hold (a missing resource, not a bad value)."""
    return ApiError(404, f"No dataset {dataset_id} is stored ({parameter}); upload it with POST /v1/datasets "
                         "first.", title="Dataset not found", parameter=parameter)


def queued_work_error(exc: QueuedWorkFull, workers: int) -> ApiError:
    """The 429 of a tenant whose queued jobs already hold their share of estimated CPU-seconds.

    ``Retry-After`` is the time the excess takes to drain on ``workers`` workers (at least 5 s, at most an hour).
    """
    excess = exc.queued_cpu_s + exc.needed - exc.limit
    retry = int(min(3600, max(5, excess / max(workers, 1))))
    return ApiError(429, f"This API key's queued jobs are estimated at {exc.queued_cpu_s:.0f} CPU-seconds; this one "
                         f"({exc.needed:.0f} s) would pass the {exc.limit:g} s one key may queue "
                         f"(CNNRELAX_MAX_QUEUED_CPU_S_PER_KEY); retry when some have started.",
                    title="Too much queued work", headers={"Retry-After": str(retry)}, limit=exc.limit,
                    setting="CNNRELAX_MAX_QUEUED_CPU_S_PER_KEY")


def store_fault_error(fault: StoreFault) -> ApiError:
    """The answer to a write the store refuses: 507 when the disk is full, else 503; both with ``Retry-After``."""
    if fault.full:
        return disk_full_error(f"The server's store cannot take writes: {fault.reason}")
    return ApiError(503, f"The server's store cannot take writes now: {fault.reason}; nothing was stored. Retry "
                         "shortly (it recovers by itself once the store is writable again).",
                    title="Store unavailable", headers={"Retry-After": "5"})


def disk_full_error(reason: str) -> ApiError:
    """The 507 of a write the data dir has no room for."""
    return ApiError(507, f"{reason}; nothing was stored. Free space on the server's data volume and retry.",
                    title="Insufficient storage", headers={"Retry-After": "30"})
