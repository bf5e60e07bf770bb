"""The commands of the ``cnnrelax`` command line: serve, solve, inspect jobs, run the paper's experiments.

``solve`` and ``experiment`` run in-process when no ``--url`` is given, through the job function the
service's workers run (:func:`cnnrelax.jobs.run_solve_job` on a :class:`~cnnrelax.specs.SolveSpec`), and
against a running service (through the thin client ``cnnrelax_client``) when one is. Heavy modules (the
server, the experiments, the client) are imported only by the commands that need them.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, TypeVar, cast

import numpy as np
import typer
from rich.table import Table

from ..datafiles import checked_dataset, read_file, split_labels
from ..errors import InvalidParameterError
from ..types import Progress
from .render import (
    ProgressBar,
    cancel_sentence,
    fail,
    fail_from_client_error,
    fmt,
    print_json,
    render_experiment_summary,
    render_solve_summary,
    stdout,
    trials_sentence,
)

if TYPE_CHECKING:
    from cnnrelax_client import Client, SolveOptions


#: What a call to the service answers (:func:`from_service`).
Answer = TypeVar("Answer")

app = typer.Typer(
    name="cnnrelax",
    help="Train one-hidden-layer convolutional ReLU nets by randomized convex relaxation, with certificates.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
jobs_app = typer.Typer(help="Inspect and cancel the solve jobs of a running service.", no_args_is_help=True)
experiment_app = typer.Typer(help="The paper's experiments: phase transitions (Fig. 1) and rotated digits "
                                  "(Table 1).", no_args_is_help=True)
datasets_app = typer.Typer(help="List and inspect the datasets stored in a running service.", no_args_is_help=True)
experiments_app = typer.Typer(help="List, inspect and cancel the experiments of a running service (run new ones "
                                   "with `cnnrelax experiment`).", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")
app.add_typer(experiment_app, name="experiment")
app.add_typer(datasets_app, name="datasets")
app.add_typer(experiments_app, name="experiments")

DEFAULT_SERVICE_URL = "http://127.0.0.1:8000"
URL_ENV = "CNNRELAX_URL"
API_KEY_ENV = "CNNRELAX_API_KEY"
PLANTED_FIELDS: dict[str, Callable[[str], Any]] = {
    "n": int, "d": int, "k": int, "seed": int, "noise_std": float, "distribution": str,
}


def main() -> None:
    """Console-script entry point (``cnnrelax = cnnrelax.cli:main``; ``python -m cnnrelax.cli``)."""
    app()


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        stdout.print(f"cnnrelax {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                          help="Print the version and exit.")) -> None:
    """Train one-hidden-layer convolutional ReLU nets by randomized convex relaxation, with certificates."""


# ---------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------


def default_data_dir() -> Path:
    """The per-user data directory: ``$XDG_DATA_HOME/cnnrelax`` (``~/.local/share/cnnrelax``) on Linux,
    ``~/Library/Application Support/cnnrelax`` on macOS, ``%LOCALAPPDATA%\\cnnrelax`` on Windows."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "cnnrelax"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "cnnrelax"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "cnnrelax"


def parse_key_values(text: str, what: str) -> dict[str, str]:
    """``"a=1,b=2"`` -> ``{"a": "1", "b": "2"}``."""
    out: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise typer.BadParameter(f"{what}: expected key=value pairs separated by commas, got {item!r}.")
        out[key.strip()] = value.strip()
    return out


def parse_planted(text: str) -> dict[str, Any]:
    """``"n=2000,d=20,k=1,seed=0"`` -> a planted spec dict (``noise_std`` defaults to 0)."""
    raw = parse_key_values(text, "--planted")
    unknown = sorted(set(raw) - set(PLANTED_FIELDS))
    if unknown:
        raise typer.BadParameter(f"--planted: unknown field(s) {', '.join(unknown)}; "
                                 f"known: {', '.join(PLANTED_FIELDS)}.")
    missing = [name for name in ("n", "d") if name not in raw]
    if missing:
        raise typer.BadParameter(f"--planted needs {' and '.join(missing)} (e.g. n=2000,d=20,k=1,seed=0).")
    spec: dict[str, Any] = {"k": 1, "seed": 0, "noise_std": 0.0}
    for key, value in raw.items():
        try:
            spec[key] = PLANTED_FIELDS[key](value)
        except ValueError:
            raise typer.BadParameter(f"--planted: {key}={value!r} is not a valid "
                                     f"{PLANTED_FIELDS[key].__name__}.") from None
    return spec


def parse_number_list(text: str, what: str, kind: Callable[[str], Any] = float) -> list[Any]:
    """``"1,2,3"`` -> ``[1, 2, 3]`` (``kind`` converts each item)."""
    try:
        return [kind(part) for part in (p.strip() for p in text.split(",")) if part]
    except ValueError:
        raise typer.BadParameter(f"{what}: expected numbers separated by commas, got {text!r}.") from None



def load_array(path: Path) -> np.ndarray | dict[str, np.ndarray]:
    """An ``.npy`` array, the arrays of an ``.npz`` archive, or a numeric CSV (:func:`cnnrelax.datafiles.read_file`)."""
    try:
        return read_file(path)
    except InvalidParameterError as error:
        fail(error.message)


def load_problem_data(data_path: Path, labels_path: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` from a data file and an optional labels file, checked as the API checks uploads.

    ``.npz``: arrays ``X`` and ``y``. ``.npy`` / ``.csv``: a matrix whose last column is ``y``, unless
    ``labels_path`` gives the labels separately (then the whole matrix is ``X``).
    """
    loaded = load_array(data_path)
    y: np.ndarray | None = None
    if isinstance(loaded, dict):
        X = loaded.get("X", loaded.get("x"))
        y = loaded.get("y", loaded.get("Y"))
        if X is None:
            fail(f"{data_path} has no array named X (it has: {', '.join(loaded) or 'none'}).")
    else:
        X = loaded
    try:
        if labels_path is not None:
            labels = load_array(labels_path)
            if isinstance(labels, dict):
                labels = labels.get("y", next(iter(labels.values()), np.empty(0)))
            y = np.ravel(labels)
        elif y is None:
            X, y = split_labels(X, f"{data_path} (without --labels)")
        return checked_dataset(X, y)
    except InvalidParameterError as error:
        fail(error.message)


def service_client(url: str, api_key: str | None, timeout: float = 30.0) -> Client:
    """A :class:`cnnrelax_client.Client`, or a clear error when the thin client is not installed."""
    try:
        from cnnrelax_client import Client
    except ImportError:
        fail("talking to a service needs the thin client: pip install -e clients/python")
    return Client(url, api_key=api_key, timeout=timeout)


def _client_error_types() -> tuple[type[BaseException], ...]:
    try:
        from cnnrelax_client import CnnrelaxError
    except ImportError:
        return ()
    return (CnnrelaxError,)


def from_service(url: str, api_key: str | None, call: Callable[[Client], Answer]) -> Answer:
    """``call(client)`` with a client of the service at ``url``; a client error ends the command with its problem."""
    try:
        with service_client(url, api_key) as client:
            return call(client)
    except _client_error_types() as error:
        fail_from_client_error(error)



def solve_in_process(
    X: np.ndarray | None, y: np.ndarray | None, planted: dict[str, Any] | None, k: int | None,
    output_weights: list[float] | None, options: dict[str, Any], progress: Progress | None = None,
) -> dict[str, Any]:
    """Build the solve's :class:`~cnnrelax.specs.SolveSpec`, check it, and run the job function the service's
    workers run (:func:`cnnrelax.jobs.run_solve_job`); return its JSON-able result.

    Parameters
    ----------
    X, y : ndarray, optional
        The data (a data file), or ``None`` with ``planted``.
    planted : dict, optional
        A planted spec (``n``, ``d``, ``k``, ``seed``, ...).
    k : int, optional
        Patches per row of the data.
    output_weights : list of float, optional
        ``c_j >= 0`` per patch.
    options : dict
        The other solve options (``None``: the default).
    progress : callable, optional
        ``progress(done, total, {})`` after every trial.

    Returns
    -------
    dict
        The result, as a job's ``result``.
    """
    from ..jobs import run_solve_job
    from ..specs import UNLIMITED, DataShape, SolveSpec

    members = {**options, "planted": planted, "k": k, "output_weights": output_weights}
    spec = SolveSpec.model_validate({key: value for key, value in members.items() if value is not None})
    if X is None or y is None:
        spec.check(None, UNLIMITED)
        return run_solve_job(spec, None, None, progress=progress)
    spec.check(DataShape(X.shape[0], X.shape[1], labels=y), UNLIMITED)
    return run_solve_job(spec, (X, y), None, progress=progress)


# ---------------------------------------------------------------------------------------------------
# serve
# ---------------------------------------------------------------------------------------------------

@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", envvar="CNNRELAX_HOST",
                             help="Interface to bind (0.0.0.0 for every interface)."),
    port: int = typer.Option(8000, envvar="CNNRELAX_PORT", help="TCP port."),
    data_dir: Optional[Path] = typer.Option(
        None, "--data-dir", envvar="CNNRELAX_DATA_DIR", file_okay=False,
        help="Directory of the SQLite store and datasets (default: a per-user data dir, e.g. "
             "~/.local/share/cnnrelax)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, envvar="CNNRELAX_WORKERS",
                                          help="Local solver processes (default: 2)."),
    dask_scheduler: Optional[str] = typer.Option(
        None, "--dask-scheduler", envvar="CNNRELAX_DASK_SCHEDULER",
        help="Run jobs on the Dask cluster of this scheduler address (tcp://host:8786)."),
) -> None:
    """Start the HTTP service (one uvicorn process; jobs on local worker processes or a Dask cluster).

    Every other setting comes from its CNNRELAX_ environment variable (see the README)."""
    from cnnrelax.server import serve as run_server

    directory = (data_dir or default_data_dir()).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    overrides: dict[str, Any] = {}
    if workers is not None:
        overrides["workers"] = workers
    if dask_scheduler:
        overrides["dask_scheduler"] = dask_scheduler
    run_server(host=host, port=port, data_dir=directory, **overrides)


# ---------------------------------------------------------------------------------------------------
# solve
# ---------------------------------------------------------------------------------------------------

@app.command()
def solve(
    data: Optional[Path] = typer.Argument(
        None, help="Data file: .npz with arrays X and y, or .npy / .csv with y in the last column.",
        dir_okay=False),
    labels: Optional[Path] = typer.Option(None, "--labels", "-y", dir_okay=False,
                                          help="Labels in their own .npy / .csv file (then DATA is all X)."),
    planted: Optional[str] = typer.Option(None, "--planted", help="A planted problem instead of a file, "
                                          "e.g. n=2000,d=20,k=1,seed=0[,noise_std=0.0]."),
    k: Optional[int] = typer.Option(None, "--k", "-k", min=1, help="Patches per row (d = k*m) (default: 1)."),
    relaxation: Optional[str] = typer.Option(None, help="lp, qp or naive (default: lp)."),
    beta: Optional[float] = typer.Option(None, help="Perturbation weight of the QP relaxation."),
    trials: Optional[int] = typer.Option(None, min=1, help="Randomized trials (default: 8)."),
    seed: Optional[int] = typer.Option(None, help="Seed of the trials' directions (default: 0)."),
    output_weights: Optional[str] = typer.Option(None, help="Output weights c_j >= 0, comma-separated."),
    stop_on_certificate: Optional[bool] = typer.Option(
        None, "--stop-on-certificate/--no-stop-on-certificate",
        help="Stop at the first trial whose zero loss certifies a global minimum (default: on)."),
    polish: Optional[bool] = typer.Option(None, "--polish/--no-polish", help="Polish by least squares."),
    coverage_samples: Optional[int] = typer.Option(
        None, "--coverage-samples", min=0, help="Directions sampled for certificate.coverage (0 skips; default 64)."),
    activation: Optional[str] = typer.Option(
        None, "--activation", help="The hidden layer's activation: relu (default), leaky_relu, absolute, "
                                   "squared_relu or softplus; a planted problem's labels are drawn with it."),
    negative_slope: Optional[float] = typer.Option(
        None, "--negative-slope", help="leaky_relu's slope for negative inputs, in (0, 1) (default 0.01)."),
    url: Optional[str] = typer.Option(None, "--url", envvar=URL_ENV,
                                      help="Service URL; without it the solve runs in this process."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar=API_KEY_ENV, help="X-API-Key for the service."),
    timeout: Optional[float] = typer.Option(None, help="Give up waiting for the service after this many seconds."),
    as_json: bool = typer.Option(False, "--json", help="Print the job as JSON (id, status, result) only."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Solve for the filter of a dataset or a planted problem, and print it with its certificate.

    By default a solve stops at the first trial whose zero loss certifies a global minimum (fewer trials then
    run than --trials asks; the summary says so): --no-stop-on-certificate runs them all."""
    if (data is None) == (planted is None):
        fail("give exactly one problem source: a DATA file or --planted n=...,d=...", code=2)
    planted_spec = parse_planted(planted) if planted is not None else None
    if planted_spec is not None and k is not None and k != planted_spec["k"]:
        fail(f"--k {k} contradicts --planted k={planted_spec['k']}; give k inside --planted.", code=2)
    weights = parse_number_list(output_weights, "--output-weights") if output_weights else None
    options: dict[str, Any] = {"relaxation": relaxation, "beta": beta, "trials": trials, "seed": seed,
                               "stop_on_certificate": stop_on_certificate, "polish": polish,
                               "coverage_samples": coverage_samples, "activation": activation,
                               "negative_slope": negative_slope}
    X: np.ndarray | None = None
    y: np.ndarray | None = None
    if data is not None:
        X, y = load_problem_data(data, labels)

    job_id: str | None = None
    asked = trials
    if url:
        client = service_client(url, api_key)
        submitted = {key: value for key, value in {**options, "k": k, "output_weights": weights}.items()
                     if value is not None}
        try:
            with client, ProgressBar("trials", enabled=not quiet) as bar:
                if planted_spec is not None:
                    job = client.submit(planted=planted_spec, options=cast("SolveOptions", submitted))
                else:
                    assert X is not None and y is not None  # a DATA file was read above
                    dataset = client.upload_dataset(X, y)
                    job = client.submit(dataset_id=dataset.id, options=cast("SolveOptions", submitted))
                job_id = job.id
                job = client.wait(job, timeout=timeout, progress=lambda snapshot: follow_trials(bar, snapshot))
                asked = job.progress.total if job.progress is not None else asked
        except _client_error_types() as error:
            fail_from_client_error(error)
        envelope = {key: value for key, value in job.raw.items()}
        if job.status != "succeeded":
            if as_json:
                print_json(envelope)
            fail(f"job {job.id} ended {job.status}: {job.error or 'no result'}")
        result = envelope["result"]
    else:
        from pydantic import ValidationError

        try:
            with ProgressBar("trials", enabled=not quiet) as bar:
                result = solve_in_process(X, y, planted_spec, k, weights, options,
                                          progress=lambda done, total, _: bar.update(done, total))
                asked = asked or default_trials()
                bar.describe(trials_sentence(len(result.get("trials") or []), asked,
                                             (result.get("certificate") or {}).get("global_optimum")))
        except InvalidParameterError as error:
            fail(f"{error.parameter}: {error.message}", code=2)
        except ValidationError as error:
            first = error.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first.get("loc", ()))
            fail(f"{where}: {first['msg']} (got {first.get('input')!r})", code=2)
        envelope = {"id": None, "status": "succeeded", "result": result}
    if as_json:
        print_json(envelope)
    else:
        render_solve_summary(result, job_id, asked)


def default_trials() -> int:
    """The trials a solve asks for when ``--trials`` is not given (the core's default)."""
    from ..specs import CORE_DEFAULTS

    return CORE_DEFAULTS.trials


def follow_trials(bar: ProgressBar, job: Any) -> None:
    """A job snapshot (fed from its events) into the trials bar; at its end, trials run against trials asked."""
    if job.progress is not None:
        bar.update(job.progress.done, job.progress.total)
    if job.done and job.result is not None and job.progress is not None:
        bar.describe(trials_sentence(len(job.result.trials), job.progress.total,
                                     job.result.certificate.global_optimum if job.result.certificate else None))


# ---------------------------------------------------------------------------------------------------
# jobs
# ---------------------------------------------------------------------------------------------------

UrlOption = typer.Option(DEFAULT_SERVICE_URL, "--url", envvar=URL_ENV, help="Service URL.")
ApiKeyOption = typer.Option(None, "--api-key", envvar=API_KEY_ENV, help="X-API-Key for the service.")


@jobs_app.command("list")
def jobs_list(
    status: Optional[str] = typer.Option(None, help="Only jobs in this status (queued, running, succeeded, "
                                                    "failed, cancelled)."),
    limit: int = typer.Option(20, min=1, help="At most this many jobs."),
    url: str = UrlOption,
    api_key: Optional[str] = ApiKeyOption,
    as_json: bool = typer.Option(False, "--json", help="Print the jobs as a JSON list."),
) -> None:
    """List the service's solve jobs, newest first."""
    jobs = from_service(url, api_key, lambda client: list(
        itertools.islice(client.iter_jobs(status=status, page_size=min(limit, 100)), limit)))
    if as_json:
        print_json([_job_summary(job.raw) for job in jobs])
    else:
        _status_table("jobs", url, jobs, "progress", status)


def _status_table(kind: str, url: str, items: Sequence[Any], progress_label: str, status: str | None) -> None:
    """A table of jobs or experiments (``.id``, ``.status``, ``.raw["created_at"]``, ``.progress``)."""
    table = Table(title=f"{kind} at {url}", title_justify="left")
    table.add_column("id", no_wrap=True, min_width=len(items[0].id) if items else 8)
    for name in ("status", "created", progress_label):
        table.add_column(name, no_wrap=True)
    for item in items:
        created = str(item.raw.get("created_at") or "-").replace("T", " ")[:19]
        progress = f"{item.progress.done}/{item.progress.total}" if item.progress else "-"
        table.add_row(item.id, item.status, created, progress)
    stdout.print(table)
    if not items:
        stdout.print(f"no {kind}" + (f" with status {status}" if status else ""))


def _job_summary(raw: dict[str, Any]) -> dict[str, Any]:
    result = raw.get("result") or {}
    summary = {key: value for key, value in raw.items() if key != "result"}
    if result:
        summary["loss"] = result.get("loss")
        summary["global_optimum"] = (result.get("certificate") or {}).get("global_optimum")
    return summary


@jobs_app.command("show")
def jobs_show(
    job_id: str = typer.Argument(..., help="The job's id."),
    wait: Optional[float] = typer.Option(None, help="Wait up to this many seconds for the job to finish."),
    url: str = UrlOption,
    api_key: Optional[str] = ApiKeyOption,
    as_json: bool = typer.Option(False, "--json", help="Print the job as JSON."),
) -> None:
    """Show one job: its status and, once succeeded, its result."""
    job = from_service(url, api_key, lambda client: client.wait(job_id, timeout=wait) if wait else client.get(job_id))
    if as_json:
        print_json(job.raw)
    elif job.status == "succeeded" and isinstance(job.raw.get("result"), dict):
        render_solve_summary(job.raw["result"], job.id, job.progress.total if job.progress else None)
    else:
        _field_table(f"job {job.id}", _job_summary(job.raw))


@jobs_app.command("watch")
def jobs_watch(
    job_id: str = typer.Argument(..., help="The job's id."),
    url: str = UrlOption,
    api_key: Optional[str] = ApiKeyOption,
    timeout: Optional[float] = typer.Option(None, help="Give up after this many seconds (the job keeps running)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the finished job as JSON."),
) -> None:
    """Follow a solve job's events with a progress bar of its trials until it ends, then show it."""
    with ProgressBar("trials", enabled=not quiet) as bar:
        job = from_service(url, api_key, lambda client: client.wait(
            job_id, timeout=timeout, progress=lambda snapshot: follow_trials(bar, snapshot)))
    if as_json:
        print_json(job.raw)
    elif job.status == "succeeded" and isinstance(job.raw.get("result"), dict):
        render_solve_summary(job.raw["result"], job.id, job.progress.total if job.progress else None)
    else:
        stdout.print(f"job {job.id} ended {job.status}: {job.error or 'no result'}", highlight=False)


@jobs_app.command("events")
def jobs_events(
    job_id: str = typer.Argument(..., help="The job's (a solve's, or with --experiment an experiment's) id."),
    experiment: bool = typer.Option(False, "--experiment", help="The id is an experiment's."),
    after: Optional[int] = typer.Option(None, "--after", min=0, help="Only the events after this event id."),
    url: str = UrlOption,
    api_key: Optional[str] = ApiKeyOption,
    timeout: Optional[float] = typer.Option(None, help="Give up after this many seconds."),
) -> None:
    """Print a job's events as they happen, one JSON object a line ({"id", "event", "data"}), until its end."""
    def follow(client: Client) -> None:
        for event in client.events(job_id, kind="experiment" if experiment else "solve", last_event_id=after,
                                   timeout=timeout):
            sys.stdout.write(json.dumps({"id": event.id, "event": event.event, "data": event.data}) + "\n")
            sys.stdout.flush()

    from_service(url, api_key, follow)


@jobs_app.command("cancel")
def jobs_cancel(
    job_id: str = typer.Argument(..., help="The job's id."),
    url: str = UrlOption,
    api_key: Optional[str] = ApiKeyOption,
    as_json: bool = typer.Option(False, "--json", help="Print the job as JSON."),
) -> None:
    """Cancel a queued or running job."""
    job = from_service(url, api_key, lambda client: client.cancel(job_id))
    if as_json:
        print_json(job.raw)
    else:
        stdout.print(cancel_sentence("job", job.id, job.status, job.cancel_requested), highlight=False)


# ---------------------------------------------------------------------------------------------------
# datasets and experiments of a service
# ---------------------------------------------------------------------------------------------------

def _field_table(title: str, fields: dict[str, Any]) -> None:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in fields.items():
        table.add_row(key, json.dumps(value) if isinstance(value, (dict, list)) else fmt(value))
    stdout.print(table)


@datasets_app.command("list")
def datasets_list(
    url: str = UrlOption,
    api_key: Optional[str] = ApiKeyOption,
    as_json: bool = typer.Option(False, "--json", help="Print the datasets as a JSON list."),
) -> None:
    """List the datasets stored for this API key, newest first."""
    datasets = from_service(url, api_key, lambda client: client.list_datasets().items)
    if as_json:
        print_json([dataset.raw for dataset in datasets])
        return
    table = Table(title=f"datasets at {url}", title_justify="left")
    table.add_column("id", no_wrap=True, min_width=64 if datasets else 8)
    for name in ("n", "d", "bytes", "source", "created"):
        table.add_column(name, no_wrap=True, justify="right" if name in ("n", "d", "bytes") else "left")
    for dataset in datasets:
        created = str(dataset.created_at or "-").replace("T", " ")[:19]
        table.add_row(dataset.id, fmt(dataset.n), fmt(dataset.d), fmt(dataset.size_bytes), fmt(dataset.source),
                      created)
    stdout.print(table)
    if not datasets:
        stdout.print("no datasets")


@datasets_app.command("show")
def datasets_show(
    dataset_id: str = typer.Argument(..., help="The dataset's id (its sha256)."),
    url: str = UrlOption,
    api_key: Optional[str] = ApiKeyOption,
    as_json: bool = typer.Option(False, "--json", help="Print the dataset as JSON."),
) -> None:
    """Show one dataset's metadata."""
    dataset = from_service(url, api_key, lambda client: client.get_dataset(dataset_id))
    if as_json:
        print_json(dataset.raw)
    else:
        _field_table(f"dataset {dataset.id}", dataset.raw)


@experiments_app.command("list")
def experiments_list(
    status: Optional[str] = typer.Option(None, help="Only experiments in this status."),
    limit: int = typer.Option(20, min=1, max=500, help="At most this many experiments."),
    url: str = UrlOption,
    api_key: Optional[str] = ApiKeyOption,
    as_json: bool = typer.Option(False, "--json", help="Print the experiments as a JSON list."),
) -> None:
    """List the service's experiments, newest first."""
    experiments = from_service(url, api_key, lambda client: client.list_experiments(status=status, limit=limit).items)
    if as_json:
        print_json([experiment.raw for experiment in experiments])
    else:
        _status_table("experiments", url, experiments, "cells", status)


@experiments_app.command("show")
def experiments_show(
    experiment_id: str = typer.Argument(..., help="The experiment's id."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", dir_okay=False,
                                       help="Write its figure here (once it has succeeded)."),
    url: str = UrlOption,
    api_key: Optional[str] = ApiKeyOption,
    as_json: bool = typer.Option(False, "--json", help="Print the experiment as JSON."),
) -> None:
    """Show one experiment: its status and cells done and, once succeeded, its result."""
    def fetch(client: Client) -> tuple[Any, bytes | None]:
        found = client.get_experiment(experiment_id)
        wanted = out is not None and found.status == "succeeded"
        return found, client.experiment_figure(found) if wanted else None

    experiment, figure = from_service(url, api_key, fetch)
    if figure is not None and out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(figure)
    if as_json:
        print_json(experiment.raw)
        return
    spec = experiment.raw.get("spec") or {"kind": experiment.kind}
    if experiment.status == "succeeded" and experiment.result is not None:
        render_experiment_summary(spec, experiment.result)
    else:
        summary = {key: value for key, value in experiment.raw.items() if key not in ("spec", "result")}
        _field_table(f"experiment {experiment.id}", summary)
    if figure is not None:
        stdout.print(f"figure written to {out}")


@experiments_app.command("cancel")
def experiments_cancel(
    experiment_id: str = typer.Argument(..., help="The experiment's id."),
    url: str = UrlOption,
    api_key: Optional[str] = ApiKeyOption,
    as_json: bool = typer.Option(False, "--json", help="Print the experiment as JSON."),
) -> None:
    """Cancel a queued experiment, or ask a running one to stop."""
    experiment = from_service(url, api_key, lambda client: client.cancel_experiment(experiment_id))
    if as_json:
        print_json(experiment.raw)
    else:
        requested = bool(experiment.raw.get("cancel_requested"))
        stdout.print(cancel_sentence("experiment", experiment.id, experiment.status, requested), highlight=False)


# ---------------------------------------------------------------------------------------------------
# experiments
# ---------------------------------------------------------------------------------------------------


def run_experiment_command(spec: dict[str, Any], out: Path | None, url: str | None, api_key: str | None,
                           timeout: float | None, as_json: bool, quiet: bool, images_file: Path | None = None) -> None:
    """Run an experiment against a service or in-process, with a progress bar; save its figure in the format its
    suffix names (png, svg or pdf). ``images_file`` (an ``.npz`` of ``images`` and optional ``angles``) goes to
    a service as a stored image set, uploaded first and named by ``images_dataset_id`` (so sets of any size
    the dataset limits allow, MNIST's included, are not sent inline); in-process it is read into the spec."""
    if out is not None:
        figure_format(out)  # a wrong suffix is refused before any work
    label = str(spec["kind"]).replace("_", " ")
    figure: bytes | None = None
    experiment_id: str | None = None
    if url:
        client = service_client(url, api_key)
        try:
            with client, ProgressBar(label, enabled=not quiet) as bar:
                if images_file is not None:
                    spec["images_dataset_id"] = client.upload_images(images_file).id

                def on_snapshot(snapshot: Any) -> None:
                    if snapshot.progress is not None:
                        bar.update(snapshot.progress.done, snapshot.progress.total)

                experiment = client.run_experiment(spec, progress=on_snapshot, timeout=timeout)
                experiment_id = experiment.id
                result = experiment.result or {}
                if out is not None:
                    figure = client.download_figure(experiment, figure_format(out))
        except _client_error_types() as error:
            fail_from_client_error(error)
    else:
        try:
            from cnnrelax.experiments import ExperimentCancelled, parse_experiment_spec, render_figure
        except ImportError as error:
            fail(f"in-process experiments need cnnrelax.experiments ({error}); or pass --url of a service.")
        from ..jobs import run_job
        from ..types import JobKind

        if images_file is not None:
            archive = cast(dict[str, np.ndarray], load_array(images_file))  # an .npz: check_images_archive
            spec["images"] = archive["images"].tolist()
            if "angles" in archive:
                spec["angles"] = archive["angles"].tolist()

        started = time.monotonic()
        with ProgressBar(label, enabled=not quiet) as bar:
            def on_progress(done: int, total: int, partial_state: dict[str, Any]) -> None:
                bar.update(done, total)

            def should_stop() -> bool:
                return timeout is not None and time.monotonic() - started > timeout

            try:
                # The job function the service's workers run.
                typed = parse_experiment_spec(spec)  # the typed spec a worker would read back
                result = run_job(JobKind.experiment, typed, should_stop=should_stop, progress=on_progress)
            except ExperimentCancelled:
                fail(f"the experiment did not finish within --timeout {timeout:g} s.")
            except ValueError as error:
                fail(str(error), code=2)
        if out is not None:
            figure = render_figure(result, figure_format(out))
    if figure is not None and out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(figure)
    if as_json:
        print_json({"id": experiment_id, "status": "succeeded", "spec": spec_shown(spec), "result": result})
        return
    render_experiment_summary(spec, result)
    if out is not None:
        stdout.print(f"figure written to {out}")



def spec_shown(spec: dict[str, Any]) -> dict[str, Any]:
    """An experiment's spec as printed: inline ``images`` and ``angles`` as their shapes (as the API shows them),
    not every number again."""
    shown = dict(spec)
    for name in ("images", "angles"):
        value = shown.get(name)
        if isinstance(value, list):
            shape: list[int] = []
            while isinstance(value, list):
                shape.append(len(value))
                value = value[0] if value else None
            shown[name] = {"shape": shape}
    return shown
def figure_format(path: Path) -> str:
    """The figure format ``path``'s suffix names: png, svg or pdf (exit 2 for another)."""
    from ..experiments.common import FIGURE_MEDIA_TYPES

    suffix = path.suffix.lower().lstrip(".")
    if suffix not in FIGURE_MEDIA_TYPES:
        fail(f"--out {path}: the suffix names the figure's format; use .png, .svg or .pdf.", code=2)
    return suffix


def _extra_fields(settings: list[str]) -> dict[str, Any]:
    """``--set key=value`` pairs; values are parsed as JSON when they can be (numbers, lists, ...)."""
    out: dict[str, Any] = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--set expects key=value, got {item!r}.")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


@experiment_app.command("phase-transition")
def experiment_phase_transition(
    k: int = typer.Option(1, "--k", "-k", min=1, help="Patches per row."),
    d: str = typer.Option("10,20,30", "--d", help="Grid of input dimensions, comma-separated."),
    n: str = typer.Option("25,50,100,200", "--n", help="Grid of sample counts, comma-separated."),
    repetitions: int = typer.Option(5, min=1, help="Planted problems per cell (the paper uses 20)."),
    methods: str = typer.Option("relaxation,gradient_descent",
                                help="Comma-separated: relaxation, gradient_descent, pseudo_inverse."),
    trials: Optional[int] = typer.Option(None, min=1, help="Relaxation trials per repetition."),
    seed: int = typer.Option(0, help="Seed of the whole sweep."),
    extra: list[str] = typer.Option([], "--set", help="Any other spec field, key=value (JSON values)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", dir_okay=False,
                                       help="Write the heatmaps here (.png, .svg or .pdf)."),
    url: Optional[str] = typer.Option(None, "--url", envvar=URL_ENV,
                                      help="Service URL; without it the sweep runs in this process."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar=API_KEY_ENV),
    timeout: Optional[float] = typer.Option(None, help="Give up after this many seconds."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Paper Fig. 1: recovery error and success rate over a (d, n) grid, per method."""
    spec: dict[str, Any] = {
        "kind": "phase_transition", "k": k, "d": parse_number_list(d, "--d", int),
        "n": parse_number_list(n, "--n", int), "repetitions": repetitions,
        "methods": [m.strip() for m in methods.split(",") if m.strip()], "seed": seed,
    }
    if trials is not None:
        spec["trials"] = trials
    spec.update(_extra_fields(extra))
    run_experiment_command(spec, out, url, api_key, timeout, as_json, quiet)


@experiment_app.command("digits")
def experiment_digits(
    seed: int = typer.Option(0, help="First replicate seed (rotations, split, relaxation, random filters)."),
    seeds: Optional[int] = typer.Option(None, min=1, help="Replicate seeds seed, seed+1, ... (default: 5)."),
    max_images: Optional[int] = typer.Option(None, min=10, help="Use only this many images (a quick run)."),
    angles_per_image: Optional[int] = typer.Option(None, min=1, help="Rotated copies of each image (default: 2)."),
    filters: Optional[int] = typer.Option(None, min=1, help="Filters learned per patch shape (default: 2)."),
    images: Optional[Path] = typer.Option(None, "--images", dir_okay=False,
                                          help="Your own images: .npz with 'images' (N x H x W), optional 'angles'; "
                                               "with --url uploaded once as a stored image set."),
    extra: list[str] = typer.Option([], "--set", help="Any other spec field, key=value (JSON values)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", dir_okay=False,
                                       help="Write the figure here (.png, .svg or .pdf)."),
    url: Optional[str] = typer.Option(None, "--url", envvar=URL_ENV,
                                      help="Service URL; without it the experiment runs in this process."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar=API_KEY_ENV),
    timeout: Optional[float] = typer.Option(None, help="Give up after this many seconds."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Paper Table 1: predict rotation angles of digits (8x8, or your own images), raw pixels vs. + learned filter."""
    spec: dict[str, Any] = {"kind": "rotated_digits", "seed": seed}
    for key, value in (("seeds", seeds), ("max_images", max_images), ("angles_per_image", angles_per_image),
                       ("filters", filters)):
        if value is not None:
            spec[key] = value
    if images is not None:
        check_images_archive(images)
    spec.update(_extra_fields(extra))
    run_experiment_command(spec, out, url, api_key, timeout, as_json, quiet, images_file=images)


def check_images_archive(path: Path) -> None:
    """Exit 2 unless ``path`` is an ``.npz`` archive naming an array ``images`` (read lazily: nothing is inflated;
    the service, or the in-process spec, checks the arrays themselves)."""
    names: list[str] = []
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError):  # not a file numpy reads
        loaded = None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        names = list(loaded.files)
        loaded.close()
    if "images" not in names:
        fail(f"--images {path}: expected an .npz archive with an array named 'images' (N x H x W) and optional "
             "'angles'; save one with numpy.savez('images.npz', images=...).", code=2)


# ---------------------------------------------------------------------------------------------------
# certify
# ---------------------------------------------------------------------------------------------------

def read_filter(text: str) -> list[float]:
    """``--w``: comma-separated numbers, or a ``.npy`` / ``.npz`` (array ``w``) / ``.csv`` file holding them."""
    path = Path(text)
    if path.suffix.lower() in (".npy", ".npz", ".csv") and path.exists():
        loaded = load_array(path)
        array = loaded["w"] if isinstance(loaded, dict) and "w" in loaded else loaded
        if isinstance(array, dict):
            fail(f"--w {path}: expected an .npz archive with an array named 'w'.", code=2)
        return [float(value) for value in np.asarray(array, dtype=np.float64).reshape(-1)]
    return parse_number_list(text, "--w")


def certify_in_process(X: np.ndarray | None, y: np.ndarray | None, members: dict[str, Any]) -> dict[str, Any]:
    """Build the :class:`~cnnrelax.specs.CertifySpec`, check it and certify in this process (the job function a
    worker runs); return the certificate's JSON."""
    from ..certification import run_certify_job
    from ..specs import UNLIMITED, CertifySpec, DataShape

    spec = CertifySpec.model_validate({key: value for key, value in members.items() if value is not None})
    data = None if X is None or y is None else DataShape(X.shape[0], X.shape[1], labels=y)
    spec.check(data, UNLIMITED)
    return run_certify_job(spec, None if X is None or y is None else (X, y))


def render_certificate(certificate: dict[str, Any]) -> None:
    """A person's view of a certificate: the summary, then each measure."""
    table = Table(title="cnnrelax certificate", show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("summary", str(certificate.get("summary")))
    table.add_row("global optimum", fmt(certificate.get("global_optimum")))
    table.add_row("loss L(w)", f"{fmt(certificate.get('loss'))} (zero below {fmt(certificate.get('loss_threshold'))})")
    cone = certificate.get("cone") or {}
    table.add_row("cone", str(cone.get("reason")))
    coverage = certificate.get("coverage") or {}
    table.add_row("coverage", str(coverage.get("reason")))
    table.add_row("relative gradient norm", fmt(certificate.get("relative_gradient_norm")))
    kkt = certificate.get("kkt")
    if kkt:
        table.add_row("KKT", str(kkt.get("reason")))
        if kkt.get("multipliers"):
            named = ", ".join(f"{name}={fmt(value)}" for name, value in kkt["multipliers"].items())
            table.add_row("multipliers", named)
    stdout.print(table)


@app.command()
def certify(
    data: Optional[Path] = typer.Argument(
        None, help="Data file: .npz with arrays X and y, or .npy / .csv with y in the last column.", dir_okay=False),
    w: str = typer.Option(..., "--w", help="The filter to certify: comma-separated numbers, or a .npy/.npz/.csv file."),
    labels: Optional[Path] = typer.Option(None, "--labels", "-y", dir_okay=False,
                                          help="Labels in their own .npy / .csv file (then DATA is all X)."),
    planted: Optional[str] = typer.Option(None, "--planted", help="A planted problem instead of a file, "
                                          "e.g. n=2000,d=20,k=1,seed=0."),
    k: Optional[int] = typer.Option(None, "--k", "-k", min=1, help="Patches per row (d = k*m) (default: 1)."),
    trials: Optional[int] = typer.Option(None, min=1, help="Test the directions of this many trials (default: 8)."),
    seed: Optional[int] = typer.Option(None, help="Seed of the trials' directions and of the coverage (default: 0)."),
    output_weights: Optional[str] = typer.Option(None, help="Output weights c_j >= 0, comma-separated."),
    coverage_samples: Optional[int] = typer.Option(None, "--coverage-samples", min=0,
                                                   help="Directions sampled for the coverage (0 skips; default 64)."),
    activation: Optional[str] = typer.Option(None, "--activation", help="relu (default), leaky_relu, absolute, "
                                             "squared_relu or softplus."),
    negative_slope: Optional[float] = typer.Option(None, "--negative-slope", help="leaky_relu's slope (0, 1)."),
    constraints: Optional[str] = typer.Option(None, "--constraints", help="Constraints on w as JSON, e.g. "
                                              "'{\"lower\": -0.3, \"upper\": 0.3}'."),
    url: Optional[str] = typer.Option(None, "--url", envvar=URL_ENV,
                                      help="Service URL; without it the certificate is computed in this process."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar=API_KEY_ENV, help="X-API-Key for the service."),
    timeout: Optional[float] = typer.Option(None, help="Give up waiting for the service after this many seconds."),
    as_json: bool = typer.Option(False, "--json", help="Print the certificate as JSON only."),
) -> None:
    """Certify a filter you already have (from PyTorch or anywhere): zero loss, the cone test and its coverage,
    stationarity and, under constraints, the KKT conditions; one sentence says what is proven."""
    if (data is None) == (planted is None):
        fail("give exactly one problem source: a DATA file or --planted n=...,d=...", code=2)
    members: dict[str, Any] = {
        "w": read_filter(w), "planted": parse_planted(planted) if planted is not None else None, "k": k,
        "trials": trials, "seed": seed, "coverage_samples": coverage_samples, "activation": activation,
        "negative_slope": negative_slope,
        "output_weights": parse_number_list(output_weights, "--output-weights") if output_weights else None,
        "constraints": json.loads(constraints) if constraints else None,
    }
    X: np.ndarray | None = None
    y: np.ndarray | None = None
    if data is not None:
        X, y = load_problem_data(data, labels)
    if url:
        options = {key: value for key, value in members.items() if key not in ("w", "planted") and value is not None}
        certificate = from_service(url, api_key, lambda client: client.certify(
            members["w"], X, y, planted=members["planted"], timeout=timeout, **options)).raw
    else:
        from pydantic import ValidationError

        try:
            certificate = certify_in_process(X, y, members)
        except InvalidParameterError as error:
            fail(f"{error.parameter}: {error.message}", code=2)
        except ValidationError as error:
            first = error.errors(include_url=False)[0]
            fail(f"{'.'.join(str(part) for part in first.get('loc', ()))}: {first['msg']}", code=2)
    if as_json:
        print_json(certificate)
    else:
        render_certificate(certificate)
