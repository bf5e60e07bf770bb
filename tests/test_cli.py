"""The ``cnnrelax`` command line: in-process solves from planted specs and files, input errors, and the
commands that talk to a live service (``serve`` answering ``/healthz``, ``solve --url``, ``jobs``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from cnnrelax import PlantedSpec, SolveOptions, planted_problem, solve
from cnnrelax.cli import app, default_data_dir, parse_planted

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
    reference = solve(planted.problem, SolveOptions(trials=3, seed=5)).to_dict()
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
