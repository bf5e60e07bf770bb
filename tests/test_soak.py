"""Soak: a few hundred tiny jobs against a live server; its memory and open file descriptors stay flat.

After a warm-up (the worker processes, the thread pool and its SQLite connections, the caches all
reach their working size) the server process (and its worker processes) are measured at checkpoints
while batches of jobs run, each batch also touching the list, metrics and a 4xx error path. Growth
from the first checkpoint to the last must stay under generous bounds that a per-job leak would still
cross: a result or a connection kept per job is hundreds of jobs' worth of kilobytes or descriptors.
"""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import psutil  # type: ignore[import-untyped]  # no stubs installed
import pytest

from conftest import ServerProcess, wait_job

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CONCURRENCY = 8
WARM_UP_JOBS = 120
BATCHES = 4
JOBS_PER_BATCH = 100
#: Bounds on growth from the first checkpoint after warm-up to the last (300 jobs later).
MAX_SERVER_RSS_GROWTH_BYTES = 24 * 1024 * 1024
MAX_WORKERS_RSS_GROWTH_BYTES = 24 * 1024 * 1024
MAX_FD_GROWTH = 8


@dataclass(frozen=True)
class Footprint:
    """Resident memory and open descriptors of the server process and, summed, its worker processes."""

    server_rss: int
    server_fds: int
    workers_rss: int
    workers_fds: int
    workers: int


def footprint(pid: int) -> Footprint:
    """Measure the server process ``pid`` and its children now."""
    server = psutil.Process(pid)
    children = server.children(recursive=True)
    workers_rss = workers_fds = 0
    for child in children:
        try:
            workers_rss += child.memory_info().rss
            workers_fds += child.num_fds()
        except psutil.NoSuchProcess:
            continue
    return Footprint(server.memory_info().rss, server.num_fds(), workers_rss, workers_fds, len(children))


def run_batch(http: httpx.Client, pool: cf.ThreadPoolExecutor, first_seed: int, jobs: int) -> None:
    """``jobs`` tiny solves, ``CONCURRENCY`` at a time, plus list, metrics and a rejected request per ten."""

    def one(seed: int) -> None:
        answer = http.post("/v1/solves", json={"planted": {"n": 40, "d": 4, "k": 2, "seed": seed}, "trials": 1})
        assert answer.status_code == 202, answer.text
        job = wait_job(http, answer.headers["location"], timeout=60)
        assert job["status"] == "succeeded", job
        if seed % 10 == 0:
            assert http.get("/v1/solves", params={"limit": 20}).status_code == 200
            assert http.get("/metrics").status_code == 200
            bad = http.post("/v1/solves", json={"planted": {"n": 40, "d": 5, "k": 2}})
            assert bad.status_code == 422, bad.text

    for future in [pool.submit(one, seed) for seed in range(first_seed, first_seed + jobs)]:
        future.result()


def test_server_memory_and_descriptors_stay_flat(start_server: Callable[..., ServerProcess]) -> None:
    server = start_server()
    assert server.process is not None
    pid = server.process.pid
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    with httpx.Client(base_url=server.url, timeout=60, limits=limits) as http, \
            cf.ThreadPoolExecutor(CONCURRENCY) as pool:
        run_batch(http, pool, 0, WARM_UP_JOBS)
        checkpoints = [footprint(pid)]
        for batch in range(BATCHES - 1):
            run_batch(http, pool, WARM_UP_JOBS + batch * JOBS_PER_BATCH, JOBS_PER_BATCH)
            checkpoints.append(footprint(pid))
    first, last = checkpoints[0], checkpoints[-1]
    report = "\n".join(f"  {c}" for c in checkpoints)
    assert last.workers == first.workers, f"worker processes changed:\n{report}"
    assert last.server_fds - first.server_fds <= MAX_FD_GROWTH, f"server descriptors grew:\n{report}"
    assert last.workers_fds - first.workers_fds <= MAX_FD_GROWTH, f"worker descriptors grew:\n{report}"
    assert last.server_rss - first.server_rss <= MAX_SERVER_RSS_GROWTH_BYTES, f"server memory grew:\n{report}"
    assert last.workers_rss - first.workers_rss <= MAX_WORKERS_RSS_GROWTH_BYTES, f"worker memory grew:\n{report}"
    # Not only bounded, but not climbing batch after batch: the last step is no bigger than the bound / 3.
    step = checkpoints[-1].server_rss - checkpoints[-2].server_rss
    assert step <= MAX_SERVER_RSS_GROWTH_BYTES / 3, f"server memory still climbing:\n{report}"
