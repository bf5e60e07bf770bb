"""The command line beside the client: ``--version``, ``datasets`` and ``experiments`` (list, show, cancel),
``jobs cancel`` saying what happened, trials run against trials asked, and progress bars that follow the job's
events. In-process invocations (typer's runner) against a live server (tests/conftest.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

import cnnrelax
from cnnrelax.cli import app
from cnnrelax.cli.commands import spec_shown
from cnnrelax_client import Client

from conftest import ServerProcess

runner = CliRunner()
EARLY_STOP = ("--planted", "n=300,d=10,k=1,seed=0", "--trials", "8")


def run_cli(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False)


def run_json(*args: str) -> Any:
    result = run_cli(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture()
def client(live_server: ServerProcess) -> Iterator[Client]:
    with Client(live_server.url) as c:
        yield c


def _running(client: Client, job_id: str, *, experiment: bool = False) -> None:
    deadline = time.monotonic() + 30
    while (client.get_experiment(job_id) if experiment else client.get(job_id)).status != "running":
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.05)


def test_version() -> None:
    result = run_cli("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"cnnrelax {cnnrelax.__version__}"


def test_an_early_stop_says_trials_run_of_trials_asked(live_server: ServerProcess) -> None:
    job = run_json("solve", *EARLY_STOP, "--url", live_server.url)
    run = len(job["result"]["trials"])
    assert run < 8 and job["progress"] == {"done": run, "total": 8}
    sentence = f"{run} of 8 trials run: stopped on a certificate"
    for where in (("--url", live_server.url), ()):  # against the service, and in this process
        result = run_cli("solve", *EARLY_STOP, *where)
        assert result.exit_code == 0, result.output
        assert sentence in " ".join(result.stdout.split()), result.stdout
        assert sentence in " ".join(result.stderr.split()), result.stderr  # the progress bar ends on it too
    full = run_cli("solve", *EARLY_STOP, "--no-stop-on-certificate", "--url", live_server.url)
    assert "8 of 8 trials run" in full.stdout


def test_the_progress_bar_follows_the_trials(live_server: ServerProcess) -> None:
    result = run_cli("solve", "--planted", "n=500,d=20,k=2,seed=1", "--trials", "5", "--no-stop-on-certificate",
                     "--url", live_server.url)
    assert result.exit_code == 0, result.output
    assert "trials" in result.stderr and "5/5" in result.stderr.replace(" ", "")
    quiet = run_cli("solve", "--planted", "n=500,d=20,k=2,seed=1", "--trials", "2", "--quiet", "--url",
                    live_server.url)
    assert quiet.exit_code == 0 and "2/2" not in quiet.stderr.replace(" ", "")


def test_jobs_cancel_says_what_happened(client: Client, live_server: ServerProcess) -> None:
    long = {"planted": {"n": 4000, "d": 60, "k": 3, "seed": 2}, "trials": 60, "stop_on_certificate": False}
    running = client.submit(**long)
    _running(client, running.id)
    said = run_cli("jobs", "cancel", running.id, "--url", live_server.url)
    assert said.exit_code == 0 and "cancel requested" in said.stdout and "running" in said.stdout
    assert client.wait(running, timeout=30).status == "cancelled"
    again = run_cli("jobs", "cancel", running.id, "--url", live_server.url)
    assert "cancelled" in again.stdout
    done = client.wait(client.submit(planted={"n": 50, "d": 4, "k": 1}, trials=1))
    ended = run_cli("jobs", "cancel", done.id, "--url", live_server.url)
    assert f"had already ended ({done.status})" in " ".join(ended.stdout.split())


def test_datasets_list_and_show(client: Client, live_server: ServerProcess) -> None:
    X = np.random.default_rng(5).standard_normal((30, 6))
    dataset = client.upload_dataset(X, np.abs(X).sum(axis=1))
    listed = run_json("datasets", "list", "--url", live_server.url)
    assert dataset.id in [item["id"] for item in listed]
    shown = run_json("datasets", "show", dataset.id, "--url", live_server.url)
    assert (shown["id"], shown["n"], shown["d"]) == (dataset.id, 30, 6)
    table = run_cli("datasets", "list", "--url", live_server.url)
    assert table.exit_code == 0 and dataset.id[:12] in table.stdout
    missing = run_cli("datasets", "show", "0" * 64, "--url", live_server.url)
    assert missing.exit_code == 1 and "404" in missing.stderr


def test_experiments_list_show_and_cancel(client: Client, live_server: ServerProcess, tmp_path: Any) -> None:
    spec = {"kind": "phase_transition", "k": 1, "d": [5], "n": [20, 40], "repetitions": 1,
            "methods": ["relaxation"], "trials": 1, "seed": 2}
    done = client.run_experiment(spec)
    listed = run_json("experiments", "list", "--url", live_server.url)
    assert done.id in [item["id"] for item in listed]
    shown = run_json("experiments", "show", done.id, "--url", live_server.url)
    assert shown["status"] == "succeeded" and len(shown["result"]["cells"]) == 2
    figure = tmp_path / "figure.png"
    table = run_cli("experiments", "show", done.id, "--out", str(figure), "--url", live_server.url)
    assert table.exit_code == 0 and "phase transition" in table.stdout
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ended = run_cli("experiments", "cancel", done.id, "--url", live_server.url)
    assert "had already ended (succeeded)" in " ".join(ended.stdout.split())
    many = {**spec, "n": [200, 400, 600, 800, 1000, 1200], "d": [20, 30], "repetitions": 3, "seed": 4}
    running = client.submit_experiment(many)
    _running(client, running.id, experiment=True)
    said = run_cli("experiments", "cancel", running.id, "--url", live_server.url)
    assert said.exit_code == 0 and "cancel requested" in said.stdout


def test_an_experiments_printed_spec_shows_inline_images_by_shape() -> None:
    images = np.zeros((7, 4, 5)).tolist()
    shown = spec_shown({"kind": "rotated_digits", "images": images, "angles": [0.0] * 7, "seed": 1})
    assert shown == {"kind": "rotated_digits", "images": {"shape": [7, 4, 5]}, "angles": {"shape": [7]}, "seed": 1}


def test_jobs_watch_and_events(client: Client, live_server: ServerProcess) -> None:
    job = client.submit(planted={"n": 500, "d": 20, "k": 2, "seed": 1}, trials=4, stop_on_certificate=False)
    watched = run_cli("jobs", "watch", job.id, "--url", live_server.url)
    assert watched.exit_code == 0, watched.output
    assert "4 of 4 trials run" in " ".join(watched.stdout.split()) and "4/4" in watched.stderr.replace(" ", "")
    printed = run_cli("jobs", "events", job.id, "--url", live_server.url)
    events = [json.loads(line) for line in printed.stdout.splitlines()]
    assert [e["event"] for e in events].count("trial") == 4 and events[-1]["event"] == "end"
    assert [e["id"] for e in events] == sorted({e["id"] for e in events})
    later = run_cli("jobs", "events", job.id, "--after", str(events[1]["id"]), "--url", live_server.url)
    assert [json.loads(line) for line in later.stdout.splitlines()] == events[2:]
