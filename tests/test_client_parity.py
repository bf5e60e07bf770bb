"""The thin client beside the service: typed solve options equal to the service's one definition, the job's
events (sync and async) equal to the stream on the wire, the environment's URL and key, pages as on the wire,
and the listings of experiments and datasets. Against a live server (tests/conftest.py)."""

from __future__ import annotations

import asyncio
import typing
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from cnnrelax.api.schemas import SolveRequest
from cnnrelax.specs import SolveOptionsBase, SolveSpec
from cnnrelax_client import (
    AsyncClient,
    CellEvent,
    Client,
    CnnrelaxError,
    CnnrelaxTimeoutError,
    EndEvent,
    LogEvent,
    SolveOptions,
    StatusEvent,
    TrialEvent,
    TrialOptions,
)

from conftest import ServerProcess
from event_stream import read_events

PLANTED = {"n": 400, "d": 20, "k": 2, "seed": 1}


@pytest.fixture()
def client(live_server: ServerProcess) -> Iterator[Client]:
    with Client(live_server.url, timeout=30) as c:
        yield c


def test_the_solve_options_are_defined_once_and_the_client_types_the_same_names() -> None:
    assert issubclass(SolveRequest, SolveOptionsBase) and issubclass(SolveSpec, SolveOptionsBase)
    base = set(SolveOptionsBase.model_fields)
    for model in (SolveRequest, SolveSpec):
        assert all(model.model_fields[name].default == info.default for name, info in
                   SolveOptionsBase.model_fields.items()), model
    # the client's typed options: the base's names and the constraints (typed per side: wire or core)
    assert set(typing.get_type_hints(SolveOptions)) == base | {"constraints"}
    assert set(typing.get_type_hints(TrialOptions)) < set(typing.get_type_hints(SolveOptions))
    assert set(SolveRequest.model_fields) == base | {"constraints", "data", "dataset_id", "planted"}
    assert set(SolveSpec.model_fields) == base | {"constraints", "dataset_id", "planted"}


def test_typed_options_reach_the_server(client: Client) -> None:
    options = SolveOptions(trials=3, stop_on_certificate=False, coverage_samples=0)
    job = client.wait(client.submit(planted=PLANTED, options=options, seed=4))
    assert job.status == "succeeded" and job.result is not None
    assert len(job.result.trials) == 3 and job.progress is not None and job.progress.done == 3
    planted_only = client.solve_planted(400, 20, 2, seed=1, trial_seed=4, trials=3, stop_on_certificate=False,
                                        coverage_samples=0)
    np.testing.assert_array_equal(planted_only.w, job.result.w)  # the same seeds: the same answer


def test_events_are_typed_and_equal_to_the_stream_on_the_wire(client: Client, live_server: ServerProcess) -> None:
    job = client.submit(planted=PLANTED, trials=4, stop_on_certificate=False)
    events = list(client.events(job))
    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        wire = read_events(http, f"/v1/solves/{job.id}/events")
    assert [(e.id, e.event, e.data) for e in events] == [(w.id, w.event, w.data) for w in wire]
    kinds = {StatusEvent: "status", TrialEvent: "trial", LogEvent: "log", EndEvent: "end"}
    assert all(kinds[type(event)] == event.event for event in events)
    trials = [event for event in events if isinstance(event, TrialEvent)]
    assert [t.index for t in trials] == [0, 1, 2, 3] and [t.done for t in trials] == [1, 2, 3, 4]
    assert isinstance(events[-1], EndEvent) and events[-1].status == "succeeded"
    # resumed after any event: the rest, without repeats
    middle = events[len(events) // 2]
    assert [e.id for e in client.events(job.id, last_event_id=middle.id)] == [
        e.id for e in events if e.id > middle.id]


def test_progress_callbacks_follow_the_events(client: Client) -> None:
    seen: list[tuple[str, int | None, int | None]] = []

    def progress(job: Any) -> None:
        seen.append((job.status, job.progress and job.progress.done, job.progress and job.progress.total))

    result = client.solve_planted(400, 20, 2, seed=1, trials=5, stop_on_certificate=False, progress=progress)
    assert result.w is not None
    trials_run = [done for status, done, total in seen if status == "running" and total == 5]
    assert trials_run[-5:] == [1, 2, 3, 4, 5]  # one snapshot per trial event, in order
    assert seen[-1] == ("succeeded", 5, 5)
    # an experiment: a snapshot per cell
    cells: list[int] = []
    spec = {"kind": "phase_transition", "k": 1, "d": [5], "n": [20, 40, 60], "repetitions": 1,
            "methods": ["relaxation"], "trials": 2, "seed": 0}
    done = client.run_experiment(spec, progress=lambda e: cells.append(e.progress.done if e.progress else -1))
    assert done.status == "succeeded" and [1, 2, 3] == sorted(set(cells) - {0, -1})


def test_async_events_equal_the_sync_ones(client: Client, live_server: ServerProcess) -> None:
    job = client.submit(planted=PLANTED, trials=3, stop_on_certificate=False)

    async def collect() -> tuple[list[Any], Any]:
        async with AsyncClient(live_server.url, timeout=30) as aclient:
            events = [event async for event in aclient.events(job.id)]
            snapshots: list[Any] = []
            final = await aclient.wait(job.id, progress=snapshots.append)
            return events, (final, snapshots)

    events, (final, snapshots) = asyncio.run(collect())
    assert [(e.id, e.event) for e in events] == [(e.id, e.event) for e in client.events(job.id)]
    assert final.status == "succeeded" and snapshots[-1].status == "succeeded"


def test_an_experiments_events_carry_its_cells(client: Client) -> None:
    spec = {"kind": "phase_transition", "k": 1, "d": [5, 8], "n": [20], "repetitions": 1,
            "methods": ["relaxation"], "trials": 2, "seed": 1}
    experiment = client.submit_experiment(spec)
    cells = [event for event in client.events(experiment) if isinstance(event, CellEvent)]
    assert sorted(cell.cell["d"] for cell in cells) == [5, 8] and cells[-1].done == cells[-1].total == 2


def test_a_timeout_while_following_events_is_a_client_timeout(client: Client) -> None:
    # seconds of work: each trial of a planted solve ends in about one round now, so the problem is large
    job = client.submit(planted={"n": 20000, "d": 200, "k": 4, "seed": 2}, trials=40, stop_on_certificate=False)
    try:
        with pytest.raises(CnnrelaxTimeoutError):
            for _ in client.events(job, timeout=0.5):
                pass
    finally:
        client.cancel(job)


def test_an_unknown_job_is_a_404_problem(client: Client) -> None:
    with pytest.raises(CnnrelaxError) as info:
        list(client.events("0" * 32))
    assert info.value.status == 404


def test_pages_have_items_and_jobs_is_a_deprecated_alias(client: Client) -> None:
    client.wait(client.submit(planted=PLANTED, trials=1))
    page = client.list_jobs(limit=1)
    assert len(page.items) == 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert page.jobs == page.items
    assert any(issubclass(w.category, DeprecationWarning) and "items" in str(w.message) for w in caught)


def test_list_experiments_and_datasets(client: Client) -> None:
    spec = {"kind": "phase_transition", "k": 1, "d": [5], "n": [20], "repetitions": 1, "methods": ["relaxation"],
            "trials": 1, "seed": 3}
    experiment = client.run_experiment(spec)
    listed = client.list_experiments(limit=50)
    assert experiment.id in [item.id for item in listed.items]
    X = np.random.default_rng(0).standard_normal((20, 4))
    dataset = client.upload_dataset(X, np.abs(X).sum(axis=1))
    assert dataset.id in [item.id for item in client.list_datasets().items]


def test_the_client_reads_cnnrelax_url_and_cnnrelax_api_key(monkeypatch: pytest.MonkeyPatch,
                                                           start_server: Any) -> None:
    server = start_server(env={"CNNRELAX_API_KEYS": "env-key"}, workers=1)
    monkeypatch.setenv("CNNRELAX_URL", server.url)
    monkeypatch.setenv("CNNRELAX_API_KEY", "env-key")
    with Client() as env_client:
        assert env_client.base_url == server.url
        assert env_client.list_jobs().items == []  # the key was sent (else 401)
    with Client(api_key="wrong") as explicit, pytest.raises(CnnrelaxError) as info:
        explicit.list_jobs()
    assert info.value.status == 401  # an explicit argument wins over the environment
