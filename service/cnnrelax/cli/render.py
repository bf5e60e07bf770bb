"""What the CLI prints: tables for people (solve results, certificates, experiments, a service's jobs and
resources), JSON for machines, progress bars, and errors on stderr; and the figure files it writes (``--out``)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, Sequence

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

stdout = Console()
stderr = Console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` to stderr and exit with ``code``."""
    stderr.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)



def fail_from_client_error(error: BaseException) -> NoReturn:
    """Exit with the problem details of a client error."""
    status = getattr(error, "status", None)
    title = getattr(error, "title", "error")
    detail = getattr(error, "detail", str(error))
    fail(f"{status} {title}: {detail}" if status else f"{title}: {detail}")


def print_json(data: Any) -> None:
    """JSON on stdout, nothing else (for machines)."""
    sys.stdout.write(json.dumps(data, indent=2, default=_json_default) + "\n")
    sys.stdout.flush()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def fmt_vector(values: list[float] | None, limit: int = 8) -> str:
    if values is None:
        return "-"
    shown = ", ".join(f"{v:.4g}" for v in values[:limit])
    return f"[{shown}{', ...' if len(values) > limit else ''}] (m={len(values)})"


def trials_sentence(run: int, asked: int | None, global_optimum: bool | None) -> str:
    """Trials run against trials asked, and why fewer ran: e.g. ``1 of 8 trials run: stopped on a certificate``."""
    if asked is None or run >= asked:
        return f"{run} of {run if asked is None else asked} trials run"
    if global_optimum:
        return (f"{run} of {asked} trials run: stopped on a certificate (a trial's zero loss certified a global "
                "minimum; --no-stop-on-certificate runs them all)")
    return f"{run} of {asked} trials run: stopped early"


def cancel_sentence(kind: str, job_id: str, status: str, cancel_requested: bool | None) -> str:
    """What ``DELETE`` of a job did: cancelled at once, a cancel requested of a running job, or nothing."""
    if status == "cancelled":
        return f"{kind} {job_id}: cancelled."
    if status in ("queued", "running") and cancel_requested:
        return (f"{kind} {job_id}: cancel requested; it is {status} and stops at its next check "
                "(see its status with `show`).")
    return f"{kind} {job_id} had already ended ({status}); nothing to cancel."


def field_value_table(title: str, fold: bool = True) -> Table:
    """A two-column table of a thing's fields (bold names; long values folded onto more lines when ``fold``)."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold" if fold else "ellipsis")  # rich's default: "ellipsis"
    return table


def render_fields(title: str, fields: dict[str, Any]) -> None:
    """A thing's fields as a table (lists and dicts as JSON)."""
    table = field_value_table(title)
    for key, value in fields.items():
        table.add_row(key, json.dumps(value) if isinstance(value, (dict, list)) else fmt(value))
    stdout.print(table)


def render_status_table(kind: str, url: str, items: Sequence[Any], progress_label: str, status: str | None) -> None:
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


def render_solve_summary(result: dict[str, Any], job_id: str | None = None, trials_asked: int | None = None) -> None:
    """A person's view of a solve result: the filter, its loss and certificate, and the trials (run of asked)."""
    certificate = result.get("certificate") or {}
    cone = certificate.get("cone") or {}
    shape = result.get("shape") or {}
    trials = result.get("trials") or []
    table = field_value_table("cnnrelax solve")
    if job_id:
        table.add_row("job", job_id)
    table.add_row("status", f"{result.get('status')}: {result.get('message') or ''}".rstrip(": "))
    if shape:
        table.add_row("shape", ", ".join(f"{key}={value}" for key, value in shape.items()))
    table.add_row("relaxation", fmt(result.get("relaxation")))
    table.add_row("filter w", fmt_vector(result.get("w")))
    table.add_row("loss L(w)", fmt(result.get("loss")))
    table.add_row("global optimum", fmt(certificate.get("global_optimum")))
    if certificate.get("summary"):
        table.add_row("certificate", str(certificate["summary"]))
    if cone.get("applicable"):
        by = cone.get("certified_by_trials") or []
        table.add_row("cone certificate",
                      f"{'certified' if cone.get('certified') else 'not certified'}"
                      f"{f' by the directions of trials {by}' if by else ''} "
                      f"(closest residual {fmt(cone.get('residual'))}, tolerance {fmt(cone.get('tolerance'))})")
    else:
        table.add_row("cone certificate", f"not applicable: {cone.get('reason') or 'the filter does not fit y'}")
    coverage = certificate.get("coverage") or {}
    if coverage.get("applicable"):
        table.add_row("coverage", str(coverage.get("reason")))
    if result.get("recovery_error") is not None:
        table.add_row("recovery error", fmt(result.get("recovery_error")))
    table.add_row("trials", trials_sentence(len(trials), trials_asked, certificate.get("global_optimum")))
    table.add_row("selected trial", fmt(result.get("selected_trial")))
    recovered = [t.get("recovered") for t in trials if t.get("recovered") is not None]
    if recovered:
        polished = [t.get("recovered_after_polish") for t in trials if t.get("recovered_after_polish") is not None]
        after = f" ({sum(map(bool, polished))} after polishing)" if polished else ""
        table.add_row("trials recovering w*", f"{sum(map(bool, recovered))} of {len(recovered)}{after}")
    table.add_row("solve time", f"{fmt(result.get('solve_time_s'), 3)} s")
    stdout.print(table)
    if trials and len(trials) <= 32:
        per_trial = Table(title="trials", title_justify="left")
        for name in ("#", "loss", "objective", "recov.", "pred.", "solver", "iters", "time s"):
            per_trial.add_column(name, justify="left" if name == "solver" else "right", no_wrap=True)
        for trial in trials:
            solver = trial.get("solver") or {}
            per_trial.add_row(
                str(trial.get("index")), fmt(trial.get("loss"), 3), fmt(trial.get("objective"), 4),
                fmt(trial.get("recovered")), fmt(trial.get("predicted")), fmt(solver.get("status")),
                fmt(solver.get("iterations")), fmt(solver.get("solve_time_s"), 2),
            )
        stdout.print(per_trial)


def render_certificate(certificate: dict[str, Any]) -> None:
    """A person's view of a certificate: the summary, then each measure."""
    table = field_value_table("cnnrelax certificate")
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


@dataclass
class ProgressBar:
    """A rich progress bar fed with ``(done, total)``; silent when ``enabled`` is false."""

    description: str
    enabled: bool = True

    def __post_init__(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), TimeRemainingColumn(), console=stderr,
                                  disable=not self.enabled, transient=False)
        self._task = self._progress.add_task(self.description, total=None)

    def update(self, done: int, total: int | None) -> None:
        self._progress.update(self._task, completed=done, total=total or None)

    def describe(self, text: str) -> None:
        """Replace the bar's description (e.g. why it stopped short of its total)."""
        self._progress.update(self._task, description=text)

    def __enter__(self) -> ProgressBar:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()


def follow_trials(bar: ProgressBar, job: Any) -> None:
    """A job snapshot (fed from its events) into the trials bar; at its end, trials run against trials asked."""
    if job.progress is not None:
        bar.update(job.progress.done, job.progress.total)
    if job.done and job.result is not None and job.progress is not None:
        bar.describe(trials_sentence(len(job.result.trials), job.progress.total,
                                     job.result.certificate.global_optimum if job.result.certificate else None))


def render_experiment_summary(spec: dict[str, Any], result: dict[str, Any]) -> None:
    """A person's view of an experiment result."""
    if spec["kind"] == "phase_transition":
        cells = result.get("cells") or []
        table = Table(title=f"phase transition, k={spec.get('k')}", title_justify="left")
        for name in ("method", "d", "n", "min error", "success rate"):
            table.add_column(name, justify="left" if name == "method" else "right")
        for cell in cells:
            table.add_row(str(cell.get("method")), str(cell.get("d")), str(cell.get("n")),
                          fmt(cell.get("min_error"), 3), fmt(cell.get("success_rate"), 3))
        stdout.print(table)
        transition = result.get("transition")
        if isinstance(transition, dict) and transition:
            table = Table(title="transition: smallest n whose success rate reaches half its plateau",
                          title_justify="left")
            for name in ("method", "d", "n", "plateau"):
                table.add_column(name, justify="left" if name == "method" else "right")
            for method, rows in transition.items():
                for row in rows if isinstance(rows, list) else []:
                    table.add_row(method, fmt(row.get("d")), fmt(row.get("n")) if row.get("n") is not None
                                  else "not reached", fmt(row.get("plateau"), 3))
            stdout.print(table)
    else:
        table = field_value_table("rotated digits (test RMSE, degrees; mean +- sd over seeds)", fold=False)
        for key in ("rmse_raw", "rmse_filter", "rmse_random"):
            std = result.get(f"{key}_std")
            table.add_row(key, fmt(result.get(key), 4) + ("" if std is None else f" +- {fmt(std, 3)}"))
        for key in ("learned_minus_raw", "learned_minus_random"):
            comparison = result.get(key)
            if isinstance(comparison, dict):
                interval = comparison.get("interval")
                text = "n/a (one seed)" if interval is None else f"[{fmt(interval[0], 3)}, {fmt(interval[1], 3)}]"
                table.add_row(key, f"{fmt(comparison.get('mean'), 3)}, 95% interval {text}: "
                                   f"{comparison.get('verdict')}")
        for key, value in result.items():
            if key not in ("rmse_raw", "rmse_filter", "rmse_random") and not key.endswith("_std") \
                    and isinstance(value, (int, float, str, bool)):
                table.add_row(key, fmt(value))
        stdout.print(table)


def figure_format(path: Path) -> str:
    """The figure format ``path``'s suffix names: png, svg or pdf (exit 2 for another)."""
    from ..experiments.common import FIGURE_MEDIA_TYPES

    suffix = path.suffix.lower().lstrip(".")
    if suffix not in FIGURE_MEDIA_TYPES:
        fail(f"--out {path}: the suffix names the figure's format; use .png, .svg or .pdf.", code=2)
    return suffix


def write_figure(path: Path, figure: bytes) -> None:
    """Write a figure's bytes to ``path``, making its directory if need be."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(figure)
