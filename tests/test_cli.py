"""The ``cnnrelax`` command line: in-process solves from planted specs and files, input errors, and the
commands that talk to a live service (``serve`` answering ``/healthz``, ``solve --url``, ``jobs``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from cnnrelax import PlantedSpec, SolveOptions, planted_problem, solve
from cnnrelax.cli import app, default_data_dir, parse_planted
from cnnrelax.results import solve_result_json

runner = CliRunner()


def run_cli(*args: str) -> Any:
    """Invoke the CLI in this process; return the click Result."""
    return runner.invoke(app, list(args), catch_exceptions=False)


def run_json(*args: str) -> dict[str, Any]:
    result = run_cli(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# --------------------------------------------------------------------------------------------------
# in-process
# --------------------------------------------------------------------------------------------------

def test_planted_solve_in_process_prints_a_certified_result_as_json() -> None:
    job = run_json("solve", "--planted", "n=300,d=10,k=1,seed=0", "--trials", "4")
    result = job["result"]
    assert job["status"] == "succeeded" and job["id"] is None
    assert result["shape"] == {"n": 300, "d": 10, "k": 1, "m": 10}
    assert result["certificate"]["global_optimum"] is True
    assert result["recovery_error"] <= 1e-8
    planted = planted_problem(PlantedSpec(n=300, d=10, k=1, seed=0))
    np.testing.assert_allclose(result["w"], planted.w_star, atol=1e-8)
    assert {"index", "r", "w", "loss", "objective", "recovered", "predicted", "solver"} <= set(result["trials"][0])


def test_summary_table_names_the_certificate() -> None:
    result = run_cli("solve", "--planted", "n=300,d=10,k=1,seed=0", "--trials", "4")
    assert result.exit_code == 0, result.output
    for words in ("global optimum", "cone certificate", "recovery error", "filter w"):
        assert words in result.stdout


def _planted_arrays(k: int = 2) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    planted = planted_problem(PlantedSpec(n=240, d=12, k=k, seed=3))
    X, y = planted.problem.X, planted.problem.y
    reference = solve_result_json(solve(planted.problem, SolveOptions(trials=3, seed=5)))
    return np.asarray(X), np.asarray(y), reference


@pytest.mark.parametrize("layout", ["npy_last_column", "npy_with_labels", "csv_with_header", "npz"])
def test_solve_from_a_file_equals_the_core_on_the_same_arrays(tmp_path: Path, layout: str) -> None:
    X, y, reference = _planted_arrays()
    extra: list[str] = []
    if layout == "npy_last_column":
        path = tmp_path / "data.npy"
        np.save(path, np.column_stack([X, y]))
    elif layout == "npy_with_labels":
        path = tmp_path / "X.npy"
        np.save(path, X)
        np.save(tmp_path / "y.npy", y)
        extra = ["--labels", str(tmp_path / "y.npy")]
    elif layout == "csv_with_header":
        path = tmp_path / "data.csv"
        header = ",".join([f"x{j}" for j in range(X.shape[1])] + ["y"])
        np.savetxt(path, np.column_stack([X, y]), delimiter=",", header=header, comments="", fmt="%.17g")
    else:
        path = tmp_path / "data.npz"
        np.savez(path, X=X, y=y)
    job = run_json("solve", str(path), *extra, "--k", "2", "--trials", "3", "--seed", "5")
    result = job["result"]
    assert result["shape"] == {"n": 240, "d": 12, "k": 2, "m": 6}
    np.testing.assert_allclose(result["w"], reference["w"], rtol=0, atol=1e-12)
    assert result["loss"] == pytest.approx(reference["loss"], abs=1e-12)
    assert len(result["trials"]) == len(reference["trials"])


def test_d_not_divisible_by_k_is_a_usage_error_naming_k(tmp_path: Path) -> None:
    X, y, _ = _planted_arrays()
    path = tmp_path / "data.npz"
    np.savez(path, X=X, y=y)
    result = run_cli("solve", str(path), "--k", "5")
    assert result.exit_code == 2
    assert "divisible" in result.stderr and "k" in result.stderr


@pytest.mark.parametrize("args", [[], ["data.npy", "--planted", "n=10,d=2"]])
def test_exactly_one_problem_source(args: list[str]) -> None:
    result = run_cli("solve", *args)
    assert result.exit_code == 2
    assert "exactly one problem source" in result.stderr


def test_planted_spec_parsing() -> None:
    assert parse_planted("n=2000,d=20,k=1,seed=0") == {"n": 2000, "d": 20, "k": 1, "seed": 0, "noise_std": 0.0}
    assert parse_planted("n=50, d=4, noise_std=0.5")["noise_std"] == 0.5
    result = run_cli("solve", "--planted", "n=100,d=10,colour=blue")
    assert result.exit_code == 2 and "colour" in result.output


def test_default_data_dir_is_per_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_data_dir() in (tmp_path / "cnnrelax", Path.home() / "Library" / "Application Support" / "cnnrelax")


def test_phase_transition_in_process_writes_a_png_and_the_grid(tmp_path: Path) -> None:
    figure = tmp_path / "fig.png"
    out = run_json("experiment", "phase-transition", "--d", "4,8", "--n", "20,40", "--repetitions", "2",
                   "--methods", "relaxation,gradient_descent", "--seed", "0", "--out", str(figure), "--quiet")
    cells = out["result"]["cells"]
    assert {(c["method"], c["d"], c["n"]) for c in cells} == {
        (m, d, n) for m in ("relaxation", "gradient_descent") for d in (4, 8) for n in (20, 40)}
    assert all(0.0 <= c["success_rate"] <= 1.0 and c["min_error"] >= 0.0 for c in cells)
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------------------------------
# against a live service started by ``cnnrelax serve``
# --------------------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """``cnnrelax serve --host 127.0.0.1 --port P --data-dir D`` (the console script), answering /healthz."""
    data_dir = tmp_path_factory.mktemp("cli-serve") / "data"
    port = _free_port()
    script = shutil.which("cnnrelax")
    command = [script] if script else [sys.executable, "-m", "cnnrelax.cli"]
    log_path = data_dir.parent / "serve.log"
    log = log_path.open("wb")
    process = subprocess.Popen([*command, "serve", "--host", "127.0.0.1", "--port", str(port),
                                "--data-dir", str(data_dir), "--workers", "1"],
                               stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"cnnrelax serve exited with {process.returncode}: {log_path.read_text()[-3000:]}")
            try:
                response = httpx.get(f"{url}/healthz", timeout=1)
                if response.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("cnnrelax serve did not answer /healthz within 60 s")
            time.sleep(0.1)
        yield url, data_dir
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_serve_answers_healthz_and_keeps_its_store_in_the_data_dir(served: tuple[str, Path]) -> None:
    url, data_dir = served
    response = httpx.get(f"{url}/healthz", timeout=5)
    assert response.status_code == 200
    assert data_dir.is_dir() and any(data_dir.iterdir())


def test_solve_against_the_service_then_jobs_list_and_show(served: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = served
    planted_job = run_json("solve", "--planted", "n=300,d=10,k=1,seed=0", "--trials", "4", "--url", url)
    assert planted_job["status"] == "succeeded" and planted_job["id"]
    in_process = run_json("solve", "--planted", "n=300,d=10,k=1,seed=0", "--trials", "4")
    np.testing.assert_allclose(planted_job["result"]["w"], in_process["result"]["w"], atol=1e-12)

    X, y, reference = _planted_arrays()
    path = tmp_path / "data.npz"
    np.savez(path, X=X, y=y)
    file_job = run_json("solve", str(path), "--k", "2", "--trials", "3", "--seed", "5", "--url", url)
    np.testing.assert_allclose(file_job["result"]["w"], reference["w"], atol=1e-12)

    listed = run_json("jobs", "list", "--url", url, "--limit", "50")
    assert {planted_job["id"], file_job["id"]} <= {job["id"] for job in listed}
    shown = run_json("jobs", "show", planted_job["id"], "--url", url)
    assert shown["status"] == "succeeded" and shown["result"]["certificate"]["global_optimum"] is True
    table = run_cli("jobs", "list", "--url", url)
    assert table.exit_code == 0 and planted_job["id"][:8] in table.stdout


def test_jobs_show_of_an_unknown_id_is_a_clear_error(served: tuple[str, Path]) -> None:
    url, _ = served
    result = run_cli("jobs", "show", "no-such-job", "--url", url)
    assert result.exit_code == 1
    assert "404" in result.stderr
