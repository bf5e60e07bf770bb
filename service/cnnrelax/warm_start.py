"""Warm starts: a solve that begins from the caller's filter ``w_init`` (e.g. one PyTorch trained).

``w_init`` is polished first (least squares on its activation pattern, or Gauss-Newton for a smooth activation;
kept only when it lowers the loss and stays within the constraints) and certified
(:func:`cnnrelax.certification.certify_filter`). When it is a certified global minimum (zero loss) and
``stop_on_certificate`` holds, no trial runs: the result is the warm filter with its certificate. Otherwise the
trials run as in any solve, and the warm filter is selected only when its loss is below every trial's. The result
says what happened in ``warm_start``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any, Callable

from .certification import certify_filter, checked_filter
from .core.certificates import Certificate
from .core.options import SolveOptions
from .core.polishing import polish
from .core.problem import ConvProblem, FloatArray
from .core.records import OnRound, SolveResult, TrialRecord
from .core.tolerances import POLISH_FEASIBILITY_TOL
from .core.trials import recovery, solve
from .types import ShouldStop


@dataclass(frozen=True)
class WarmStart:
    """The warm filter: as given, after polishing, its loss and certificate."""

    w_init: FloatArray
    w: FloatArray
    polished: bool
    loss: float
    certificate: Certificate

    def describe(self, selected: bool) -> dict[str, Any]:
        """The result's ``warm_start`` member."""
        return {"w_init": [float(v) for v in self.w_init], "w": [float(v) for v in self.w], "polished": self.polished,
                "loss": self.loss, "certified": self.certificate.global_optimum, "selected": selected}


def prepare(problem: ConvProblem, w_init: Any, options: SolveOptions) -> WarmStart:
    """Polish ``w_init`` (within the constraints) and certify the outcome."""
    given = checked_filter(problem, w_init, "w_init")
    constraints = options.constraints.resolve(problem.m)
    w, polished = given, False
    if options.polish:
        outcome = polish(problem, given)
        if outcome.accepted and constraints.relative_violation(outcome.w, problem.w_scale) <= POLISH_FEASIBILITY_TOL:
            w, polished = outcome.w, True
    return WarmStart(given, w, polished, problem.loss(w), certify_filter(problem, w, options))


def solve_from(problem: ConvProblem, w_init: Any, options: SolveOptions, *, w_star: FloatArray | None = None,
               should_stop: ShouldStop | None = None,
               on_trial: Callable[[TrialRecord], None] | None = None,
               on_round: OnRound | None = None) -> tuple[SolveResult, dict[str, Any]]:
    """Solve from a warm start (module docstring): the result and its ``warm_start`` member.

    Parameters
    ----------
    problem : the problem.
    w_init : the caller's filter.
    options : the solve's options.
    w_star : the planted filter (planted problems).
    should_stop, on_trial, on_round : as for :func:`cnnrelax.core.trials.solve`.

    Returns
    -------
    The result (the warm filter when it is certified, or better than every trial) and the ``warm_start`` member.
    """
    started = time.monotonic()
    warm = prepare(problem, w_init, options)
    if warm.certificate.global_optimum and options.stop_on_certificate:
        error, sign = (None, None) if w_star is None else recovery(problem, warm.w, w_star)
        result = SolveResult(
            status="solved", message="The warm start w_init" + (", polished," if warm.polished else "") +
            " has zero loss: a certified global minimum, so no trial ran.",
            w=warm.w, loss=warm.loss, certificate=warm.certificate, recovery_error=error, recovery_sign=sign,
            selected_trial=None, trials=[], relaxation=options.relaxation, n=problem.n, d=problem.d, k=problem.k,
            m=problem.m, solve_time_s=time.monotonic() - started, w_star=w_star)
        return result, warm.describe(selected=True)
    result = solve(problem, options, w_star=w_star, should_stop=should_stop, on_trial=on_trial, on_round=on_round)
    if result.status == "cancelled" or (result.loss is not None and result.loss <= warm.loss):
        return result, warm.describe(selected=False)
    error, sign = (None, None) if w_star is None else recovery(problem, warm.w, w_star)
    ran = len(result.trials)
    certificate = certify_filter(problem, warm.w, replace(options, trials=max(ran, 1)), should_stop=should_stop)
    adopted = replace(result, status="solved", w=warm.w, loss=warm.loss, certificate=certificate,
                      recovery_error=error, recovery_sign=sign, selected_trial=None,
                      message=f"The warm start w_init has a lower loss than each of the {ran} trials: it is selected.",
                      solve_time_s=time.monotonic() - started)
    return adopted, warm.describe(selected=True)
