"""Job event streams over real HTTP (a live server, its worker processes, its SQLite file).

Each test reads ``text/event-stream`` with a small parser of its own (the SSE format, independent of the
client's), and checks the stream against the job's JSON: one ``trial`` event per trial run, one ``cell``
event per cell, increasing ids, a last ``end`` event with the job's final status, and a reconnect with
``Last-Event-ID`` that resumes after it without repeats.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cnnrelax import PlantedSpec, SolveOptions, planted_problem
from cnnrelax.executors.base import MAX_LOG_EVENTS, BaseJobControl

from conftest import ServerProcess, assert_problem, wait_job
from event_stream import Sse, assert_well_formed, parse_stream, read_events, submit

SOLVE = {"planted": {"n": 300, "d": 20, "k": 2, "seed": 1}, "trials": 5, "stop_on_certificate": False}


def test_a_solve_streams_one_trial_event_per_trial_and_ends_with_its_status(http: httpx.Client) -> None:
    job_id = submit(http, SOLVE)
    events = read_events(http, f"/v1/solves/{job_id}/events")
    job = wait_job(http, f"/v1/solves/{job_id}")
    assert_well_formed(events, job["status"])
    y = planted_problem(PlantedSpec(**SOLVE["planted"])).problem.y  # the same draw, made here
    zero_loss = SolveOptions().optimality_tol * float(y @ y)  # SPEC 4.1's certificate of a global minimum
    trials = [event.data for event in events if event.event == "trial"]
    expected = job["result"]["trials"]
    assert len(trials) == len(expected) == 5
    for sent, stored in zip(trials, expected, strict=True):
        assert sent["index"] == stored["index"]
        assert sent["loss"] == pytest.approx(stored["loss"], rel=1e-12, abs=1e-300)
        assert sent["objective"] == pytest.approx(stored["objective"], rel=1e-12, abs=1e-300)
        assert sent["recovered"] == stored["recovered"]
        assert sent["status"] == stored["solver"]["status"]
        assert sent["certified"] == (stored["loss"] <= zero_loss)
        assert sent["seconds"] >= 0 and sent["total"] == 5
    assert [trial["done"] for trial in trials] == [1, 2, 3, 4, 5]
    # a log event per working-set round, before its trial's event; the last round of a trial adds no cut; a trial
    # the cone shortcut decided solved no sub-problem and sends none (this solve has both kinds)
    assert {stored["solver"]["outer_iterations"] == 0 for stored in expected} == {True, False}
    for index, stored in enumerate(expected):
        rounds = [event for event in events if event.event == "log" and event.data["trial"] == index]
        if stored["solver"]["outer_iterations"] == 0:
            assert not rounds
            continue
        trial_id = next(event.id for event in events if event.event == "trial" and event.data["index"] == index)
        assert rounds and all(event.id < trial_id for event in rounds)
        assert [event.data["round"] for event in rounds] == list(range(1, len(rounds) + 1))
        assert len(rounds) <= stored["solver"]["outer_iterations"]
        assert rounds[-1].data["added"] == 0 and rounds[-1].data["status"] == "Solved"
        assert all(event.data["working_set"] >= 0 and event.data["seconds"] >= 0 for event in rounds)
    # the selected trial certifies the global optimum, and its event says so
    selected = job["result"]["selected_trial"]
    assert trials[selected]["certified"] is job["result"]["certificate"]["global_optimum"]
    assert events[-1].data["done"] == 5 and events[-1].data["total"] == 5


def test_an_early_stop_says_trials_run_against_trials_asked(http: httpx.Client) -> None:
    job_id = submit(http, {"planted": {"n": 300, "d": 20, "k": 1, "seed": 0}, "trials": 8})
    events = read_events(http, f"/v1/solves/{job_id}/events")
    job = wait_job(http, f"/v1/solves/{job_id}")
    run = len(job["result"]["trials"])
    assert run < 8, "this planted problem is certified before the eighth trial"
    assert len([event for event in events if event.event == "trial"]) == run
    assert job["progress"] == {"done": run, "total": 8}
    assert events[-1].data == {"status": "succeeded", "error": None, "done": run, "total": 8}


def test_last_event_id_resumes_after_it_without_repeats(http: httpx.Client) -> None:
    job_id = submit(http, SOLVE | {"seed": 7})
    path = f"/v1/solves/{job_id}/events"
    everything = read_events(http, path)
    for cut in range(len(everything)):
        resumed = read_events(http, path, last_event_id=everything[cut].id)
        assert resumed == everything[cut + 1:]
    assert read_events(http, path, last_event_id=0) == everything


def test_a_subscriber_that_hangs_up_mid_stream_resumes_and_the_server_is_unaffected(
        http: httpx.Client, live_server: ServerProcess) -> None:
    body = {"planted": {"n": 2000, "d": 40, "k": 2, "seed": 2}, "trials": 12, "stop_on_certificate": False}
    job_id = submit(http, body)
    path = f"/v1/solves/{job_id}/events"
    first = read_events(http, path, stop_after=3)  # hang up while the job runs
    assert http.get("/healthz").status_code == 200
    rest = read_events(http, path, last_event_id=first[-1].id)
    job = wait_job(http, f"/v1/solves/{job_id}")
    assert first + rest == read_events(http, path)
    assert_well_formed(first + rest, job["status"])
    assert len([event for event in rest + first if event.event == "trial"]) == len(job["result"]["trials"]) == 12
    assert live_server.alive()
    assert "Traceback" not in live_server.log_tail(20000)


def test_an_experiment_streams_one_cell_event_per_cell(http: httpx.Client) -> None:
    spec = {"kind": "phase_transition", "k": 1, "d": [5, 8], "n": [20, 40], "repetitions": 1,
            "methods": ["relaxation"], "trials": 2, "seed": 0}
    job_id = submit(http, spec, "/v1/experiments")
    events = read_events(http, f"/v1/experiments/{job_id}/events")
    job = wait_job(http, f"/v1/experiments/{job_id}")
    assert_well_formed(events, "succeeded")
    cells = [event.data for event in events if event.event == "cell"]
    assert len(cells) == len(job["result"]["cells"]) == 4
    assert [cell["done"] for cell in cells] == [1, 2, 3, 4] and {cell["total"] for cell in cells} == {4}
    assert sorted((cell["d"], cell["n"]) for cell in cells) == sorted(
        (cell["d"], cell["n"]) for cell in job["result"]["cells"])
    # a solve's stream does not serve an experiment, and an experiment's does not serve a solve
    assert_problem(http.get(f"/v1/solves/{job_id}/events"), 404)


def test_unknown_jobs_and_bad_last_event_ids_are_problems(http: httpx.Client) -> None:
    assert_problem(http.get("/v1/solves/nope/events"), 404)
    assert_problem(http.get("/v1/experiments/nope/events"), 404)
    job_id = submit(http, SOLVE)
    body = assert_problem(http.get(f"/v1/solves/{job_id}/events", headers={"Last-Event-ID": "x1"}), 422)
    assert body["parameter"] == "Last-Event-ID" and "'x1'" in body["detail"]


def test_many_subscribers_each_get_the_whole_stream(live_server: ServerProcess, http: httpx.Client) -> None:
    job_id = submit(http, {"planted": {"n": 1500, "d": 40, "k": 2, "seed": 4}, "trials": 6,
                           "stop_on_certificate": False})
    path = f"/v1/solves/{job_id}/events"

    async def subscribe(client: httpx.AsyncClient) -> list[Sse]:
        async with client.stream("GET", path) as answer:
            lines = [line async for line in answer.aiter_lines()]
        return list(parse_stream(iter(lines)))

    async def many(count: int) -> tuple[list[list[Sse]], float]:
        limits = httpx.Limits(max_connections=count + 5)
        async with httpx.AsyncClient(base_url=live_server.url, timeout=60, limits=limits) as client:
            streams = asyncio.gather(*(subscribe(client) for _ in range(count)))
            await asyncio.sleep(0.3)
            started = time.monotonic()
            health = await client.get("/healthz")
            took = time.monotonic() - started
            assert health.status_code == 200
            return await streams, took

    streams, health_s = asyncio.run(many(100))
    reference = read_events(http, path)
    assert all(stream == reference for stream in streams)
    assert health_s < 2.0, f"/healthz took {health_s:.2f} s beside 100 subscribers"


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("keyed-events"),
                           env={"CNNRELAX_API_KEYS": "key-a,key-b", "CNNRELAX_EVENTS_PING_S": "0.2"}).start()
    yield server
    server.stop()


def test_streams_are_tenant_scoped_and_send_heartbeats(keyed_server: ServerProcess) -> None:
    a, b = {"X-API-Key": "key-a"}, {"X-API-Key": "key-b"}
    with httpx.Client(base_url=keyed_server.url, timeout=60) as client:
        job_id = submit(client, {"planted": {"n": 2000, "d": 40, "k": 2, "seed": 5}, "trials": 6,
                                 "stop_on_certificate": False}, headers=a)
        path = f"/v1/solves/{job_id}/events"
        assert_problem(client.get(path, headers=b), 404)
        assert_problem(client.get(path), 401)
        comments: list[str] = []
        with client.stream("GET", path, headers=a) as answer:
            assert answer.status_code == 200
            events = list(parse_stream(answer.iter_lines(), comments))
        assert events[-1].event == "end"
        assert any("ping" in comment for comment in comments), "no heartbeat while the job ran"
        assert_problem(client.get(path, headers=b), 404)  # still someone else's once it has ended


def test_the_stream_is_in_the_openapi_document(http: httpx.Client) -> None:
    paths = http.get("/openapi.json").json()["paths"]
    for path in ("/v1/solves/{job_id}/events", "/v1/experiments/{job_id}/events"):
        content = paths[path]["get"]["responses"]["200"]["content"]
        assert "text/event-stream" in content
        assert any(p["name"] == "Last-Event-ID" and p["in"] == "header" for p in paths[path]["get"]["parameters"])



class _Recorder(BaseJobControl):
    """A job control whose published events and progress are kept in lists (the pacing is the real one)."""

    def __init__(self) -> None:
        super().__init__(time_limit_s=60)
        self.published: list[tuple[str, dict[str, Any]]] = []
        self.progressed: list[tuple[int, int]] = []

    def publish_events(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        self.published += events

    def publish_progress(self, done: int, total: int, partial_state: dict[str, Any]) -> None:
        self.progressed.append((done, total))


def test_log_events_are_capped_with_a_note_and_flush_publishes_what_the_pacing_held() -> None:
    control = _Recorder()
    for round_ in range(MAX_LOG_EVENTS + 50):
        control.event("log", {"round": round_})
    control.event("trial", {"index": 0})
    control.progress(1, 8, {})
    control.flush()
    logs = [data for name, data in control.published if name == "log"]
    assert len(logs) == MAX_LOG_EVENTS + 1
    assert [data["round"] for data in logs[:-1]] == list(range(MAX_LOG_EVENTS))
    assert "capped" in logs[-1]["note"] and str(MAX_LOG_EVENTS) in logs[-1]["note"]
    assert control.published[-1] == ("trial", {"index": 0})  # trials are never capped, order kept
    assert control.progressed[-1] == (1, 8)  # the last progress, held back by the pacing, is published


def test_a_cancel_shows_in_the_stream_and_it_ends_cancelled(http: httpx.Client) -> None:
    # seconds of work: each trial of a planted solve ends in about one round now, so the problem is large
    body = {"planted": {"n": 20000, "d": 200, "k": 4, "seed": 6}, "trials": 60, "stop_on_certificate": False}
    job_id = submit(http, body)
    path = f"/v1/solves/{job_id}/events"
    seen: list[Sse] = []
    with http.stream("GET", path, timeout=60) as answer:
        for event in parse_stream(answer.iter_lines()):
            seen.append(event)
            if event.event == "trial" and event.data["index"] == 0:
                assert http.delete(f"/v1/solves/{job_id}").status_code == 202
    assert_well_formed(seen, "cancelled")
    requested = [e for e in seen if e.event == "status" and e.data.get("cancel_requested")]
    assert len(requested) == 1 and requested[0].data["status"] == "running"
    assert requested[0].id < seen[-1].id
    assert seen[-1].data["done"] < 60  # it stopped: trials run of those asked
    assert seen == read_events(http, path)  # the ended job's log, replayed
