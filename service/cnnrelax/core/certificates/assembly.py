"""A filter's certificate assembled (SPEC 4): zero loss proves a global minimum, cone membership LP optimality.

:func:`certify` puts together the zero-loss test (``L(w) <= optimality_tol * ||y||^2``, a global minimum of the
non-convex loss since ``L >= 0``), the cone test for one direction (:mod:`.cone`), the fit residual and the
stationarity of the loss (:mod:`.measures`), and a sentence saying what is proved. The coverage estimate
(:mod:`.coverage`) is attached by the caller that has the directions' budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from ..constraints import ResolvedConstraints
from ..problem import ConvProblem, FloatArray
from .cone import OptimalityCone, cone_not_applicable, optimality_cone
from .coverage import Coverage
from .kkt import KKTCertificate, constrained_summary, imposes_nothing, kkt_certificate
from .measures import (
    DEFAULT_CONE_TOL,
    DEFAULT_FIT_TOL,
    DEFAULT_OPTIMALITY_TOL,
    fit_residual,
    loss_threshold,
    relative_gradient_norm,
)


class ConeStatus(Enum):
    """The outcome of the cone test."""

    CERTIFIED = "certified"  # r lies in the cone: w is LP-optimal for r
    NOT_CERTIFIED = "not_certified"  # r lies outside the cone
    NOT_APPLICABLE = "not_applicable"  # w does not fit y, or a norm bound is active


@dataclass(frozen=True)
class ConeCertificate:
    """Outcome of the cone-membership test at one filter, for one or several directions.

    ``certified_by_trials`` lists the trials whose direction makes the filter LP-optimal (filled by
    :func:`cnnrelax.core.trials.solve`); ``residual`` and ``positive_multipliers`` belong to the best of them.
    """

    applicable: bool
    certified: bool
    residual: float | None
    tolerance: float
    positive_multipliers: int | None
    reason: str
    tied_patches: int | None = None
    certified_by_trials: list[int] = field(default_factory=list)

    @property
    def status(self) -> ConeStatus:
        if not self.applicable:
            return ConeStatus.NOT_APPLICABLE
        return ConeStatus.CERTIFIED if self.certified else ConeStatus.NOT_CERTIFIED


@dataclass(frozen=True)
class Certificate:
    """Everything a result carries to prove (or not) that it is the global optimum."""

    global_optimum: bool
    loss: float
    loss_threshold: float
    fit_residual: float
    cone: ConeCertificate
    summary: str = ""
    relative_gradient_norm: float | None = None
    coverage: Coverage | None = None
    kkt: KKTCertificate | None = None  # constrained problems only


def tied_note(ties: int | None) -> str:
    """The clause that says how tied patches were counted (empty without ties)."""
    return f" ({ties} tied patches X_ij w = 0 counted with multipliers in [0, v_i])" if ties else ""


def cone_certificate(
    problem: ConvProblem,
    w: FloatArray,
    r: FloatArray,
    *,
    constraints: ResolvedConstraints | None = None,
    tol: float = DEFAULT_CONE_TOL,
    fit_tol: float = DEFAULT_FIT_TOL,
    cone: OptimalityCone | None = None,
    pre: FloatArray | None = None,
) -> ConeCertificate:
    """Check that ``r`` lies in the cone of optimality at ``w`` (ties and active linear constraints included).

    Parameters
    ----------
    problem : the problem data.
    w : the filter.
    r : the direction.
    constraints : constraints on ``w``.
    tol : certified when ``rho <= tol``.
    fit_tol : the cone test applies only to a filter whose relative fit residual is at most this.
    cone : a cone already built at ``w`` (to test many directions); the caller has then established that the
        test applies (:func:`cone_not_applicable`).
    pre : the pre-activations ``X_ij w`` when already computed (the fit check and the cone then make no pass).

    Returns
    -------
    The verdict with its residual and a sentence.
    """
    why_not = None if cone is not None else cone_not_applicable(problem, w, constraints, fit_tol, pre)
    if why_not is not None:
        return ConeCertificate(False, False, None, tol, None, why_not)
    ties = None
    if cone is None:
        cone, ties = optimality_cone(problem, w, constraints, pre=pre)
    certified, rho, positive = cone.member(np.asarray(r, dtype=np.float64), tol)
    tied = tied_note(ties)
    return ConeCertificate(
        applicable=True, certified=certified, residual=rho, tolerance=tol, positive_multipliers=positive,
        tied_patches=ties,
        reason=(f"r lies in the cone of optimality at w{tied}: (w, z) is optimal for the LP with this r" if certified
                else f"r is outside the cone of optimality at w{tied}: w is not the LP optimum for this r"),
    )


def summary(global_optimum: bool, loss: float, threshold: float, cone: ConeCertificate,
            gradient: float | None, kkt: KKTCertificate | None = None) -> str:
    """One sentence on what the certificate proves about the selected filter (``kkt``: constrained problems)."""
    if global_optimum:
        text = (f"Zero loss (L = {loss:.3g} <= {threshold:.3g}): the selected filter is a global minimum of the "
                "non-convex training loss.")
        if cone.status is ConeStatus.NOT_CERTIFIED:
            text += (" No direction tried makes it the relaxation's optimum (it came from polishing), which "
                     "does not weaken the zero-loss certificate.")
        return text
    if kkt is not None:
        return constrained_summary(loss, threshold, kkt)
    text = (f"No filter reached zero loss (L = {loss:.3g} > {threshold:.3g}): zero loss cannot certify a global "
            "minimum here (labels no filter fits, e.g. noisy ones), and the cone test applies only to a filter "
            "that fits y.")
    if gradient is not None:
        text += (f" The relative gradient norm of the loss at the selected filter is {gradient:.3g} "
                 "(0 at a stationary point).")
    return text


def certify(
    problem: ConvProblem,
    w: FloatArray,
    r: FloatArray,
    *,
    constraints: ResolvedConstraints | None = None,
    optimality_tol: float = DEFAULT_OPTIMALITY_TOL,
    cone_tol: float = DEFAULT_CONE_TOL,
    fit_tol: float = DEFAULT_FIT_TOL,
    cone: OptimalityCone | None = None,
    tested: ConeCertificate | None = None,
    pre: FloatArray | None = None,
) -> Certificate:
    """Zero-loss global optimality (``L(w) <= tol * ||y||^2``), the cone test at ``w`` and stationarity.

    Parameters
    ----------
    problem, w, r, constraints : the filter and the direction to test.
    optimality_tol, cone_tol, fit_tol : relative tolerances.
    cone : the cone of optimality at ``w`` when already built (see :func:`cone_certificate`).
    tested : the cone test's outcome when already made (then ``r`` is not tested again).
    pre : the pre-activations ``X_ij w`` when the caller has them. Either way they are computed at most once here
        and handed to the loss, the fit residual, the gradient norm and the cone test (one pass, not four).

    Returns
    -------
    The certificate (coverage not estimated; see :func:`cnnrelax.core.certificates.coverage`).
    """
    pre = problem.preactivations(w) if pre is None else pre  # one pass for every measure below
    loss = problem.loss_from(pre)
    threshold = loss_threshold(problem, optimality_tol)
    if tested is None:
        tested = cone_certificate(problem, w, r, constraints=constraints, tol=cone_tol, fit_tol=fit_tol, cone=cone,
                                  pre=pre)
    optimum = bool(loss <= threshold)
    gradient = relative_gradient_norm(problem, w, pre)
    kkt = None if constraints is None or imposes_nothing(constraints) else kkt_certificate(problem, w, constraints)
    return Certificate(
        global_optimum=optimum, loss=loss, loss_threshold=threshold, fit_residual=fit_residual(problem, w, pre),
        cone=tested, summary=summary(optimum, loss, threshold, tested, gradient, kkt), relative_gradient_norm=gradient,
        kkt=kkt,
    )
