"""Reading a job's event stream in tests: a small SSE parser of the tests' own (independent of the client's)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Sse:
    id: int
    event: str
    data: dict[str, Any]


def parse_stream(lines: Iterator[str], comments: list[str] | None = None) -> Iterator[Sse]:
    """Events of an SSE stream, per the WHATWG rules we rely on (``id``, ``event``, ``data``, blank line ends)."""
    fields: dict[str, str] = {}
    for line in lines:
        if line == "":
            if "data" in fields:
                yield Sse(int(fields["id"]), fields.get("event", "message"), json.loads(fields["data"]))
            fields = {}
        elif line.startswith(":"):
            if comments is not None:
                comments.append(line)
        else:
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value


def read_events(client: httpx.Client, path: str, last_event_id: int | None = None,
                stop_after: int | None = None) -> list[Sse]:
    """The events of ``path`` (until the server closes the stream, or ``stop_after`` events: then hang up)."""
    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    events: list[Sse] = []
    with client.stream("GET", path, headers=headers, timeout=60) as answer:
        assert answer.status_code == 200, answer.read()
        assert answer.headers["content-type"].startswith("text/event-stream")
        for event in parse_stream(answer.iter_lines()):
            events.append(event)
            if stop_after is not None and len(events) >= stop_after:
                break
    return events


def submit(client: httpx.Client, body: dict[str, Any], path: str = "/v1/solves",
           headers: dict[str, str] | None = None) -> str:
    answer = client.post(path, json=body, headers=headers or {})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def assert_well_formed(events: list[Sse], final_status: str) -> None:
    """Increasing ids, exactly one ``end`` and it is last, carrying the final status; statuses in order."""
    ids = [event.id for event in events]
    assert ids == sorted(set(ids)), ids
    assert [event.event for event in events].count("end") == 1
    assert events[-1].event == "end" and events[-1].data["status"] == final_status
    statuses = [event.data["status"] for event in events if event.event == "status"]
    assert statuses[0] == "queued" and statuses[-1] == final_status
    assert "running" in statuses
