"""The state behind the routes: settings, store, dispatcher, waiters and metrics of one running app.

Routes stay thin: they translate HTTP to these calls and the records back to schemas.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import datetime, timezone
from typing import Any

from starlette.concurrency import run_in_threadpool

from ..executor import Dispatcher, Executor, LocalProcessExecutor
from ..jobs import problem_size, validate_job
from ..problem import InvalidParameterError
from ..settings import Settings
from ..store import IdempotencyConflict, JobRecord, QueueFull, Store
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


def build_executor(settings: Settings, store: Store) -> Executor:
    """Local worker processes, or (when ``dask_scheduler`` is set) the Dask executor."""
    if settings.dask_scheduler:
        try:
            from ..dask_executor import DaskExecutor  # type: ignore[import-not-found]
        except ImportError as exc:
            raise RuntimeError("dask_scheduler is set but cnnrelax.dask_executor is not available") from exc
        return DaskExecutor(settings.dask_scheduler, store=store, workers=settings.workers)  # type: ignore[no-any-return]
    return LocalProcessExecutor(str(store.path), settings.workers, settings.log_level)


class Service:
    """One app's service: created with the app, started and stopped by its lifespan."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = ServiceMetrics()
        self.waiters = JobWaiters()
        self.store: Store | None = None
        self.dispatcher: Dispatcher | None = None

    # -- life cycle -------------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.waiters.bind(loop)
        self.store = Store(self.settings.data_dir)
        self.store.start_checkpointer()
        executor = build_executor(self.settings, self.store)
        self.dispatcher = Dispatcher(self.store, executor, default_time_limit_s=self.settings.job_time_limit_s)
        self.dispatcher.on_finished.append(self._job_finished)
        self.dispatcher.on_started.append(lambda job: self.waiters.notify(job.id))
        self.metrics.watch_store(self.store, lambda: self.dispatcher.running if self.dispatcher else 0)
        self.dispatcher.start()

    def stop(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.stop()
        if self.store is not None:
            self.store.stop_checkpointer()

    def _job_finished(self, job: JobRecord, status: str, run_time_s: float) -> None:
        self.metrics.job_finished(job.kind, status, run_time_s)
        self.waiters.notify(job.id)

    def require_store(self) -> Store:
        if self.store is None:
            raise ApiError(503, "The service is starting or stopping; try again shortly.",
                           headers={"Retry-After": "1"})
        return self.store

    # -- jobs -------------------------------------------------------------------------------------
    def submit(self, kind: str, request: dict[str, Any], *, idempotency_key: str | None,
               dataset_id: str | None = None, time_limit_s: float | None = None,
               progress_total: int | None = None) -> tuple[JobRecord, bool]:
        """Validate and queue a job (blocking: call from a worker thread); return it and whether it is new."""
        store = self.require_store()
        if self.dispatcher is None or not self.dispatcher.alive():
            raise ApiError(503, "The job dispatcher is not running; no job can be accepted now.",
                           headers={"Retry-After": "5"})
        try:
            job, created = store.create_job(kind, request, idempotency_key=idempotency_key, dataset_id=dataset_id,
                                            time_limit_s=time_limit_s, max_queue_depth=self.settings.max_queue_depth,
                                            progress_total=progress_total)
        except IdempotencyConflict as exc:
            raise ApiError(409, "This Idempotency-Key was already used with a different request body (for job "
                                f"{exc.job_id}); use a new key for a new request.", title="Idempotency-Key reused",
                           job_id=exc.job_id) from None
        except QueueFull as exc:
            self.metrics.rejected.inc()
            raise ApiError(429, f"The queue is full ({exc.depth} jobs waiting); retry after a few seconds.",
                           title="Queue full", headers={"Retry-After": "2"}) from None
        if created:
            log.info("job queued", extra={"job_id": job.id, "kind": kind})
            self.dispatcher.wake()
        return job, created

    def validate_solve(self, request: dict[str, Any]) -> dict[str, Any]:
        """Check a solve request against the limits and the core; return the stored form (blocking)."""
        settings = self.settings
        if request["trials"] > settings.max_trials:
            raise InvalidParameterError("trials", f"trials={request['trials']} is more than this server runs in one "
                                                  f"job ({settings.max_trials}).")
        arrays = None
        if request.get("dataset_id") is not None:
            store = self.require_store()
            if store.get_dataset(request["dataset_id"]) is None:
                raise InvalidParameterError("dataset_id", f"No dataset {request['dataset_id']} is stored; upload it "
                                                          "with POST /v1/datasets first.")
            try:
                arrays = store.load_dataset(request["dataset_id"])
            except FileNotFoundError:
                raise InvalidParameterError("dataset_id", "The dataset's file is missing; upload it again.") from None
        size = problem_size(request, arrays)
        if size is not None and size[0] * size[1] > settings.max_matrix_entries:
            source = "planted" if request.get("planted") is not None else "data"
            raise InvalidParameterError(source, f"The problem has n*d = {size[0]}*{size[1]} = {size[0] * size[1]} "
                                                f"entries, more than this server takes ({settings.max_matrix_entries}).")
        if request.get("data") is not None:
            widths = {len(row) for row in request["data"]["X"]}
            if len(widths) > 1:
                raise InvalidParameterError("X", f"The rows of X have different lengths ({sorted(widths)[:5]}); X must "
                                                 "be an n x d matrix.")
        return validate_job("solve", request, arrays)

    async def wait_for(self, job_id: str, kind: str, wait: float) -> JobRecord | None:
        """The job, after holding up to ``wait`` seconds for it to reach a terminal state."""
        store = self.require_store()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(max(wait, 0.0), MAX_WAIT_S)
        while True:
            event = self.waiters.register(job_id)
            try:
                job = await run_in_threadpool(store.get_job, job_id, kind)
                remaining = deadline - loop.time()
                if job is None or job.terminal or remaining <= 0:
                    return job
                try:
                    await asyncio.wait_for(event.wait(), timeout=min(remaining, 1.0))
                except asyncio.TimeoutError:
                    pass
            finally:
                self.waiters.unregister(job_id, event)

    def cancel(self, job_id: str, kind: str) -> JobRecord | None:
        """Cancel a queued job, or ask a running one to stop (blocking)."""
        store = self.require_store()
        job = store.get_job(job_id, kind)
        if job is None or job.terminal:
            return job
        job = store.request_cancel(job_id)
        if self.dispatcher is not None:
            self.dispatcher.cancel(job_id)
        self.waiters.notify(job_id)
        if job is not None:
            log.info("cancel requested", extra={"job_id": job_id, "status": job.status})
        return job
