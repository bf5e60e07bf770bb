"""The commands of the ``cnnrelax`` command line: serve, solve, inspect jobs, run the paper's experiments.

``solve`` and ``experiment`` run in-process when no ``--url`` is given, through the job function the
service's workers run (:func:`cnnrelax.jobs.run_solve_job` on a :class:`~cnnrelax.specs.SolveSpec`), and
against a running service (through the thin client ``cnnrelax_client``) when one is. Heavy modules (the
server, the experiments, the client) are imported only by the commands that need them.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np
import typer
from rich.table import Table

from ..core.problem import InvalidParameterError
from ..datafiles import checked_dataset, read_file, split_labels
from .render import (
    ProgressBar,
    fail,
    fail_from_client_error,
    fmt,
    print_json,
    render_experiment_summary,
    render_solve_summary,
    stdout,
)

if TYPE_CHECKING:
    from cnnrelax_client import Client

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
app.add_typer(jobs_app, name="jobs")
app.add_typer(experiment_app, name="experiment")

DEFAULT_SERVICE_URL = "http://127.0.0.1:8000"
URL_ENV = "CNNRELAX_URL"
API_KEY_ENV = "CNNRELAX_API_KEY"
PLANTED_FIELDS: dict[str, Callable[[str], Any]] = {
    "n": int, "d": int, "k": int, "seed": int, "noise_std": float, "distribution": str,
}


def main() -> None:
    """Console-script entry point (``cnnrelax = cnnrelax.cli:main``; ``python -m cnnrelax.cli``)."""
    app()


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



def solve_in_process(
    X: np.ndarray | None, y: np.ndarray | None, planted: dict[str, Any] | None, k: int | None,
    output_weights: list[float] | None, options: dict[str, Any],
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
        return run_solve_job(spec, None, None)
    spec.check(DataShape(X.shape[0], X.shape[1], labels=y), UNLIMITED)
    return run_solve_job(spec, (X, y), None)


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
        None, "--stop-on-certificate/--no-stop-on-certificate", help="Stop once a trial reaches zero loss."),
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
) -> None:
    """Solve for the filter of a dataset or a planted problem, and print it with its certificate."""
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
    if url:
        client = service_client(url, api_key)
        try:
            with client:
                if planted_spec is not None:
                    job = client.submit(planted=planted_spec, output_weights=weights, **options)
                else:
                    assert X is not None and y is not None  # a DATA file was read above
                    dataset = client.upload_dataset(X, y)
                    job = client.submit(dataset_id=dataset.id, k=k, output_weights=weights, **options)
                job_id = job.id
                job = client.wait(job, timeout=timeout)
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
            result = solve_in_process(X, y, planted_spec, k, weights, options)
        except InvalidParameterError as error:
            fail(f"{error.parameter}: {error.message}", code=2)
        except ValidationError as error:
            first = error.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first.get("loc", ()))
            fail(f"{where}: {first['msg']}", code=2)
        envelope = {"id": None, "status": "succeeded", "result": result}
    if as_json:
        print_json(envelope)
    else:
        render_solve_summary(result, job_id)


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
    try:
        with service_client(url, api_key) as client:
            jobs = []
            for job in client.iter_jobs(status=status, page_size=min(limit, 100)):
                jobs.append(job)
                if len(jobs) >= limit:
                    break
    except _client_error_types() as error:
        fail_from_client_error(error)
    if as_json:
        print_json([_job_summary(job.raw) for job in jobs])
        return
    table = Table(title=f"jobs at {url}", title_justify="left")
    table.add_column("id", no_wrap=True, min_width=len(jobs[0].id) if jobs else 8)
    for name in ("status", "created", "progress"):
        table.add_column(name, no_wrap=True)
    for job in jobs:
        created = str(job.raw.get("created_at") or "-").replace("T", " ")[:19]
        progress = f"{job.progress.done}/{job.progress.total}" if job.progress else "-"
        table.add_row(job.id, job.status, created, progress)
    stdout.print(table)
    if not jobs:
        stdout.print("no jobs" + (f" with status {status}" if status else ""))


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
    try:
        with service_client(url, api_key) as client:
            job = client.wait(job_id, timeout=wait) if wait else client.get(job_id)
    except _client_error_types() as error:
        fail_from_client_error(error)
    if as_json:
        print_json(job.raw)
        return
    if job.status == "succeeded" and isinstance(job.raw.get("result"), dict):
        render_solve_summary(job.raw["result"], job.id)
        return
    table = Table(title=f"job {job.id}", show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in _job_summary(job.raw).items():
        table.add_row(key, fmt(value) if not isinstance(value, (dict, list)) else json.dumps(value))
    stdout.print(table)


@jobs_app.command("cancel")
def jobs_cancel(
    job_id: str = typer.Argument(..., help="The job's id."),
    url: str = UrlOption,
    api_key: Optional[str] = ApiKeyOption,
    as_json: bool = typer.Option(False, "--json", help="Print the job as JSON."),
) -> None:
    """Cancel a queued or running job."""
    try:
        with service_client(url, api_key) as client:
            job = client.cancel(job_id)
    except _client_error_types() as error:
        fail_from_client_error(error)
    if as_json:
        print_json(job.raw)
    else:
        stdout.print(f"job {job.id}: {job.status}")


# ---------------------------------------------------------------------------------------------------
# experiments
# ---------------------------------------------------------------------------------------------------


def run_experiment_command(spec: dict[str, Any], out: Path | None, url: str | None, api_key: str | None,
                           timeout: float | None, as_json: bool, quiet: bool) -> None:
    """Run an experiment against a service or in-process, with a progress bar; save its figure."""
    label = str(spec["kind"]).replace("_", " ")
    figure: bytes | None = None
    experiment_id: str | None = None
    if url:
        client = service_client(url, api_key)
        try:
            with client, ProgressBar(label, enabled=not quiet) as bar:
                def on_snapshot(snapshot: Any) -> None:
                    if snapshot.progress is not None:
                        bar.update(snapshot.progress.done, snapshot.progress.total)

                experiment = client.run_experiment(spec, progress=on_snapshot, timeout=timeout)
                experiment_id = experiment.id
                result = experiment.result or {}
                if out is not None:
                    figure = client.experiment_figure(experiment)
        except _client_error_types() as error:
            fail_from_client_error(error)
    else:
        try:
            from cnnrelax.experiments import ExperimentCancelled, parse_experiment_spec, render_figure
        except ImportError as error:
            fail(f"in-process experiments need cnnrelax.experiments ({error}); or pass --url of a service.")
        from ..jobs import run_job
        from ..types import JobKind

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
            figure = render_figure(result)
    if figure is not None and out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(figure)
    if as_json:
        print_json({"id": experiment_id, "status": "succeeded", "spec": spec, "result": result})
        return
    render_experiment_summary(spec, result)
    if out is not None:
        stdout.print(f"figure written to {out}")



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
    out: Optional[Path] = typer.Option(None, "--out", "-o", dir_okay=False, help="Write the heatmaps here (PNG)."),
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
                                          help="Your own images: .npz with 'images' (N x H x W), optional 'angles'."),
    extra: list[str] = typer.Option([], "--set", help="Any other spec field, key=value (JSON values)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", dir_okay=False, help="Write the figure here (PNG)."),
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
        archive = load_array(images)
        if not isinstance(archive, dict) or "images" not in archive:
            fail(f"{images}: expected an .npz archive with an array named 'images'.", code=2)
        spec["images"] = archive["images"].tolist()
        if "angles" in archive:
            spec["angles"] = archive["angles"].tolist()
    spec.update(_extra_fields(extra))
    run_experiment_command(spec, out, url, api_key, timeout, as_json, quiet)
