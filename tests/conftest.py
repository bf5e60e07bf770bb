"""Shared pytest fixtures. Each helper keeps its fixtures in its own clearly marked section."""

from __future__ import annotations

# ===================================================================================================
# Service (HTTP server) fixtures: a real `python -m cnnrelax.server` subprocess on a free loopback port
# ===================================================================================================
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from hypothesis import settings as hypothesis_settings

# -- hypothesis: CI replays the same examples every run (a red CI then means a change broke a law, not that
# a new random example was drawn); a developer's run explores new ones and keeps what fails in .hypothesis/.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
hypothesis_settings.register_profile("dev", print_blob=True)
hypothesis_settings.load_profile("ci" if os.environ.get("CI") else "dev")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """One service process on a data dir; start, stop (SIGTERM) or kill (SIGKILL), and start again."""

    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    workers: int = 2
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"server-{self.starts}.log"

    def start(self, timeout: float = 60.0) -> "ServerProcess":
        self.starts += 1
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "CNNRELAX_WORKERS": str(self.workers), "CNNRELAX_LOG_LEVEL": "info", **self.env}
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cnnrelax.server", "--host", "127.0.0.1", "--port", str(self.port),
             "--data-dir", str(self.data_dir)], stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"server not ready within {timeout:g} s: {self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit within 20 s."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """SIGKILL the server process (its worker processes notice and stop on their own)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@pytest.fixture()
def start_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., ServerProcess]]:
    """A factory of started servers (``start_server(env={...}, workers=2, data_dir=None)``), all stopped after."""
    started: list[ServerProcess] = []

    def start(env: dict[str, str] | None = None, workers: int = 2, data_dir: Path | None = None) -> ServerProcess:
        server = ServerProcess(data_dir or tmp_path_factory.mktemp("service"), env=dict(env or {}), workers=workers)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server shared by a test module (2 workers, default limits)."""
    server = ServerProcess(tmp_path_factory.mktemp("live-service")).start()
    yield server
    server.stop()


@pytest.fixture()
def http(live_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, timeout=60) as client:
        yield client


def wait_job(client: httpx.Client, location: str, timeout: float = 60.0) -> dict[str, Any]:
    """Poll ``location`` (with ``?wait=``) until the job ends; return its JSON."""
    deadline = time.monotonic() + timeout
    while True:
        answer = client.get(location, params={"wait": 5})
        assert answer.status_code == 200, answer.text
        job = answer.json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job at {location} still {job['status']} after {timeout:g} s")


def database_snapshot(data_dir: Path, into: Path) -> sqlite3.Connection:
    """A read-only look at a live server's SQLite store: a copy of its files opened here.

    The server alone opens its database (its lock keeps other processes out, see ``cnnrelax.store``); a copy
    of the file and its WAL recovers to the last transaction committed when the copy was taken.
    """
    into.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal"):
        source = data_dir / f"cnnrelax.sqlite3{suffix}"
        if source.exists():
            shutil.copyfile(source, into / source.name)
    return sqlite3.connect(f"file:{into / 'cnnrelax.sqlite3'}?mode=ro", uri=True)


def assert_problem(answer: httpx.Response, status: int) -> dict[str, Any]:
    """``answer`` is an RFC 9457 problem with ``status`` and a sentence; return its JSON."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json"), answer.headers
    body = answer.json()
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and len(body["detail"]) > 10
    assert "Traceback" not in answer.text
    return body

# ===================================================================================================
# end of the service fixtures
# ===================================================================================================


# ===================================================================================================
# Browser fixtures: Debian's chromium driven by Playwright (tests/test_docs_browser.py, test_console_browser.py)
# ===================================================================================================
CHROMIUM = Path(os.environ.get("CNNRELAX_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def install_chromium() -> str | None:
    """Install Debian's chromium if it is missing; ``None`` on success, else why it could not be.

    Never ``playwright install`` (it downloads a browser build): Debian's package, with ``apt-get`` as root.
    """
    if CHROMIUM.exists():
        return None
    if shutil.which("apt-get") is None:
        return f"{CHROMIUM} is missing and there is no apt-get to install it"
    if os.geteuid() != 0:
        return f"{CHROMIUM} is missing; install it as root: apt-get install -y chromium"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "install", "-y", "-q", "chromium"],
                    ["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode == 0 and CHROMIUM.exists():
            return None
    return f"apt-get install -y chromium failed: {done.stderr.strip()[-300:]}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless chromium (skips, saying why, when playwright or chromium cannot be had)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # the test extra installs it
        pytest.skip(f"playwright is not installed ({exc}); pip install playwright")
    reason = install_chromium()
    if reason is not None:
        pytest.skip(reason)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()

# ===================================================================================================
# end of the browser fixtures
# ===================================================================================================


# -- memory of a server process -------------------------------------------------------------------
class PeakRss:
    """Samples a process's RSS every 5 ms in a thread; ``rise`` is the peak over the value at the start."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.start = self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.005)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def rise(self) -> int:
        return self.peak - self.start
