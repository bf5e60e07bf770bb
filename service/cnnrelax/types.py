"""The names every layer shares: job statuses and kinds, stop reasons, and the callback types.

Defined here once and imported everywhere else (the store, the executors, the job function, the API's
schemas, the CLI). Statuses and kinds are ``str``-valued enums: they compare equal to their strings,
go into SQLite and JSON as those strings, and appear in ``openapi.json`` as enums.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Callable, Literal


class StrEnum(str, Enum):
    """A ``str`` enum whose ``str()`` and f-string form are its value (as ``enum.StrEnum`` of 3.11)."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class JobStatus(StrEnum):
    """Where a job is: ``queued -> running -> succeeded | failed | cancelled``."""

    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


#: The statuses a job never leaves.
TERMINAL_STATUSES: frozenset[JobStatus] = frozenset({JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled})


class JobKind(StrEnum):
    """What a job runs: one solve, one of the paper's experiments (a sweep of cells), or the certificate of a given
    filter."""

    solve = "solve"
    experiment = "experiment"
    certify = "certify"


#: Why a run stopped before its end: a cancel request, its time limit, the server that started it went
#: away, or its worker's memory limit.
StopReason = Literal["cancelled", "time_limit", "orphaned", "memory"]

#: Polled by long loops (trials, working-set rounds, experiment cells): true means stop soon.
ShouldStop = Callable[[], bool]

#: ``progress(done, total, partial_state)``: trials of a solve, cells of an experiment (``partial_state``
#: is what a restarted run resumes from; ``{}`` for a solve).
Progress = Callable[[int, int, dict[str, Any]], None]

#: ``events(name, data)``: one event of a running job for its event log (``trial``, ``cell``, ``log``; data
#: JSON-able; docs/events.md).
EventSink = Callable[[str, dict[str, Any]], None]
