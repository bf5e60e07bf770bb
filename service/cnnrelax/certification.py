"""Certify a filter the caller already has (``POST /v1/certificates``): what is proven about a given ``w``.

The answer is the certificate a solve's result carries (:class:`cnnrelax.core.certificates.Certificate`), for the
caller's ``w`` instead of a selected trial's:

- zero loss, ``L(w) <= optimality_tol * ||y||^2``, proves a global minimum of the non-convex loss;
- the cone test at ``w`` (a filter that fits ``y``): for the direction ``r`` the caller names, or else for the
  directions ``r_t`` of trials ``t = 0 .. trials-1`` of a solve with this ``seed`` (``certified_by_trials``: the
  trials that would return ``w``); and the coverage, the chance that a random ``r ~ N(0, I)`` does;
- stationarity (the relative gradient norm) and, under constraints, the KKT measures
  (:mod:`cnnrelax.core.certificates.kkt`);
- one sentence saying what is proven and what is not.

Nothing is polished or moved: the certificate speaks of ``w`` exactly as given.
:func:`run_certify_job` is what a worker runs for a queued certification (job kind ``certify``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from .core.certificates import (
    Certificate,
    ConeCertificate,
    Coverage,
    certify,
    cone_certificate,
    cone_not_applicable,
    coverage,
    optimality_cone,
    summary,
)
from .core.options import SolveOptions
from .core.problem import ConvProblem, FloatArray
from .core.trials import trial_direction
from .errors import InvalidParameterError
from .results import CertificateOut, certificate_dict, json_safe
from .specs import Arrays, CertifySpec
from .types import ShouldStop

#: The largest relative gradient norm of a given filter that counts as a stationary point.
STATIONARY_TOL = 1e-6


def checked_filter(problem: ConvProblem, w: Any, parameter: str = "w") -> FloatArray:
    """``w`` as a finite float64 vector of the problem's filter length ``m`` (422 naming ``parameter`` otherwise)."""
    arr = np.asarray(w, dtype=np.float64)
    if arr.shape != (problem.m,):
        raise InvalidParameterError(parameter, f"{parameter} must have the filter's length m={problem.m} "
                                               f"(k={problem.k} patches of length m from rows of length "
                                               f"d={problem.d}), got shape {arr.shape}.")
    if not np.isfinite(arr).all():
        raise InvalidParameterError(parameter, f"{parameter} contains NaN or infinite values.")
    return arr


def certify_filter(problem: ConvProblem, w: FloatArray, options: SolveOptions, r: FloatArray | None = None,
                   should_stop: ShouldStop | None = None) -> Certificate:
    """The certificate of a given filter ``w`` (module docstring).

    Parameters
    ----------
    problem : the problem data.
    w : the filter to certify (length ``m``).
    options : the solve's options: ``constraints``, ``trials`` and ``seed`` (the directions tested when ``r`` is not
        given), ``coverage_samples`` and the tolerances.
    r : one direction to test instead of the trials' directions.
    should_stop : polled while coverage is sampled.

    Returns
    -------
    The certificate.
    """
    options.validate()
    constraints = options.constraints.resolve(problem.m)
    directions = [np.asarray(r, dtype=np.float64)] if r is not None else \
        [trial_direction(options.seed, t, problem.m) for t in range(options.trials)]
    pre = problem.preactivations(w)  # one pass at w for the fit check, the cone and the certificate's measures
    if cone_not_applicable(problem, w, constraints, options.fit_tol, pre) is not None:
        base = certify(problem, w, directions[0], constraints=constraints, optimality_tol=options.optimality_tol,
                       cone_tol=options.cone_tol, fit_tol=options.fit_tol, pre=pre)
        skipped = coverage(problem, w, samples=0, constraints=constraints, fit_tol=options.fit_tol)
        return replace(base, coverage=skipped, summary=given_filter_summary(base, base.cone, skipped, r is not None))
    cone, ties = optimality_cone(problem, w, constraints, pre=pre)  # built once, for every direction below
    base = certify(problem, w, directions[0], constraints=constraints, optimality_tol=options.optimality_tol,
                   cone_tol=options.cone_tol, fit_tol=options.fit_tol, cone=cone, pre=pre)
    del pre
    verdicts = [cone_certificate(problem, w, direction, constraints=constraints, tol=options.cone_tol,
                                 fit_tol=options.fit_tol, cone=cone) for direction in directions]
    certified_by = [t for t, verdict in enumerate(verdicts) if verdict.certified]
    closest = min(range(len(verdicts)), key=lambda t: verdicts[t].residual or 0.0)
    tied = f" ({ties} tied patches X_ij w = 0 counted with multipliers in [0, v_i])" if ties else ""
    if r is not None:
        reason = verdicts[0].reason
    elif certified_by:
        reason = (f"The directions r of trial(s) {certified_by} (of trials 0..{options.trials - 1} with seed "
                  f"{options.seed}) lie in the cone of optimality at w{tied}: a solve with this seed returns w from "
                  "the first of them.")
    else:
        reason = (f"None of the {options.trials} trial directions of seed {options.seed} makes w LP-optimal (closest: "
                  f"trial {closest}, relative residual {verdicts[closest].residual:.3g} > {options.cone_tol:g}){tied}; "
                  "the coverage says how likely another direction is to.")
    cone_cert = ConeCertificate(
        applicable=True, certified=bool(certified_by), residual=verdicts[closest].residual,
        tolerance=options.cone_tol, positive_multipliers=verdicts[closest].positive_multipliers, reason=reason,
        tied_patches=ties, certified_by_trials=[] if r is not None else certified_by,
    )
    estimate = coverage(problem, w, samples=options.coverage_samples, seed=options.seed, constraints=constraints,
                        tol=options.cone_tol, fit_tol=options.fit_tol, cone=cone, should_stop=should_stop)
    return replace(base, cone=cone_cert, coverage=estimate,
                   summary=given_filter_summary(base, cone_cert, estimate, r is not None))


def given_filter_summary(base: Certificate, cone: ConeCertificate, estimate: Coverage, one_direction: bool) -> str:
    """The sentence of a given filter: zero loss with what the relaxation would do with it, or the solve's wording
    (noisy labels, constraints that stop the fit, no stationarity) when the loss is not zero."""
    if not base.global_optimum and base.kkt is not None:
        return summary(False, base.loss, base.loss_threshold, cone, base.relative_gradient_norm, base.kkt)
    if not base.global_optimum:
        gradient = base.relative_gradient_norm or 0.0
        text = (f"w does not reach zero loss (L = {base.loss:.3g} > {base.loss_threshold:.3g}), so zero loss cannot "
                "certify it as a global minimum, and the cone test applies only to a filter that fits y. ")
        if gradient <= STATIONARY_TOL:
            return text + (f"It is a stationary point of the loss (relative gradient norm {gradient:.3g}): the labels "
                           "are noisy, or w is a local minimum; a solve tells which (zero loss elsewhere, or not).")
        return text + (f"It is not even a stationary point (relative gradient norm {gradient:.3g} > "
                       f"{STATIONARY_TOL:g}): it is no minimum at all, and a solve (or w_init = w) lowers the loss.")
    text = (f"Zero loss (L = {base.loss:.3g} <= {base.loss_threshold:.3g}): w is a global minimum of the non-convex "
            "training loss.")
    if one_direction:
        text += (" The relaxation with the direction r given returns it." if cone.certified else
                 " The relaxation with the direction r given does not return it (r is outside its cone of optimality).")
    elif cone.certified_by_trials:
        text += f" Trial(s) {cone.certified_by_trials} of a solve with this seed would return it."
    else:
        text += " None of the trial directions of this seed would return it."
    if estimate.applicable and estimate.estimate is not None:
        text += f" A random direction returns it with probability about {estimate.estimate:.2g}"
        text += (f" ({estimate.trials_for_99} trials reach 99%)." if estimate.trials_for_99 is not None else
                 " (too rarely to promise a number of trials).")
    return text


def certificate_json(certificate: Certificate) -> dict[str, Any]:
    """The certificate's wire JSON (:class:`cnnrelax.results.CertificateOut`), as a solve's result carries it."""
    out: dict[str, Any] = CertificateOut.model_validate(json_safe(certificate_dict(certificate))).model_dump(
        mode="json", exclude_none=False)
    return out


def run_certify_job(spec: CertifySpec, arrays: Arrays | None, should_stop: ShouldStop | None = None) -> dict[str, Any]:
    """Build the spec's problem and certify its filter; return the certificate's wire JSON."""
    problem, _ = spec.build_problem(arrays)
    w = checked_filter(problem, spec.w)
    r = None if spec.r is None else checked_filter(problem, spec.r, "r")
    return certificate_json(certify_filter(problem, w, spec.options(), r, should_stop))
