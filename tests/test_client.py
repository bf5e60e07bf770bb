"""The thin client (``cnnrelax_client``) against a live server over loopback, sync and async.

The server is ``python -m cnnrelax.server`` in a subprocess on a free port with a temporary data dir
(the ``live_server`` and ``start_server`` fixtures of tests/conftest.py).
Results must equal the numerical core run in this process on the same data and seeds.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from cnnrelax import PlantedSpec, SolveOptions, planted_problem, solve
from cnnrelax.results import solve_result_json
from cnnrelax_client import (
    AsyncClient,
    Client,
    CnnrelaxConnectionError,
    CnnrelaxError,
    CnnrelaxTimeoutError,
    Job,
    JobFailedError,
    SolveResult,
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def service_url(live_server: Any) -> str:
    """The URL of the shared live server (tests/conftest.py: ``python -m cnnrelax.server`` on a free port)."""
    return str(live_server.url)


@pytest.fixture()
def client(service_url: str) -> Iterator[Client]:
    with Client(service_url, timeout=30) as c:
        yield c


def _reference(n: int, d: int, k: int, seed: int, trials: int, trial_seed: int) -> tuple[Any, dict[str, Any]]:
    planted = planted_problem(PlantedSpec(n=n, d=d, k=k, seed=seed))
    result = solve(planted.problem, SolveOptions(trials=trials, seed=trial_seed), w_star=planted.w_star)
    return planted, solve_result_json(result)


# --------------------------------------------------------------------------------------------------
# sync
# --------------------------------------------------------------------------------------------------

def test_solve_planted_returns_numpy_arrays_and_a_certificate(client: Client) -> None:
    planted, reference = _reference(300, 10, 1, seed=0, trials=4, trial_seed=0)
    result = client.solve_planted(300, 10, 1, seed=0, trials=4, trial_seed=0, timeout=60)
    assert isinstance(result, SolveResult)
    assert isinstance(result.w, np.ndarray) and result.w.shape == (10,)
    np.testing.assert_allclose(result.w, planted.w_star, atol=1e-8)
    np.testing.assert_allclose(result.w, reference["w"], atol=1e-12)
    assert result.certificate.global_optimum is True and result.certified
    assert result.recovery_error is not None and result.recovery_error <= 1e-8
    assert isinstance(result.certificate.cone.applicable, bool)
    assert result.trial_directions.shape == (len(result.trials), 10)
    assert result.trial_filters.shape == (len(result.trials), 10)
    np.testing.assert_allclose(result.trial_directions, [t["r"] for t in reference["trials"]], atol=0)
    assert result.trials[0].solver.status is not None
    assert all(t.recovered is not None and t.predicted is not None for t in result.trials)


def test_solve_data_equals_the_core(client: Client) -> None:
    planted = planted_problem(PlantedSpec(n=240, d=12, k=2, seed=3))
    X, y = planted.problem.X, planted.problem.y
    reference = solve(planted.problem, SolveOptions(trials=3, seed=5))
    result = client.solve(X, y, k=2, trials=3, seed=5, timeout=60)
    np.testing.assert_allclose(result.w, reference.w, atol=1e-12)
    assert result.loss == pytest.approx(reference.loss, abs=1e-12)
    assert result.shape == {"n": 240, "d": 12, "k": 2, "m": 6}
    assert result.recovery_error is None  # not planted: no w* to compare with


def test_submit_get_wait_with_progress_and_list(client: Client) -> None:
    job = client.submit(planted={"n": 200, "d": 8, "k": 2, "seed": 1, "noise_std": 0.0}, trials=2, seed=0)
    assert isinstance(job, Job) and job.status in ("queued", "running", "succeeded")
    seen: list[str] = []
    finished = client.wait(job, timeout=60, progress=lambda snapshot: seen.append(snapshot.status))
    assert finished.id == job.id and finished.status == "succeeded" and finished.done
    assert seen and seen[-1] == "succeeded"
    assert finished.result is not None and finished.result.w is not None
    assert client.get(job.id).status == "succeeded"
    listed = [j.id for j in client.iter_jobs(status="succeeded", page_size=2)]
    assert job.id in listed
    assert len(listed) == len(set(listed))  # pagination never repeats a job


def test_upload_dataset_is_content_addressed_and_reusable(client: Client) -> None:
    planted = planted_problem(PlantedSpec(n=150, d=6, k=1, seed=7))
    X, y = planted.problem.X, planted.problem.y
    first = client.upload_dataset(X, y)
    again = client.upload_dataset(X.copy(), y.copy())
    assert first.id == again.id and len(first.id) == 64
    assert client.get_dataset(first.id).id == first.id
    by_id = client.wait(client.submit(dataset_id=first.id, k=1, trials=3, seed=2), timeout=60)
    inline = client.solve(X, y, k=1, trials=3, seed=2, timeout=60)
    assert by_id.result is not None
    np.testing.assert_allclose(by_id.result.w, inline.w, atol=1e-12)
    client.delete_dataset(first.id)
    with pytest.raises(CnnrelaxError) as info:
        client.get_dataset(first.id)
    assert info.value.status == 404


def test_errors_carry_problem_details(client: Client) -> None:
    X = np.random.default_rng(0).standard_normal((20, 9))
    with pytest.raises(CnnrelaxError) as info:
        client.solve(X, np.ones(20), k=2)
    error = info.value
    assert error.status == 422
    assert "divisible" in error.detail
    assert error.title and error.type
    assert error.problem["status"] == 422
    with pytest.raises(CnnrelaxError) as info:
        client.submit(X[:, :8], np.ones(20), k=2, output_weights=[1.0, -1.0])
    assert info.value.status == 422 and "negative" in info.value.detail.lower()
    with pytest.raises(CnnrelaxError) as info:
        client.get("no-such-job")
    assert info.value.status == 404


def test_idempotency_key_returns_the_same_job(client: Client) -> None:
    planted = {"n": 120, "d": 6, "k": 1, "seed": 11, "noise_std": 0.0}
    first = client.submit(planted=planted, trials=2, idempotency_key="client-test-key")
    again = client.submit(planted=planted, trials=2, idempotency_key="client-test-key")
    assert again.id == first.id
    with pytest.raises(CnnrelaxError) as info:
        client.submit(planted={**planted, "seed": 12}, trials=2, idempotency_key="client-test-key")
    assert info.value.status in (409, 422)
    client.wait(first, timeout=60)


def test_cancel_a_long_job_and_wait_times_out_on_the_client(client: Client) -> None:
    long_job = client.submit(planted={"n": 4000, "d": 40, "k": 1, "seed": 0, "noise_std": 0.0},
                             trials=100, stop_on_certificate=False, polish=False)
    with pytest.raises(CnnrelaxTimeoutError):
        client.wait(long_job, timeout=0.2)
    cancelled = client.cancel(long_job)
    assert cancelled.id == long_job.id
    if cancelled.status == "cancelled":  # it was still queued: DELETE removed it
        with pytest.raises(CnnrelaxError) as gone:
            client.get(long_job.id)
        assert gone.value.status == 404
    else:  # it was running: DELETE asked it to stop
        assert client.wait(long_job, timeout=30).status == "cancelled"
    with pytest.raises(CnnrelaxError) as stopped:  # cancelled while running, or removed while queued
        client.solve_planted(4000, 40, 1, trials=100, stop_on_certificate=False, polish=False,
                             timeout=30, progress=lambda snapshot: client.cancel(snapshot.id))
    assert isinstance(stopped.value, JobFailedError) or stopped.value.status == 404


def test_unreachable_service_is_a_connection_error() -> None:
    with Client(f"http://127.0.0.1:{_free_port()}", timeout=2) as unreachable:
        with pytest.raises(CnnrelaxConnectionError) as info:
            unreachable.health()
    assert info.value.status is None


def test_run_experiment_reports_progress_and_serves_a_png(client: Client) -> None:
    seen: list[tuple[int, int]] = []
    experiment = client.run_experiment(
        kind="phase_transition", k=1, d=[4, 8], n=[20, 40], repetitions=2, methods=["relaxation"], seed=0,
        progress=lambda snapshot: seen.append((snapshot.progress.done, snapshot.progress.total))
        if snapshot.progress else None, timeout=120)
    assert experiment.status == "succeeded" and experiment.result is not None
    cells = experiment.result["cells"]
    assert sorted((c["d"], c["n"]) for c in cells) == [(4, 20), (4, 40), (8, 20), (8, 40)]
    assert seen and seen[-1] == (4, 4)
    assert all(done <= total for done, total in seen)
    png = client.experiment_figure(experiment)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(CnnrelaxError) as info:
        client.run_experiment(kind="phase_transition", k=3, d=[4], n=[20])
    assert info.value.status == 422


def test_api_key_is_sent_and_a_missing_one_is_a_401(start_server: Callable[..., Any]) -> None:
    guarded = start_server(env={"CNNRELAX_API_KEYS": "client-test-secret"}, workers=1)
    with Client(guarded.url, api_key="client-test-secret") as keyed:
        assert keyed.list_jobs().items == []
    with Client(guarded.url) as anonymous:
        assert anonymous.health() is not None  # health stays open
        with pytest.raises(CnnrelaxError) as info:
            anonymous.list_jobs()
    assert info.value.status == 401 and "X-API-Key" in info.value.detail


# --------------------------------------------------------------------------------------------------
# async
# --------------------------------------------------------------------------------------------------

async def test_async_client_solves_concurrently_and_raises_problem_details(service_url: str) -> None:
    async with AsyncClient(service_url, timeout=30) as aclient:
        assert (await aclient.health()) is not None
        seeds = [0, 1, 2]
        results = await asyncio.gather(*(aclient.solve_planted(300, 10, 1, seed=s, trials=4, timeout=60)
                                         for s in seeds))
        for seed, result in zip(seeds, results, strict=True):
            planted = planted_problem(PlantedSpec(n=300, d=10, k=1, seed=seed))
            reference = solve(planted.problem, SolveOptions(trials=4), w_star=planted.w_star)
            np.testing.assert_allclose(result.w, reference.w, atol=1e-12)
        job = await aclient.submit(planted={"n": 100, "d": 4, "k": 2, "seed": 3}, trials=2)
        done = await aclient.wait(job.id, timeout=60)
        assert done.status == "succeeded"
        assert job.id in [j.id async for j in aclient.iter_jobs(page_size=50)]
        with pytest.raises(CnnrelaxError) as info:
            await aclient.get("no-such-job")
        assert info.value.status == 404
