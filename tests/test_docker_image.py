"""The container image and the compose stack, built and run for real (opt-in: ``pytest -m docker -s``, as root).

Set-up (module fixtures), on a Debian machine with no container registry:

1. Packages: ``apt-get install -y docker.io docker-compose debootstrap`` when ``dockerd``, ``docker-compose`` or
   ``debootstrap`` is missing.
2. The engine: ``dockerd`` is started in the background when ``docker info`` fails (and stopped at the end).
3. The base image (``CNNRELAX_TEST_BASE_IMAGE``, default ``cnnrelax-base:bookworm``), unless it exists
   already (``CNNRELAX_TEST_REBUILD_BASE=1`` forces it): ``debootstrap --variant=minbase
   --include=python3,python3-venv,python3-pip,ca-certificates bookworm DIR MIRROR`` (MIRROR: the Debian
   mirror of ``/etc/apt/sources.list.d/``), a ``python`` symlink, the machine's CA bundle, then
   ``tar -C DIR -c . | docker import - NAME``. It is kept for the next run (delete it with ``docker rmi``).
4. The image: ``docker build --network host --build-arg PYTHON_IMAGE=NAME`` (the legacy builder,
   ``DOCKER_BUILDKIT=0``: BuildKit would fetch its Dockerfile front-end from a registry), tagged
   ``cnnrelax-test:TAG`` and removed at the end.

Then: the image alone (a solve equal to the core's own answer, ``/readyz``, its HEALTHCHECK turns
``healthy``, non-root), and ``compose.yaml`` (API, scheduler, 2 workers, run by Debian's docker-compose
1.29 on free host ports): ready with two workers, a worker SIGKILLed while jobs run, every job succeeds,
``down -v`` removes everything. The timings are printed (``-s``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cnnrelax.jobs import run_solve_job
from cnnrelax.specs import SolveSpec

from dask_cluster import free_port

ROOT = Path(__file__).resolve().parent.parent
SOURCES = Path("/etc/apt/sources.list.d")
BASE_IMAGE = os.environ.get("CNNRELAX_TEST_BASE_IMAGE", "cnnrelax-base:bookworm")
SMALL_JOB = {"planted": {"n": 200, "d": 20, "k": 2, "seed": 3}, "trials": 2, "seed": 5}
#: About 3 s on one core (as in test_dask): long enough to kill a worker while it runs.
LONG_JOB = {"planted": {"n": 5000, "d": 100, "k": 4, "seed": 1}, "trials": 30, "stop_on_certificate": False}
TERMINAL = {"succeeded", "failed", "cancelled"}

pytestmark = [pytest.mark.docker, pytest.mark.timeout(3600),
              pytest.mark.filterwarnings("ignore:Mismatched versions found")]  # the host's Python 3.11.x vs the image's

TIMINGS: dict[str, float] = {}


def _run(*command: str, timeout: float = 600, check: bool = True, **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout, **kwargs)  # type: ignore[call-overload]  # kwargs pass through
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({done.returncode}):\n"
                             f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def _timed(name: str, start: float) -> None:
    TIMINGS[name] = round(time.monotonic() - start, 1)
    print(f"[docker test] {name}: {TIMINGS[name]} s", flush=True)


@pytest.fixture(scope="module", autouse=True)
def _opted_in(request: pytest.FixtureRequest) -> Iterator[None]:
    if "docker" not in (request.config.option.markexpr or ""):
        pytest.skip("opt-in: run with pytest -m docker (as root; builds images, minutes)")
    if os.geteuid() != 0:
        pytest.skip("needs root (starts dockerd, runs debootstrap)")
    yield
    print("[docker test] timings (s): " + json.dumps(TIMINGS), flush=True)


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (``/etc/apt/sources.list.d/*.sources`` or ``*.list``)."""
    candidates = sorted(SOURCES.glob("*.sources")) + sorted(SOURCES.glob("*.list")) + [Path("/etc/apt/sources.list")]
    for path in candidates:
        if not path.is_file():
            continue
        text = path.read_text()
        for stanza in re.split(r"\n\s*\n", text):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if uris and suites and "bookworm" in suites.group(1).split():
                return uris.group(1)
        for line in text.splitlines():
            match = re.match(r"deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+bookworm\s", line)
            if match:
                return match.group(1)
    return "http://deb.debian.org/debian"


@pytest.fixture(scope="module")
def docker() -> Iterator[str]:
    """The docker CLI, with a running engine (packages installed and ``dockerd`` started if needed)."""
    missing = [name for name in ("dockerd", "docker-compose", "debootstrap") if shutil.which(name) is None]
    if missing:
        start = time.monotonic()
        _run("apt-get", "update", "-q", timeout=900)
        _run("apt-get", "install", "-y", "-q", "docker.io", "docker-compose", "debootstrap", timeout=1800,
             env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        _timed("apt-get install " + " ".join(missing), start)
    cli = shutil.which("docker")
    assert cli is not None
    daemon = None
    if _run(cli, "info", check=False, timeout=30).returncode != 0:
        start = time.monotonic()
        log = Path(tempfile.gettempdir()) / "cnnrelax-test-dockerd.log"
        daemon = subprocess.Popen(["dockerd"], stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        while _run(cli, "info", check=False, timeout=30).returncode != 0:
            assert daemon.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() - start < 60, "dockerd did not answer within 60 s"
            time.sleep(0.5)
        _timed("dockerd start", start)
    try:
        yield cli
    finally:
        if daemon is not None:
            daemon.terminate()
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()


@pytest.fixture(scope="module")
def base_image(docker: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The debootstrapped Debian bookworm base with python3, venv, pip and this machine's CA bundle."""
    exists = _run(docker, "image", "inspect", BASE_IMAGE, check=False, timeout=60).returncode == 0
    if exists and os.environ.get("CNNRELAX_TEST_REBUILD_BASE") != "1":
        print(f"[docker test] reusing the base image {BASE_IMAGE}", flush=True)
        return BASE_IMAGE
    root = tmp_path_factory.mktemp("base") / "rootfs"
    start = time.monotonic()
    _run("debootstrap", "--variant=minbase", "--include=python3,python3-venv,python3-pip,ca-certificates",
         "bookworm", str(root), debian_mirror(), timeout=1800)
    _timed("debootstrap", start)
    (root / "usr/bin/python").unlink(missing_ok=True)
    (root / "usr/bin/python").symlink_to("python3")
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if bundle.is_file():
        shutil.copyfile(bundle, root / "etc/ssl/certs/ca-certificates.crt")
    start = time.monotonic()
    tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
    imported = subprocess.run([docker, "import", "-", BASE_IMAGE], stdin=tar.stdout, capture_output=True, text=True,
                              timeout=900)
    assert tar.stdout is not None
    tar.stdout.close()
    assert tar.wait() == 0 and imported.returncode == 0, imported.stderr
    _timed("docker import of the base", start)
    shutil.rmtree(root, ignore_errors=True)
    return BASE_IMAGE


@pytest.fixture(scope="module")
def image(docker: str, base_image: str) -> Iterator[str]:
    """The service image, built from the Dockerfile on the base image; removed at the end."""
    tag = f"cnnrelax-test:{uuid.uuid4().hex[:8]}"
    start = time.monotonic()
    _run(docker, "build", "--network", "host", "--build-arg", f"PYTHON_IMAGE={base_image}", "-t", tag, str(ROOT),
         timeout=3000, env={**os.environ, "DOCKER_BUILDKIT": "0"})
    _timed("docker build", start)
    try:
        yield tag
    finally:
        _run(docker, "rmi", "-f", tag, check=False, timeout=300)


def _wait_http(url: str, status: int, timeout: float) -> httpx.Response:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(url, timeout=5)
            if answer.status_code == status:
                return answer
            last = answer.text
        except httpx.TransportError as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer {status} within {timeout:g} s (last: {last})")


def _wait_job(base: str, job_id: str, timeout: float, headers: dict[str, str] | None = None) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(f"{base}/v1/solves/{job_id}", params={"wait": 5}, timeout=30, headers=headers).json()
        if job["status"] in TERMINAL:
            return dict(job)
    raise AssertionError(f"job {job_id} not finished after {timeout:g} s")


def _submit(base: str, body: dict, headers: dict[str, str] | None = None) -> str:
    answer = httpx.post(f"{base}/v1/solves", json=body, timeout=30, headers=headers)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def test_the_image_solves_answers_readyz_and_turns_healthy(docker: str, image: str) -> None:
    port = free_port()
    name = f"cnnrelax-test-{uuid.uuid4().hex[:8]}"
    start = time.monotonic()
    # The image's own HEALTHCHECK command, probed every 2 s instead of 30 s.
    _run(docker, "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8000", "--health-interval", "2s", image)
    try:
        base = f"http://127.0.0.1:{port}"
        ready = _wait_http(f"{base}/readyz", 200, 120).json()
        _timed("image: run to /readyz 200", start)
        assert ready["checks"]["workers"] is True
        job = _wait_job(base, _submit(base, SMALL_JOB), 120)
        assert job["status"] == "succeeded", job
        expected = run_solve_job(SolveSpec.model_validate(SMALL_JOB), None, None)
        assert job["result"]["w"] == pytest.approx(expected["w"], rel=1e-9, abs=1e-12)
        _timed("image: run to a solved job", start)
        while (health := _run(docker, "inspect", "-f", "{{.State.Health.Status}}", name).stdout.strip()) != "healthy":
            assert health in ("starting", ""), _run(docker, "inspect", "-f", "{{json .State.Health}}", name).stdout
            assert time.monotonic() - start < 180, "the HEALTHCHECK never turned healthy"
            time.sleep(1)
        _timed("image: run to HEALTHCHECK healthy", start)
        assert _run(docker, "exec", name, "id", "-u").stdout.strip() == "10001"
    finally:
        _run(docker, "rm", "-f", name, check=False)


def test_the_compose_stack_survives_a_killed_worker(docker: str, image: str) -> None:
    project = f"cnnrelaxtest{uuid.uuid4().hex[:8]}"
    api_port, scheduler_port, dashboard_port = free_port(), free_port(), free_port()
    key = uuid.uuid4().hex
    keyed = {"X-API-Key": key}
    env = {**os.environ, "CNNRELAX_IMAGE": image, "CNNRELAX_API_PORT": str(api_port), "CNNRELAX_API_KEYS": key,
           "CNNRELAX_SCHEDULER_PORT": str(scheduler_port), "CNNRELAX_DASHBOARD_PORT": str(dashboard_port)}
    # compose.expose-dask.yaml publishes the scheduler (on 127.0.0.1), which this test watches from the host.
    compose = ["docker-compose", "-p", project, "-f", str(ROOT / "compose.yaml"),
               "-f", str(ROOT / "compose.expose-dask.yaml")]
    start = time.monotonic()
    _run(*compose, "up", "-d", "--no-build", env=env, cwd=ROOT, timeout=600)
    try:
        base = f"http://127.0.0.1:{api_port}"
        _wait_http(f"{base}/readyz", 200, 180)
        from distributed import Client

        with Client(f"tcp://127.0.0.1:{scheduler_port}", timeout=30, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=180)
        _timed("compose: up to ready with 2 workers", start)

        assert httpx.post(f"{base}/v1/solves", json=SMALL_JOB, timeout=30).status_code == 401  # keys on
        start = time.monotonic()
        ids = [_submit(base, {**LONG_JOB, "seed": seed}, keyed) for seed in range(8)]
        deadline = time.monotonic() + 120
        while sum(httpx.get(f"{base}/v1/solves/{job_id}", headers=keyed).json()["status"] == "running"
                  for job_id in ids) < 2:
            assert time.monotonic() < deadline, "the two workers never ran jobs at once"
            time.sleep(0.2)
        victim = _run(*compose, "ps", "-q", "worker-1", env=env, cwd=ROOT).stdout.strip()
        assert victim
        # A crash, not `docker kill` (which counts as a manual stop, so no restart policy applies): SIGKILL
        # the container's main process (the `dask worker` nanny, with its worker process) from the host.
        os.kill(int(_run(docker, "inspect", "-f", "{{.State.Pid}}", victim).stdout.strip()), signal.SIGKILL)
        jobs = [_wait_job(base, job_id, 600, keyed) for job_id in ids]
        _timed("compose: 8 jobs with worker-1 SIGKILLed", start)
        assert all(job["status"] == "succeeded" for job in jobs), [(job["status"], job["error"]) for job in jobs]
        print(f"[docker test] attempts per job: {[job['attempts'] for job in jobs]}", flush=True)
        # `restart: unless-stopped` brought worker-1 back, and it joined the scheduler again.
        restarts = _run(docker, "inspect", "-f", "{{.RestartCount}}", victim).stdout.strip()
        assert int(restarts) >= 1, restarts
        with Client(f"tcp://127.0.0.1:{scheduler_port}", timeout=30, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=180)
        assert _wait_job(base, _submit(base, SMALL_JOB, keyed), 120, keyed)["status"] == "succeeded"
        _timed("compose: worker-1 restarted and back", start)
        start = time.monotonic()
        # A dataset uploaded in parts is stored as X.npy/y.npy on the volume; with CNNRELAX_DASK_SHARED_DATA_DIR
        # the workers read X from their read-only mount of it (a worker without the mount fails the job).
        import numpy as np

        from cnnrelax.core import SolveOptions, make_problem, solve
        from cnnrelax_client import Client as ApiClient

        rng = np.random.default_rng(7)
        X = rng.standard_normal((3000, 40))
        y = np.maximum(X.reshape(3000, 2, 20) @ rng.standard_normal(20), 0.0).sum(axis=1)
        with ApiClient(base, api_key=key) as api:
            dataset = api.upload_large(X, y, part_rows=700)
        job = _wait_job(base, _submit(base, {"dataset_id": dataset.id, "k": 2, "trials": 8, "seed": 0}, keyed),
                        120, keyed)
        assert job["status"] == "succeeded", job["error"]
        local = solve(make_problem(X, y, k=2), SolveOptions(trials=8, seed=0))
        assert local.certificate.global_optimum
        assert np.max(np.abs(np.asarray(job["result"]["w"]) - local.w)) <= 1e-9 * np.max(np.abs(local.w))
        _timed("compose: a dataset uploaded in parts, solved from the shared volume", start)
    finally:
        start = time.monotonic()
        _run(*compose, "down", "-v", "--remove-orphans", env=env, cwd=ROOT, check=False, timeout=300)
        _timed("compose: down -v", start)
    left = _run(docker, "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}").stdout.split()
    assert left == [], f"containers left behind: {left}"
    volumes = _run(docker, "volume", "ls", "-q", "--filter",
                   f"label=com.docker.compose.project={project}").stdout.split()
    assert volumes == [], f"volumes left behind: {volumes}"
