"""Randomized trials (SPEC 3): seeded directions, selection by non-convex loss, early stop, polishing.

Trial ``t`` draws ``r_t ~ N(0, I_m)`` from ``default_rng([seed, t])``; the trial with the least
``L(w_t)`` is selected; a trial with ``L(w_t) <= tol * ||y||^2`` is a certified global minimum and
ends the run when ``stop_on_certificate``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from ..types import ShouldStop
from ..validation import non_negative_integer, positive_integer
from .certificate import (
    DEFAULT_CONE_TOL,
    DEFAULT_FIT_TOL,
    DEFAULT_OPTIMALITY_TOL,
    Certificate,
    ConeCertificate,
    certify,
    cone_certificate,
    cone_not_applicable,
    coverage,
    optimality_cone,
    summary,
)
from .constraints import FilterConstraints, ResolvedConstraints
from .problem import ConvProblem, FloatArray, InvalidParameterError
from .relaxation import (
    RelaxationSolution,
    RelaxationSolver,
    SolverSettings,
    relaxation_kind,
)

DEFAULT_RECOVERY_TOL = 1e-4
DEFAULT_COVERAGE_SAMPLES = 64
POLISH_FEASIBILITY_TOL = 1e-9  # relative (ResolvedConstraints.relative_violation)


@dataclass(frozen=True)
class SolveOptions:
    """How to solve: which relaxation, how many trials, seeds, tolerances, constraints on ``w``."""

    relaxation: str = "lp"
    beta: float = 1e-4
    trials: int = 8
    seed: int = 0
    stop_on_certificate: bool = True
    polish: bool = True
    constraints: FilterConstraints = field(default_factory=FilterConstraints)
    recovery_tol: float = DEFAULT_RECOVERY_TOL
    optimality_tol: float = DEFAULT_OPTIMALITY_TOL
    cone_tol: float = DEFAULT_CONE_TOL
    fit_tol: float = DEFAULT_FIT_TOL
    coverage_samples: int = DEFAULT_COVERAGE_SAMPLES
    backend: str = "clarabel"
    solver: SolverSettings = field(default_factory=SolverSettings)

    def validate(self) -> None:
        relaxation_kind(self.relaxation)
        positive_integer("trials", self.trials)
        non_negative_integer("seed", self.seed)
        if (isinstance(self.coverage_samples, bool) or not isinstance(self.coverage_samples, (int, np.integer))
                or self.coverage_samples < 0):
            raise InvalidParameterError(
                "coverage_samples", f"coverage_samples must be an integer >= 0 (0 skips the estimate), "
                f"got {self.coverage_samples!r}.")
        if self.backend not in ("clarabel", "cvxpy"):
            raise InvalidParameterError("backend", f"backend must be 'clarabel' or 'cvxpy', got {self.backend!r}.")
        for name in ("recovery_tol", "optimality_tol", "cone_tol", "fit_tol"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise InvalidParameterError(name, f"{name} must be a positive number, got {value!r}.")


def trial_direction(seed: int, index: int, m: int) -> FloatArray:
    """``r_t ~ N(0, I_m)`` from a generator seeded by ``(seed, t)``."""
    return np.random.default_rng([seed, index]).standard_normal(m)


@dataclass(frozen=True)
class PolishOutcome:
    w: FloatArray
    accepted: bool
    pattern_unchanged: bool


def polish(problem: ConvProblem, w: FloatArray, rounds: int = 3) -> PolishOutcome:
    """Polish ``w`` for the problem's activation: least squares on its pattern, or Gauss-Newton when smooth.

    Piecewise-linear activations (ReLU, leaky ReLU, ``|u|``): on the pattern of ``w`` the model is linear,
    ``f_w(x_i) = sum_j c_j X_ij w`` with ``c_j = hi`` on active patches and ``lo`` elsewhere, so least squares
    solves ``sum_j c_j X_ij w = y_i``. The pattern is judged relative to ``||X_ij|| ||w||``
    (:meth:`ConvProblem.active_mask`), so patches the LP left at a kink (``X_ij w`` at rounding level) count as
    inactive in every unit. Kept when the loss drops; repeated while the pattern moves (for ReLU with ``k = 1``
    this is ``X_S^+ y_S``). Smooth activations: :func:`gauss_newton`.

    Parameters
    ----------
    problem : the problem.
    w : the filter to polish.
    rounds : least-squares rounds (piecewise linear).

    Returns
    -------
    The polished filter (``w`` itself when nothing lowered the loss), whether it was accepted, and whether the
    pattern settled (Gauss-Newton: whether it converged).
    """
    if not problem.activation.piecewise_linear:
        return gauss_newton(problem, w)
    best, best_loss = w, problem.loss(w)
    accepted = unchanged = False
    for _ in range(rounds):
        mask = problem.active_mask(best)
        G = problem.gradient_rows(best, mask)
        candidate = np.asarray(np.linalg.lstsq(G, problem.y, rcond=None)[0], dtype=np.float64)
        loss = problem.loss(candidate)
        if not loss < best_loss:
            break
        unchanged = bool(np.array_equal(problem.active_mask(candidate), mask))
        best, best_loss, accepted = candidate, loss, True
        if unchanged:
            break
    return PolishOutcome(best, accepted, unchanged)


def gauss_newton(problem: ConvProblem, w: FloatArray, steps: int = 20, halvings: int = 30) -> PolishOutcome:
    """Gauss-Newton on ``L(w) = ||y - f_w||^2`` for a smooth activation, with a decrease check.

    Each step solves the linearised least squares ``J delta = y - f_w`` with ``J_i = sum_j sigma'(X_ij w) X_ij``
    (:meth:`ConvProblem.gradient_rows`) and halves the step until the loss drops; it stops when no step lowers
    the loss, when the loss is zero to rounding, or after ``steps`` steps. Near a zero-loss minimum the
    convergence is quadratic.

    Parameters
    ----------
    problem : the problem (smooth activation).
    w : the starting filter.
    steps : at most this many steps.
    halvings : at most this many halvings of a step.

    Returns
    -------
    The best filter found, whether it beat ``w``, and whether the iteration converged.
    """
    best = np.asarray(w, dtype=np.float64)
    best_loss = problem.loss(best)
    floor = 1e-30 * max(float(problem.y @ problem.y), np.finfo(float).tiny)
    accepted = converged = False
    for _ in range(steps):
        if best_loss <= floor:
            converged = True
            break
        residual = problem.y - problem.predict(best)
        J = problem.gradient_rows(best)
        delta = np.asarray(np.linalg.lstsq(J, residual, rcond=None)[0], dtype=np.float64)
        step, improved = 1.0, False
        for _ in range(halvings):
            candidate = best + step * delta
            loss = problem.loss(candidate)
            if loss < best_loss:
                improved = True
                break
            step *= 0.5
        if not improved:
            converged = True
            break
        small = best_loss - loss <= 1e-15 * best_loss
        best, best_loss, accepted = candidate, loss, True
        if small:
            converged = True
            break
    return PolishOutcome(best, accepted, converged)


@dataclass(frozen=True)
class TrialRecord:
    """One trial: its direction, the relaxation's filter, its polished filter, and how they fared.

    ``recovered`` and ``predicted`` both speak of the relaxation's own filter ``w`` (Theorem 1's
    statement); ``recovered_after_polish`` of the polished one.
    """

    index: int
    r: FloatArray
    w: FloatArray | None
    w_polished: FloatArray | None
    loss: float | None
    raw_loss: float | None
    objective: float | None
    recovered: bool | None
    recovered_after_polish: bool | None
    recovery_error: float | None
    predicted: bool | None
    solution: RelaxationSolution

    @property
    def final_w(self) -> FloatArray | None:
        """The filter this trial offers for selection: polished when polishing helped."""
        return self.w_polished if self.w_polished is not None else self.w


@dataclass(frozen=True)
class SolveResult:
    """The selected filter with its certificate, and every trial's record."""

    status: str
    message: str
    w: FloatArray | None
    loss: float | None
    certificate: Certificate | None
    recovery_error: float | None
    selected_trial: int | None
    trials: list[TrialRecord]
    relaxation: str
    n: int
    d: int
    k: int
    m: int
    solve_time_s: float
    w_star: FloatArray | None = None
    recovery_sign: int | None = None


def _relative_error(w: FloatArray, w_star: FloatArray) -> float:
    return float(np.linalg.norm(w - w_star) / max(np.linalg.norm(w_star), np.finfo(float).tiny))


def recovery(problem: ConvProblem, w: FloatArray, w_star: FloatArray) -> tuple[float, int | None]:
    """``||w - s w*|| / ||w*||`` and the sign ``s``: ``s = 1`` unless the activation is sign-symmetric
    (``|u|``: ``w*`` and ``-w*`` predict the same, recovery is up to sign), where ``s`` is the closer of
    ``+1`` and ``-1`` (returned; None for the other activations).

    Parameters
    ----------
    problem : the problem (its activation decides whether the sign is free).
    w, w_star : the filter and the planted filter.

    Returns
    -------
    The relative error and the sign (None when the sign is not free).
    """
    plus = _relative_error(w, w_star)
    if not problem.activation.sign_symmetric:
        return plus, None
    minus = _relative_error(w, -w_star)
    return (plus, 1) if plus <= minus else (minus, -1)


def make_solver(problem: ConvProblem, options: SolveOptions, constraints: ResolvedConstraints) -> Any:
    """The relaxation solver of the chosen backend (Clarabel working set, or the cvxpy oracle)."""
    if options.backend == "cvxpy":
        from .oracle import CvxpyRelaxation

        return CvxpyRelaxation(problem, options.relaxation, beta=options.beta, constraints=constraints)
    return RelaxationSolver(problem, options.relaxation, beta=options.beta, constraints=constraints,
                            settings=options.solver)


def solve(
    problem: ConvProblem,
    options: SolveOptions | None = None,
    *,
    w_star: FloatArray | None = None,
    should_stop: ShouldStop | None = None,
    on_trial: Callable[[TrialRecord], None] | None = None,
) -> SolveResult:
    """Run up to ``options.trials`` seeded trials and return the best filter with its certificate."""
    options = options or SolveOptions()
    options.validate()
    constraints = options.constraints.resolve(problem.m)
    if w_star is not None:
        w_star = np.asarray(w_star, dtype=np.float64)
        if w_star.shape != (problem.m,):
            raise InvalidParameterError("w_star", f"w_star must have length m={problem.m}, got shape {w_star.shape}.")
    start = time.monotonic()
    solver = make_solver(problem, options, constraints)
    threshold = options.optimality_tol * max(float(problem.y @ problem.y), np.finfo(float).tiny)
    star_cone = None
    if w_star is not None and cone_not_applicable(problem, w_star, constraints, options.fit_tol) is None:
        star_cone, _ = optimality_cone(problem, w_star, constraints)
    records: list[TrialRecord] = []
    status, message = "solved", ""
    for t in range(options.trials):
        if should_stop is not None and should_stop():
            status, message = "cancelled", "The solve was cancelled."
            break
        r = trial_direction(options.seed, t, problem.m)
        sol = solver.solve(r, should_stop=should_stop)
        w, w_polished, loss, raw_loss = sol.w, None, None, None
        if w is not None:
            raw_loss = loss = problem.loss(w)
            if options.polish and not (should_stop is not None and should_stop()):
                outcome = polish(problem, w)
                if (outcome.accepted
                        and constraints.relative_violation(outcome.w, problem.w_scale) <= POLISH_FEASIBILITY_TOL):
                    w_polished = outcome.w
                    loss = problem.loss(w_polished)
        error = polished_error = None
        if w_star is not None and w is not None:
            error = recovery(problem, w, w_star)[0]
            polished_error = error if w_polished is None else recovery(problem, w_polished, w_star)[0]
        predicted = None
        if star_cone is not None and w_star is not None:
            predicted = cone_certificate(problem, w_star, r, constraints=constraints, tol=options.cone_tol,
                                         fit_tol=options.fit_tol, cone=star_cone).certified
            if not predicted and problem.activation.sign_symmetric and options.constraints.is_empty():
                # |u| without constraints: the cone at -w* is minus the cone at w*, and recovery is up to sign.
                predicted = cone_certificate(problem, w_star, -r, constraints=constraints, tol=options.cone_tol,
                                             fit_tol=options.fit_tol, cone=star_cone).certified
        record = TrialRecord(
            index=t, r=r, w=w, w_polished=w_polished, loss=loss, raw_loss=raw_loss, objective=sol.objective,
            recovered=None if w_star is None else bool(error is not None and error <= options.recovery_tol),
            recovered_after_polish=None if w_star is None else bool(
                polished_error is not None and polished_error <= options.recovery_tol),
            recovery_error=error, predicted=predicted, solution=sol,
        )
        records.append(record)
        if on_trial is not None:
            on_trial(record)
        if sol.status == "cancelled":
            status, message = "cancelled", sol.message
            break
        if sol.status == "time_limit":
            status, message = "failed", sol.message
            break
        if options.stop_on_certificate and loss is not None and loss <= threshold:
            break
    finished = [rec for rec in records if rec.final_w is not None]
    best = _select(finished, threshold)
    if best is None and status == "solved":
        statuses = sorted({rec.solution.status for rec in records})
        status = statuses[0] if len(statuses) == 1 else "no_solution"
        message = "No trial produced a filter (" + ", ".join(statuses) + "). " + records[-1].solution.message
    elif not message and best is not None:
        message = f"Selected trial {best.index} of {len(records)} run."
    certificate = None
    stopped = status == "cancelled" or (should_stop is not None and should_stop())
    if best is not None and not stopped:  # a cancelled job's answer is not read: skip the certificate's work
        certificate = _certificate(problem, best, records, constraints, options, should_stop)
    final_error, sign = (None, None) if (best is None or best.final_w is None or w_star is None) \
        else recovery(problem, best.final_w, w_star)
    return SolveResult(
        status=status, message=message,
        w=None if best is None else best.final_w, loss=None if best is None else best.loss,
        certificate=certificate,
        recovery_error=final_error, recovery_sign=sign,
        selected_trial=None if best is None else best.index,
        trials=records, relaxation=options.relaxation,
        n=problem.n, d=problem.d, k=problem.k, m=problem.m,
        solve_time_s=time.monotonic() - start,
        w_star=w_star,
    )


def _select(finished: list[TrialRecord], threshold: float) -> TrialRecord | None:
    """The trial with the least loss; the first one among those within rounding of it, or of zero loss.

    Every loss at or below the zero-loss threshold is a certified global minimum, and losses within a
    relative 1e-9 of each other are the same in any units: taking the first keeps selection scale-free.
    """
    losses = [rec.loss for rec in finished if rec.loss is not None]
    if not losses:
        return None
    cutoff = max(threshold, min(losses) * (1.0 + 1e-9))
    return next(rec for rec in finished if rec.loss is not None and rec.loss <= cutoff)


def _certificate(problem: ConvProblem, best: TrialRecord, records: list[TrialRecord],
                 constraints: ResolvedConstraints, options: SolveOptions,
                 should_stop: ShouldStop | None = None) -> Certificate:
    """The selected filter's certificate: zero loss, the cone test for every direction tried, coverage.

    The cone of optimality is built once at the selected filter and tested against each trial's ``r``;
    ``certified_by_trials`` lists the trials whose direction makes the filter LP-optimal.
    """
    w = best.final_w
    assert w is not None
    if cone_not_applicable(problem, w, constraints, options.fit_tol) is not None:
        base = certify(problem, w, best.r, constraints=constraints, optimality_tol=options.optimality_tol,
                       cone_tol=options.cone_tol, fit_tol=options.fit_tol)
        return replace(base, coverage=coverage(problem, w, samples=0, constraints=constraints,
                                               fit_tol=options.fit_tol))
    cone, ties = optimality_cone(problem, w, constraints)  # built once, for every direction below
    base = certify(problem, w, best.r, constraints=constraints, optimality_tol=options.optimality_tol,
                   cone_tol=options.cone_tol, fit_tol=options.fit_tol, cone=cone)
    verdicts = [(rec.index, cone_certificate(problem, w, rec.r, constraints=constraints, tol=options.cone_tol,
                                             fit_tol=options.fit_tol, cone=cone)) for rec in records]
    certified_by = [index for index, cert in verdicts if cert.certified]
    index, closest = min(verdicts, key=lambda item: item[1].residual if item[1].residual is not None else np.inf)
    tied = f" ({ties} tied patches X_ij w = 0 counted with multipliers in [0, v_i])" if ties else ""
    if certified_by:
        reason = (f"For the direction r of trial(s) {certified_by} (of {len(records)} tried) the selected filter is "
                  f"an optimum of the LP relaxation: r lies in its cone of optimality{tied}, so the relaxation itself "
                  "certifies this filter for those directions.")
    else:
        tried = "The one direction tried does not make" if len(records) == 1 else \
            f"None of the {len(records)} directions tried makes"
        reason = (f"{tried} the selected filter LP-optimal (closest: trial {index}, relative residual "
                  f"{closest.residual:.3g} > {options.cone_tol:g}){tied}.")
        if best.w_polished is not None:
            reason += (" The filter was reached by polishing trial "
                       f"{best.index}'s LP solution, not by the LP itself")
            reason += (", and its zero loss certifies it as a global minimum all the same." if base.global_optimum
                       else ".")
    cone_cert = ConeCertificate(
        applicable=True, certified=bool(certified_by), residual=closest.residual, tolerance=options.cone_tol,
        positive_multipliers=closest.positive_multipliers, reason=reason, tied_patches=ties,
        certified_by_trials=certified_by,
    )
    estimate = coverage(problem, w, samples=options.coverage_samples, seed=options.seed, constraints=constraints,
                        tol=options.cone_tol, fit_tol=options.fit_tol, cone=cone, should_stop=should_stop)
    return replace(base, cone=cone_cert, coverage=estimate,
                   summary=summary(base.global_optimum, base.loss, base.loss_threshold, cone_cert,
                                   base.relative_gradient_norm))
