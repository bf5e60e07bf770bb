"""The exact least-squares kernels of the cone's membership tests (:mod:`.cone`): non-negative least squares whose
answer is checked optimal, and the bounded QP of a cone with tied patches.

Every verdict of :class:`~.cone.OptimalityCone` rests on these answers being optimal, so none is trusted as returned:
:func:`checked_nnls` recomputes the residual from the multipliers and checks the KKT conditions (scipy's ``nnls``
can return a suboptimal point with a wrong residual norm, scipy/scipy#25389), falling back to bounded-variable least
squares; the tied QP is solved exactly as an NNLS over its vertices when samples carry few ties, else by Clarabel.
"""

from __future__ import annotations

import itertools

import clarabel
import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from scipy.optimize import lsq_linear, nnls

from ..problem import FloatArray

__all__ = ["EXPANDED_TIES", "NNLS_KKT_TOL", "checked_nnls", "expanded_nnls", "tied_qp"]

#: An NNLS solution is optimal when its KKT conditions hold to this (times ``||r||`` and the largest entry).
NNLS_KKT_TOL = 1e-9
#: A tied QP whose samples have at most this many tied patches each is solved as an NNLS over its vertices.
EXPANDED_TIES = 3


def expanded_nnls(Gs: FloatArray, Ts: FloatArray, owners: NDArray[np.intp],
                  r: FloatArray) -> tuple[FloatArray, FloatArray]:
    """The tied QP as an NNLS: ``{v g + sum_j lambda_j t_j : 0 <= lambda_j <= v}`` is the cone over the vertices
    ``g + sum_{j in J} t_j`` (every subset ``J``), so with few ties per sample the exact active-set NNLS over those
    columns solves it to rounding (Clarabel's interior point stops near ``1e-6 ||r||``, which can flip a verdict
    at ``tol = 1e-6``). Returns ``v`` (each sample's multipliers summed) and the residual."""
    columns, column_owner = [], []
    for sample in range(Gs.shape[0]):
        ties = Ts[owners == sample]
        count = ties.shape[0]
        subsets = np.array(list(itertools.product((0.0, 1.0), repeat=count))).reshape(2**count, count)
        columns.append(Gs[sample] + subsets @ ties)
        column_owner.append(np.full(subsets.shape[0], sample))
    M = np.vstack(columns)
    x, _, residual = checked_nnls(M, r)
    v: FloatArray = np.bincount(np.concatenate(column_owner), weights=x, minlength=Gs.shape[0]).astype(np.float64)
    return v, residual


def checked_nnls(rows: FloatArray, r: FloatArray) -> tuple[FloatArray, float, FloatArray]:
    """``min ||rows^T x - r||`` over ``x >= 0``: the multipliers, the residual's norm and the residual, all computed
    here from ``x``, and ``x`` checked optimal (the KKT conditions: no row gains on the residual, and the rows with
    ``x_i > 0`` lose nothing either).

    scipy's ``nnls`` (1.15 and later, scipy/scipy#25389) can return a suboptimal ``x`` with a wrong, even zero,
    ``rnorm`` (met here on rank-deficient tied rows): a verdict that trusted ``rnorm`` would call a direction
    inside the cone by mistake. So ``rnorm`` is never used, and when the optimality check fails the problem is solved
    again by :func:`scipy.optimize.lsq_linear`'s bounded-variable least squares.
    """
    if rows.shape[0] == 0:  # (scipy's nnls aborts the process on an empty matrix)
        return np.zeros(0), float(np.linalg.norm(r)), r
    x, _ = nnls(rows.T, r, maxiter=50 * max(rows.shape))
    residual: FloatArray = r - rows.T @ x
    scale = max(float(np.linalg.norm(r)), 1e-300) * max(float(np.max(np.abs(rows), initial=0.0)), 1.0)
    gain = rows @ residual  # optimal iff no gain is positive, and none is negative where x > 0
    if max(float(np.max(gain)), float(np.max(np.abs(gain[x > 0]), initial=0.0))) > NNLS_KKT_TOL * scale:
        x = lsq_linear(rows.T, r, bounds=(0.0, np.inf), method="bvls", tol=1e-14).x
        x = np.maximum(x, 0.0)
        residual = r - rows.T @ x
    return x, float(np.linalg.norm(residual)), residual


def tied_qp(Gs: FloatArray, Ts: FloatArray, owners: NDArray[np.intp], r: FloatArray) -> tuple[FloatArray, FloatArray]:
    """``min ||Gs^T v + Ts^T lambda - r||`` over ``v >= 0`` and ``0 <= lambda_ij <= v_i`` (tied patch ``j`` of sample
    ``i = owners[j]``): exactly by NNLS over its vertices when every sample has few tied patches
    (:func:`expanded_nnls`), else with Clarabel; returns ``v`` and the residual."""
    m = Gs.shape[1]
    s, t = Gs.shape[0], Ts.shape[0]
    if int(np.max(np.bincount(owners, minlength=s), initial=0)) <= EXPANDED_TIES:
        return expanded_nnls(Gs, Ts, owners, r)
    width = s + t + m
    # A x + slack = b: the zero cone ties the residual e to the multipliers, the rest are signs.
    zero = sp.hstack([sp.csr_matrix(Gs.T), sp.csr_matrix(Ts.T), -sp.identity(m)], format="csr")
    nonneg_v = sp.hstack([-sp.identity(s), sp.csr_matrix((s, t + m))], format="csr")
    nonneg_l = sp.hstack([sp.csr_matrix((t, s)), -sp.identity(t), sp.csr_matrix((t, m))], format="csr")
    upper = sp.hstack([sp.csr_matrix((-np.ones(t), (np.arange(t), owners)), shape=(t, s)), sp.identity(t),
                       sp.csr_matrix((t, m))], format="csr")
    A = sp.vstack([zero, nonneg_v, nonneg_l, upper], format="csc")
    b = np.concatenate([r, np.zeros(s + 2 * t)])
    P = sp.csc_matrix((np.ones(m), (np.arange(s + t, width), np.arange(s + t, width))), shape=(width, width))
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    settings.tol_gap_abs = settings.tol_gap_rel = settings.tol_feas = 1e-12
    solver = clarabel.DefaultSolver(P, np.zeros(width), A, b,
                                    [clarabel.ZeroConeT(m), clarabel.NonnegativeConeT(s + 2 * t)], settings)
    x = np.asarray(solver.solve().x)
    v, lam = np.maximum(x[:s], 0.0), np.clip(x[s:s + t], 0.0, None)
    lam = np.minimum(lam, v[owners]) if t else lam
    residual = r - Gs.T @ v - (Ts.T @ lam if t else 0.0)
    return v, residual
