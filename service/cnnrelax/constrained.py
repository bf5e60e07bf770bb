"""Constrained answers you can trust: the selected filter of a constrained solve, polished within the constraints.

A solve under constraints (SPEC 2.4) selects the trial with the least loss; its relaxation's filter is feasible but
no stationary point of the loss within the constraints, and the plain polish leaves the constraints, so it was kept
as it was. :func:`finish` polishes the selected filter within them
(:func:`cnnrelax.core.constrained_polish.polish_within`) and certifies the outcome again: the result is then a KKT
point, and its certificate names the constraints that bind (they stop the fit) or says that none does (the labels
are noisy). A certified global minimum (zero loss) is left as it is.
"""

from __future__ import annotations

import time
from dataclasses import replace

from .certification import certify_filter
from .core.certificates.kkt import imposes_nothing
from .core.constrained_polish import polish_within
from .core.options import SolveOptions
from .core.problem import ConvProblem, FloatArray
from .core.records import SolveResult
from .core.trials import recovery


def finish(problem: ConvProblem, result: SolveResult, options: SolveOptions,
           w_star: FloatArray | None = None) -> SolveResult:
    """The result with its filter polished within the constraints when that lowers the loss (module docstring)."""
    constraints = options.constraints.resolve(problem.m)
    certified = result.certificate is not None and result.certificate.global_optimum
    if imposes_nothing(constraints) or result.w is None or certified or result.status == "cancelled":
        return result
    started = time.monotonic()
    polished = polish_within(problem, result.w, constraints)
    if not polished.accepted or constraints.relative_violation(polished.w, problem.w_scale) > 1e-9:
        return result
    error, sign = (None, None) if w_star is None else recovery(problem, polished.w, w_star)
    certificate = certify_filter(problem, polished.w, replace(options, trials=max(len(result.trials), 1)))
    loss = problem.loss(polished.w)
    return replace(result, w=polished.w, loss=loss, certificate=certificate, recovery_error=error, recovery_sign=sign,
                   message=f"{result.message} Polished within the constraints (loss {result.loss:.4g} -> {loss:.4g}).",
                   solve_time_s=result.solve_time_s + time.monotonic() - started)
