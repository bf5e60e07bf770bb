"""Randomized trials (SPEC 3): seeded directions, selection by non-convex loss, early stop, polishing.

Trial ``t`` draws ``r_t ~ N(0, I_m)`` from ``default_rng([seed, t])``; the trial with the least
``L(w_t)`` is selected; a trial with ``L(w_t) <= tol * ||y||^2`` is a certified global minimum and
ends the run when ``stop_on_certificate``. Progress: ``on_trial`` receives each trial's record, ``on_round``
each working-set round's (:class:`RoundRecord`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from ..errors import InvalidParameterError
from ..types import ShouldStop
from .certificates import (
    Certificate,
    ConeCertificate,
    OptimalityCone,
    certify,
    cone_certificate,
    cone_not_applicable,
    coverage,
    loss_threshold,
    optimality_cone,
    tied_note,
)
from .constraints import ResolvedConstraints
from .options import SolveOptions
from .polishing import PolishOutcome, polish
from .problem import ConvProblem, FloatArray
from .records import SolveResult, TrialRecord, TrialStatus
from .solver import OnRound, ProvenPoint, ProvesPoints, RelaxationBackend, make_backend
from .tolerances import POLISH_FEASIBILITY_TOL, SELECTION_RTOL


def trial_direction(seed: int, index: int, m: int) -> FloatArray:
    """``r_t ~ N(0, I_m)`` from a generator seeded by ``(seed, t)``."""
    return np.random.default_rng([seed, index]).standard_normal(m)


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


@dataclass(frozen=True)
class _Context:
    """What every trial of one solve shares."""

    problem: ConvProblem
    options: SolveOptions
    constraints: ResolvedConstraints
    backend: RelaxationBackend
    w_star: FloatArray | None
    star_cone: OptimalityCone | None
    threshold: float
    should_stop: ShouldStop | None
    on_round: OnRound | None
    prover: ProvesPoints | None  # the backend, when it hands on the points it proves (a runtime check, made once)

    def stopped(self) -> bool:
        return self.should_stop is not None and self.should_stop()

    def proven(self, w: FloatArray) -> ProvenPoint | None:
        """The point the backend proved LP-optimal by a cone when ``w`` is it (its cone and polishing are known)."""
        return None if self.prover is None else self.prover.proven(w)

    def polished(self, w: FloatArray) -> PolishOutcome:
        """Polishing ``w``: known when the backend proved it; and a polished filter that is the backend's point at
        the guess to rounding (:meth:`ProvesPoints.twin`) becomes that point, whose cone, pre-activations and
        trials' distances the certificate then reuses."""
        known = self.proven(w)
        if known is not None:
            return known.polished
        outcome = polish(self.problem, w)
        twin = None if self.prover is None or not outcome.accepted else self.prover.twin(outcome)
        if twin is None:
            return outcome
        return replace(outcome, w=twin.w, loss=twin.polished.loss, fit_pattern=twin.polished.fit_pattern)


def solve(
    problem: ConvProblem,
    options: SolveOptions | None = None,
    *,
    w_star: FloatArray | None = None,
    should_stop: ShouldStop | None = None,
    on_trial: Callable[[TrialRecord], None] | None = None,
    on_round: OnRound | None = None,
) -> SolveResult:
    """Run up to ``options.trials`` seeded trials and return the best filter with its certificate.

    Parameters
    ----------
    problem : the problem.
    options : how to solve (defaults: :class:`SolveOptions`).
    w_star : a planted filter: each trial then reports its recovery and the cone test's prediction.
    should_stop : polled between trials and rounds; True cancels.
    on_trial : called with each trial's record as it ends.
    on_round : called with each working-set round's record (:class:`RoundRecord`).

    Returns
    -------
    The selected filter, its certificate and every trial's record.
    """
    options = options or SolveOptions()
    options.validate()
    constraints = options.constraints.resolve(problem.m)
    if w_star is not None:
        w_star = np.asarray(w_star, dtype=np.float64)
        if w_star.shape != (problem.m,):
            raise InvalidParameterError("w_star", f"w_star must have length m={problem.m}, got shape {w_star.shape}.")
    start = time.monotonic()
    star_cone = None
    if w_star is not None and cone_not_applicable(problem, w_star, constraints, options.fit_tol) is None:
        star_cone, _ = optimality_cone(problem, w_star, constraints)
    backend = make_backend(problem, options, constraints)
    context = _Context(problem, options, constraints, backend, w_star, star_cone,
                       options.optimality_tol * max(float(problem.y @ problem.y), np.finfo(float).tiny),
                       should_stop, on_round, backend if isinstance(backend, ProvesPoints) else None)
    records, status, message = _run_trials(context, on_trial)
    return _result(context, records, status, message, start)


def _run_trials(context: _Context, on_trial: Callable[[TrialRecord], None] | None
                ) -> tuple[list[TrialRecord], str, str]:
    """The trials until the last, a certified one (``stop_on_certificate``), a cancel or a time limit."""
    records: list[TrialRecord] = []
    for t in range(context.options.trials):
        if context.stopped():
            return records, "cancelled", "The solve was cancelled."
        record = _trial(context, t)
        records.append(record)
        if on_trial is not None:
            on_trial(record)
        sol = record.solution
        if sol.status == TrialStatus.cancelled:
            return records, "cancelled", sol.message
        if sol.status == TrialStatus.time_limit:
            return records, "failed", sol.message
        if context.options.stop_on_certificate and record.loss is not None and record.loss <= context.threshold:
            break
    return records, "solved", ""


def _trial(context: _Context, t: int) -> TrialRecord:
    """Trial ``t``: its relaxation, its polished filter, and (planted) its recovery and the predicted outcome."""
    problem, options, w_star = context.problem, context.options, context.w_star
    r = trial_direction(options.seed, t, problem.m)
    sol = context.backend.solve(r, should_stop=context.should_stop, on_round=context.on_round, trial=t)
    w, w_polished, loss, raw_loss = sol.w, None, None, None
    if w is not None and options.polish and not context.stopped():
        outcome = context.polished(w)
        raw_loss = loss = outcome.start_loss
        if (outcome.accepted
                and context.constraints.relative_violation(outcome.w, problem.w_scale) <= POLISH_FEASIBILITY_TOL):
            w_polished, loss = outcome.w, outcome.loss
    elif w is not None:
        raw_loss = loss = problem.loss(w)
    error = polished_error = None
    if w_star is not None and w is not None:
        error = recovery(problem, w, w_star)[0]
        polished_error = error if w_polished is None else recovery(problem, w_polished, w_star)[0]
    return TrialRecord(
        index=t, r=r, w=w, w_polished=w_polished, loss=loss, raw_loss=raw_loss, objective=sol.objective,
        recovered=None if w_star is None else bool(error is not None and error <= options.recovery_tol),
        recovered_after_polish=None if w_star is None else bool(
            polished_error is not None and polished_error <= options.recovery_tol),
        recovery_error=error, predicted=_predicted(context, r), solution=sol,
    )


def _predicted(context: _Context, r: FloatArray) -> bool | None:
    """Does the cone test at ``w*`` say this trial recovers it (Theorem 1)? None without a planted filter."""
    problem, options, w_star = context.problem, context.options, context.w_star
    if context.star_cone is None or w_star is None:
        return None

    def certified(direction: FloatArray) -> bool:
        return cone_certificate(problem, w_star, direction, constraints=context.constraints, tol=options.cone_tol,
                                fit_tol=options.fit_tol, cone=context.star_cone).certified

    predicted = certified(r)
    if not predicted and problem.activation.sign_symmetric and options.constraints.is_empty():
        # A sign-symmetric sigma without constraints: the cone at -w* is minus the cone at w*, and recovery is up
        # to sign.
        predicted = certified(-r)
    return predicted


def _result(context: _Context, records: list[TrialRecord], status: str, message: str, start: float) -> SolveResult:
    """The selected trial (least loss), its certificate, and the solve's status and sentence."""
    problem, options, w_star = context.problem, context.options, context.w_star
    best = _select([rec for rec in records if rec.final_w is not None], context.threshold)
    if best is None and status == "solved":
        statuses = sorted({str(rec.solution.status) for rec in records})
        status = statuses[0] if len(statuses) == 1 else "no_solution"
        message = "No trial produced a filter (" + ", ".join(statuses) + "). " + records[-1].solution.message
    elif not message and best is not None:
        message = f"Selected trial {best.index} of {len(records)} run."
    certificate = None
    stopped = status == "cancelled" or context.stopped()
    if best is not None and not stopped:  # a cancelled job's answer is not read: skip the certificate's work
        certificate = _certificate(context, best, records)
    final_error, sign = (None, None) if (best is None or best.final_w is None or w_star is None) \
        else recovery(problem, best.final_w, w_star)
    return SolveResult(
        status=status, message=message,
        w=None if best is None else best.final_w, loss=None if best is None else best.loss,
        certificate=certificate, recovery_error=final_error, recovery_sign=sign,
        selected_trial=None if best is None else best.index,
        trials=records, relaxation=options.relaxation,
        n=problem.n, d=problem.d, k=problem.k, m=problem.m,
        solve_time_s=time.monotonic() - start, w_star=w_star,
    )


def _select(finished: list[TrialRecord], threshold: float) -> TrialRecord | None:
    """The trial with the least loss; the first one among those within rounding of it, or of zero loss.

    Every loss at or below the zero-loss threshold is a certified global minimum, and losses within a
    relative ``SELECTION_RTOL`` of each other are the same in any units: taking the first keeps selection scale-free.
    """
    losses = [rec.loss for rec in finished if rec.loss is not None]
    if not losses:
        return None
    cutoff = max(threshold, min(losses) * (1.0 + SELECTION_RTOL))
    return next(rec for rec in finished if rec.loss is not None and rec.loss <= cutoff)


def _verdicts(cone: OptimalityCone, known: ProvenPoint | None, records: list[TrialRecord],
              tol: float) -> list[tuple[int, float, int]]:
    """Each trial's ``(index, rho, positive multipliers)`` at the cone, in trial order, where it matters.

    A distance the shortcut already measured (``known``) is not measured again. Once some trial is within ``tol``,
    the others' distances cannot be the least: each of them gets an exact verdict first
    (:meth:`OptimalityCone.members`: a known separating vector, or multipliers), and a distance only when inside
    (a trial proven outside is left out of the list, which then holds every trial that certifies and the closest).
    """
    def distance(r: FloatArray) -> tuple[float, int]:
        if known is not None:
            return known.distance(r)
        _, rho, positive = cone.member(np.asarray(r, dtype=np.float64), tol)
        return rho, positive

    verdicts: list[tuple[int, float, int]] = []
    pending: list[TrialRecord] = []
    for rec in records:
        measured = None if known is None else known.measured(rec.r)
        if measured is None:
            pending.append(rec)
        else:
            verdicts.append((rec.index, *measured))
    if pending and any(rho <= tol for _, rho, _ in verdicts):
        inside = cone.members(np.array([rec.r for rec in pending], dtype=np.float64), tol)
        pending = [rec for rec, holds in zip(pending, inside, strict=True) if holds]
    verdicts += [(rec.index, *distance(rec.r)) for rec in pending]
    return sorted(verdicts)


def _certificate(context: _Context, best: TrialRecord, records: list[TrialRecord]) -> Certificate:
    """The selected filter's certificate: zero loss, the cone test for every direction tried, coverage.

    The cone of optimality is built once at the selected filter (or handed on by the backend, which built it to
    decide trials: :meth:`_Context.proven`) and tested against each trial's ``r``; ``certified_by_trials`` lists
    the trials whose direction makes the filter LP-optimal.
    """
    problem, constraints, options, should_stop = context.problem, context.constraints, context.options, \
        context.should_stop
    w = best.final_w
    assert w is not None
    known = context.proven(w)
    if known is not None and known.fit is None:
        known = None  # a point proven by another cone than the certificate's (the origin)
    # one pass at w (or none: the shortcut's) for the fit check, the cone and every measure of the certificate
    pre = problem.preactivations(w) if known is None or known.pre is None else known.pre
    applies = (known is not None and known.fit is not None and known.fit <= options.fit_tol) or \
        cone_not_applicable(problem, w, constraints, options.fit_tol, pre) is None
    if not applies:
        base = certify(problem, w, best.r, constraints=constraints, optimality_tol=options.optimality_tol,
                       cone_tol=options.cone_tol, fit_tol=options.fit_tol, pre=pre)
        return replace(base, coverage=coverage(problem, w, samples=0, constraints=constraints,
                                               fit_tol=options.fit_tol))
    # built once, for every direction below
    cone, ties = optimality_cone(problem, w, constraints, pre=pre) if known is None else (known.cone, known.ties)
    verdicts = _verdicts(cone, known, records, options.cone_tol)
    certified_by = [index for index, rho, _ in verdicts if rho <= options.cone_tol]
    index, residual, positive = min(verdicts, key=lambda item: item[1])
    tied = tied_note(ties)
    if certified_by:
        reason = (f"For the direction r of trial(s) {certified_by} (of {len(records)} tried) the selected filter is "
                  f"an optimum of the LP relaxation: r lies in its cone of optimality{tied}, so the relaxation itself "
                  "certifies this filter for those directions.")
    else:
        tried = "The one direction tried does not make" if len(records) == 1 else \
            f"None of the {len(records)} directions tried makes"
        reason = (f"{tried} the selected filter LP-optimal (closest: trial {index}, relative residual "
                  f"{residual:.3g} > {options.cone_tol:g}){tied}.")
        if best.w_polished is not None:
            zero_loss = best.loss is not None and best.loss <= loss_threshold(problem, options.optimality_tol)
            reason += (" The filter was reached by polishing trial "
                       f"{best.index}'s LP solution, not by the LP itself")
            reason += ", and its zero loss certifies it as a global minimum all the same." if zero_loss else "."
    cone_cert = ConeCertificate(
        applicable=True, certified=bool(certified_by), residual=residual, tolerance=options.cone_tol,
        positive_multipliers=positive, reason=reason, tied_patches=ties,
        certified_by_trials=certified_by,
    )
    # The trials' verdicts are the cone test: best.r is not tested again.
    base = certify(problem, w, best.r, constraints=constraints, optimality_tol=options.optimality_tol,
                   cone_tol=options.cone_tol, fit_tol=options.fit_tol, cone=cone, tested=cone_cert, pre=pre)
    del pre
    estimate = coverage(problem, w, samples=options.coverage_samples, seed=options.seed, constraints=constraints,
                        tol=options.cone_tol, fit_tol=options.fit_tol, cone=cone, should_stop=should_stop)
    return replace(base, coverage=estimate)
