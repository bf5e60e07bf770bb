"""Job event streams when jobs run on a real Dask cluster (a scheduler and one worker on loopback).

The events travel as progress does: from the task's job control (a ``distributed.Queue`` per run) to the web
process, which copies them into the store; the stream then reads them from the store as with local workers.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from conftest import ServerProcess, wait_job
from dask_cluster import DaskCluster
from event_stream import assert_well_formed, read_events, submit

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def dask_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    cluster = DaskCluster(tmp_path_factory.mktemp("dask-events"), workers=1)
    try:
        cluster.start()
        server = ServerProcess(tmp_path_factory.mktemp("dask-events-api"),
                               env={"CNNRELAX_DASK_SCHEDULER": cluster.address}).start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        cluster.stop()


def test_solve_and_experiment_events_through_the_dask_executor(dask_service: ServerProcess) -> None:
    with httpx.Client(base_url=dask_service.url, timeout=60) as client:
        body = {"planted": {"n": 1500, "d": 40, "k": 2, "seed": 3}, "trials": 6, "stop_on_certificate": False}
        job_id = submit(client, body)
        first = read_events(client, f"/v1/solves/{job_id}/events", stop_after=2)  # live, then resumed
        events = first + read_events(client, f"/v1/solves/{job_id}/events", last_event_id=first[-1].id)
        job = wait_job(client, f"/v1/solves/{job_id}")
        assert_well_formed(events, "succeeded")
        trials = [event.data for event in events if event.event == "trial"]
        assert [trial["index"] for trial in trials] == [trial["index"] for trial in job["result"]["trials"]]
        assert len(trials) == 6
        looped = {trial["index"] for trial in job["result"]["trials"] if trial["solver"]["outer_iterations"]}
        assert looped and {event.data["trial"] for event in events if event.event == "log"} == looped  # cone: none
        assert job["progress"] == {"done": 6, "total": 6}

        spec = {"kind": "phase_transition", "k": 1, "d": [5], "n": [20, 40, 60], "repetitions": 1,
                "methods": ["relaxation"], "trials": 2, "seed": 0}
        experiment_id = submit(client, spec, "/v1/experiments")
        events = read_events(client, f"/v1/experiments/{experiment_id}/events")
        assert_well_formed(events, "succeeded")
        assert [event.data["done"] for event in events if event.event == "cell"] == [1, 2, 3]
