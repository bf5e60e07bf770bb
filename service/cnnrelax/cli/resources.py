"""The commands on a running service's resources: ``jobs`` (list, show, watch, events, cancel), ``datasets``
(list, show) and ``experiments`` (list, show, cancel). Each asks the service through the thin client and
prints a table for people or, with ``--json``, the resource's JSON."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol, TypeVar

import typer
from rich.table import Table

from .options import ApiKeyOption, QuietOption, TimeoutOption, UrlOption
from .remote import from_service
from .render import (
    ProgressBar,
    cancel_sentence,
    fmt,
    follow_trials,
    print_json,
    render_experiment_summary,
    render_fields,
    render_solve_summary,
    render_status_table,
    stdout,
    write_figure,
)

if TYPE_CHECKING:
    from cnnrelax_client import Client, Experiment, Job


class _Answered(Protocol):
    """A resource of the service as the client answers it (a job, a dataset, an experiment)."""

    @property
    def raw(self) -> dict[str, Any]:
        """The resource's JSON as the service sent it."""
        ...


Resource = TypeVar("Resource", bound=_Answered)


def _job_summary(raw: dict[str, Any]) -> dict[str, Any]:
    """A job's fields without its result, but with the result's loss and whether it is a global optimum."""
    result = raw.get("result") or {}
    summary = {key: value for key, value in raw.items() if key != "result"}
    if result:
        summary["loss"] = result.get("loss")
        summary["global_optimum"] = (result.get("certificate") or {}).get("global_optimum")
    return summary


def _render_succeeded_job(job: Job) -> bool:
    """A succeeded job's result as a solve summary; false (nothing printed) for a job without one."""
    if job.status == "succeeded" and isinstance(job.raw.get("result"), dict):
        render_solve_summary(job.raw["result"], job.id, job.progress.total if job.progress else None)
        return True
    return False


def _print_one(url: str, api_key: str | None, as_json: bool, call: Callable[[Client], Resource],
               person_view: Callable[[Resource], None]) -> None:
    """Ask the service for one resource (``call``); print its JSON, or ``person_view`` of it for people."""
    found = from_service(url, api_key, call)
    if as_json:
        print_json(found.raw)
    else:
        person_view(found)


# ---------------------------------------------------------------------------------------------------
# jobs
# ---------------------------------------------------------------------------------------------------

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
        render_status_table("jobs", url, jobs, "progress", status)


def jobs_show(
    job_id: str = typer.Argument(..., help="The job's id."),
    wait: Optional[float] = typer.Option(None, help="Wait up to this many seconds for the job to finish."),
    url: str = UrlOption,
    api_key: Optional[str] = ApiKeyOption,
    as_json: bool = typer.Option(False, "--json", help="Print the job as JSON."),
) -> None:
    """Show one job: its status and, once succeeded, its result."""
    def person_view(job: Job) -> None:
        if not _render_succeeded_job(job):
            render_fields(f"job {job.id}", _job_summary(job.raw))

    _print_one(url, api_key, as_json, lambda client: client.wait(job_id, timeout=wait) if wait else client.get(job_id),
               person_view)


def jobs_watch(
    job_id: str = typer.Argument(..., help="The job's id."),
    url: str = UrlOption,
    api_key: Optional[str] = ApiKeyOption,
    timeout: Optional[float] = typer.Option(None, help="Give up after this many seconds (the job keeps running)."),
    quiet: bool = QuietOption,
    as_json: bool = typer.Option(False, "--json", help="Print the finished job as JSON."),
) -> None:
    """Follow a solve job's events with a progress bar of its trials until it ends, then show it."""
    with ProgressBar("trials", enabled=not quiet) as bar:
        job = from_service(url, api_key, lambda client: client.wait(
            job_id, timeout=timeout, progress=lambda snapshot: follow_trials(bar, snapshot)))
    if as_json:
        print_json(job.raw)
    elif not _render_succeeded_job(job):
        stdout.print(f"job {job.id} ended {job.status}: {job.error or 'no result'}", highlight=False)


def jobs_events(
    job_id: str = typer.Argument(..., help="The job's (a solve's, or with --experiment an experiment's) id."),
    experiment: bool = typer.Option(False, "--experiment", help="The id is an experiment's."),
    after: Optional[int] = typer.Option(None, "--after", min=0, help="Only the events after this event id."),
    url: str = UrlOption,
    api_key: Optional[str] = ApiKeyOption,
    timeout: Optional[float] = TimeoutOption,
) -> None:
    """Print a job's events as they happen, one JSON object a line ({"id", "event", "data"}), until its end."""
    def follow(client: Client) -> None:
        for event in client.events(job_id, kind="experiment" if experiment else "solve", last_event_id=after,
                                   timeout=timeout):
            sys.stdout.write(json.dumps({"id": event.id, "event": event.event, "data": event.data}) + "\n")
            sys.stdout.flush()

    from_service(url, api_key, follow)


def jobs_cancel(
    job_id: str = typer.Argument(..., help="The job's id."),
    url: str = UrlOption,
    api_key: Optional[str] = ApiKeyOption,
    as_json: bool = typer.Option(False, "--json", help="Print the job as JSON."),
) -> None:
    """Cancel a queued or running job."""
    _print_one(url, api_key, as_json, lambda client: client.cancel(job_id), lambda job: stdout.print(
        cancel_sentence("job", job.id, job.status, job.cancel_requested), highlight=False))


# ---------------------------------------------------------------------------------------------------
# datasets
# ---------------------------------------------------------------------------------------------------

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


def datasets_show(
    dataset_id: str = typer.Argument(..., help="The dataset's id (its sha256)."),
    url: str = UrlOption,
    api_key: Optional[str] = ApiKeyOption,
    as_json: bool = typer.Option(False, "--json", help="Print the dataset as JSON."),
) -> None:
    """Show one dataset's metadata."""
    _print_one(url, api_key, as_json, lambda client: client.get_dataset(dataset_id),
               lambda dataset: render_fields(f"dataset {dataset.id}", dataset.raw))


# ---------------------------------------------------------------------------------------------------
# experiments
# ---------------------------------------------------------------------------------------------------

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
        render_status_table("experiments", url, experiments, "cells", status)


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
        write_figure(out, figure)
    if as_json:
        print_json(experiment.raw)
        return
    spec = experiment.raw.get("spec") or {"kind": experiment.kind}
    if experiment.status == "succeeded" and experiment.result is not None:
        render_experiment_summary(spec, experiment.result)
    else:
        summary = {key: value for key, value in experiment.raw.items() if key not in ("spec", "result")}
        render_fields(f"experiment {experiment.id}", summary)
    if figure is not None:
        stdout.print(f"figure written to {out}")


def experiments_cancel(
    experiment_id: str = typer.Argument(..., help="The experiment's id."),
    url: str = UrlOption,
    api_key: Optional[str] = ApiKeyOption,
    as_json: bool = typer.Option(False, "--json", help="Print the experiment as JSON."),
) -> None:
    """Cancel a queued experiment, or ask a running one to stop."""
    def person_view(experiment: Experiment) -> None:
        requested = bool(experiment.raw.get("cancel_requested"))
        stdout.print(cancel_sentence("experiment", experiment.id, experiment.status, requested), highlight=False)

    _print_one(url, api_key, as_json, lambda client: client.cancel_experiment(experiment_id), person_view)
