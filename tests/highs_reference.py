"""The reference for every verdict test: the LP limit (SPEC 2.3) in the user's units, solved by HiGHS.

An independent formulation (one ``z_ij`` per sample and patch, no working set, no normalisation) and
an independent solver (scipy's ``linprog`` with HiGHS, whose simplex lands on exact vertices):

    max r^T w  s.t.  sum_j z_ij = y_i,  z_ij >= X_ij w,  z_ij >= 0,  and the constraints on w.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from cnnrelax import FilterConstraints
from cnnrelax.core.problem import ConvProblem

_STATUS = {0: "optimal", 2: "infeasible", 3: "unbounded"}


@dataclass(frozen=True)
class HighsLP:
    status: str
    value: float | None
    w: np.ndarray | None


def lp_by_highs(problem: ConvProblem, r: np.ndarray, constraints: FilterConstraints | None = None) -> HighsLP:
    """Solve the LP limit exactly as written, in the user's units. Norm bounds are not supported here."""
    n, k, m = problem.patches.shape
    c = (constraints or FilterConstraints()).resolve(m)
    assert c.l1_bound is None and c.l2_bound is None, "HiGHS reference: linear constraints only"
    nz = n * k
    # Variables [w (m), z (n*k)]; z_ij >= X_ij w  <=>  X_ij w - z_ij <= 0.
    A_ub = sp.hstack([sp.csr_matrix(problem.patches.reshape(nz, m)), -sp.identity(nz)], format="csr")
    b_ub = np.zeros(nz)
    if c.inequality is not None:
        G, h = c.inequality
        A_ub = sp.vstack([A_ub, sp.hstack([sp.csr_matrix(G), sp.csr_matrix((G.shape[0], nz))])], format="csr")
        b_ub = np.concatenate([b_ub, h])
    rows = np.repeat(np.arange(n), k)
    A_eq = sp.hstack([sp.csr_matrix((n, m)), sp.csr_matrix((np.ones(nz), (rows, np.arange(nz))), shape=(n, nz))],
                     format="csr")
    b_eq = problem.y.copy()
    if c.equality is not None:
        E, e = c.equality
        A_eq = sp.vstack([A_eq, sp.hstack([sp.csr_matrix(E), sp.csr_matrix((E.shape[0], nz))])], format="csr")
        b_eq = np.concatenate([b_eq, e])
    lower = c.lower if c.lower is not None else np.full(m, -np.inf)
    upper = c.upper if c.upper is not None else np.full(m, np.inf)
    bounds = [(lo if np.isfinite(lo) else None, hi if np.isfinite(hi) else None)
              for lo, hi in zip(lower, upper, strict=True)]
    bounds += [(0, None)] * nz
    cost = np.concatenate([-np.asarray(r, dtype=np.float64), np.zeros(nz)])
    res = linprog(cost, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=b_eq, bounds=bounds, method="highs")
    status = _STATUS.get(res.status, f"highs_status_{res.status}")
    if status != "optimal":
        return HighsLP(status, None, None)
    return HighsLP(status, float(-res.fun), np.asarray(res.x[:m]))
