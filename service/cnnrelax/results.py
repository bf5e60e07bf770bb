"""The wire form of a solve's result: the response models (the contract) and the one mapping from the core.

The core returns objects (:class:`cnnrelax.core.trials.SolveResult` and the certificate's dataclasses); the worker
calls :func:`solve_result_json` to turn one into the JSON the store keeps and the API sends. The mapping builds a
:class:`SolveResultOut`, whose models forbid undeclared members, so a field the core adds cannot reach the wire
without being declared here (and so in ``openapi.json``). The API's schemas name these same classes.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Annotated, Any, Literal, Optional, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .core.activations import ActivationName
from .core.certificates import DEFAULT_CONE_TOL, Certificate, ConeCertificate, Coverage
from .core.records import RelaxationSolution, SolveResult, TrialRecord
from .specs import RelaxationName as Relaxation

__all__ = ["Sent", "SolveResultOut", "CertificateOut", "ConeCertificateOut", "CoverageOut", "SolverStatsOut",
           "TrialOut", "ShapeOut", "TrialStatus", "SolveStatus", "ClarabelStatus", "json_safe", "solve_result_out",
           "solve_result_json", "NetworkOut", "PatchingOut", "KKTOut", "WarmStartOut"]


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


class Sent(BaseModel):
    """What the service sends: every member declared (the schema says `additionalProperties: false`).

    Building one from a stored result with a member it does not declare is an error, so a field the core
    adds cannot reach the wire undeclared.
    """

    model_config = ConfigDict(extra="forbid")



TrialStatus = Literal["optimal", "unbounded", "infeasible", "max_iterations", "numerical_error", "time_limit",
                      "cancelled"]
SolveStatus = Literal["solved", "unbounded", "infeasible", "max_iterations", "numerical_error", "time_limit",
                      "cancelled", "failed", "no_solution"]
ClarabelStatus = Literal["NotStarted", "Unsolved", "Solved", "AlmostSolved", "PrimalInfeasible",
                         "AlmostPrimalInfeasible", "DualInfeasible", "AlmostDualInfeasible", "MaxIterations",
                         "MaxTime", "NumericalError", "InsufficientProgress", "CallbackTerminated"]


class ConeCertificateOut(Sent):
    """Cone membership / dual feasibility at the selected filter (SPEC 4.2)."""

    residual: Optional[float] = Field(description="rho = min_{v>=0} ||G^T v - r|| / ||r|| (null when not applicable).")
    certified: bool = Field(description="rho <= tolerance: (w, (Xw)_+) is optimal for the trial's LP.")
    applicable: bool = Field(description="The filter fits the labels, so the test means something.")
    tolerance: float = Field(description="The largest rho that certifies.")
    positive_multipliers: Optional[int] = Field(description="Samples with a positive multiplier v_i.")
    reason: str = Field(description="What the outcome means, or why the test does not apply.")
    tied_patches: Optional[int] = Field(None, description="Patches with X_ij w = 0 at the filter (ties).")
    certified_by_trials: Optional[list[int]] = Field(
        None, description="Indices of the trials whose direction r the filter is certified for.")


class CoverageOut(Sent):
    """How likely one more random trial is to certify the selected filter, estimated from sampled directions."""

    applicable: bool = Field(description="Whether the estimate applies (the filter fits the labels).")
    estimate: Optional[float] = Field(None, description="Fraction of sampled directions r the filter is certified for.")
    interval: Optional[list[float]] = Field(None, min_length=2, max_length=2,
                                            description="[low, high] confidence interval of the fraction.")
    confidence: float = Field(description="Confidence level of the interval.")
    directions: int = Field(description="Directions sampled.")
    certifying_directions: int = Field(description="Sampled directions that certify the filter.")
    trials_for_99: Optional[int] = Field(None, description="Trials needed for 99% odds of a certifying one.")
    trials_for_999: Optional[int] = Field(None, description="Trials needed for 99.9% odds of a certifying one.")
    reason: str = Field(description="What the estimate means, or why it does not apply.")


class SolverStatsOut(Sent):
    """The convex solver's evidence for one trial."""

    status: TrialStatus = Field(description="How the trial's relaxation ended.")
    message: str = Field(description="A sentence on the outcome.")
    iterations: int = Field(description="Interior-point iterations, over every working-set round.")
    outer_iterations: int = Field(description="Working-set rounds (cuts added then re-solved).")
    working_set: int = Field(description="Constraints in the final working set.")
    solve_time_s: float = Field(description="Wall time of the trial's solve.")
    clarabel_status: ClarabelStatus = Field(description="Clarabel's status of the last solve.")
    primal_residual: Optional[float] = Field(description="Clarabel's primal residual (null if it did not run).")
    dual_residual: Optional[float] = Field(description="Clarabel's dual residual (null if it did not run).")
    duality_gap: Optional[float] = Field(description="Clarabel's absolute duality gap (null if it did not run).")


class KKTOut(Sent):
    """KKT conditions of a constrained problem at the filter: stationarity of the Lagrangian, complementary
    slackness, feasibility, and the multipliers of the active constraints (named as `upper[3]`, `lower[0]`,
    `inequality[2]`, `equality[1]`, `l1_bound`, `l2_bound`)."""

    stationary: bool = Field(description="All three measures within tolerance: a KKT point (first-order optimal "
                             "within the constraints; not a proof of a global minimum).")
    residual: float = Field(description="||grad L + N^T mu + E^T lambda|| / (2 ||y|| ||G||_F): 0 at a KKT point.")
    complementary_slackness: float = Field(description="max_a mu_a |slack_a| / ||y||^2.")
    violation: float = Field(description="Largest constraint violation, relative (0 when feasible).")
    tolerance: float = Field(description="The largest residual and complementary slackness that count.")
    active: list[str] = Field(description="The inequality constraints active at the filter.")
    multipliers: dict[str, float] = Field(description="mu_a >= 0 of each active inequality (the user's units).")
    equality_multipliers: dict[str, float] = Field(description="lambda of each equality row.")
    binding: list[str] = Field(description="Constraints with a positive multiplier: they, not the labels, stop the "
                               "loss from falling.")
    reason: str = Field(description="What the outcome means.")


class CertificateOut(Sent):
    """What proves (or fails to prove) global optimality of the selected filter."""

    global_optimum: bool = Field(description="Zero non-convex loss: a global minimum.")
    cone: ConeCertificateOut
    loss: Optional[float] = Field(description="The selected filter's non-convex loss (null with no filter).")
    loss_threshold: Optional[float] = Field(description="optimality_tol * ||y||^2: a loss at most this is zero.")
    fit_residual: Optional[float] = Field(description="max_i |f_w(x_i) - y_i| / max_i |y_i|: 0 for a filter that "
                                          "fits the labels.")
    solver: Optional[SolverStatsOut] = Field(None, description="The selected trial's solver evidence.")
    summary: Optional[str] = Field(None, description="A sentence saying what the certificate proves.")
    relative_gradient_norm: Optional[float] = Field(
        None, description="Stationarity of the loss at the selected filter: ||grad L(w)|| relative to its scale.")
    coverage: Optional[CoverageOut] = Field(None, description="Odds that a random trial certifies the filter.")
    kkt: Optional[KKTOut] = Field(None, description="Constrained problems: the KKT measures at the filter.")


class TrialOut(Sent):
    """One randomized trial."""

    index: int = Field(ge=0)
    r: list[float] = Field(description="The trial's direction.")
    w: Optional[list[float]] = Field(description="The relaxation's filter, before polishing and selection.")
    w_polished: Optional[list[float]] = Field(description="The filter after polishing (null when it did not help).")
    loss: Optional[float] = Field(description="Non-convex loss of the trial's final filter (polished if it helped).")
    raw_loss: Optional[float] = Field(description="Non-convex loss of the relaxation's filter w.")
    objective: Optional[float] = Field(description="Optimal value, maximise-r^T w convention.")
    recovered: Optional[bool] = Field(description="Planted only: w recovered w* within recovery_tol.")
    recovered_after_polish: Optional[bool] = Field(description="Planted only: the polished filter recovered w*.")
    recovery_error: Optional[float] = Field(description="Planted only: ||w - w*|| / ||w*||.")
    predicted: Optional[bool] = Field(description="Planted only: the cone check at w* predicts recovery.")
    solver: SolverStatsOut


class ShapeOut(Sent):
    """The problem's dimensions: n samples of length d, k patches of length m."""

    n: int = Field(ge=1)
    d: int = Field(ge=1)
    k: int = Field(ge=1)
    m: int = Field(ge=1)


class BlockPatchingOut(Sent):
    """Non-overlapping blocks: a row of length d = k*m cut into k patches."""

    kind: Literal["blocks"]
    k: int = Field(ge=1, description="Patches per row.")


class StridedPatchingOut(Sent):
    """1-D windows of length `size` every `stride` columns."""

    kind: Literal["strided"]
    size: int = Field(ge=1, description="Patch length.")
    stride: int = Field(ge=1, description="Step between patches.")


class ImagePatchingOut(Sent):
    """2-D windows of a row-major height x width image, filter_height x filter_width, every `stride` pixels."""

    kind: Literal["image"]
    height: int = Field(ge=1)
    width: int = Field(ge=1)
    filter_height: int = Field(ge=1)
    filter_width: int = Field(ge=1)
    stride: int = Field(ge=1)


PatchingOut = Annotated[Union[BlockPatchingOut, StridedPatchingOut, ImagePatchingOut], Field(discriminator="kind")]


class NetworkOut(Sent):
    """The fitted network besides its filter: f_w(x) = sum_j c_j sigma(P_j x . w) (what model.onnx and the
    client's `to_torch` build)."""

    d: int = Field(ge=1, description="Row length the network reads.")
    m: int = Field(ge=1, description="Filter length.")
    patching: PatchingOut
    activation: ActivationName
    negative_slope: float = Field(description="leaky_relu's slope for negative inputs (ignored by the others).")
    output_weights: list[float] = Field(description="c_j >= 0, one per patch.")


class WarmStartOut(Sent):
    """What became of the solve's warm start `w_init`."""

    w_init: list[float] = Field(description="The filter as given.")
    w: list[float] = Field(description="After polishing (w_init itself when polishing did not lower the loss).")
    polished: bool = Field(description="Polishing lowered the loss (within the constraints).")
    loss: float = Field(description="The non-convex loss of w.")
    certified: bool = Field(description="w has zero loss: a certified global minimum (then no trial ran, with "
                            "stop_on_certificate).")
    selected: bool = Field(description="The result's filter is this one (certified, or better than every trial).")


class SolveResultOut(Sent):
    """A solve's result: the selected filter, its loss and certificate, every trial."""

    status: SolveStatus = Field(description="solved, or why no filter was produced (unbounded, infeasible, ...).")
    message: str
    w: Optional[list[float]] = Field(description="The selected filter.")
    w_star: Optional[list[float]] = Field(None, description="Planted only: the planted filter.")
    loss: Optional[float] = Field(description="Its non-convex loss.")
    certificate: CertificateOut
    recovery_error: Optional[float] = Field(description="Planted only: ||w - s w*|| / ||w*|| (s = recovery_sign, "
                                            "else 1).")
    recovery_sign: Optional[Literal[1, -1]] = Field(
        None, description="Planted with a sign-symmetric activation (absolute): w* and -w* predict the same, so "
                          "recovery is up to sign; the sign s of the planted filter matched (null otherwise).")
    selected_trial: Optional[int] = Field(description="Index of the selected trial (null with no filter).")
    trials: list[TrialOut]
    relaxation: Relaxation = Field(description="The relaxation solved.")
    shape: ShapeOut
    solve_time_s: float = Field(description="Wall time of the whole solve.")
    network: Optional[NetworkOut] = Field(None, description="The network the filter belongs to (patching, "
                                          "activation, output weights).")
    warm_start: Optional[WarmStartOut] = Field(None, description="Solves with w_init: what became of it.")


# -------------------------------------------------------------------------------------------------
# the mapping from the core's objects
# -------------------------------------------------------------------------------------------------

def _vector(value: np.ndarray | None) -> list[float] | None:
    return None if value is None else [float(x) for x in value]


#: The other backends' statuses in Clarabel's words (the wire's ``clarabel_status``): cvxpy solves with Clarabel,
#: which it does not name; HiGHS solves the LP working sets when asked for (``backend="highs"``).
_AS_CLARABEL = {
    "cvxpy": {"optimal": "Solved", "optimal_inaccurate": "AlmostSolved", "infeasible": "PrimalInfeasible",
              "infeasible_inaccurate": "AlmostPrimalInfeasible", "unbounded": "DualInfeasible",
              "unbounded_inaccurate": "AlmostDualInfeasible"},
    "highs": {"Optimal": "Solved", "Infeasible": "PrimalInfeasible", "Unbounded": "DualInfeasible",
              "Primal infeasible or unbounded": "PrimalInfeasible", "Time limit reached": "MaxTime",
              "Iteration limit reached": "MaxIterations", "Interrupted by user": "CallbackTerminated",
              "NotStarted": "NotStarted"},  # no sub-problem solved (a cone decided the trial, or a cancel came first)
}


def _solver(solution: RelaxationSolution) -> dict[str, Any]:
    out = asdict(solution)
    for name in ("w", "objective", "backend", "backend_status", "pool_size"):
        out.pop(name)
    out["status"] = str(solution.status)
    out["working_set"] = solution.pool_size
    out["clarabel_status"] = solution.backend_status if solution.backend == "clarabel" else \
        _AS_CLARABEL[str(solution.backend)].get(solution.backend_status, "NumericalError")
    return out


def _cone(cone: ConeCertificate) -> dict[str, Any]:
    return asdict(cone)


def _coverage(coverage: Coverage | None) -> dict[str, Any] | None:
    if coverage is None:
        return None
    out = asdict(coverage)
    out["interval"] = None if coverage.interval is None else list(coverage.interval)
    return out


def certificate_dict(certificate: Certificate | None) -> dict[str, Any]:
    """The certificate's wire members (before validation); a placeholder when there is no filter."""
    if certificate is None:
        return {
            "global_optimum": False, "loss": None, "loss_threshold": None, "fit_residual": None,
            "cone": _cone(ConeCertificate(False, False, None, DEFAULT_CONE_TOL, None,
                                          "not applicable: no trial produced a filter")),
            "summary": "No trial produced a filter, so there is nothing to certify.",
            "relative_gradient_norm": None, "coverage": None,
        }
    out = asdict(certificate)
    out["cone"] = _cone(certificate.cone)
    out["coverage"] = _coverage(certificate.coverage)
    return out


def _trial(record: TrialRecord) -> dict[str, Any]:
    return {
        "index": record.index, "r": _vector(record.r), "w": _vector(record.w), "w_polished": _vector(record.w_polished),
        "loss": record.loss, "raw_loss": record.raw_loss, "objective": record.objective,
        "recovered": record.recovered, "recovered_after_polish": record.recovered_after_polish,
        "recovery_error": record.recovery_error, "predicted": record.predicted, "solver": _solver(record.solution),
    }


def solve_result_out(result: SolveResult, network: dict[str, Any] | None = None,
                     warm_start: dict[str, Any] | None = None) -> SolveResultOut:
    """The typed wire form of a solve's result (members the core did not fill stay unset).

    Parameters
    ----------
    result : the core's result.
    network : the network's description (:func:`cnnrelax.export.network.network_description`), if known.
    warm_start : the ``warm_start`` member of a solve from ``w_init`` (:mod:`cnnrelax.warm_start`).

    Returns
    -------
    The response model; ``model_dump(mode="json", exclude_unset=True)`` is what is stored and sent.
    """
    certificate = certificate_dict(result.certificate)
    if result.selected_trial is not None:
        certificate["solver"] = _solver(result.trials[result.selected_trial].solution)
    raw = {
        "status": result.status, "message": result.message, "w": _vector(result.w), "w_star": _vector(result.w_star),
        "loss": result.loss, "certificate": certificate, "recovery_error": result.recovery_error,
        "recovery_sign": result.recovery_sign, "selected_trial": result.selected_trial,
        "trials": [_trial(t) for t in result.trials], "relaxation": result.relaxation,
        "shape": {"n": result.n, "d": result.d, "k": result.k, "m": result.m}, "solve_time_s": result.solve_time_s,
    }
    if network is not None:
        raw["network"] = network
    if warm_start is not None:
        raw["warm_start"] = warm_start
    return SolveResultOut.model_validate(json_safe(raw))


def solve_result_json(result: SolveResult, network: dict[str, Any] | None = None,
                      warm_start: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON object of a solve's result, as stored and sent (see :func:`solve_result_out`)."""
    out: dict[str, Any] = solve_result_out(result, network, warm_start).model_dump(mode="json",
                                                                                   exclude_unset=True)
    return out
