"""A real Dask cluster on loopback for tests: one ``dask scheduler`` and N ``dask worker`` processes.

Each process runs in its own session (process group) so the whole tree (nanny and worker) can be
signalled; every process is killed at teardown. Workers run one process with one thread, as in
``compose.yaml``. With ``denied_paths`` the workers run without the service's ``CNNRELAX_*`` settings in
their environment and with :mod:`dask_deny_paths` preloaded, so they cannot open anything under those
paths (the API's data dir): they must work without the API's filesystem.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]  # no stubs installed

#: A small planted solve, run on the cluster by the Dask tests and compared with the core's own answer.
SMALL_JOB: dict[str, Any] = {"planted": {"n": 200, "d": 20, "k": 2, "seed": 3}, "trials": 2, "seed": 5}


def assert_equals_the_core(job: dict[str, Any], body: dict[str, Any] = SMALL_JOB) -> None:
    """A succeeded job's result is the in-process core's answer to the same request."""
    import pytest

    from cnnrelax.jobs import run_solve_job
    from cnnrelax.specs import SolveSpec

    assert job["status"] == "succeeded", job
    expected = run_solve_job(SolveSpec.model_validate(body), None, None)
    assert job["result"]["w"] == pytest.approx(expected["w"], rel=1e-9, abs=1e-12)
    assert job["result"]["loss"] == pytest.approx(expected["loss"], rel=1e-6, abs=1e-12)
    assert [t["index"] for t in job["result"]["trials"]] == [t["index"] for t in expected["trials"]]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float, host: str = "127.0.0.1") -> None:
    """Wait until a TCP connection to ``host:port`` succeeds, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1.0):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:g} s")


def kill_tree(process: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to the process's whole group (it was started with ``start_new_session``) and reap it."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=15)


@dataclass
class DaskCluster:
    """A scheduler on a fixed loopback port and its worker processes, restartable on the same port."""

    workdir: Path
    workers: int = 2
    port: int = field(default_factory=free_port)
    scheduler: subprocess.Popen[bytes] | None = None
    worker_processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    #: Paths the workers may not open anything under (see :mod:`dask_deny_paths`).
    denied_paths: tuple[Path, ...] = ()
    #: TLS for every connection: ``(ca_file, cert_file, key_file)`` of the scheduler and workers (PEM).
    tls: tuple[Path, Path, Path] | None = None
    _starts: int = 0

    @property
    def address(self) -> str:
        """The scheduler's address, as the service's ``--dask-scheduler`` takes it."""
        return f"{'tls' if self.tls else 'tcp'}://127.0.0.1:{self.port}"

    def _tls_options(self) -> list[str]:
        if self.tls is None:
            return []
        ca, cert, key = self.tls
        return ["--tls-ca-file", str(ca), "--tls-cert", str(cert), "--tls-key", str(key)]

    def security(self):  # noqa: ANN201 - a distributed.security.Security, or None
        """The ``Security`` a client of this cluster needs (the nodes' own certificate)."""
        if self.tls is None:
            return None
        from distributed.security import Security

        ca, cert, key = self.tls
        return Security(tls_ca_file=str(ca), tls_client_cert=str(cert), tls_client_key=str(key),
                        require_encryption=True)

    def _log(self, name: str):  # noqa: ANN202 - a binary file object
        logs = self.workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        return (logs / f"{name}-{self._starts}.log").open("wb")

    def start_scheduler(self) -> None:
        """Start ``dask scheduler`` on :attr:`port` and wait until it accepts connections."""
        self._starts += 1
        self.scheduler = subprocess.Popen(
            ["dask", "scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--dashboard-address", ":0",
             "--no-show", "--idle-timeout", "600", *self._tls_options()],
            stdout=self._log("scheduler"), stderr=subprocess.STDOUT, start_new_session=True, cwd=self.workdir)
        wait_for_port(self.port, 30.0)

    def start_worker(self, index: int) -> subprocess.Popen[bytes]:
        """Start one ``dask worker`` (one process, one thread) named ``worker-{index}``."""
        directory = self.workdir / f"worker-{index}-{self._starts}"
        directory.mkdir(parents=True, exist_ok=True)
        command = ["dask", "worker", self.address, "--nworkers", "1", "--nthreads", "1", "--name", f"worker-{index}",
                   "--dashboard-address", ":0", "--local-directory", str(directory), "--death-timeout", "60",
                   *self._tls_options()]
        env = None
        if self.denied_paths:
            env = {name: value for name, value in os.environ.items() if not name.startswith("CNNRELAX_")}
            env["CNNRELAX_TEST_DENIED_PATHS"] = os.pathsep.join(str(path) for path in self.denied_paths)
            command += ["--preload", str(Path(__file__).with_name("dask_deny_paths.py"))]
        process = subprocess.Popen(
            command, env=env, stdout=self._log(f"worker-{index}"), stderr=subprocess.STDOUT,
            start_new_session=True, cwd=directory)
        self.worker_processes.append(process)
        return process

    def start(self) -> None:
        """Scheduler, then the workers; returns once every worker has registered with the scheduler."""
        self.start_scheduler()
        for index in range(self.workers):
            self.start_worker(index)
        self.wait_for_workers(self.workers)

    def wait_for_workers(self, count: int, timeout: float = 60.0) -> None:
        """Wait until ``count`` workers are registered with the scheduler."""
        from distributed import Client

        with Client(self.address, timeout=10, set_as_default=False, security=self.security()) as client:
            client.wait_for_workers(count, timeout=timeout)

    def worker_pids(self) -> list[int]:
        """Process ids of the live worker processes (the nanny's children that run tasks)."""
        pids: list[int] = []
        for process in self.worker_processes:
            if process.poll() is None:
                with contextlib.suppress(psutil.NoSuchProcess):
                    pids.extend(child.pid for child in psutil.Process(process.pid).children(recursive=True))
        return pids

    def kill_scheduler(self) -> None:
        """SIGKILL the scheduler (its workers lose it and exit by themselves; they are reaped here)."""
        if self.scheduler is not None:
            kill_tree(self.scheduler)
        for process in self.worker_processes:
            kill_tree(process)
        self.worker_processes.clear()

    def stop(self) -> None:
        """Kill every process of the cluster."""
        for process in self.worker_processes:
            kill_tree(process)
        self.worker_processes.clear()
        if self.scheduler is not None:
            kill_tree(self.scheduler)
