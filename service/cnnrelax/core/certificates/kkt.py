"""KKT conditions of the constrained training problem at a filter: stationarity of the Lagrangian, complementary
slackness, feasibility, and the multipliers of the active constraints, named.

The problem is ``min L(w) = sum_i (y_i - f_w(x_i))^2`` over ``w`` in ``C``, the constraints of SPEC 2.4 written in
their linear form ``a^T w <= b``: ``w_i <= upper_i`` (normal ``e_i``), ``w_i >= lower_i`` (normal ``-e_i``), the rows
of ``G w <= h``, the rows of ``E w = e`` (two-signed), ``||w||_2 <= l2_bound`` (normal ``w / ||w||``) and
``||w||_1 <= l1_bound`` (normal ``sign(w)``, the subgradient with 0 at zero entries: a conservative choice). At a
local minimum (under a constraint qualification) there are ``mu_a >= 0`` and free ``lambda`` with

    grad L(w) + sum_a mu_a n_a + E^T lambda = 0          (stationarity of the Lagrangian)
    mu_a (b_a - a^T w) = 0                                (complementary slackness)
    w in C                                                (feasibility)

``grad L(w) = -2 sum_i (y_i - f_w(x_i)) g_i`` with ``g_i = sum_j sigma'(X_ij w) X_ij``. The multipliers are found by
non-negative least squares on the active set (constraints within ``active_tol`` of equality, in normalised units,
SPEC 4c), equality multipliers split into two non-negative parts. Every measure is scale-free:

- ``residual`` = ``||grad L + N^T mu + E^T lambda|| / (2 ||y|| ||G||_F)``: without constraints it is the relative
  gradient norm of :func:`cnnrelax.core.certificates.relative_gradient_norm`;
- ``complementary_slackness`` = ``max_a mu_a |slack_a| / ||y||^2`` (a multiplier times a slack is a loss);
- ``violation`` = the largest violation relative to ``1 + max |w| / w_scale``.

A constraint *binds* when its multiplier is positive (``mu_a ||n_a|| > binding_tol * 2 ||y|| ||G||_F``): it, and not
the labels, stops the loss from falling. This tells "no filter within the constraints fits the labels" apart from
"the labels are noisy" (:func:`constrained_summary`). KKT proves first-order optimality within the constraints,
never a global minimum (only zero loss does).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import nnls

from ..constraints import ResolvedConstraints
from ..problem import ConvProblem, FloatArray

DEFAULT_KKT_TOL = 1e-6
DEFAULT_ACTIVE_TOL = 1e-6
DEFAULT_BINDING_TOL = 1e-6
DEFAULT_FEASIBILITY_TOL = 1e-8


@dataclass(frozen=True)
class KKTCertificate:
    """The KKT measures of a filter for a constrained problem (module docstring)."""

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


def imposes_nothing(constraints: ResolvedConstraints | None) -> bool:
    """True for no constraints at all (then the KKT conditions are plain stationarity)."""
    return constraints is None or (
        constraints.lower is None and constraints.upper is None and constraints.l1_bound is None
        and constraints.l2_bound is None and constraints.equality is None and constraints.inequality is None)


@dataclass(frozen=True)
class _Constraint:
    name: str
    normal: FloatArray  # outward normal in the user's units
    slack: float        # b - a^T w in the user's units (>= 0 when feasible)
    unit_slack: float   # the same in normalised units, relative (decides activity)


def _inequalities(constraints: ResolvedConstraints, w: FloatArray, kappa: float) -> list[_Constraint]:
    """Every one-signed constraint ``a^T w <= b`` with its outward normal and slack (user's and normalised units)."""
    m = w.shape[0]
    eye = np.eye(m)
    u = w / kappa
    scale = 1.0 + float(np.max(np.abs(u), initial=0.0))
    out: list[_Constraint] = []
    if constraints.upper is not None:
        out += [_Constraint(f"upper[{i}]", eye[i], float(constraints.upper[i] - w[i]),
                            float((constraints.upper[i] - w[i]) / kappa) / scale)
                for i in range(m) if np.isfinite(constraints.upper[i])]
    if constraints.lower is not None:
        out += [_Constraint(f"lower[{i}]", -eye[i], float(w[i] - constraints.lower[i]),
                            float((w[i] - constraints.lower[i]) / kappa) / scale)
                for i in range(m) if np.isfinite(constraints.lower[i])]
    if constraints.inequality is not None:
        G, h = constraints.inequality
        for i, (row, bound) in enumerate(zip(G, h, strict=True)):
            norm = float(np.linalg.norm(row)) or 1.0
            slack = float(bound - row @ w)
            out.append(_Constraint(f"inequality[{i}]", row, slack, slack / (norm * kappa) / scale))
    if constraints.l2_bound is not None:
        norm = float(np.linalg.norm(w))
        normal = w / norm if norm > 0 else np.zeros(m)
        slack = constraints.l2_bound - norm
        out.append(_Constraint("l2_bound", normal, slack, slack / kappa / scale))
    if constraints.l1_bound is not None:
        slack = constraints.l1_bound - float(np.abs(w).sum())
        out.append(_Constraint("l1_bound", np.sign(w), slack, slack / kappa / scale))
    return out


def kkt_certificate(problem: ConvProblem, w: FloatArray, constraints: ResolvedConstraints, *,
                    tol: float = DEFAULT_KKT_TOL, active_tol: float = DEFAULT_ACTIVE_TOL,
                    binding_tol: float = DEFAULT_BINDING_TOL,
                    feasibility_tol: float = DEFAULT_FEASIBILITY_TOL) -> KKTCertificate:
    """The KKT measures of ``w`` for the problem under ``constraints`` (module docstring).

    Parameters
    ----------
    problem : the problem data.
    w : the filter.
    constraints : the resolved constraints (at least one).
    tol : the largest relative residual and complementary slackness that count as a KKT point.
    active_tol : constraints with a relative slack at most this are active (they may carry a multiplier).
    binding_tol : an active constraint binds when its relative multiplier exceeds this.
    feasibility_tol : the largest relative violation that counts as feasible.

    Returns
    -------
    The verdict, the measures, the active constraints and their multipliers (user's units), and a sentence.
    """
    w = np.asarray(w, dtype=np.float64)
    kappa = problem.w_scale
    pre = problem.preactivations(w)
    residual_labels = problem.y - problem.predict_from(pre)
    product, g_norm = problem.gradient_moments(problem.gradient_weights(w, pre=pre), residual_labels)
    gradient = -2.0 * product
    y_norm = float(np.linalg.norm(problem.y))
    scale = max(2.0 * y_norm * g_norm, np.finfo(float).tiny)
    loss_scale = max(y_norm * y_norm, np.finfo(float).tiny)
    inequalities = _inequalities(constraints, w, kappa)
    active = [c for c in inequalities if c.unit_slack <= active_tol]
    equalities: list[tuple[str, FloatArray]] = []
    if constraints.equality is not None:
        E, _ = constraints.equality
        equalities = [(f"equality[{i}]", row) for i, row in enumerate(E)]
    columns = [c.normal for c in active] + [row for _, row in equalities] + [-row for _, row in equalities]
    if columns:
        N = np.column_stack(columns)
        norms = np.linalg.norm(N, axis=0)
        norms[norms == 0] = 1.0
        coefficients, _ = nnls(N / norms, -gradient, maxiter=50 * max(N.shape))
        multipliers_all = coefficients / norms
        stationarity = gradient + N @ multipliers_all
    else:
        multipliers_all = np.zeros(0)
        stationarity = gradient
    count = len(active)
    mu = multipliers_all[:count]
    lam = multipliers_all[count:count + len(equalities)] - multipliers_all[count + len(equalities):]
    relative = float(np.linalg.norm(stationarity)) / scale
    slackness = max((float(m_a * abs(c.slack)) for m_a, c in zip(mu, active, strict=True)), default=0.0) / loss_scale
    violation = constraints.relative_violation(w, kappa)
    binding = [c.name for m_a, c in zip(mu, active, strict=True)
               if m_a * float(np.linalg.norm(c.normal)) > binding_tol * scale]
    binding += [name for (name, row), value in zip(equalities, lam, strict=True)
                if abs(value) * float(np.linalg.norm(row)) > binding_tol * scale]
    stationary = bool(relative <= tol and slackness <= tol and violation <= feasibility_tol)
    names = ", ".join(c.name for c in active) or "none"
    if stationary:
        reason = (f"w satisfies the KKT conditions of the constrained problem: the Lagrangian is stationary (relative "
                  f"residual {relative:.3g} <= {tol:g}) with multipliers >= 0 on the active constraints ({names}), "
                  f"complementary slackness {slackness:.3g} and feasibility {violation:.3g}")
    else:
        failed = [f"relative residual {relative:.3g} > {tol:g}" if relative > tol else "",
                  f"complementary slackness {slackness:.3g} > {tol:g}" if slackness > tol else "",
                  f"violation {violation:.3g} > {feasibility_tol:g}" if violation > feasibility_tol else ""]
        reason = (f"w is not a KKT point of the constrained problem ({'; '.join(f for f in failed if f)}; active "
                  f"constraints: {names})")
    return KKTCertificate(
        stationary=stationary, residual=relative, complementary_slackness=slackness, violation=violation,
        tolerance=tol, active=[c.name for c in active],
        multipliers={c.name: float(m_a) for m_a, c in zip(mu, active, strict=True)},
        equality_multipliers={name: float(value) for (name, _), value in zip(equalities, lam, strict=True)},
        binding=binding, reason=reason,
    )


def constrained_summary(loss: float, threshold: float, kkt: KKTCertificate) -> str:
    """The sentence of a constrained result that did not reach zero loss: constraints that stop the fit, noisy
    labels, or no stationarity at all."""
    if not kkt.stationary:
        return (f"No filter reached zero loss (L = {loss:.3g} > {threshold:.3g}), and the filter is not a KKT point of "
                f"the constrained problem (relative residual {kkt.residual:.3g}, complementary slackness "
                f"{kkt.complementary_slackness:.3g}, violation {kkt.violation:.3g}; tolerance {kkt.tolerance:g}): "
                "nothing about its optimality is proven.")
    kkt_text = (f"it is a KKT point of the constrained problem (relative residual {kkt.residual:.3g}, complementary "
                f"slackness {kkt.complementary_slackness:.3g}): a first-order optimum within the constraints, not a "
                "proven global minimum")
    if kkt.binding:
        return (f"No filter within the constraints fits the labels near this one (L = {loss:.3g} > {threshold:.3g}): "
                f"the constraints {', '.join(kkt.binding)} are active with positive multipliers, so they, not the "
                f"labels, stop the fit; {kkt_text}.")
    return (f"No filter reached zero loss (L = {loss:.3g} > {threshold:.3g}) and no constraint binds at the filter "
            f"(active: {', '.join(kkt.active) or 'none'}, all with zero multipliers): the labels are noisy, no filter "
            f"near this one fits them with or without the constraints; {kkt_text}.")
