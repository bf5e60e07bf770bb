"""The pure bridge between a validated job request (SPEC 7 JSON) and the numerical core.

No HTTP, no storage: the service's workers (local processes or Dask) call :func:`run_job`, which returns a
JSON-able dict; :func:`classify_outcome` turns that dict into the job's final status.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
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


class LimitExceeded(InvalidParameterError):
    """A request priced over one of the server's limits (a 422 naming the parameter, the limit and its setting)."""

    def __init__(self, parameter: str, message: str, *, limit: int, setting: str) -> None:
        super().__init__(parameter, f"{message} Limit: {limit} ({setting}).")
        self.limit = limit
        self.setting = setting


@dataclass(frozen=True)
class Limits:
    """The sizes a server accepts (from its settings): see :func:`price_solve` and :func:`price_experiment`."""

    max_matrix_entries: int = 20_000_000
    max_patch_entries: int = 20_000_000
    max_trials: int = 1000
    max_experiment_entries: int = 400_000_000


def price_solve(request: Mapping[str, Any], shape: tuple[int, int] | None, limits: Limits) -> int:
    """Price a solve from its shapes alone, before any array is built; return the patch-tensor entries n*k*m.

    Parameters
    ----------
    request : mapping
        The solve request (SPEC 7 members).
    shape : tuple of int, optional
        ``(n, d)`` of the data (inline data or a stored dataset); ``None`` for a planted problem, whose
        shape is in its spec.
    limits : Limits
        The server's limits.

    Returns
    -------
    int
        ``n * k * m``, the entries of the patch tensor the worker will build (8 bytes each).

    Raises
    ------
    LimitExceeded
        Naming ``trials``, ``planted``/``data``/``dataset_id`` or the patching parameter, and the limit.
    """
    trials = int(request.get("trials", 8))
    if trials > limits.max_trials:
        raise LimitExceeded("trials", f"trials={trials} is more than this server runs in one job.",
                            limit=limits.max_trials, setting="CNNRELAX_MAX_TRIALS")
    planted = request.get("planted")
    source = "planted" if planted is not None else ("data" if request.get("data") is not None else "dataset_id")
    if planted is not None:
        n, d = int(planted.get("n", 1)), int(planted.get("d", 1))
    elif shape is not None:
        n, d = int(shape[0]), int(shape[1])
    else:
        return 0
    if n * d > limits.max_matrix_entries:
        raise LimitExceeded(source, f"The problem has n*d = {n}*{d} = {n * d} entries, more than this server takes.",
                            limit=limits.max_matrix_entries, setting="CNNRELAX_MAX_MATRIX_ENTRIES")
    patching = _patching(request)
    if patching is not None:
        k, m = patching.shape(d)
    else:
        k = int(planted.get("k", 1)) if planted is not None else int(request.get("k") or 1)
        m = d // k if k >= 1 else d
    entries = n * k * m
    if entries > limits.max_patch_entries:
        parameter = next((key for key in ("patch_size", "filter_shape") if request.get(key) is not None), source)
        raise LimitExceeded(parameter, f"The patch tensor would hold n*k*m = {n}*{k}*{m} = {entries} entries "
                                       f"({entries * 8 / 2**20:.0f} MiB), more than this server builds; use larger "
                                       "strides, fewer samples or smaller rows.",
                            limit=limits.max_patch_entries, setting="CNNRELAX_MAX_PATCH_ENTRIES")
    return entries


def price_experiment(spec: Mapping[str, Any], limits: Limits) -> int:
    """Price a normalised experiment spec: every cell's size, and the sum of cells times repetitions.

    Parameters
    ----------
    spec : mapping
        A spec normalised by ``cnnrelax.experiments.validate_experiment``.
    limits : Limits
        The server's limits.

    Returns
    -------
    int
        The sum over cells of ``repetitions * n * d`` (the entries of every problem drawn); 0 for kinds
        whose size is fixed by their data.

    Raises
    ------
    LimitExceeded
        Naming ``n`` (a cell too large) or ``repetitions`` (the whole sweep too large), and the limit.
    """
    if spec.get("kind") != "phase_transition":
        return 0
    repetitions = int(spec.get("repetitions", 1))
    methods = len(spec.get("methods") or [1])
    ns, ds = [int(v) for v in spec.get("n", [])], [int(v) for v in spec.get("d", [])]
    if not ns or not ds:
        return 0
    largest = max(ns) * max(ds)
    if largest > limits.max_matrix_entries:
        raise LimitExceeded("n", f"The largest cell draws n*d = {max(ns)}*{max(ds)} = {largest} entries, more than "
                                 "this server takes in one problem.",
                            limit=limits.max_matrix_entries, setting="CNNRELAX_MAX_MATRIX_ENTRIES")
    total = repetitions * methods * sum(ns) * sum(ds)
    if total > limits.max_experiment_entries:
        raise LimitExceeded("repetitions", f"The experiment draws repetitions*methods*sum(n)*sum(d) = {repetitions}*"
                                           f"{methods}*{sum(ns)}*{sum(ds)} = {total} entries over its cells, more "
                                           "than this server runs in one job.",
                            limit=limits.max_experiment_entries, setting="CNNRELAX_MAX_EXPERIMENT_ENTRIES")
    return total


#: Data of more rows than this is validated on its first rows only (the checks are about shapes; labels are
#: checked in full): validation must not build the whole patch tensor in the API process.
VALIDATION_ROWS = 64


def validate_solve_request(request: Mapping[str, Any], arrays: Arrays | None = None, *, head: bool = False) -> None:
    """Raise :class:`InvalidParameterError` for anything the core would reject, without solving.

    Planted problems are checked from their spec alone (no data is drawn). Data of more than
    :data:`VALIDATION_ROWS` rows is checked on its first rows (every label is checked); ``head=True`` says
    ``arrays`` holds only those first rows of ``X`` (and every label), as
    :meth:`cnnrelax.store.Store.load_dataset_head` reads them.
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

    labels = None
    if request.get("data") is not None and len(request["data"]["X"]) > VALIDATION_ROWS:
        data = request["data"]
        labels = np.asarray(data["y"], dtype=np.float64)
        request = {**request, "data": {"X": data["X"][:VALIDATION_ROWS], "y": data["y"][:VALIDATION_ROWS]}}
        if labels.shape != (len(data["X"]),):
            raise InvalidParameterError("y", f"y has {labels.shape[0]} labels but X has {len(data['X'])} rows: "
                                             "they must match.")
    elif arrays is not None and len(arrays[1]) > VALIDATION_ROWS:
        rows = len(arrays[1]) if head else len(arrays[0])  # a head: only X's first rows were read
        labels = np.asarray(arrays[1], dtype=np.float64)
        if labels.shape != (rows,):
            raise InvalidParameterError("y", f"y has {len(labels)} labels but X has {rows} rows: they must match.")
        arrays = (arrays[0][:VALIDATION_ROWS], arrays[1][:VALIDATION_ROWS])
    problem, _ = build_problem(request, arrays)
    if labels is not None:  # the label checks see every label
        if not np.isfinite(labels).all():
            raise InvalidParameterError("y", "y contains NaN or infinite values.")
        problem = dataclasses.replace(problem, y=labels)
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
