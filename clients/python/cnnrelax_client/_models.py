"""Typed views of the service's JSON: jobs, results with numpy arrays, certificates, experiments."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

import numpy as np
import numpy.typing as npt

__all__ = [
    "JobStatus",
    "TERMINAL_STATUSES",
    "ConeCertificate",
    "Certificate",
    "Coverage",
    "KKT",
    "SolverStats",
    "Trial",
    "SolveResult",
    "Progress",
    "Job",
    "JobPage",
    "Dataset",
    "DatasetPage",
    "Experiment",
    "ExperimentPage",
]

FloatArray = npt.NDArray[np.float64]
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


def _array(value: Any) -> FloatArray | None:
    return None if value is None else np.asarray(value, dtype=np.float64)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _opt_bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class ConeCertificate:
    """Cone membership / dual feasibility (SPEC 4.2) of the selected filter.

    ``residual`` is ``rho = min_{v>=0} ||G^T v - r|| / ||r||``; ``certified`` when it is within
    ``tolerance``; ``applicable`` is false when the filter does not fit the labels (``reason`` says so).
    ``tied_patches`` counts patches with ``X_ij w = 0``; ``certified_by_trials`` lists the trials whose
    direction the filter is certified for.
    """

    applicable: bool
    certified: bool
    residual: float | None
    tolerance: float | None = None
    positive_multipliers: int | None = None
    reason: str | None = None
    tied_patches: int | None = None
    certified_by_trials: list[int] | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConeCertificate:
        trials = data.get("certified_by_trials")
        return cls(
            applicable=bool(data.get("applicable", False)),
            certified=bool(data.get("certified", False)),
            residual=_float(data.get("residual")),
            tolerance=_float(data.get("tolerance")),
            positive_multipliers=_opt_int(data.get("positive_multipliers")),
            reason=data.get("reason"),
            tied_patches=_opt_int(data.get("tied_patches")),
            certified_by_trials=None if trials is None else [int(t) for t in trials],
        )


@dataclass(frozen=True)
class Coverage:
    """How likely one more random trial is to certify the selected filter, from sampled directions.

    ``estimate`` is the fraction of ``directions`` sampled that certify it (``certifying_directions``),
    ``interval`` its ``confidence`` interval; ``trials_for_99`` / ``trials_for_999`` the trials needed for
    99% / 99.9% odds of a certifying one. ``reason`` says what it means or why it does not apply.
    """

    applicable: bool
    estimate: float | None
    interval: tuple[float, float] | None
    confidence: float | None
    directions: int | None
    certifying_directions: int | None
    trials_for_99: int | None
    trials_for_999: int | None
    reason: str | None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Coverage | None:
        if not data:
            return None
        interval = data.get("interval")
        return cls(
            applicable=bool(data.get("applicable", False)),
            estimate=_float(data.get("estimate")),
            interval=None if interval is None else (float(interval[0]), float(interval[1])),
            confidence=_float(data.get("confidence")),
            directions=_opt_int(data.get("directions")),
            certifying_directions=_opt_int(data.get("certifying_directions")),
            trials_for_99=_opt_int(data.get("trials_for_99")),
            trials_for_999=_opt_int(data.get("trials_for_999")),
            reason=_opt_str(data.get("reason")),
        )


@dataclass(frozen=True)
class SolverStats:
    """The convex solver's evidence for one trial: status, iterations, time, Clarabel's own figures.

    ``extra`` keeps any member a newer server sends that this client does not know.
    """

    status: str | None
    iterations: int | None
    solve_time_s: float | None
    message: str | None = None
    outer_iterations: int | None = None
    working_set: int | None = None
    clarabel_status: str | None = None
    primal_residual: float | None = None
    dual_residual: float | None = None
    duality_gap: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> SolverStats:
        data = dict(data or {})
        return cls(
            status=_opt_str(data.pop("status", None)),
            iterations=_opt_int(data.pop("iterations", None)),
            solve_time_s=_float(data.pop("solve_time_s", None)),
            message=_opt_str(data.pop("message", None)),
            outer_iterations=_opt_int(data.pop("outer_iterations", None)),
            working_set=_opt_int(data.pop("working_set", None)),
            clarabel_status=_opt_str(data.pop("clarabel_status", None)),
            primal_residual=_float(data.pop("primal_residual", None)),
            dual_residual=_float(data.pop("dual_residual", None)),
            duality_gap=_float(data.pop("duality_gap", None)),
            extra=data,
        )


@dataclass(frozen=True)
class KKT:
    """KKT conditions of a constrained problem at the filter (``certificate.kkt``).

    ``stationary`` when the Lagrangian's relative ``residual``, the ``complementary_slackness`` and the
    ``violation`` are within ``tolerance``: a first-order optimum within the constraints. ``multipliers`` of the
    ``active`` inequalities (e.g. ``upper[3]``), ``binding`` those with a positive one: they stop the fit.
    """

    stationary: bool
    residual: float
    complementary_slackness: float
    violation: float
    tolerance: float
    active: list[str]
    multipliers: dict[str, float]
    binding: list[str]
    reason: str
    equality_multipliers: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> KKT | None:
        if not data:
            return None
        return cls(
            stationary=bool(data.get("stationary", False)), residual=float(data.get("residual", np.nan)),
            complementary_slackness=float(data.get("complementary_slackness", np.nan)),
            violation=float(data.get("violation", np.nan)), tolerance=float(data.get("tolerance", np.nan)),
            active=[str(name) for name in data.get("active") or []],
            multipliers={str(k): float(v) for k, v in (data.get("multipliers") or {}).items()},
            binding=[str(name) for name in data.get("binding") or []], reason=str(data.get("reason") or ""),
            equality_multipliers={str(k): float(v) for k, v in (data.get("equality_multipliers") or {}).items()},
        )


@dataclass(frozen=True)
class Certificate:
    """What proves (or fails to prove) that the selected filter is a global optimum.

    ``global_optimum`` is true when the non-convex loss is zero up to ``loss_threshold``: since the loss
    is non-negative, that is a global minimum. ``cone`` certifies LP optimality of the filter for its
    trial's direction ``r``; ``summary`` says in a sentence what is proved; ``solver`` is the selected
    trial's solver evidence; ``coverage`` the odds that a random trial certifies the filter.
    """

    global_optimum: bool
    cone: ConeCertificate
    loss: float | None = None
    loss_threshold: float | None = None
    fit_residual: float | None = None
    solver: SolverStats | None = None
    summary: str | None = None
    relative_gradient_norm: float | None = None
    coverage: Coverage | None = None
    kkt: KKT | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Certificate:
        solver = data.get("solver")
        return cls(
            global_optimum=bool(data.get("global_optimum", False)),
            cone=ConeCertificate.from_dict(data.get("cone") or {}),
            loss=_float(data.get("loss")),
            loss_threshold=_float(data.get("loss_threshold")),
            fit_residual=_float(data.get("fit_residual")),
            solver=SolverStats.from_dict(solver) if isinstance(solver, Mapping) else None,
            summary=_opt_str(data.get("summary")),
            relative_gradient_norm=_float(data.get("relative_gradient_norm")),
            coverage=Coverage.from_dict(data.get("coverage")),
            kkt=KKT.from_dict(data.get("kkt")),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Trial:
    """One randomized trial: its direction ``r``, its filter ``w`` before selection, and how it fared.

    ``w_polished`` is the filter after polishing (``None`` when polishing did not help), ``loss`` the
    loss of the trial's final filter and ``raw_loss`` that of ``w``; ``recovered`` speaks of ``w`` and
    ``recovered_after_polish`` of the polished filter (planted problems only).
    """

    index: int
    r: FloatArray
    w: FloatArray | None
    loss: float | None
    objective: float | None
    recovered: bool | None
    predicted: bool | None
    solver: SolverStats
    w_polished: FloatArray | None = None
    recovery_error: float | None = None
    raw_loss: float | None = None
    recovered_after_polish: bool | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Trial:
        return cls(
            index=int(data["index"]),
            r=np.asarray(data["r"], dtype=np.float64),
            w=_array(data.get("w")),
            loss=_float(data.get("loss")),
            objective=_float(data.get("objective")),
            recovered=_opt_bool(data.get("recovered")),
            predicted=_opt_bool(data.get("predicted")),
            solver=SolverStats.from_dict(data.get("solver")),
            w_polished=_array(data.get("w_polished")),
            recovery_error=_float(data.get("recovery_error")),
            raw_loss=_float(data.get("raw_loss")),
            recovered_after_polish=_opt_bool(data.get("recovered_after_polish")),
        )


@dataclass(frozen=True)
class SolveResult:
    """A finished solve: the selected filter ``w`` (numpy), its loss and certificate, and every trial.

    ``network`` describes the fitted network beside ``w`` (patching, activation, output weights): what
    :func:`to_torch` builds a ``torch.nn.Module`` from. ``warm_start`` says what became of ``w_init`` (a solve
    started from a filter of the caller's): polished, certified, selected.

    ``trial_directions``, ``trial_filters`` and ``trial_losses`` stack the per-trial values into arrays
    (a trial without a filter, e.g. an unbounded LP, gives a row of NaN and a NaN loss).
    """

    status: str
    message: str
    w: FloatArray | None
    loss: float | None
    certificate: Certificate
    recovery_error: float | None
    selected_trial: int | None
    trials: list[Trial]
    w_star: FloatArray | None = None
    shape: dict[str, int] = field(default_factory=dict)
    solve_time_s: float | None = None
    relaxation: str | None = None
    recovery_sign: int | None = None
    network: dict[str, Any] | None = None
    warm_start: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SolveResult:
        return cls(
            status=str(data.get("status", "solved")),
            message=str(data.get("message") or ""),
            w=_array(data.get("w")),
            loss=_float(data.get("loss")),
            certificate=Certificate.from_dict(data.get("certificate") or {}),
            recovery_error=_float(data.get("recovery_error")),
            selected_trial=data.get("selected_trial"),
            trials=[Trial.from_dict(t) for t in data.get("trials") or []],
            w_star=_array(data.get("w_star")),
            shape={k: int(v) for k, v in (data.get("shape") or {}).items()},
            solve_time_s=_float(data.get("solve_time_s")),
            relaxation=_opt_str(data.get("relaxation")),
            recovery_sign=None if data.get("recovery_sign") is None else int(data["recovery_sign"]),
            network=dict(data["network"]) if isinstance(data.get("network"), Mapping) else None,
            warm_start=dict(data["warm_start"]) if isinstance(data.get("warm_start"), Mapping) else None,
            raw=dict(data),
        )

    @property
    def certified(self) -> bool:
        """True when the result is certified a global optimum of the non-convex problem."""
        return self.certificate.global_optimum

    @property
    def trial_directions(self) -> FloatArray:
        """The trials' directions ``r_t`` as a ``(trials, m)`` array."""
        return _stack([t.r for t in self.trials], self._m())

    @property
    def trial_filters(self) -> FloatArray:
        """The trials' filters before selection as a ``(trials, m)`` array (NaN rows where none)."""
        return _stack([t.w for t in self.trials], self._m())

    @property
    def trial_losses(self) -> FloatArray:
        """The trials' non-convex losses as a ``(trials,)`` array (NaN where none)."""
        return np.array([np.nan if t.loss is None else t.loss for t in self.trials], dtype=np.float64)

    def _m(self) -> int:
        if "m" in self.shape:
            return self.shape["m"]
        return int(self.trials[0].r.shape[0]) if self.trials else 0


def _stack(rows: list[FloatArray | None], m: int) -> FloatArray:
    out = np.full((len(rows), m), np.nan)
    for i, row in enumerate(rows):
        if row is not None:
            out[i] = row
    return out


@dataclass(frozen=True)
class Progress:
    """How far a job has come: ``done`` of ``total`` units (trials, or experiment cells)."""

    done: int
    total: int

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Progress | None:
        if not data:
            return None
        return cls(done=int(data.get("done", 0) or 0), total=int(data.get("total", 0) or 0))


def _error_text(data: Mapping[str, Any]) -> str | None:
    error = data.get("error")
    if isinstance(error, Mapping):
        return str(error.get("detail") or error.get("message") or error.get("title") or error)
    if error:
        return str(error)
    return None


@dataclass(frozen=True)
class Job:
    """A solve job as the service reports it. ``result`` is set once ``status == "succeeded"``."""

    id: str
    status: str
    result: SolveResult | None
    error: str | None
    progress: Progress | None
    raw: dict[str, Any] = field(repr=False)
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    attempts: int | None = None
    cancel_requested: bool | None = None
    estimated_cpu_s: float | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Job:
        result = data.get("result")
        return cls(
            id=str(data["id"]),
            status=str(data["status"]),
            result=SolveResult.from_dict(result) if isinstance(result, Mapping) else None,
            error=_error_text(data),
            progress=Progress.from_dict(data.get("progress")),
            raw=dict(data),
            created_at=_opt_str(data.get("created_at")),
            started_at=_opt_str(data.get("started_at")),
            finished_at=_opt_str(data.get("finished_at")),
            attempts=_opt_int(data.get("attempts")),
            cancel_requested=_opt_bool(data.get("cancel_requested")),
            estimated_cpu_s=_float(data.get("estimated_cpu_s")),
        )

    @property
    def done(self) -> bool:
        """True once the job has reached a terminal status (succeeded, failed or cancelled)."""
        return self.status in TERMINAL_STATUSES


def _cursor(data: Mapping[str, Any]) -> str | None:
    cursor = data.get("next_cursor")
    return None if cursor in (None, "") else str(cursor)


@dataclass(frozen=True)
class JobPage:
    """One page of ``GET /v1/solves``: the jobs (``items``, as on the wire) and the cursor of the next page
    (``None`` at the end)."""

    items: list[Job]
    next_cursor: str | None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobPage:
        return cls(items=[Job.from_dict(j) for j in data.get("items", [])], next_cursor=_cursor(data))

    @property
    def jobs(self) -> list[Job]:
        """Deprecated: the page's ``items`` (the wire's name)."""
        warnings.warn("JobPage.jobs is deprecated; use JobPage.items (the name on the wire).", DeprecationWarning,
                      stacklevel=2)
        return self.items


@dataclass(frozen=True)
class Dataset:
    """An uploaded dataset, content-addressed: ``id`` is the sha256 of its canonical content."""

    id: str
    n: int | None
    d: int | None
    raw: dict[str, Any] = field(repr=False)
    size_bytes: int | None = None
    source: str | None = None
    created_at: str | None = None
    #: An image set (``images`` in an ``.npz``, for rotated digits' ``images_dataset_id``): ``[H, W]``.
    image_shape: list[int] | None = None
    angles_given: bool | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Dataset:
        shape = data.get("image_shape")
        return cls(id=str(data["id"]), n=_opt_int(data.get("n")), d=_opt_int(data.get("d")), raw=dict(data),
                   size_bytes=_opt_int(data.get("size_bytes")), source=_opt_str(data.get("source")),
                   created_at=_opt_str(data.get("created_at")),
                   image_shape=None if shape is None else [int(v) for v in shape],
                   angles_given=_opt_bool(data.get("angles_given")))


@dataclass(frozen=True)
class Experiment:
    """An experiment job (phase transition or rotated digits); ``result`` is the service's JSON result."""

    id: str
    kind: str | None
    status: str
    progress: Progress | None
    result: dict[str, Any] | None
    error: str | None
    raw: dict[str, Any] = field(repr=False)
    estimated_cpu_s: float | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Experiment:
        result = data.get("result")
        kind = data.get("kind")
        if kind is None and isinstance(data.get("spec"), Mapping):
            kind = data["spec"].get("kind")
        return cls(
            id=str(data["id"]),
            kind=None if kind is None else str(kind),
            status=str(data["status"]),
            progress=Progress.from_dict(data.get("progress")),
            result=dict(result) if isinstance(result, Mapping) else None,
            error=_error_text(data),
            raw=dict(data),
            estimated_cpu_s=_float(data.get("estimated_cpu_s")),
        )

    @property
    def done(self) -> bool:
        """True once the experiment has reached a terminal status."""
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True)
class ExperimentPage:
    """One page of ``GET /v1/experiments``: experiment summaries (no spec or result) and the next cursor."""

    items: list[Experiment]
    next_cursor: str | None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExperimentPage:
        return cls(items=[Experiment.from_dict(e) for e in data.get("items", [])], next_cursor=_cursor(data))


@dataclass(frozen=True)
class DatasetPage:
    """``GET /v1/datasets``: the caller's datasets, newest first."""

    items: list[Dataset]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetPage:
        return cls(items=[Dataset.from_dict(d) for d in data.get("items", [])])
