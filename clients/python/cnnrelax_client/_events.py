"""A job's server-sent events, typed, and the sans-I/O state of following them.

``GET /v1/solves/{id}/events`` and ``GET /v1/experiments/{id}/events`` answer ``text/event-stream``: events
``status``, ``trial``, ``cell``, ``log`` and a last ``end``, each with an increasing ``id`` and JSON data
(docs/events.md). :class:`EventStream` decodes the lines of one or more connections into typed events
(:data:`EVENT_TYPES`), remembers the last id so that a reconnect (``Last-Event-ID``) resumes without
repeats, and says when the stream is over; :class:`Client.events` and :class:`AsyncClient.events` only move
bytes. :func:`apply_event` folds an event into a job snapshot (status and progress), which is how the
clients' progress callbacks follow a job.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, TypeVar

from ._errors import CnnrelaxError, CnnrelaxTimeoutError
from ._flows import HttpRequest
from ._models import Experiment, Job, Progress

__all__ = ["CellEvent", "EndEvent", "EventStream", "JobEvent", "LogEvent", "StatusEvent", "TrialEvent",
           "apply_event", "EVENT_TYPES"]

#: Reconnects in a row, without a new event in between, before following a stream gives up.
MAX_RECONNECTS = 5
#: The first pause before a reconnect (seconds); doubled each time, unless the server sent ``retry:``.
RECONNECT_DELAY_S = 0.5


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _opt_bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


@dataclass(frozen=True)
class JobEvent:
    """One event of a job's stream: its ``id``, its name (``event``) and its JSON ``data``."""

    id: int
    event: str
    data: dict[str, Any] = field(repr=False)

    @classmethod
    def from_data(cls, event_id: int, event: str, data: Mapping[str, Any]) -> JobEvent:
        return cls(event_id, event, dict(data))


@dataclass(frozen=True)
class StatusEvent(JobEvent):
    """The job's status changed (``queued``, ``running``, ...), or a cancel of a running job was asked for."""

    status: str = ""
    attempt: int | None = None
    cancel_requested: bool = False
    error: str | None = None

    @classmethod
    def from_data(cls, event_id: int, event: str, data: Mapping[str, Any]) -> StatusEvent:
        return cls(event_id, event, dict(data), status=str(data.get("status")), attempt=_opt_int(data.get("attempt")),
                   cancel_requested=bool(data.get("cancel_requested", False)), error=data.get("error"))


@dataclass(frozen=True)
class TrialEvent(JobEvent):
    """One trial of a solve ran: its ``index``, solver status, objective, loss, whether it recovered the planted
    filter (``None`` when there is none) and whether its zero loss certifies a global minimum, its seconds, and
    ``done`` of ``total`` trials asked."""

    index: int = 0
    status: str | None = None
    objective: float | None = None
    loss: float | None = None
    recovered: bool | None = None
    certified: bool = False
    seconds: float | None = None
    done: int = 0
    total: int = 0

    @classmethod
    def from_data(cls, event_id: int, event: str, data: Mapping[str, Any]) -> TrialEvent:
        return cls(event_id, event, dict(data), index=int(data.get("index", 0)), status=data.get("status"),
                   objective=_opt_float(data.get("objective")), loss=_opt_float(data.get("loss")),
                   recovered=_opt_bool(data.get("recovered")), certified=bool(data.get("certified", False)),
                   seconds=_opt_float(data.get("seconds")), done=int(data.get("done", 0)),
                   total=int(data.get("total", 0)))


@dataclass(frozen=True)
class CellEvent(JobEvent):
    """One cell of an experiment finished: ``cell`` holds its key and summary, ``done`` of ``total`` cells."""

    cell: dict[str, Any] = field(default_factory=dict)
    done: int = 0
    total: int = 0

    @classmethod
    def from_data(cls, event_id: int, event: str, data: Mapping[str, Any]) -> CellEvent:
        cell = {key: value for key, value in data.items() if key not in ("done", "total")}
        return cls(event_id, event, dict(data), cell=cell, done=int(data.get("done", 0)),
                   total=int(data.get("total", 0)))


@dataclass(frozen=True)
class LogEvent(JobEvent):
    """One working-set round of a trial (cuts held and added, the sub-problem's status, seconds); or a ``note``
    (e.g. that the run's log was capped)."""

    trial: int | None = None
    round: int | None = None
    working_set: int | None = None
    added: int | None = None
    status: str | None = None
    seconds: float | None = None
    note: str | None = None

    @classmethod
    def from_data(cls, event_id: int, event: str, data: Mapping[str, Any]) -> LogEvent:
        return cls(event_id, event, dict(data), trial=_opt_int(data.get("trial")), round=_opt_int(data.get("round")),
                   working_set=_opt_int(data.get("working_set")), added=_opt_int(data.get("added")),
                   status=data.get("status"), seconds=_opt_float(data.get("seconds")), note=data.get("note"))


@dataclass(frozen=True)
class EndEvent(JobEvent):
    """The job ended: its final ``status``, its error sentence, and ``done`` of ``total`` (trials or cells)."""

    status: str = ""
    error: str | None = None
    done: int | None = None
    total: int | None = None

    @classmethod
    def from_data(cls, event_id: int, event: str, data: Mapping[str, Any]) -> EndEvent:
        return cls(event_id, event, dict(data), status=str(data.get("status")), error=data.get("error"),
                   done=_opt_int(data.get("done")), total=_opt_int(data.get("total")))


#: The typed event of each event name (an unknown name from a newer server arrives as a plain :class:`JobEvent`).
EVENT_TYPES: dict[str, type[JobEvent]] = {
    "status": StatusEvent, "trial": TrialEvent, "cell": CellEvent, "log": LogEvent, "end": EndEvent,
}


class EventStream:
    """Following one job's event stream across connections (sans I/O).

    Feed it the lines of each connection (:meth:`feed`); it returns the typed events, keeps the last ``id``
    for the next :meth:`request`, and is :attr:`done` after the ``end`` event (or when a connection closes
    with nothing new: the job ended before the id resumed from). A connection that fails is retried after
    :meth:`reconnect_delay`, up to ``MAX_RECONNECTS`` times in a row.
    """

    def __init__(self, path: str, last_event_id: int | None = None, deadline: float | None = None) -> None:
        self.path = path
        self.last_event_id = last_event_id
        self.deadline = deadline
        self.done = False
        self.retry_s = RECONNECT_DELAY_S
        self._fields: dict[str, str] = {}
        self._data: list[str] = []
        self._failures = 0
        self._new_on_connection = 0

    def request(self) -> HttpRequest:
        """The GET of the next connection, resuming after the last event seen."""
        self._new_on_connection = 0
        self._fields, self._data = {}, []
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = str(self.last_event_id)
        return HttpRequest("GET", self.path, headers=headers)

    def read_timeout(self, default: float) -> float:
        """How long one read may block: the client's timeout, or less when a deadline comes first."""
        return default if self.deadline is None else max(0.01, min(default, self.deadline - time.monotonic()))

    def check_deadline(self, what: str) -> None:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise CnnrelaxTimeoutError(f"Gave up following the events of {what}: the wait's timeout passed; the job "
                                       "keeps running on the server.", title="Client wait timed out")

    def feed(self, line: str) -> JobEvent | None:
        """One line of the stream (without its end of line); the event it completes, if any."""
        if line == "":
            return self._dispatch()
        if line.startswith(":"):  # a comment: the server's heartbeat
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            self._data.append(value)
        elif name == "retry" and value.isdigit():
            self.retry_s = int(value) / 1000.0
        elif name in ("id", "event"):
            self._fields[name] = value
        return None

    def _dispatch(self) -> JobEvent | None:
        fields, data = self._fields, self._data
        self._fields, self._data = {}, []
        if not data:
            return None
        name = fields.get("event", "message")
        event_id = int(fields["id"]) if fields.get("id", "").isdigit() else (self.last_event_id or 0)
        event = EVENT_TYPES.get(name, JobEvent).from_data(event_id, name, json.loads("\n".join(data)))
        self.last_event_id = event_id
        self._failures = 0
        self._new_on_connection += 1
        if name == "end":
            self.done = True
        return event

    def closed(self) -> None:
        """The server closed the connection: over if it sent nothing new (else the next connection resumes)."""
        if self._new_on_connection == 0:
            self.done = True

    def reconnect_delay(self, error: CnnrelaxError) -> float:
        """The pause before the next connection after ``error``; raises it once retries are exhausted."""
        self._failures += 1
        if self._failures > MAX_RECONNECTS:
            raise error
        return float(self.retry_s * 2 ** (self._failures - 1))


J = TypeVar("J", Job, Experiment)


def apply_event(snapshot: J, event: JobEvent) -> J:
    """``snapshot`` (a job or an experiment) with the status and progress ``event`` reports."""
    changes: dict[str, Any] = {}
    if isinstance(event, (StatusEvent, EndEvent)):
        changes["status"] = event.status
        if isinstance(event, StatusEvent) and event.cancel_requested and isinstance(snapshot, Job):
            changes["cancel_requested"] = True
    if isinstance(event, (TrialEvent, CellEvent)) and event.total:
        changes["progress"] = Progress(done=event.done, total=event.total)
    if isinstance(event, EndEvent) and event.total is not None:
        changes["progress"] = Progress(done=event.done or 0, total=event.total)
    return dataclasses.replace(snapshot, **changes) if changes else snapshot
