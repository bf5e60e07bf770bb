"""The job function: what every worker (a local process, a Dask task) and the CLI's in-process path run.

No HTTP, no storage. :func:`run_job` takes a job's typed spec (a :class:`~cnnrelax.specs.SolveSpec`, or an
experiment's :data:`~cnnrelax.experiments.specs.ExperimentSpec`) and returns a JSON-able dict;
:func:`classify_outcome` turns that dict into the job's final status. :func:`load_spec` reads a stored spec
back (once per run).
"""

from __future__ import annotations

from typing import Any, Mapping, Union

from .core.problem import InvalidParameterError
from .core.trials import TrialRecord, solve
from .experiments.specs import PhaseTransitionSpec, RotatedDigitsSpec, load_experiment_spec
from .results import json_safe, solve_result_json
from .specs import Arrays, SolveSpec
from .types import JobKind, JobStatus, Progress, ShouldStop

#: A job's spec as the worker runs it: a solve's typed spec, or an experiment's (by kind).
JobSpec = Union[SolveSpec, PhaseTransitionSpec, RotatedDigitsSpec]


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
    raise InvalidParameterError("kind", f"kind must be one of {', '.join(JobKind)}, got {kind!r}.")


def run_solve_job(
    spec: SolveSpec,
    arrays: Arrays | None,
    should_stop: ShouldStop | None,
    *,
    progress: Progress | None = None,
    time_limit_s: float | None = None,
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

    Returns
    -------
    dict
        The result, JSON-able.
    """
    limit = spec.time_limit_s if time_limit_s is None else time_limit_s
    options = spec.options(time_limit_s=limit)
    problem, w_star = spec.build_problem(arrays)
    total = options.trials

    def on_trial(record: TrialRecord) -> None:
        if progress is not None:
            progress(record.index + 1, total, {})

    result = solve(problem, options, w_star=w_star, should_stop=should_stop, on_trial=on_trial)
    return solve_result_json(result)


def run_job(
    kind: JobKind | str,
    spec: JobSpec,
    arrays: Arrays | None = None,
    *,
    should_stop: ShouldStop,
    progress: Progress | None = None,
    resume: dict[str, Any] | None = None,
    time_limit_s: float | None = None,
) -> dict[str, Any]:
    """Run one job of ``kind`` and return its JSON-able result.

    An experiment that is asked to stop raises ``cnnrelax.experiments.ExperimentCancelled``.
    """
    if kind == JobKind.solve:
        if not isinstance(spec, SolveSpec):
            raise TypeError("a solve job runs a SolveSpec")
        return run_solve_job(spec, arrays, should_stop, progress=progress, time_limit_s=time_limit_s)
    if kind == JobKind.experiment:
        from . import experiments

        if not isinstance(spec, (PhaseTransitionSpec, RotatedDigitsSpec)):
            raise TypeError("an experiment job runs a PhaseTransitionSpec or a RotatedDigitsSpec")
        report = progress or (lambda done, total, state: None)
        result: dict[str, Any] = json_safe(experiments.run_experiment(
            spec, progress=report, should_stop=should_stop, resume=resume))
        return result
    raise InvalidParameterError("kind", f"kind must be one of {', '.join(JobKind)}, got {kind!r}.")


def classify_outcome(kind: JobKind | str, result: Mapping[str, Any]) -> tuple[JobStatus, str | None]:
    """The job status (``succeeded``, ``failed`` or ``cancelled``) and error sentence of a finished result.

    A solve whose LP is unbounded or infeasible has *succeeded*: its result says so (SPEC 2).
    """
    if kind == JobKind.solve:
        status = result.get("status")
        if status == "cancelled":
            return JobStatus.cancelled, result.get("message") or "The solve was cancelled."
        if status == "failed":
            return JobStatus.failed, result.get("message") or "The solve failed."
    return JobStatus.succeeded, None
