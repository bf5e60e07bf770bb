"""Server-sent events of a job: ``GET /v1/solves/{id}/events`` and ``GET /v1/experiments/{id}/events``.

A stream replays the job's event log from the store (:meth:`cnnrelax.store.Store.read_events`) a page at a
time, then follows it live, and closes after the job's ``end`` event. Events are ``status``, ``trial``,
``cell``, ``log`` and ``end`` (docs/events.md); each carries the store's increasing ``id``, so a reconnect with
``Last-Event-ID`` resumes after it without repeats. Heartbeats are SSE comments (sse-starlette's pings).

Memory per subscriber is its cursor and one wake-up flag: events stay in the store. One :class:`EventFeed`
per app polls the store for the newest events of *all* jobs (one query per ``FEED_INTERVAL_S`` while anyone
listens) and wakes only the subscribers of the jobs that got some, which then read their next page;
subscribers at the same cursor share one read (a thousand watchers of one job cost one query per page).
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
from typing import Any, AsyncIterator, Callable, Optional, TypeVar

from fastapi import APIRouter, Depends, Header, Request
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from ..store import JobEvent, Store
from ..types import TERMINAL_STATUSES, JobKind
from .dependencies import ServiceDep, Tenant, TenantDep
from .problems import ApiError
from .service import Service
from .solves import JOB_ID, not_found

router = APIRouter()
T = TypeVar("T")
log = logging.getLogger("cnnrelax.api")

#: Seconds between two looks of the feed at the store for new events (while anyone listens).
FEED_INTERVAL_S = 0.2
#: Events read from the store at once (by the feed, and by a subscriber).
PAGE_SIZE = 200
#: A subscriber with no wake-up re-reads its job this often anyway (seconds): a job deleted, a missed wake.
IDLE_RECHECK_S = 5.0
#: The media type of an event stream.
EVENT_STREAM = "text/event-stream"
#: The event names a stream sends (docs/events.md).
EVENT_NAMES = ("status", "trial", "cell", "log", "end")
#: An event id as a client sends it back (any other value is a 422 naming the header).
EVENT_ID_PATTERN = r"^[0-9]{1,18}$"
#: ``Last-Event-ID``: an event id, or empty (from the first event, as without the header).
LAST_EVENT_ID = Header("", alias="Last-Event-ID", max_length=40, json_schema_extra={"pattern": r"^([0-9]{1,18})?$"},
                       description="Resume after this event id (the `id` of the last event received).")
#: One event of the stream, as OpenAPI tools read ``text/event-stream``: its ``event`` name, ``id`` and JSON ``data``.
EVENT_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["event", "id", "data"],
    "properties": {
        "event": {"type": "string", "enum": list(EVENT_NAMES)},
        "id": {"type": "string", "pattern": EVENT_ID_PATTERN},
        "data": {"type": "string", "contentMediaType": "application/json",
                 "description": "A JSON object; its members per event name in docs/events.md."},
        "retry": {"type": "integer", "minimum": 0},
    },
}
STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {200: {"content": {EVENT_STREAM: {"schema": EVENT_SCHEMA}},
                          "description": "Server-sent events `status`, `trial`, `cell`, `log` and a last `end`, "
                                         "each with an increasing `id` and JSON data (docs/events.md)."}}


class EventFeed:
    """Wakes the subscribers of jobs that got new events; one per app, running only while anyone listens."""

    def __init__(self, store: Store, interval_s: float = FEED_INTERVAL_S) -> None:
        self.store = store
        self.interval_s = interval_s
        self._subscribers: dict[str, set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None
        self._reads: dict[tuple[Any, ...], asyncio.Future[Any]] = {}

    def subscribe(self, job_id: str) -> asyncio.Event:
        """A flag set whenever ``job_id`` gets new events (start the feed if it is idle)."""
        wake = asyncio.Event()
        self._subscribers.setdefault(job_id, set()).add(wake)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return wake

    async def page(self, job_id: str, after: int) -> list[JobEvent]:
        """The job's events after ``after`` (a page); subscribers at the same cursor share one read of the store."""
        return await self._shared(("page", job_id, after), self.store.read_events, job_id, after, PAGE_SIZE)

    async def status(self, job_id: str, kind: str, owner: str | None) -> str | None:
        """The job's status for ``owner`` (``None``: not there); concurrent identical looks share one read."""
        return await self._shared(("status", job_id, kind, owner), self.store.get_job_status, job_id, kind,
                                  owner=owner)

    async def _shared(self, key: tuple[Any, ...], read: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        pending = self._reads.get(key)
        if pending is None:
            pending = asyncio.ensure_future(run_in_threadpool(read, *args, **kwargs))
            self._reads[key] = pending
            pending.add_done_callback(lambda _: self._reads.pop(key, None))
        result: T = await asyncio.shield(pending)  # one subscriber hanging up does not cancel the others' read
        return result

    def unsubscribe(self, job_id: str, wake: asyncio.Event) -> None:
        waiting = self._subscribers.get(job_id)
        if waiting is not None:
            waiting.discard(wake)
            if not waiting:
                del self._subscribers[job_id]

    async def _run(self) -> None:
        last: int | None = None
        while self._subscribers:
            try:
                if last is None:
                    last = await run_in_threadpool(self.store.last_event_id)
                    for waiting in self._subscribers.values():  # events before this start: everyone looks once
                        for wake in waiting:
                            wake.set()
                page = await run_in_threadpool(self.store.read_events, None, last, PAGE_SIZE)
            except sqlite3.Error:  # a busy or failing store: subscribers re-read on their own meanwhile
                log.warning("the event feed could not read the store", exc_info=True)
                page = []
            for event in page:
                for wake in self._subscribers.get(event.job_id, ()):
                    wake.set()
            if page:
                last = page[-1].id
            if len(page) < PAGE_SIZE:
                await asyncio.sleep(self.interval_s)


def get_feed(request: Request, service: ServiceDep) -> EventFeed:
    """The app's :class:`EventFeed` (made at the first subscription)."""
    feed: EventFeed | None = getattr(request.app.state, "event_feed", None)
    if feed is None or feed.store is not service.store:
        feed = EventFeed(service.require_store())
        request.app.state.event_feed = feed
    return feed


def parse_last_event_id(value: Optional[str]) -> int:
    """The id to resume after (0: from the start); a 422 naming the header for anything but an event id."""
    if value is None or value.strip() == "":
        return 0
    if not re.fullmatch(r"\s*[0-9]{1,18}\s*", value):
        raise ApiError(422, f"Last-Event-ID must be the id of an event of this stream (a non-negative integer), "
                            f"got {value[:40]!r}; send the `id` of the last event received, or no header to "
                            "start from the first event.", title="Invalid Last-Event-ID", parameter="Last-Event-ID")
    return int(value)


async def follow(feed: EventFeed, job_id: str, kind: str, owner: str | None,
                 after: int) -> AsyncIterator[ServerSentEvent]:
    """The job's events after ``after``, from the store, live until its ``end`` event (or the job is gone)."""
    wake = feed.subscribe(job_id)
    try:
        while True:
            wake.clear()
            page = await feed.page(job_id, after)
            for event in page:
                after = event.id
                yield ServerSentEvent(data=event.data_json, event=event.event, id=str(event.id))
                if event.event == "end":
                    return
            if page:
                continue
            # Nothing new: is the job still there, still going? Once its status is terminal its `end` event is
            # in the store (written in the same transaction), so a page read after that look, still empty,
            # means the stream is over (the reader resumed after the `end`).
            status = await feed.status(job_id, kind, owner)
            if status is None or (status in TERMINAL_STATUSES and not await feed.page(job_id, after)):
                return
            if status in TERMINAL_STATUSES:
                continue
            try:
                await asyncio.wait_for(wake.wait(), timeout=IDLE_RECHECK_S)
            except asyncio.TimeoutError:
                pass
    finally:
        feed.unsubscribe(job_id, wake)


async def _stream(job_id: str, kind: JobKind, last_event_id: str, service: Service, tenant: Tenant,
                  feed: EventFeed) -> EventSourceResponse:
    after = parse_last_event_id(last_event_id)
    store = service.require_store()
    if await run_in_threadpool(store.get_job_status, job_id, kind, owner=tenant.sees) is None:
        raise not_found(job_id, "solve job" if kind == JobKind.solve else "experiment")
    return EventSourceResponse(follow(feed, job_id, kind, tenant.sees, after),
                               ping=service.settings.events_ping_s)


@router.get("/v1/solves/{job_id}/events", response_class=EventSourceResponse, responses=STREAM_RESPONSES,
            summary="Follow a solve job's events", tags=["solves"])
async def solve_events(service: ServiceDep, tenant: TenantDep, job_id: str = JOB_ID,
                       last_event_id: str = LAST_EVENT_ID, feed: EventFeed = Depends(get_feed)) -> EventSourceResponse:
    """The job's events as `text/event-stream`: `status` changes, a `trial` event per trial, a `log` event per
    working-set round, and a last `end` with the final status; `Last-Event-ID` resumes after an event."""
    return await _stream(job_id, JobKind.solve, last_event_id, service, tenant, feed)


@router.get("/v1/experiments/{job_id}/events", response_class=EventSourceResponse, responses=STREAM_RESPONSES,
            summary="Follow an experiment's events", tags=["experiments"])
async def experiment_events(service: ServiceDep, tenant: TenantDep, job_id: str = JOB_ID,
                            last_event_id: str = LAST_EVENT_ID, feed: EventFeed = Depends(get_feed)
                           ) -> EventSourceResponse:
    """The experiment's events as `text/event-stream`: `status` changes, a `cell` event per cell done, and a
    last `end` with the final status; `Last-Event-ID` resumes after an event."""
    return await _stream(job_id, JobKind.experiment, last_event_id, service, tenant, feed)
