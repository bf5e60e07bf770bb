"""Issue 11's attacks on a live server: every request priced before it is accepted, nothing blocks the loop.

Each test asserts the figure the issue asks for: the status (a 4xx problem naming the parameter and the
limit), a time bound, and the API process's memory (its RSS, sampled every few milliseconds while the
request is served, must not rise by more than 300 MiB; the body parser and the solvers are other processes).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures as cf
import contextlib
import gzip
import io
import json
import multiprocessing
import os
import threading
import time
import zipfile
from collections.abc import Iterator
from typing import Any, Callable

import httpx
import numpy as np
import pytest

from conftest import PeakRss, ServerProcess, assert_problem

MiB = 2**20
#: The API's memory may rise by at most this much while it answers one request (issue 11).
MEMORY_BOUND = 300 * MiB


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server with one worker and the default limits."""
    process = ServerProcess(tmp_path_factory.mktemp("limits"), workers=1).start()
    yield process
    process.stop()


@pytest.fixture()
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=120) as client:
        yield client


def priced(server: ServerProcess, send: Callable[[], httpx.Response], status: int = 422,
           seconds: float = 5.0) -> tuple[dict[str, Any], PeakRss, float]:
    """Send one request; assert its problem status, that it took under ``seconds`` and the memory bound."""
    assert server.process is not None
    with PeakRss(server.process.pid) as memory:
        start = time.perf_counter()
        answer = send()
        elapsed = time.perf_counter() - start
    problem = assert_problem(answer, status)
    print(f"{answer.request.method} {answer.request.url.path}: {status} in {elapsed * 1000:.0f} ms, API peak rise "
          f"{memory.rise / MiB:.0f} MiB ({problem.get('parameter')})")
    assert elapsed < seconds, f"{elapsed:.1f} s"
    assert memory.rise < MEMORY_BOUND, f"the API grew by {memory.rise / MiB:.0f} MiB"
    return problem, memory, elapsed


def npy_header(shape: tuple[int, ...], dtype: str = "<f8") -> bytes:
    """The bytes of a version-1.0 .npy header declaring ``shape`` (no data follows)."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


# -------------------------------------------------------------------------------------------------
# pricing from shapes alone
# -------------------------------------------------------------------------------------------------

def test_a_small_body_with_a_huge_patch_tensor_is_refused_before_anything_is_built(
        server: ServerProcess, http: httpx.Client) -> None:
    """Issue: 97 KiB (one row of 20000, patch_size 10000, stride 1) was 202, then 2.7 GB in the API."""
    body = {"data": {"X": [[1.0] * 20000], "y": [1.0]}, "patch_size": 10000, "stride": 1}
    problem, _, _ = priced(server, lambda: http.post("/v1/solves", json=body))
    assert problem["parameter"] == "patch_size"
    assert problem["limit"] == 20_000_000 and problem["setting"] == "CNNRELAX_MAX_PATCH_ENTRIES"
    assert "10001*10000" in problem["detail"]


def test_a_planted_patch_tensor_is_priced_from_its_spec(server: ServerProcess, http: httpx.Client) -> None:
    """Issue: planted with patch_size was 202, then "MemoryError: Unable to allocate 74.5 GiB" in the worker."""
    body = {"planted": {"n": 100_000, "d": 200}, "patch_size": 100, "stride": 1}
    problem, _, _ = priced(server, lambda: http.post("/v1/solves", json=body))
    assert problem["parameter"] == "patch_size" and problem["limit"] == 20_000_000
    body = {"planted": {"n": 200_000, "d": 1000}}
    problem, _, _ = priced(server, lambda: http.post("/v1/solves", json=body))
    assert problem["parameter"] == "planted" and problem["setting"] == "CNNRELAX_MAX_MATRIX_ENTRIES"
    problem, _, _ = priced(server, lambda: http.post("/v1/solves", json={"planted": {"n": 10, "d": 2}, "trials": 5000}))
    assert problem["parameter"] == "trials" and problem["limit"] == 1000


def test_an_experiment_is_priced_by_its_cells(server: ServerProcess, http: httpx.Client) -> None:
    """Issue: a phase transition with d = [2000], n = [200000] was 202, then a worker at 12.4 GB."""
    spec = {"kind": "phase_transition", "d": [2000], "n": [200000], "repetitions": 1, "methods": ["relaxation"]}
    problem, _, _ = priced(server, lambda: http.post("/v1/experiments", json=spec))
    assert problem["parameter"] == "n" and problem["setting"] == "CNNRELAX_MAX_MATRIX_ENTRIES"
    many = {"kind": "phase_transition", "d": [1000, 2000], "n": [5000, 10000], "repetitions": 10000}
    problem, _, _ = priced(server, lambda: http.post("/v1/experiments", json=many))
    assert problem["parameter"] == "repetitions" and problem["setting"] == "CNNRELAX_JOB_TIME_LIMIT_S"
    assert http.get("/v1/experiments").json()["items"] == []


def test_an_npz_declaring_a_huge_x_is_refused_from_its_headers(server: ServerProcess, http: httpx.Client) -> None:
    """Issue: a 2.8 MiB .npz whose X.npy declares (128e6, 3): the API reached 3.9 GB and answered after 13 s."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("X.npy", npy_header((128_000_000, 3)) + b"\0" * 3_000_000)
        archive.writestr("y.npy", npy_header((128_000_000,)))
    problem, _, elapsed = priced(server, lambda: http.post("/v1/datasets", content=buffer.getvalue(),
                                                           headers={"content-type": "application/x-npz"}), seconds=2)
    assert problem["parameter"] in ("body", "X")
    assert "declare" in problem["detail"]


def test_a_zip_bomb_is_refused_without_inflating_it(server: ServerProcess, http: httpx.Client) -> None:
    """A .npz member of 400 MB of zeros, deflated to about 400 KB: refused by its declared size."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("X.npy", "w", force_zip64=True) as member:
            member.write(npy_header((50_000_000, 1)))
            zeros = bytes(8 * MiB)
            for _ in range(50):
                member.write(zeros)
    body = buffer.getvalue()
    assert len(body) < 2 * MiB
    problem, _, _ = priced(server, lambda: http.post("/v1/datasets", content=body,
                                                     headers={"content-type": "application/x-npz"}), seconds=2)
    assert "declare" in problem["detail"] and problem["limit"] > 0


def test_lying_npy_headers_are_422_not_500(server: ServerProcess, http: httpx.Client) -> None:
    """Issue: a .npy whose header claims (1e6, 1e6) with no data answered 500."""
    for header, phrase in [(npy_header((1_000_000, 1_000_000)), "declares"),
                           (npy_header((100, 5)) + b"\0" * 80, "holds 80 bytes")]:
        problem, _, _ = priced(server, lambda body=header: http.post(
            "/v1/datasets", content=body, headers={"content-type": "application/x-npy"}), seconds=2)
        assert phrase in problem["detail"], problem


def test_a_json_body_of_too_many_numbers_is_refused_by_its_commas(server: ServerProcess, http: httpx.Client) -> None:
    """20 MB of "0," (10 million numbers, 320 MB as Python floats) is priced before it is decoded."""
    rows = ",".join(["[" + ",".join(["0"] * 100) + "]"] * 100_000)
    body = ('{"data": {"X": [' + rows + '], "y": [' + ",".join(["0"] * 100_000) + "]}}").encode()
    problem, _, _ = priced(server, lambda: http.post("/v1/solves", content=body,
                                                     headers={"content-type": "application/json"}))
    assert problem["parameter"] == "data" and problem["limit"] == 4_000_000
    assert problem["setting"] == "CNNRELAX_MAX_INLINE_NUMBERS"


def test_a_63_mib_upload_costs_the_api_under_300_mib(server: ServerProcess, http: httpx.Client) -> None:
    """The largest binary uploads within the 64 MiB body limit: a .npy and a .npz of 8.3 million floats (63 MiB)."""
    rng = np.random.default_rng(5)
    data = rng.standard_normal((830_000, 10))
    npy = io.BytesIO()
    np.save(npy, data)
    npz = io.BytesIO()
    np.savez(npz, X=data[:, :-1] + 1, y=data[:, -1])
    assert server.process is not None
    for body, media in ((npy.getvalue(), "application/x-npy"), (npz.getvalue(), "application/x-npz")):
        assert 63 * MiB < len(body) < 64 * MiB
        with PeakRss(server.process.pid) as memory:
            answer = http.post("/v1/datasets", content=body, headers={"content-type": media})
        assert answer.status_code == 201, answer.text
        assert (answer.json()["n"], answer.json()["d"]) == (830_000, 9)
        print(f"{len(body) / MiB:.0f} MiB {media} upload: API peak rise {memory.rise / MiB:.0f} MiB")
        assert memory.rise < MEMORY_BOUND, f"{memory.rise / MiB:.0f} MiB"
        assert http.delete(f"/v1/datasets/{answer.json()['id']}").status_code == 204


def test_experiment_bodies_are_priced_by_their_numbers(server: ServerProcess, http: httpx.Client) -> None:
    """Inline images stay in an experiment's spec (stored, answered): at most 500 000 numbers, well under 300 MiB."""
    rng = np.random.default_rng(6)
    too_many = json.dumps({"kind": "rotated_digits", "images": np.round(rng.random((60_000, 8, 8)), 3).tolist()})
    problem, _, _ = priced(server, lambda: http.post("/v1/experiments", content=too_many.encode(),
                                                     headers={"content-type": "application/json"}))
    assert problem["parameter"] == "images" and problem["setting"] == "CNNRELAX_MAX_EXPERIMENT_NUMBERS"
    largest = json.dumps({"kind": "rotated_digits", "images": np.round(rng.random((7_700, 8, 8)), 3).tolist(),
                          "filter_shapes": [[3, 3]]}).encode()
    assert server.process is not None
    with PeakRss(server.process.pid) as memory:
        answer = http.post("/v1/experiments", content=largest, headers={"content-type": "application/json"})
    assert answer.status_code == 202, answer.text
    http.delete(answer.headers["location"])
    print(f"experiment with 492 800 inline pixels: API peak rise {memory.rise / MiB:.0f} MiB")
    assert memory.rise < MEMORY_BOUND


def test_constraints_are_priced_by_their_numbers(server: ServerProcess, http: httpx.Client) -> None:
    """790 000 constraint rows (3.95 million numbers, 24 MB) would stay in the stored request: refused."""
    rows = 790_000
    body = json.dumps({"planted": {"n": 40, "d": 4}, "constraints": {
        "inequality_matrix": [[0.5, 0.25, 0.125, 1.0]] * rows, "inequality_vector": [100.0] * rows}}).encode()
    problem, _, _ = priced(server, lambda: http.post("/v1/solves", content=body,
                                                     headers={"content-type": "application/json"}), seconds=30)
    assert problem["parameter"] == "constraints.inequality_matrix" and problem["limit"] == 250_000
    assert problem["setting"] == "CNNRELAX_MAX_CONSTRAINT_NUMBERS"
    weights = json.dumps({"planted": {"n": 40, "d": 4}, "output_weights": [1.0] * 300_000}).encode()
    problem, _, _ = priced(server, lambda: http.post("/v1/solves", content=weights,
                                                     headers={"content-type": "application/json"}))
    assert problem["parameter"] == "output_weights"


# -------------------------------------------------------------------------------------------------
# bad input: 4xx, never 500
# -------------------------------------------------------------------------------------------------

def test_bad_inputs_that_were_500s_are_4xx_problems(http: httpx.Client) -> None:
    overflow = "c2VxOjk5OTk5OTk5OTk5OTk5OTk5OTk"
    assert base64.urlsafe_b64decode(overflow + "=").startswith(b"seq:9999")
    assert assert_problem(http.get("/v1/solves", params={"cursor": overflow}), 422)["parameter"] == "cursor"
    assert_problem(http.get("/v1/experiments", params={"cursor": overflow}), 422)
    ragged = {"planted": {"n": 50, "d": 4}, "constraints": {"inequality_matrix": [[1, 0, 0, 0], [1]],
                                                            "inequality_vector": [1, 1]}}
    problem = assert_problem(http.post("/v1/solves", json=ragged), 422)
    assert "inequality_matrix" in problem["detail"]
    mismatched = {"planted": {"n": 50, "d": 4}, "constraints": {"equality_matrix": [[1, 0, 0, 0]],
                                                                "equality_vector": [1, 2]}}
    assert_problem(http.post("/v1/solves", json=mismatched), 422)


def test_encoded_bodies_are_415(http: httpx.Client) -> None:
    body = gzip.compress(json.dumps({"planted": {"n": 50, "d": 4}}).encode())
    for encoding in ("gzip", "deflate", "br"):
        problem = assert_problem(http.post("/v1/solves", content=body, headers={
            "content-type": "application/json", "content-encoding": encoding}), 415)
        assert problem["parameter"] == "Content-Encoding"
    assert_problem(http.post("/v1/datasets", content=body, headers={"content-encoding": "gzip"}), 415)
    problem = assert_problem(http.post("/v1/solves", content=b"planted", headers={"content-type": "text/csv"}), 415)
    assert "text/csv" in problem["detail"]


@pytest.mark.parametrize("X, y, where", [
    ([["1.0", 2.0]], [1.0], "data.X[0][0]"),
    ([[True, 2.0]], [1.0], "data.X[0][0]"),
    ([[1.0, 2.0]], ["1"], "data.y[0]"),
    ([[1.0, 2.0]], [False], "data.y[0]"),
])
def test_numbers_in_x_and_y_are_strict(http: httpx.Client, X: list, y: list, where: str) -> None:
    problem = assert_problem(http.post("/v1/solves", json={"data": {"X": X, "y": y}}), 422)
    assert problem["errors"][0]["location"] == f"body.{where}", problem
    assert_problem(http.post("/v1/datasets", json={"X": X, "y": y}), 422)
    # integers are numbers: accepted
    assert http.post("/v1/solves", json={"data": {"X": [[1, 2], [2, 1], [0, 1]], "y": [1, 2, 1]},
                                         "trials": 1}).status_code == 202


def test_planted_noise_is_bounded(http: httpx.Client) -> None:
    problem = assert_problem(http.post("/v1/solves", json={"planted": {"n": 50, "d": 4, "noise_std": 1e308}}), 422)
    assert problem["parameter"] == "planted.noise_std" and "1000000" in problem["detail"]


# -------------------------------------------------------------------------------------------------
# nothing blocks the event loop
# -------------------------------------------------------------------------------------------------

def _big_body(rows: int = 15_000, columns: int = 100, k: int = 1, seed: int = 0) -> bytes:
    """About 30 MB of JSON: ``rows`` x ``columns`` floats with 17 significant digits."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, columns))
    y = np.abs(rng.standard_normal(rows))
    return json.dumps({"data": {"X": X.tolist(), "y": y.tolist()}, "k": k, "trials": 1}).encode()


def normal_priority(server: ServerProcess) -> None:
    """Run the server at the priority a deployment gives it, even when the tests run under ``nice``
    (root may raise a priority; elsewhere the server keeps the runner's)."""
    assert server.process is not None
    with contextlib.suppress(PermissionError, OSError):
        os.setpriority(os.PRIO_PROCESS, server.process.pid, 0)


def _warm(_: int) -> int:
    """Start a pool process; the clients run at a lower priority than the server, as they would run on
    other machines than the server's (here they share its two cores)."""
    os.nice(10)
    return 0


def _post_json(url: str, body: bytes) -> tuple[int, str, str]:
    """POST a JSON body to ``url``/v1/solves (in a pool process); its status, body and Location."""
    with httpx.Client(base_url=url, timeout=120) as client:
        answer = client.post("/v1/solves", content=body, headers={"content-type": "application/json"})
        return answer.status_code, answer.text, answer.headers.get("location", "")


def test_healthz_stays_fast_while_four_30_mb_bodies_arrive(server: ServerProcess, http: httpx.Client) -> None:
    """Issue: one 31 MB body held /healthz 2.9 s, four 6.4 s (API 2.5 GB). Here: p99 < 100 ms, API < 4 x 300 MiB."""
    valid = _big_body(seed=1)
    invalid = _big_body(k=7, seed=2)  # d = 100 is not divisible by 7: read and parsed in full, then 422
    assert len(valid) > 29 * MiB
    latencies: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while not stop.is_set():
                start = time.perf_counter()
                assert client.get("/healthz").status_code == 200
                latencies.append(time.perf_counter() - start)
                time.sleep(0.01)

    assert server.process is not None
    normal_priority(server)
    # the uploads come from other processes, so that the probe's own process does not slow the probe
    with cf.ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_warm, range(4)))
        with PeakRss(server.process.pid) as memory:
            prober = threading.Thread(target=probe, daemon=True)
            prober.start()
            answers = list(pool.map(_post_json, [server.url] * 4, [valid, invalid, invalid, invalid]))
            stop.set()
            prober.join()
    assert answers[0][0] == 202, answers[0]
    for status, body, _ in answers[1:]:
        assert status == 422 and json.loads(body)["parameter"] == "k", body
    http.delete(answers[0][2])
    latencies.sort()
    p99 = latencies[int(0.99 * (len(latencies) - 1))]
    print(f"four 30 MB bodies: /healthz p99 {p99 * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms over "
          f"{len(latencies)} probes; API peak rise {memory.rise / MiB:.0f} MiB")
    assert len(latencies) > 20
    assert p99 < 0.1, f"/healthz p99 {p99 * 1000:.0f} ms over {len(latencies)} probes (max {latencies[-1] * 1000:.0f})"
    assert memory.rise < 4 * MEMORY_BOUND, f"{memory.rise / MiB:.0f} MiB"


def test_one_30_mb_solve_body_costs_the_api_under_300_mib(server: ServerProcess, http: httpx.Client) -> None:
    body = _big_body(seed=3)
    assert server.process is not None
    with PeakRss(server.process.pid) as memory:
        answer = http.post("/v1/solves", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 202, answer.text
    http.delete(answer.headers["location"])
    print(f"one {len(body) / MiB:.1f} MiB solve body: API peak rise {memory.rise / MiB:.0f} MiB")
    assert memory.rise < MEMORY_BOUND, f"{memory.rise / MiB:.0f} MiB"
    # the inline data became the caller's dataset, compressed on disk; the job names it
    datasets = http.get("/v1/datasets").json()["items"]
    assert any(item["source"] == "inline" and (item["n"], item["d"]) == (15_000, 100) for item in datasets)


def test_a_hundred_long_polls_on_a_big_job_are_cheap(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Issue: 100 ?wait=20 polls on a job with 31 MB inline: API 6 GB, GET /v1/solves 11 s, /healthz 7.8 s."""
    server = ServerProcess(tmp_path_factory.mktemp("polls"), workers=1).start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            blocker = client.post("/v1/solves", json={"planted": {"n": 3000, "d": 300, "k": 1}, "trials": 60,
                                                      "stop_on_certificate": False, "polish": False})
            assert blocker.status_code == 202
            big = client.post("/v1/solves", content=_big_body(seed=4), headers={"content-type": "application/json"})
            assert big.status_code == 202
            location = big.headers["location"]
            assert client.get(location).json()["status"] == "queued"  # behind the blocker: it waits

            async def polls() -> tuple[list[int], float, float]:
                async with httpx.AsyncClient(base_url=server.url, timeout=60,
                                             limits=httpx.Limits(max_connections=200)) as aclient:
                    waiters = [asyncio.ensure_future(aclient.get(location, params={"wait": 4})) for _ in range(100)]
                    await asyncio.sleep(1.0)
                    start = time.perf_counter()
                    listing = await aclient.get("/v1/solves")
                    list_s = time.perf_counter() - start
                    start = time.perf_counter()
                    health = await aclient.get("/healthz")
                    health_s = time.perf_counter() - start
                    assert listing.status_code == health.status_code == 200
                    answers = await asyncio.gather(*waiters)
                    return [answer.status_code for answer in answers], list_s, health_s

            assert server.process is not None
            normal_priority(server)
            with PeakRss(server.process.pid) as memory:
                statuses, list_s, health_s = asyncio.run(polls())
            print(f"100 long-polls: API peak rise {memory.rise / MiB:.0f} MiB, GET /v1/solves {list_s * 1000:.0f} ms, "
                  f"/healthz {health_s * 1000:.0f} ms")
            assert statuses == [200] * 100
            assert memory.rise < 100 * MiB, f"{memory.rise / MiB:.0f} MiB"
            assert list_s < 0.5 and health_s < 0.5, (list_s, health_s)
            client.delete(location)
            client.delete(blocker.headers["location"])
    finally:
        server.stop()
