"""Issue 16's attacks on a live server over loopback: each prints its figure, so a fix can be quoted before/after.

For every attack: the status codes the attackers got (or how their connections ended), the API process's RSS
(start -> peak -> end, MiB) and the largest worker's peak RSS, and ``/healthz`` latency during the attack
(p99 and max over probes sent every 50 ms from another process on new connections, raw sockets, and how many
failed within 5 s).

Attacks (all bounded in count and time, loopback only):

- ``huge-headers``: 10 connections each sending a 100 MiB header value; one 1 MB header; 10,000 header lines.
- ``slowloris``: ``--slowloris`` connections with unfinished headers (one more header byte every 2 s) and 50
  bodies trickled at 1 byte / 2 s: how many are still open after 15 s.
- ``flood``: ``--flood`` idle connections against a server started with the common soft limit of 1024 file
  descriptors (``RLIMIT_NOFILE``; the hard limit is left as it is): how many stay open, and whether
  ``/healthz`` and ``GET /v1/solves`` answer while they are held.
- ``uploads``: 12 concurrent 20 MB ``.npy`` uploads, then 8 concurrent 38 MB JSON solves (whose ``k`` does not
  divide ``d``: parsed in full, then 422, so no solver runs): statuses of the first attempt and after honouring
  ``Retry-After``, API memory.
- ``drops``: 50 clients that drop mid-body: the log lines they cost (and how many are errors or tracebacks).
- ``probes``: the attacks that exist as plain requests: a 187-byte phase-transition work bomb and a 117-byte
  planted work bomb (status codes only; accepted jobs are cancelled at once), a tenant uploading as JSON the
  numbers another tenant uploaded as ``.npz`` (the ``source`` it is shown), and ``/metrics`` read with a normal
  key (whether it shows the other tenant's jobs).

The server runs with default settings, 2 local workers and API keys A, B and an admin key::

    python bench/bench_attacks.py                    # every attack (about 4 minutes)
    python bench/bench_attacks.py --only slowloris flood
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures as cf
import contextlib
import io
import json
import multiprocessing
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

MiB = 2**20
KEY_A, KEY_B, KEY_ADMIN = "bench-key-a-0123456789", "bench-key-b-0123456789", "bench-key-admin-0123456789"
ATTACKS = ("huge-headers", "slowloris", "flood", "uploads", "drops", "probes")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -------------------------------------------------------------------------------------------------
# the server, its memory, and /healthz while an attack runs
# -------------------------------------------------------------------------------------------------

@dataclass
class Server:
    """``python -m cnnrelax.server`` on a free loopback port, its log in the data dir."""

    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    nofile_soft: int | None = None
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    def _limit_descriptors(self) -> None:
        if self.nofile_soft is not None:
            _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile_soft, hard))

    def start(self) -> "Server":
        env = {**os.environ, "CNNRELAX_WORKERS": "2", "CNNRELAX_LOG_LEVEL": "info",
               "CNNRELAX_API_KEYS": f"{KEY_A},{KEY_B},{KEY_ADMIN}", "CNNRELAX_ADMIN_API_KEYS": KEY_ADMIN, **self.env}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cnnrelax.server", "--host", "127.0.0.1", "--port", str(self.port),
                 "--data-dir", str(self.data_dir)], stdout=log, stderr=subprocess.STDOUT, env=env,
                preexec_fn=self._limit_descriptors)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            time.sleep(0.2)
        raise RuntimeError("server not ready within 90 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid


class Memory:
    """Samples the API's RSS and its children's (the workers, the body parser) every 20 ms in a thread."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.start = self.peak = self.end = self.process.memory_info().rss
        self.worker_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        with contextlib.suppress(psutil.Error):
            self.peak = max(self.peak, self.process.memory_info().rss)
            for child in self.process.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    self.worker_peak = max(self.worker_peak, child.memory_info().rss)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(0.02)

    def __enter__(self) -> "Memory":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        with contextlib.suppress(psutil.Error):
            self.end = self.process.memory_info().rss

    def text(self) -> str:
        return (f"API {self.start / MiB:.0f} -> peak {self.peak / MiB:.0f} -> {self.end / MiB:.0f} MiB, "
                f"largest child peak {self.worker_peak / MiB:.0f} MiB")


def _get_status(port: int, path: str, timeout: float) -> str:
    """``GET path`` on a new connection (a raw socket: no client library's start-up cost in the figure)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
        return read_status(sock, timeout)


def _probe_healthz(port: int, stop: Any, ready: Any, results: Any) -> None:
    """In another process: GET /healthz every 50 ms (5 s timeout, a new connection each time)."""
    ready.set()
    latencies: list[float] = []
    failures: list[str] = []
    while not stop.is_set():
        start = time.perf_counter()
        try:
            status = _get_status(port, "/healthz", 5.0)
        except OSError as exc:
            status = type(exc).__name__
        latencies.append(time.perf_counter() - start)
        if status != "200":
            failures.append(status)
        stop.wait(0.05)
    results.put((latencies, failures))


class Healthz:
    """``/healthz`` probed from another process while the block runs."""

    def __init__(self, port: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._stop, self._ready = context.Event(), context.Event()
        self._results: Any = context.Queue()
        self._process = context.Process(target=_probe_healthz, args=(port, self._stop, self._ready, self._results),
                                        daemon=True)
        self.latencies: list[float] = []
        self.failures: list[str] = []

    def __enter__(self) -> "Healthz":
        self._process.start()
        self._ready.wait(30)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self.latencies, self.failures = self._results.get(timeout=30)
        self._process.join(timeout=10)

    def text(self) -> str:
        if not self.latencies:
            return "/healthz: no probe"
        ordered = sorted(self.latencies)
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        failed = f", {len(self.failures)} failed ({dict(Counter(self.failures))})" if self.failures else ""
        return (f"/healthz p99 {p99 * 1000:.0f} ms, max {ordered[-1] * 1000:.0f} ms over {len(ordered)} "
                f"probes{failed}")


@contextlib.contextmanager
def measured(server: Server, name: str) -> Iterator[dict[str, Any]]:
    """Run an attack under the memory sampler and the /healthz prober; print its figures."""
    figures: dict[str, Any] = {}
    print(f"\n== {name}", flush=True)
    started = time.monotonic()
    with Memory(server.pid) as memory, Healthz(server.port) as health:
        time.sleep(0.3)
        yield figures
    for key, value in figures.items():
        print(f"   {key}: {value}")
    print(f"   {memory.text()}")
    print(f"   {health.text()}")
    print(f"   ({time.monotonic() - started:.1f} s)", flush=True)


# -------------------------------------------------------------------------------------------------
# raw sockets
# -------------------------------------------------------------------------------------------------

def read_status(sock: socket.socket, timeout: float) -> str:
    """The status code of the answer on ``sock``, or how the connection ended."""
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return "closed" if not data else f"partial:{data[:20]!r}"
            data += chunk
    except socket.timeout:
        return "no answer"
    except OSError as exc:
        return type(exc).__name__
    parts = data.split(b" ", 2)
    return parts[1].decode() if len(parts) > 1 else repr(data[:20])


def send_raw(port: int, head: bytes, filler: int = 0, tail: bytes = b"", timeout: float = 60.0,
             deadline: float | None = None) -> str:
    """Send ``head``, ``filler`` bytes of ``a`` (1 MiB at a time), then ``tail``; the answer's status."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sent = 0
        try:
            sock.sendall(head)
            chunk = b"a" * MiB
            while sent < filler:
                if deadline is not None and time.monotonic() > deadline:
                    return f"gave up after {sent / MiB:.0f} MiB (time bound)"
                piece = chunk[: min(MiB, filler - sent)]
                sock.sendall(piece)
                sent += len(piece)
            sock.sendall(tail)
        except OSError as exc:
            status = read_status(sock, 2)
            return f"{status} ({type(exc).__name__} after {sent / MiB:.1f} MiB)"
        return read_status(sock, timeout)


# -------------------------------------------------------------------------------------------------
# the attacks
# -------------------------------------------------------------------------------------------------

def attack_huge_headers(server: Server) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: bench\r\nX-Big: "
    with measured(server, "10 connections with 100 MiB header values") as figures:
        deadline = time.monotonic() + 120
        with cf.ThreadPoolExecutor(10) as pool:
            outcomes = list(pool.map(lambda _: send_raw(server.port, head, 100 * MiB, b"\r\n\r\n", 60, deadline),
                                     range(10)))
        figures["answers"] = dict(Counter(outcomes))
    with measured(server, "one 1 MB header, then 10,000 header lines") as figures:
        figures["1 MB header"] = send_raw(server.port, head, 1_000_000, b"\r\n\r\n")
        lines = b"".join(b"X-Line-%d: v\r\n" % i for i in range(10_000))
        figures["10,000 header lines"] = send_raw(server.port, b"GET /healthz HTTP/1.1\r\nHost: bench\r\n" + lines
                                                  + b"\r\n")


async def _slow_connection(port: int, head: bytes, trickle: bytes, hold_s: float, ended: list[float],
                           started: float, gate: asyncio.Semaphore) -> str:
    """Open, send ``head``, then one byte of ``trickle`` every 2 s until the server ends it or ``hold_s`` passes."""
    try:
        async with gate:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    except (OSError, asyncio.TimeoutError) as exc:
        return f"connect: {type(exc).__name__}"
    outcome = "open"
    try:
        writer.write(head)
        position = 0
        while time.monotonic() - started < hold_s:
            try:
                data = await asyncio.wait_for(reader.read(4096), 2.0)
            except asyncio.TimeoutError:
                writer.write(trickle[position % len(trickle): position % len(trickle) + 1])
                position += 1
                continue
            answer = data.split(b" ", 2)[1].decode(errors="replace") if data.startswith(b"HTTP/") else "closed"
            outcome = answer
            ended.append(time.monotonic() - started)
            break
    except OSError as exc:
        outcome = type(exc).__name__
        ended.append(time.monotonic() - started)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    return outcome


def attack_slowloris(server: Server, connections: int, bodies: int = 50, hold_s: float = 15.0) -> None:
    header = b"GET /v1/solves HTTP/1.1\r\nHost: bench\r\nX-API-Key: " + KEY_A.encode() + b"\r\n"
    body_head = (b"POST /v1/datasets HTTP/1.1\r\nHost: bench\r\nX-API-Key: " + KEY_A.encode()
                 + b"\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")

    async def run() -> tuple[list[str], list[float]]:
        ended: list[float] = []
        gate = asyncio.Semaphore(200)
        started = time.monotonic()
        tasks = [_slow_connection(server.port, header, b"X-Slow-Header-Name: v\r\n", hold_s, ended, started, gate)
                 for _ in range(connections)]
        tasks += [_slow_connection(server.port, body_head, b'{"X": [[1, 2]]', hold_s, ended, started, gate)
                  for _ in range(bodies)]
        return list(await asyncio.gather(*tasks)), ended

    with measured(server, f"slowloris: {connections} unfinished headers + {bodies} bodies at 1 byte / 2 s") as figs:
        outcomes, ended = asyncio.run(run())
        still_open = outcomes.count("open")
        figs["still open after 15 s"] = (f"{still_open} of {len(outcomes)} (headers "
                                         f"{outcomes[:connections].count('open')}, bodies "
                                         f"{outcomes[connections:].count('open')})")
        figs["how the others ended"] = dict(Counter(o for o in outcomes if o != "open"))
        if ended:
            ended.sort()
            figs["dropped after"] = f"median {ended[len(ended) // 2]:.1f} s, max {ended[-1]:.1f} s"


def attack_flood(data_dir: Path, connections: int) -> None:
    """Idle connections against a server whose soft RLIMIT_NOFILE is 1024."""
    server = Server(data_dir / "flood", nofile_soft=1024)
    server.data_dir.mkdir(parents=True, exist_ok=True)
    server.start()
    try:
        with measured(server, f"flood: {connections} idle connections (server soft RLIMIT_NOFILE 1024)") as figures:
            sockets: list[socket.socket] = []
            refused = Counter[str]()
            for _ in range(connections):
                try:
                    sockets.append(socket.create_connection(("127.0.0.1", server.port), timeout=2))
                except OSError as exc:
                    refused[type(exc).__name__] += 1
            time.sleep(2.0)
            states = Counter[str]()
            for sock in sockets:
                sock.setblocking(False)
                try:
                    states["answered" if sock.recv(1, socket.MSG_PEEK) else "closed"] += 1
                except BlockingIOError:
                    states["open"] += 1
                except OSError as exc:
                    states[type(exc).__name__] += 1
            figures["connected"] = f"{len(sockets)} of {connections}" + (f" (failed: {dict(refused)})"
                                                                         if refused else "")
            figures["2 s later"] = dict(states)
            with httpx.Client(base_url=server.url, timeout=5, headers={"X-API-Key": KEY_A}) as client:
                answers = Counter[str]()
                for path in ("/healthz", "/readyz", "/v1/solves"):
                    try:
                        answer = client.get(path)
                        answers[f"{path} {answer.status_code}"] += 1
                        if answer.status_code == 503:
                            figures["503 Retry-After"] = answer.headers.get("retry-after")
                    except httpx.HTTPError as exc:
                        answers[f"{path} {type(exc).__name__}"] += 1
            figures["while held"] = dict(answers)
            for sock in sockets:
                sock.close()
        figures_after: dict[str, Any] = {}
        time.sleep(1.0)
        try:
            figures_after["after release /v1/solves"] = httpx.get(f"{server.url}/v1/solves", timeout=5,
                                                                  headers={"X-API-Key": KEY_A}).status_code
        except httpx.HTTPError as exc:
            figures_after["after release /v1/solves"] = type(exc).__name__
        log = server.log_path.read_text(errors="replace").splitlines()
        errors = sum(1 for line in log if '"level": "error"' in line)
        figures_after["error log lines"] = errors
        for key, value in figures_after.items():
            print(f"   {key}: {value}")
    finally:
        server.stop()


def _npy(seed: int, rows: int = 250_000, columns: int = 10) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.random.default_rng(seed).standard_normal((rows, columns)))
    return buffer.getvalue()


def _post(url: str, path: str, body: bytes, media: str, retry: bool) -> tuple[str, float]:
    """POST, honouring Retry-After (up to 60 s in all) when ``retry``; the final status and the seconds taken."""
    start = time.monotonic()
    with httpx.Client(base_url=url, timeout=120, headers={"X-API-Key": KEY_A}) as client:
        while True:
            try:
                answer = client.post(path, content=body, headers={"content-type": media})
            except httpx.HTTPError as exc:
                return type(exc).__name__, time.monotonic() - start
            if not (retry and answer.status_code in (429, 503)) or time.monotonic() - start > 60:
                if answer.status_code in (200, 201) and path == "/v1/datasets":
                    client.delete(f"/v1/datasets/{answer.json()['id']}")
                return str(answer.status_code), time.monotonic() - start
            time.sleep(float(answer.headers.get("retry-after", "1")))


def attack_uploads(server: Server) -> None:
    bodies = [_npy(seed) for seed in range(12)]
    for retry in (False, True):
        label = "honouring Retry-After" if retry else "first attempt only"
        with measured(server, f"12 concurrent 20 MB .npy uploads ({label})") as figures:
            with cf.ThreadPoolExecutor(12) as pool:
                answers = list(pool.map(_post, [server.url] * 12, ["/v1/datasets"] * 12, bodies,
                                        ["application/x-npy"] * 12, [retry] * 12))
            figures["statuses"] = dict(Counter(status for status, _ in answers))
            figures["slowest"] = f"{max(seconds for _, seconds in answers):.1f} s"
            time.sleep(1.0)
    rng = np.random.default_rng(7)
    X = rng.standard_normal((20_000, 100))
    solve = json.dumps({"data": {"X": X.tolist(), "y": np.abs(X[:, 0]).tolist()}, "k": 7, "trials": 1}).encode()
    with measured(server, f"8 concurrent {len(solve) / 1e6:.0f} MB JSON solves (k=7 does not divide d=100: 422 "
                          "after a full parse)") as figures:
        with cf.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: _post(server.url, "/v1/solves", solve, "application/json", True),
                                    range(8)))
        figures["statuses"] = dict(Counter(status for status, _ in answers))
        figures["slowest"] = f"{max(seconds for _, seconds in answers):.1f} s"
        time.sleep(1.0)


def attack_drops(server: Server, clients: int = 50) -> None:
    before = len(server.log_path.read_text(errors="replace").splitlines())
    head = (b"POST /v1/datasets HTTP/1.1\r\nHost: bench\r\nX-API-Key: " + KEY_A.encode()
            + b"\r\nContent-Type: application/x-npy\r\nContent-Length: 20000000\r\n\r\n")
    with measured(server, f"{clients} clients that drop mid-body") as figures:
        for _ in range(clients):
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                sock.sendall(head + b"\x93NUMPY" + b"\0" * (MiB - 6))
                time.sleep(0.02)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        time.sleep(1.5)
        lines = [line for line in server.log_path.read_text(errors="replace").splitlines()[before:]
                 if '"path": "/healthz"' not in line]  # the prober's own requests
        levels = Counter(json.loads(line).get("level", "?") if line.startswith("{") else "raw" for line in lines)
        figures["log lines"] = f"{len(lines)} ({dict(levels)}), with a traceback: " \
                               f"{sum('Traceback' in line for line in lines)}"


def attack_probes(server: Server) -> None:
    with measured(server, "requests: work bombs, shared content across tenants, /metrics") as figures:
        a = httpx.Client(base_url=server.url, timeout=30, headers={"X-API-Key": KEY_A})
        b = httpx.Client(base_url=server.url, timeout=30, headers={"X-API-Key": KEY_B})
        phase = json.dumps({"kind": "phase_transition", "d": [4], "n": [8], "k": 1, "repetitions": 10000,
                            "trials": 1000, "methods": ["relaxation", "gradient_descent"], "polish": False})
        planted = json.dumps({"planted": {"n": 20000, "d": 1000}, "trials": 1000, "coverage_samples": 10000,
                              "stop_on_certificate": False})
        for name, path, body in (("phase-transition bomb", "/v1/experiments", phase),
                                 ("planted bomb", "/v1/solves", planted)):
            answer = a.post(path, content=body, headers={"content-type": "application/json"})
            if answer.status_code == 202:
                a.delete(answer.headers["location"])
            figures[f"{name} ({len(body)} bytes)"] = answer.status_code
        X = np.arange(40.0).reshape(10, 4)
        y = np.linspace(0.5, 1.5, 10)
        npz = io.BytesIO()
        np.savez(npz, X=X, y=y)
        first = a.post("/v1/datasets", content=npz.getvalue(), headers={"content-type": "application/x-npz"})
        second = b.post("/v1/datasets", json={"X": X.tolist(), "y": y.tolist()})
        figures["same numbers: A .npz, then B JSON"] = (f"A {first.status_code} source {first.json().get('source')}, "
                                                       f"B {second.status_code} source {second.json().get('source')}")
        job = a.post("/v1/solves", json={"planted": {"n": 20, "d": 4}, "trials": 1})
        metrics = b.get("/metrics")
        counted = [line for line in metrics.text.splitlines() if line.startswith("cnnrelax_jobs{")]
        total = sum(float(line.rsplit(" ", 1)[1]) for line in counted)
        figures["/metrics with key B after A's job"] = f"{metrics.status_code}, cnnrelax_jobs sums to {total:g} " \
                                                       f"(A's jobs {'visible' if total > 0 else 'not visible'} to B)"
        with contextlib.suppress(httpx.HTTPError):
            a.delete(job.headers.get("location", "/v1/solves/none"))
        a.close()
        b.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=ATTACKS, default=list(ATTACKS), help="Attacks to run.")
    parser.add_argument("--slowloris", type=int, default=3000, help="Connections with unfinished headers.")
    parser.add_argument("--flood", type=int, default=3000, help="Idle connections of the flood.")
    args = parser.parse_args(argv)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # this process holds the attackers' sockets
    with tempfile.TemporaryDirectory(prefix="cnnrelax-attacks-") as tmp:
        server = Server(Path(tmp) / "main")
        server.data_dir.mkdir(parents=True)
        server.start()
        print(f"server {server.url}, pid {server.pid}, git {_git_head()}", flush=True)
        runners: dict[str, Callable[[], None]] = {
            "huge-headers": lambda: attack_huge_headers(server),
            "slowloris": lambda: attack_slowloris(server, args.slowloris),
            "flood": lambda: attack_flood(Path(tmp), args.flood),
            "uploads": lambda: attack_uploads(server),
            "drops": lambda: attack_drops(server),
            "probes": lambda: attack_probes(server),
        }
        try:
            for name in args.only:
                runners[name]()
                if server.process is not None and server.process.poll() is not None:
                    print(f"   the server exited ({server.process.returncode}); restarting it")
                    server.start()
        finally:
            server.stop()


def _git_head() -> str:
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    return "?"


if __name__ == "__main__":
    main()
