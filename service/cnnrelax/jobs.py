"""The job function: what every worker (a local process, a Dask task) and the CLI's in-process path run.

No HTTP, no storage. :func:`run_job` takes a job's typed spec (a :class:`~cnnrelax.specs.SolveSpec`, or an
experiment's :data:`~cnnrelax.experiments.specs.ExperimentSpec`) and returns a JSON-able dict, telling an
optional event sink what happens meanwhile (a ``trial`` event per trial, a ``log`` event per working-set
round, a ``cell`` event per experiment cell: :func:`trial_event`, :func:`round_event`, :func:`cell_event`);
:func:`classify_outcome` turns that dict into the job's final status. :func:`load_spec` reads a stored spec
back (once per run).
"""

from __future__ import annotations

import math
import time
from typing import Any, Mapping, Union

import numpy as np

from .constrained import finish
from .core import RoundRecord, TrialRecord, solve
from .errors import InvalidParameterError
from .experiments.specs import PhaseTransitionSpec, RotatedDigitsSpec, load_experiment_spec
from .export.network import network_description
from .results import json_safe, solve_result_json
from .specs import Arrays, CertifySpec, SolveSpec
from .types import EventSink, JobKind, JobStatus, Progress, ShouldStop

#: A job's spec as the worker runs it: a solve's typed spec, an experiment's (by kind), or a certification's.
JobSpec = Union[SolveSpec, PhaseTransitionSpec, RotatedDigitsSpec, CertifySpec]


def load_spec(kind: JobKind | str, spec_json: str) -> JobSpec:
    """A stored spec (its JSON text, as the store keeps it) as the type its job runs.

    Parameters
    ----------
    kind : JobKind or str
        ``solve`` or ``experiment``.
    spec_json : str
        ``model_dump_json()`` of the job's typed spec (an experiment's stored before the types were
        defined, a normalised dict with the same members, reads the same).

    Returns
    -------
    SolveSpec, PhaseTransitionSpec or RotatedDigitsSpec
        The spec.
    """
    if kind == JobKind.solve:
        return SolveSpec.model_validate_json(spec_json)
    if kind == JobKind.experiment:
        return load_experiment_spec(spec_json)
    if kind == JobKind.certify:
        return CertifySpec.model_validate_json(spec_json)
    raise InvalidParameterError("kind", f"kind must be one of {', '.join(JobKind)}, got {kind!r}.")


def _number(value: float | None) -> float | None:
    """A float for an event's JSON: non-finite values as ``None``."""
    return None if value is None or not math.isfinite(value) else float(value)


def trial_event(record: TrialRecord, zero_loss: float, total: int, seconds: float) -> dict[str, Any]:
    """The data of a ``trial`` event: the trial's ``index``, status, objective, loss, whether it recovered ``w*``
    (planted problems, else ``None``) and whether its zero loss certifies a global minimum, the ``seconds`` it
    took (solve and polish), and ``done`` of ``total`` trials run so far.

    ``zero_loss`` is the certificate's threshold ``optimality_tol * ||y||^2`` (SPEC 4.1).
    """
    loss = _number(record.loss)
    return {
        "index": record.index, "status": str(record.solution.status), "objective": _number(record.objective),
        "loss": loss, "recovered": record.recovered, "certified": loss is not None and loss <= zero_loss,
        "seconds": round(seconds, 6), "done": record.index + 1, "total": total,
    }


def round_event(record: RoundRecord) -> dict[str, Any]:
    """The data of a ``log`` event: one working-set round of a trial (the constraints its sub-problem held, those
    it added, the sub-problem's status, the seconds since the trial started)."""
    return {"trial": record.trial, "round": record.round, "working_set": record.working_set, "added": record.added,
            "status": str(record.status), "seconds": round(record.seconds, 6)}


def cell_event(cell: Mapping[str, Any], done: int, total: int) -> dict[str, Any]:
    """The data of a ``cell`` event: the cell's scalar members (its key and summary; lists left out) and
    ``done`` of ``total`` cells."""
    scalars = {str(key): value for key, value in json_safe(dict(cell)).items()
               if value is None or isinstance(value, (bool, int, float, str))}
    return {**scalars, "done": done, "total": total}


def experiment_progress(progress: Progress | None, events: EventSink | None) -> Progress:
    """An experiment's progress callback that also sends a ``cell`` event for each cell newly done.

    The first report lists the cells resumed from an earlier run: they are not sent again.
    """
    seen: list[int] = []

    def report(done: int, total: int, state: dict[str, Any]) -> None:
        if events is not None and seen and done > seen[-1]:
            for cell in state.get("cells", [])[seen[-1] - done:]:
                events("cell", cell_event(cell, done, total))
        seen[:] = [done]
        if progress is not None:
            progress(done, total, state)

    return report


def run_solve_job(
    spec: SolveSpec,
    arrays: Arrays | None,
    should_stop: ShouldStop | None,
    *,
    progress: Progress | None = None,
    time_limit_s: float | None = None,
    events: EventSink | None = None,
) -> dict[str, Any]:
    """Build the spec's problem once and solve it; return the result's wire JSON (``results.solve_result_json``).

    Parameters
    ----------
    spec : SolveSpec
        The job.
    arrays : tuple of ndarray, optional
        ``(X, y)`` of its dataset (``None`` for a planted problem).
    should_stop : callable, optional
        Polled by the solver loops.
    progress : callable, optional
        ``progress(done_trials, total_trials, {})``, called after every trial.
    time_limit_s : float, optional
        Caps each LP/QP (default: the spec's own ``time_limit_s``).
    events : callable, optional
        ``events(name, data)``: a ``trial`` event after every trial (:func:`trial_event`), a ``log`` event after
        every working-set round (:func:`round_event`).

    Returns
    -------
    dict
        The result, JSON-able.
    """
    limit = spec.time_limit_s if time_limit_s is None else time_limit_s
    options = spec.options(time_limit_s=limit)
    problem, w_star = spec.build_problem(arrays)
    total = options.trials
    zero_loss = options.optimality_tol * max(float(problem.y @ problem.y), float(np.finfo(float).tiny))

    clock = [time.monotonic()]

    def on_round(record: RoundRecord) -> None:
        if events is not None:
            events("log", round_event(record))

    def on_trial(record: TrialRecord) -> None:
        if events is not None:
            now = time.monotonic()
            events("trial", trial_event(record, zero_loss, total, now - clock[0]))
            clock[0] = now
        if progress is not None:
            progress(record.index + 1, total, {})

    rounds = None if events is None else on_round
    warm = None
    if spec.w_init is not None:
        from .warm_start import solve_from

        result, warm = solve_from(problem, spec.w_init, options, w_star=w_star, should_stop=should_stop,
                                  on_trial=on_trial, on_round=rounds)
    else:
        result = solve(problem, options, w_star=w_star, should_stop=should_stop, on_trial=on_trial, on_round=rounds)
    result = finish(problem, result, options, w_star)  # constrained solves: a KKT point, certified again
    return solve_result_json(result, network_description(problem), warm)


def run_job(
    kind: JobKind | str,
    spec: JobSpec,
    arrays: Arrays | None = None,
    *,
    should_stop: ShouldStop,
    progress: Progress | None = None,
    resume: dict[str, Any] | None = None,
    time_limit_s: float | None = None,
    events: EventSink | None = None,
) -> dict[str, Any]:
    """Run one job of ``kind`` and return its JSON-able result; ``events`` hears its trials, rounds or cells.

    An experiment that is asked to stop raises ``cnnrelax.experiments.ExperimentCancelled``.
    """
    if kind == JobKind.certify:
        if not isinstance(spec, CertifySpec):
            raise TypeError("a certify job runs a CertifySpec")
        from .certification import run_certify_job

        return run_certify_job(spec, arrays, should_stop)
    if kind == JobKind.solve:
        if not isinstance(spec, SolveSpec):
            raise TypeError("a solve job runs a SolveSpec")
        return run_solve_job(spec, arrays, should_stop, progress=progress, time_limit_s=time_limit_s, events=events)
    if kind == JobKind.experiment:
        from . import experiments

        if not isinstance(spec, (PhaseTransitionSpec, RotatedDigitsSpec)):
            raise TypeError("an experiment job runs a PhaseTransitionSpec or a RotatedDigitsSpec")
        if isinstance(spec, RotatedDigitsSpec) and spec.images_dataset_id is not None:
            spec = stored_images(spec, arrays)
        try:
            result: dict[str, Any] = json_safe(experiments.run_experiment(
                spec, progress=experiment_progress(progress, events), should_stop=should_stop, resume=resume))
        except experiments.ExperimentCancelled as stopped:
            if stopped.partial is None:
                raise
            return dict(json_safe(stopped.partial))  # the cells it finished: classify_outcome says cancelled
        return result
    raise InvalidParameterError("kind", f"kind must be one of {', '.join(JobKind)}, got {kind!r}.")


def stored_images(spec: RotatedDigitsSpec, arrays: Arrays | None) -> RotatedDigitsSpec:
    """A rotated-digits spec on a stored image set, holding the set's images (and angles) read by the worker."""
    if arrays is None:
        raise InvalidParameterError("images_dataset_id", f"The image set {spec.images_dataset_id} was not supplied "
                                                         "to the job.")
    rows, labels = arrays
    height, width = spec.image_shape
    return spec.with_images(rows.reshape(-1, height, width), labels if spec.angles_given else None)


def classify_outcome(kind: JobKind | str, result: Mapping[str, Any]) -> tuple[JobStatus, str | None]:
    """The job status (``succeeded``, ``failed`` or ``cancelled``) and error sentence of a finished result.

    A solve whose LP is unbounded or infeasible has *succeeded*: its result says so (SPEC 2). An experiment's
    partial result (``partial: true``: it was asked to stop) is *cancelled*, its finished cells kept.
    """
    if kind == JobKind.experiment and result.get("partial"):
        return JobStatus.cancelled, "The experiment was cancelled; its result holds the cells it finished."
    if kind == JobKind.solve:
        status = result.get("status")
        if status == "cancelled":
            return JobStatus.cancelled, result.get("message") or "The solve was cancelled."
        if status == "failed":
            return JobStatus.failed, result.get("message") or "The solve failed."
    return JobStatus.succeeded, None
