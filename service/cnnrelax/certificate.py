"""Certificates (SPEC 4): zero loss proves a global minimum; cone membership proves LP optimality.

For a filter ``w`` that fits ``y`` (``sum_j (X_ij w)_+ = y_i``), the pair ``(w, z_ij = (X_ij w)_+)`` is
optimal for the LP ``max r^T w`` iff ``r in cone{g_i}`` with ``g_i = sum_{j : X_ij w > 0} X_ij``
(paper eq. 12-14). Membership is measured by non-negative least squares:
``rho = min_{v >= 0} ||G^T v - r|| / ||r||``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.optimize import nnls

from .constraints import ResolvedConstraints
from .problem import ConvProblem, FloatArray

DEFAULT_CONE_TOL = 1e-6
DEFAULT_FIT_TOL = 1e-6
DEFAULT_OPTIMALITY_TOL = 1e-10


@dataclass(frozen=True)
class ConeCertificate:
    """Outcome of the cone-membership test at one filter and one direction ``r``."""

    applicable: bool
    certified: bool
    residual: float | None
    tolerance: float
    positive_multipliers: int | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Certificate:
    """Everything a result carries to prove (or not) that it is the global optimum."""

    global_optimum: bool
    loss: float
    loss_threshold: float
    fit_residual: float
    cone: ConeCertificate

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["cone"] = self.cone.to_dict()
        return out


def fit_residual(problem: ConvProblem, w: FloatArray) -> float:
    """``max_i |sum_j (X_ij w)_+ - y_i|`` relative to ``1 + max_i |y_i|``."""
    return float(np.max(np.abs(problem.predict(w) - problem.y)) / (1.0 + np.max(np.abs(problem.y))))


def _nnls_residual(generators: FloatArray, free: FloatArray, r: FloatArray) -> tuple[float, int]:
    """``min ||G^T v + E^T u - r||`` over ``v >= 0`` and free ``u``, and the count of ``v_i > 0``.

    Column generation keeps the NNLS small when ``G`` has many rows: solve on a subset of generators, then
    add every generator ``g`` with ``g^T (r - G_S^T v_S) > 0`` (the optimality condition) until none is left.
    """
    if free.shape[0]:
        # Free multipliers: project them out (r and G onto the orthogonal complement of row-space(E)).
        Q, _ = np.linalg.qr(free.T)
        proj = lambda M: M - (M @ Q) @ Q.T  # noqa: E731
        generators, r = proj(generators), proj(r[None, :])[0]
    count, m = generators.shape
    if count == 0:
        return float(np.linalg.norm(r)), 0
    scale = np.linalg.norm(generators, axis=1).max() * max(float(np.linalg.norm(r)), 1e-300)
    chosen = np.argsort(-(generators @ r))[: min(count, 4 * m + 10)]
    for _ in range(count):
        sub = generators[chosen]
        v, res = nnls(sub.T, r, maxiter=50 * max(sub.shape))
        residual = r - sub.T @ v
        gain = generators @ residual
        gain[chosen] = -np.inf
        entering = np.flatnonzero(gain > 1e-12 * scale)
        if entering.size == 0:
            break
        chosen = np.concatenate([chosen[v > 0], entering[np.argsort(-gain[entering])][: 4 * m + 10]])
    top = float(np.max(v)) if v.size else 0.0
    return float(res), int(np.sum(v > 1e-12 * max(top, 1.0)))


def cone_certificate(
    problem: ConvProblem,
    w: FloatArray,
    r: FloatArray,
    *,
    constraints: ResolvedConstraints | None = None,
    tol: float = DEFAULT_CONE_TOL,
    fit_tol: float = DEFAULT_FIT_TOL,
) -> ConeCertificate:
    """Check ``r in cone{g_i(w)}`` (plus the normals of active linear constraints on ``w``)."""
    fit = fit_residual(problem, w)
    if fit > fit_tol:
        return ConeCertificate(
            applicable=False, certified=False, residual=None, tolerance=tol, positive_multipliers=None,
            reason=f"not applicable: the filter does not fit y (relative fit residual {fit:.3g} > {fit_tol:g}), "
            "so it is not an optimum of the LP's zero-loss face",
        )
    if constraints is not None and not constraints.is_linear:
        scale = 1.0 + float(np.max(np.abs(w)))
        norm_active = (
            (constraints.l1_bound is not None and np.abs(w).sum() >= constraints.l1_bound - 1e-7 * scale)
            or (constraints.l2_bound is not None and np.linalg.norm(w) >= constraints.l2_bound - 1e-7 * scale)
        )
        if norm_active:
            return ConeCertificate(
                applicable=False, certified=False, residual=None, tolerance=tol, positive_multipliers=None,
                reason="not applicable: a norm bound on w is active, and its normal cone is not a finite cone",
            )
    G = problem.active_sums(w)
    G = G[np.any(G != 0, axis=1)]
    free = np.zeros((0, problem.m))
    if constraints is not None:
        one, free = constraints.active_normals(w, 1e-7 * (1.0 + float(np.max(np.abs(w)))))
        G = np.vstack([G, one])
    rnorm = float(np.linalg.norm(r))
    if rnorm == 0:
        return ConeCertificate(True, True, 0.0, tol, 0, "r = 0 lies in every cone")
    res, positive = _nnls_residual(G, free, r)
    rho = res / rnorm
    certified = rho <= tol
    return ConeCertificate(
        applicable=True, certified=certified, residual=rho, tolerance=tol, positive_multipliers=positive,
        reason=("r lies in the cone of the active patch sums: (w, z) is optimal for the LP" if certified
                else "r is outside the cone of the active patch sums: w is not the LP optimum for this r"),
    )


def certify(
    problem: ConvProblem,
    w: FloatArray,
    r: FloatArray,
    *,
    constraints: ResolvedConstraints | None = None,
    optimality_tol: float = DEFAULT_OPTIMALITY_TOL,
    cone_tol: float = DEFAULT_CONE_TOL,
    fit_tol: float = DEFAULT_FIT_TOL,
) -> Certificate:
    """Zero-loss global optimality (``L(w) <= tol * ||y||^2``) and the cone test at ``w``."""
    loss = problem.loss(w)
    threshold = optimality_tol * max(float(problem.y @ problem.y), np.finfo(float).tiny)
    return Certificate(
        global_optimum=bool(loss <= threshold),
        loss=loss,
        loss_threshold=threshold,
        fit_residual=fit_residual(problem, w),
        cone=cone_certificate(problem, w, r, constraints=constraints, tol=cone_tol, fit_tol=fit_tol),
    )
