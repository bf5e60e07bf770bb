"""Service speed: a whole planted job through HTTP against the plain cvxpy + Clarabel LP, and the job overhead.

    python bench/bench_service.py            # n=5000, d=100, k=4 (3 HTTP runs) and 30 tiny jobs
    python bench/bench_service.py --json     # the same figures as JSON

1. A planted job (n=5000, d=100, k=4, one trial) through HTTP, from POST to the result (the client holds
   ``GET /v1/solves/{id}?wait=``), against building and solving that one LP with the plain cvxpy z-formulation
   (``cnnrelax.core.oracle.CvxpyRelaxation(problem, "lp").solve(r)``, Clarabel) in this process, same instance and
   direction. Target: the HTTP job within a tenth of the cvxpy time.
2. Job overhead: tiny solves (n=200, d=20, one trial), POST to result minus the job's own ``solve_time_s``
   (queueing, SQLite bookkeeping, process hand-off, HTTP). Target: under 20 ms.
3. Submission of a solve on a stored dataset (n=200000, d=40, 64 MB): the POST's latency alone (each job is
   cancelled at once). The API checks it from the dataset's metadata, so it does not grow with the dataset.

The server is ``python -m cnnrelax.server`` on a free loopback port with a temporary data dir (2 workers).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from cnnrelax import PlantedSpec, planted_problem, trial_direction
from cnnrelax.core.oracle import CvxpyRelaxation

BIG = {"n": 5000, "d": 100, "k": 4}
TINY = {"n": 200, "d": 20, "k": 1}
DATASET = (200_000, 40)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A service subprocess for the duration of the benchmark."""

    def __init__(self, data_dir: Path, workers: int) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "CNNRELAX_WORKERS": str(workers), "CNNRELAX_LOG_LEVEL": "warning"}
        self.log = (data_dir / "server.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cnnrelax.server", "--host", "127.0.0.1", "--port", str(self.port),
             "--data-dir", str(data_dir)], stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def run_job(http: httpx.Client, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """POST the job and hold GET ?wait= until it ends; return the wall time and the job."""
    start = time.perf_counter()
    answer = http.post("/v1/solves", json=body)
    answer.raise_for_status()
    location = answer.headers["location"]
    job = answer.json()
    while job["status"] not in ("succeeded", "failed", "cancelled"):
        job = http.get(location, params={"wait": 30}).json()
    elapsed = time.perf_counter() - start
    if job["status"] != "succeeded":
        raise RuntimeError(f"job ended {job['status']}: {job.get('error')}")
    return elapsed, job


def dataset_post_seconds(http: httpx.Client, posts: int) -> list[float]:
    """Upload a DATASET-sized ``.npz`` once; time ``posts`` solve submissions on it (each cancelled at once)."""
    import io

    import numpy as np

    rng = np.random.default_rng(0)
    X = rng.standard_normal(DATASET)
    buffer = io.BytesIO()
    np.savez(buffer, X=X, y=np.abs(rng.standard_normal(DATASET[0])))
    answer = http.post("/v1/datasets", content=buffer.getvalue(), headers={"content-type": "application/x-npz"})
    answer.raise_for_status()
    dataset_id = answer.json()["id"]
    times = []
    for i in range(posts):
        start = time.perf_counter()
        submitted = http.post("/v1/solves", json={"dataset_id": dataset_id, "k": 4, "trials": 1, "seed": i})
        times.append(time.perf_counter() - start)
        submitted.raise_for_status()
        http.delete(submitted.headers["location"])
    return times


def cvxpy_lp_seconds(n: int, d: int, k: int, seed: int) -> tuple[float, float, float | None]:
    """Build + solve, and solve only, of the plain cvxpy z-formulation of the job's first LP."""
    planted = planted_problem(PlantedSpec(n=n, d=d, k=k, seed=seed))
    r = trial_direction(seed, 0, planted.problem.m)
    start = time.perf_counter()
    relaxation = CvxpyRelaxation(planted.problem, "lp")
    built = time.perf_counter()
    solution = relaxation.solve(r)
    done = time.perf_counter()
    return done - start, done - built, solution.objective


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="HTTP runs of the big job.")
    parser.add_argument("--tiny", type=int, default=30, help="Tiny jobs for the overhead figure.")
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as data_dir:
        server = Server(Path(data_dir), workers=2)
        try:
            with httpx.Client(base_url=server.url, timeout=120) as http:
                run_job(http, {"planted": {**TINY, "seed": 999}, "trials": 1})  # warm the connection
                big_times, big_solve = [], []
                for _run in range(args.runs):
                    elapsed, job = run_job(http, {"planted": {**BIG, "seed": 0}, "trials": 1, "seed": 0})
                    big_times.append(elapsed)
                    big_solve.append(job["result"]["solve_time_s"])
                    objective = job["result"]["trials"][0]["objective"]
                overheads, tiny_wall = [], []
                for i in range(args.tiny):
                    elapsed, job = run_job(http, {"planted": {**TINY, "seed": i}, "trials": 1, "seed": i})
                    tiny_wall.append(elapsed)
                    overheads.append(elapsed - job["result"]["solve_time_s"])
                dataset_posts = dataset_post_seconds(http, 12)[2:]  # the first two warm the path
        finally:
            server.stop()

    cvx_total, cvx_solve, cvx_objective = cvxpy_lp_seconds(**BIG, seed=0)
    http_median = statistics.median(big_times)
    figures = {
        "big_job": {"size": BIG, "http_post_to_result_s": big_times, "http_median_s": http_median,
                    "job_solve_time_s": big_solve, "objective": objective},
        "cvxpy_clarabel_lp": {"build_and_solve_s": cvx_total, "solve_only_s": cvx_solve, "objective": cvx_objective},
        "ratio_http_to_cvxpy": http_median / cvx_total,
        "tiny_job": {"size": TINY, "jobs": len(overheads), "overhead_median_ms": 1000 * statistics.median(overheads),
                     "overhead_p90_ms": 1000 * sorted(overheads)[int(0.9 * (len(overheads) - 1))],
                     "overhead_max_ms": 1000 * max(overheads),
                     "post_to_result_median_ms": 1000 * statistics.median(tiny_wall)},
        "dataset_solve_post": {"size": list(DATASET), "posts": len(dataset_posts),
                               "median_ms": 1000 * statistics.median(dataset_posts),
                               "max_ms": 1000 * max(dataset_posts)},
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    tiny = figures["tiny_job"]
    print(f"planted n={BIG['n']} d={BIG['d']} k={BIG['k']}, one trial")
    print(f"  HTTP job, POST to result : {http_median:8.3f} s  (runs: {', '.join(f'{t:.3f}' for t in big_times)}; "
          f"solve_time_s {statistics.median(big_solve):.3f})")
    print(f"  cvxpy + Clarabel one LP  : {cvx_total:8.3f} s  (solve only {cvx_solve:.3f} s)")
    print(f"  ratio HTTP / cvxpy       : {figures['ratio_http_to_cvxpy']:8.4f}  (target < 0.1)")
    print(f"  objectives               : HTTP {objective:.10g}  cvxpy {cvx_objective:.10g}")
    print(f"tiny job n={TINY['n']} d={TINY['d']}, {tiny['jobs']} jobs one after another")
    print(f"  overhead beyond solve_time_s: median {tiny['overhead_median_ms']:.2f} ms, "
          f"p90 {tiny['overhead_p90_ms']:.2f} ms, max {tiny['overhead_max_ms']:.2f} ms  (target < 20 ms)")
    print(f"  POST to result median       : {tiny['post_to_result_median_ms']:.2f} ms")
    posted = figures["dataset_solve_post"]
    print(f"solve on a stored dataset n={DATASET[0]} d={DATASET[1]}: POST median {posted['median_ms']:.2f} ms, "
          f"max {posted['max_ms']:.2f} ms ({posted['posts']} submissions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
