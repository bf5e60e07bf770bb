"""The pure bridge between a validated job request (SPEC 7 JSON) and the numerical core.

No HTTP, no storage: the service's workers (local processes or Dask) call :func:`run_job`, which returns a
JSON-able dict; :func:`classify_outcome` turns that dict into the job's final status.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .constraints import FilterConstraints
from .planted import PlantedSpec, planted_problem
from .problem import ConvProblem, InvalidParameterError, Patching, make_patching, make_problem
from .relaxation import SolverSettings
from .trials import SolveOptions, solve

ShouldStop = Callable[[], bool]
Progress = Callable[[int, int, dict], None]
Arrays = tuple[np.ndarray, np.ndarray]

JOB_KINDS: tuple[str, ...] = ("solve", "experiment")
#: Core solve statuses that mean the job itself did not complete its work.
_CANCELLED_STATUSES = frozenset({"cancelled"})
_FAILED_STATUSES = frozenset({"failed"})


class JobTimeLimitExceeded(Exception):
    """Raised inside a worker's ``should_stop`` bookkeeping when a job overran its time limit."""


def _patching(request: Mapping[str, Any]) -> Patching | None:
    """The patching named by the request's ``patch_size``/``stride``/``image_shape``/``filter_shape``."""
    if all(request.get(key) is None for key in ("patch_size", "image_shape", "filter_shape")):
        if request.get("stride") is not None:
            raise InvalidParameterError("stride", "stride needs patch_size (1-D patches) or image_shape and "
                                                  "filter_shape (2-D patches).")
        return None
    return make_patching(
        k=request.get("k"), patch_size=request.get("patch_size"), stride=request.get("stride"),
        image_shape=request.get("image_shape"), filter_shape=request.get("filter_shape"),
    )


def _problem_source(request: Mapping[str, Any], arrays: Arrays | None) -> str:
    sources = [key for key in ("data", "dataset_id", "planted") if request.get(key) is not None]
    if len(sources) != 1:
        named = ", ".join(sources) if sources else "none"
        raise InvalidParameterError(
            "data", f"Give exactly one problem source among data, dataset_id and planted (got {named}).")
    source = sources[0]
    if source == "dataset_id" and arrays is None:
        raise InvalidParameterError("dataset_id", "The dataset's arrays were not supplied to the job.")
    return source


def build_problem(request: Mapping[str, Any], arrays: Arrays | None = None) -> tuple[ConvProblem, np.ndarray | None]:
    """The core problem (and planted filter ``w*``, else ``None``) that a solve request names."""
    source = _problem_source(request, arrays)
    patching = _patching(request)
    if source == "planted":
        planted = dict(request["planted"])
        if request.get("output_weights") is not None:
            raise InvalidParameterError("output_weights", "output_weights apply to data and datasets; a planted "
                                                          "problem uses c = 1.")
        if request.get("k") is not None and patching is None and int(request["k"]) != int(planted.get("k", 1)):
            raise InvalidParameterError("k", f"k={request['k']} contradicts planted.k={planted.get('k', 1)}; "
                                             "set k inside planted.")
        spec = PlantedSpec(**planted)
        drawn = planted_problem(spec, patching)
        return drawn.problem, drawn.w_star
    if source == "data":
        X, y = request["data"]["X"], request["data"]["y"]
    else:
        X, y = arrays  # type: ignore[misc]
    k = request.get("k")
    problem = make_problem(X, y, patching=patching, k=None if patching is not None else (1 if k is None else k),
                           output_weights=request.get("output_weights"))
    return problem, None


def solve_options(request: Mapping[str, Any], time_limit_s: float | None = None) -> SolveOptions:
    """The core :class:`SolveOptions` of a request (defaults as SPEC 7); ``time_limit_s`` caps each LP/QP."""
    constraints = FilterConstraints.from_mapping(dict(request.get("constraints") or {}))
    extra: dict[str, Any] = {}
    if request.get("recovery_tol") is not None:
        extra["recovery_tol"] = float(request["recovery_tol"])
    if request.get("coverage_samples") is not None:
        extra["coverage_samples"] = int(request["coverage_samples"])
    return SolveOptions(
        relaxation=request.get("relaxation", "lp"),
        beta=float(request.get("beta", 1e-4)),
        trials=int(request.get("trials", 8)),
        seed=int(request.get("seed", 0)),
        stop_on_certificate=bool(request.get("stop_on_certificate", True)),
        polish=bool(request.get("polish", True)),
        constraints=constraints,
        solver=SolverSettings(time_limit_s=time_limit_s),
        **extra,
    )


def problem_size(request: Mapping[str, Any], arrays: Arrays | None = None) -> tuple[int, int] | None:
    """``(n, d)`` of the problem a request names, without building it (``None`` when unknown)."""
    if request.get("planted") is not None:
        planted = request["planted"]
        return int(planted.get("n", 0)), int(planted.get("d", 0))
    if request.get("data") is not None:
        X = request["data"].get("X") or []
        return len(X), (len(X[0]) if X and isinstance(X[0], Sequence) else 0)
    if arrays is not None:
        return int(arrays[0].shape[0]), int(arrays[0].shape[1]) if arrays[0].ndim == 2 else 0
    return None


def validate_solve_request(request: Mapping[str, Any], arrays: Arrays | None = None) -> None:
    """Raise :class:`InvalidParameterError` for anything the core would reject, without solving.

    Planted problems are checked from their spec alone (no data is drawn).
    """
    options = solve_options(request, time_limit_s=request.get("time_limit_s"))
    options.validate()
    if request.get("planted") is not None:
        _problem_source(request, arrays)
        spec = PlantedSpec(**dict(request["planted"]))
        spec.validate()
        patching = _patching(request)
        if request.get("output_weights") is not None:
            raise InvalidParameterError("output_weights", "output_weights apply to data and datasets; a planted "
                                                          "problem uses c = 1.")
        m = patching.shape(spec.d)[1] if patching is not None else spec.d // spec.k
        options.constraints.resolve(m)
        if options.relaxation == "qp" and not (math.isfinite(options.beta) and options.beta > 0):
            raise InvalidParameterError("beta", f"The QP relaxation needs beta > 0, got {options.beta!r}.")
        return
    from .relaxation import validate_relaxation

    problem, _ = build_problem(request, arrays)
    validate_relaxation(problem, options.relaxation, options.beta)
    options.constraints.resolve(problem.m)


def json_safe(value: Any) -> Any:
    """``value`` with numpy types made plain and non-finite floats made ``None`` (strict JSON)."""
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def run_solve_job(
    request: Mapping[str, Any],
    arrays: Arrays | None,
    should_stop: ShouldStop | None,
    *,
    progress: Progress | None = None,
    time_limit_s: float | None = None,
) -> dict[str, Any]:
    """Solve the request's problem with its options; return ``SolveResult.to_dict()`` made strict JSON.

    ``progress(done_trials, total_trials, {})`` is called after every trial.
    """
    limit = request.get("time_limit_s") if time_limit_s is None else time_limit_s
    options = solve_options(request, time_limit_s=limit)
    problem, w_star = build_problem(request, arrays)
    total = options.trials

    def on_trial(record: Any) -> None:
        if progress is not None:
            progress(record.index + 1, total, {})

    result = solve(problem, options, w_star=w_star, should_stop=should_stop, on_trial=on_trial)
    return json_safe(result.to_dict())


def _experiments() -> Any:
    """``cnnrelax.experiments``, imported only when an experiment job runs."""
    from . import experiments

    return experiments


def validate_job(kind: str, payload: Mapping[str, Any], arrays: Arrays | None = None) -> dict[str, Any]:
    """Check a job's payload; return it normalised (experiments get their defaults filled in)."""
    if kind == "solve":
        validate_solve_request(payload, arrays)
        return dict(payload)
    if kind == "experiment":
        return _experiments().validate_experiment(dict(payload))
    raise InvalidParameterError("kind", f"kind must be one of {', '.join(JOB_KINDS)}, got {kind!r}.")


def run_job(
    kind: str,
    payload: Mapping[str, Any],
    arrays: Arrays | None = None,
    *,
    should_stop: ShouldStop,
    progress: Progress | None = None,
    resume: dict | None = None,
    time_limit_s: float | None = None,
) -> dict[str, Any]:
    """Run one job of ``kind`` ("solve" or "experiment") and return its JSON-able result.

    An experiment that is asked to stop raises ``cnnrelax.experiments.ExperimentCancelled``.
    """
    if kind == "solve":
        return run_solve_job(payload, arrays, should_stop, progress=progress, time_limit_s=time_limit_s)
    if kind == "experiment":
        experiments = _experiments()
        report = progress or (lambda done, total, state: None)
        return json_safe(experiments.run_experiment(dict(payload), progress=report, should_stop=should_stop,
                                                    resume=resume))
    raise InvalidParameterError("kind", f"kind must be one of {', '.join(JOB_KINDS)}, got {kind!r}.")


def classify_outcome(kind: str, result: Mapping[str, Any]) -> tuple[str, str | None]:
    """The job status (``succeeded``, ``failed`` or ``cancelled``) and error sentence of a finished result.

    A solve whose LP is unbounded or infeasible has *succeeded*: its result says so (SPEC 2).
    """
    if kind == "solve":
        status = result.get("status")
        if status in _CANCELLED_STATUSES:
            return "cancelled", result.get("message") or "The solve was cancelled."
        if status in _FAILED_STATUSES:
            return "failed", result.get("message") or "The solve failed."
    return "succeeded", None
