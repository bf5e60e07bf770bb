"""The cone of optimality at a filter ``w`` (SPEC 4.2, paper eq. 12-14) and exact membership tests for it.

For a filter ``w`` that fits ``y`` every sample constraint ``s_i(w) <= y_i`` of the LP ``max r^T w`` is active,
and ``w`` is optimal iff

    r = sum_i v_i (g_i + sum_{j tied} theta_ij t_ij) + (active constraint normals),
    v_i >= 0,  theta_ij in [0, 1],

with ``g_i = sum_j sigma'(X_ij w) X_ij`` and the *tied* patches (``X_ij w = 0``, a kink): the subdifferential
there is ``[lo, hi]``, so ``g_i`` takes ``lo`` and the tied patch ``t_ij = (hi - lo) X_ij`` a multiplier
``lambda_ij = v_i theta_ij`` in ``[0, v_i]`` (ReLU: ``lo = 0``, ``hi = 1``). Smooth activations have no ties,
except squared ReLU's samples with no active patch (a zero label), where ``sum_j (X_ij w)_+^2 <= 0`` is
``X_ij w <= 0`` patch by patch: ``g_i = 0`` and each tied patch carries a free multiplier ``>= 0``. Equality
constraints add free multipliers: they are projected out first.

Membership is measured by ``rho(r) = dist(r, cone) / ||r||``: non-negative least squares (Lawson-Hanson with
column generation) when no patch is tied, a small bounded QP (Clarabel) when some are. Both verdicts are exact:
*inside* is shown by multipliers whose residual is at most ``tol ||r||``; *outside* by the residual ``e`` of the
projection, which lies in the polar cone (``g^T e <= 0`` for every generator, checked over all of them), and
``rho(r) >= r^T e / (||r|| ||e||)``. A polar vector found once rejects later directions by one product.

The cone's structure makes it cheap. Every generator of a filter that fits positive labels has ``g_i^T w > 0``,
so the cone lies in the half-space ``r^T w >= 0``: ``-w`` is a polar vector from the start (checked, as every
separator is), and rescaling each sample's generators to the slice ``g^T w = 1`` (which leaves the cone
unchanged) makes the largest scores ``g^T r`` pick the generators that matter, so column generation needs fewer
rounds (about 3x fewer at ``m = 50``).
"""

from __future__ import annotations

from typing import Callable

import clarabel
import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from scipy.optimize import nnls

from ..constraints import ResolvedConstraints
from ..problem import ConvProblem, FloatArray
from .measures import DEFAULT_FIT_TOL, TIE_RTOL, fit_residual

#: The slice rescaling divides a generator by ``max(cos(g, w), SLICE_COSINE_FLOOR) ||g||``.
SLICE_COSINE_FLOOR = 1e-1
#: A residual ``e`` is kept as a separator when ``max_g g^T e / ||e|| <= POLAR_TOL`` (generators of norm <= 1).
POLAR_TOL = 1e-10
#: Column generation enters generators whose gain exceeds this times ``||r||``.
ENTERING_TOL = 1e-12
#: Column generation enters about this many columns per dimension a round.
BATCH_PER_DIMENSION = 2
#: Column generation prices a pool of this many generators per dimension before all of them.
POOL_PER_DIMENSION = 32


class OptimalityCone:
    """The cone of directions ``r`` for which a filter is LP-optimal (module docstring), ready for many ``r``.

    Parameters
    ----------
    generators : ``(s, m)`` rows ``g_i``, one per sample that has active or tied patches.
    tie_rows : ``(t, m)`` tied patches (times the slope spread).
    tie_owner : ``(t,)`` the row of ``generators`` each tied patch belongs to.
    one_sided : ``(p, m)`` outward normals of active inequality constraints (multipliers ``>= 0``).
    free : ``(q, m)`` equality-constraint rows (free multipliers, projected out).
    axis : a vector with ``g^T axis > 0`` for most generators (the filter ``w``): rows are rescaled to the slice
        ``g^T axis = 1`` and ``-axis`` is tried as a first separator. None keeps the rows as given.
    """

    def __init__(self, generators: FloatArray, tie_rows: FloatArray, tie_owner: NDArray[np.intp],
                 one_sided: FloatArray, free: FloatArray, axis: FloatArray | None = None) -> None:
        m = generators.shape[1]
        self.m = m
        self._Q: FloatArray | None = None
        if free.shape[0]:
            Q, _ = np.linalg.qr(free.T)
            self._Q = Q
        # One-sided normals are generators with no ties; appended after the samples.
        G = np.vstack([generators, one_sided]) if one_sided.shape[0] else generators
        G, T = self._project(G), self._project(tie_rows)
        owner = np.asarray(tie_owner, dtype=np.intp)
        unit_axis = None
        if axis is not None:
            projected_axis = self._project(np.asarray(axis, dtype=np.float64)[None, :])[0]
            axis_norm = float(np.linalg.norm(projected_axis))
            unit_axis = projected_axis / axis_norm if axis_norm > 0 else None
        norms = _row_norms(G)
        factors = np.ones(G.shape[0])
        if unit_axis is not None and G.shape[0]:
            factors = _slice_factors(G, norms, unit_axis)  # any positive factor per sample leaves the cone unchanged
        tie_factors = factors[owner] if T.shape[0] else np.ones(0)
        scale = max(float(np.max(norms * factors, initial=0.0)), float(np.max(_row_norms(T) * tie_factors,
                                                                                  initial=0.0)), np.finfo(float).tiny)
        self.G = G * (factors / scale)[:, None]  # the largest row has norm 1
        self.T = T * (tie_factors / scale)[:, None]
        self._batch = BATCH_PER_DIMENSION * m + 10  # columns that enter per column-generation round
        self.owner = owner
        self.has_ties = self.T.shape[0] > 0
        self.separators: list[FloatArray] = []
        self._axis = unit_axis
        # The least gain of the axis over the generators: when positive, a residual with a small polar excess
        # is repaired into an exact separator by moving it along -axis.
        self._axis_gap = 0.0
        if unit_axis is not None and self.G.shape[0]:
            self._axis_gap = float(np.min(self.G @ unit_axis))
            self._remember(-unit_axis)

    def _project(self, M: FloatArray) -> FloatArray:
        if self._Q is None or M.shape[0] == 0:
            return M
        return M - (M @ self._Q) @ self._Q.T

    def _gains(self, E: FloatArray) -> FloatArray:
        """Per sample, ``g_i^T e + sum_{tied j of i} (t_ij^T e)_+``: the most ``e`` can gain from its generators.

        ``E`` is one direction ``(m,)`` or several as columns ``(m, q)`` (one product for all of them).
        """
        values = self.G @ E
        if self.has_ties:
            np.add.at(values, self.owner, np.maximum(self.T @ E, 0.0))
        return values

    def _polar_excess(self, y: FloatArray) -> float:
        """``max_i g_i^T y + sum_{tied j of i} (t_ij^T y)_+``: ``<= 0`` exactly when ``y`` is in the polar cone."""
        return float(np.max(self._gains(y), initial=-np.inf))

    def residual(self, r: FloatArray, scores: FloatArray | None = None,
                 enough: float = 0.0) -> tuple[float, int, FloatArray]:
        """``min ||M x - r||`` over the cone's multipliers (``r`` projected), positive multipliers, the residual.

        Parameters
        ----------
        r : a direction of length ``m``.
        scores : ``_gains(r)`` when already computed (for many directions at once).
        enough : stop as soon as a residual of at most this is found (0: the exact distance).

        Returns
        -------
        The distance from ``r`` to the cone (or a residual ``<= enough``), the number of positive sample
        multipliers, and the residual vector ``r - M x`` (a separating vector when the distance is positive).
        """
        r = self._project(np.asarray(r, dtype=np.float64)[None, :])[0]
        if self.G.shape[0] == 0:
            return float(np.linalg.norm(r)), 0, r
        gains = self._gains(r) if scores is None else np.array(scores, dtype=np.float64)
        return self._tied_residual(r, gains, enough) if self.has_ties else self._nnls(r, gains, enough)

    def _first_columns(self, gains: FloatArray) -> NDArray[np.intp]:
        return _top(gains, self._batch)

    def _nnls(self, r: FloatArray, gains: FloatArray, enough: float) -> tuple[float, int, FloatArray]:
        """Lawson-Hanson NNLS with column generation over the generators (exact, active-set).

        Columns enter from a pool of the best-scoring generators first; only when none in the pool would enter
        is every generator priced (one product), which either proves the residual optimal or grows the pool.
        """
        G = self.G
        count, m = G.shape
        batch = self._batch
        threshold = ENTERING_TOL * max(float(np.linalg.norm(r)), 1e-300)
        pool = _top(gains, POOL_PER_DIMENSION * m)  # indices into G
        in_pool = G[pool]
        chosen = _top(gains[pool], batch)  # indices into the pool
        v, res, residual = np.zeros(0), float(np.linalg.norm(r)), r
        for _ in range(count):
            sub = in_pool[chosen]
            v, res = nnls(sub.T, r, maxiter=50 * max(sub.shape))
            residual = r - sub.T @ v
            if res <= enough:
                break
            gain = in_pool @ residual
            gain[chosen] = -np.inf
            entering = np.flatnonzero(gain > threshold)
            if entering.size == 0:  # optimal over the pool: price every generator
                if pool.size == count:
                    break  # the pool is every generator: res is the distance
                outside = G @ residual
                outside[pool] = -np.inf
                fresh = np.flatnonzero(outside > threshold)
                if fresh.size == 0:
                    break  # optimal over all generators: res is the distance
                fresh = fresh[_top(outside[fresh], batch)]
                entering = np.arange(pool.size, pool.size + fresh.size)
                pool = np.concatenate([pool, fresh])
                in_pool = np.vstack([in_pool, G[fresh]])
                gain = np.concatenate([gain, outside[fresh]])
            chosen = np.concatenate([chosen[v > 0], entering[_top(gain[entering], batch)]])
        top = float(np.max(v)) if v.size else 0.0
        return float(res), int(np.sum(v > 1e-12 * max(top, 1.0))), residual

    def _tied_residual(self, r: FloatArray, gains: FloatArray, enough: float) -> tuple[float, int, FloatArray]:
        """The bounded QP ``min ||G_S^T v + T_S^T lambda - r||``, ``0 <= lambda_ij <= v_i``, over samples ``S``.

        Column generation by sample: a sample enters when ``g_i^T e + sum_j (t_ij^T e)_+ > 0`` for the
        current residual ``e`` (the KKT condition it would violate).
        """
        count, m = self.G.shape
        batch = self._batch
        rnorm = max(float(np.linalg.norm(r)), 1e-300)
        chosen = self._first_columns(gains)
        residual, v = r, np.zeros(0)
        for _ in range(count):
            v, residual = self._tied_qp(chosen, r)
            if float(np.linalg.norm(residual)) <= enough:
                break
            gain = self._gains(residual)
            gain[chosen] = -np.inf
            entering = np.flatnonzero(gain > 1e-10 * rnorm)
            if entering.size == 0:
                break
            keep = chosen[v > 1e-12 * max(float(np.max(v, initial=0.0)), 1e-300)]
            chosen = np.concatenate([keep, entering[_top(gain[entering], batch)]])
        top = float(np.max(v, initial=0.0))
        return float(np.linalg.norm(residual)), int(np.sum(v > 1e-9 * max(top, 1e-300))), residual

    def _tied_qp(self, chosen: NDArray[np.intp], r: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Solve the restricted QP with Clarabel; return ``v`` and the residual ``r - M x``."""
        m = self.m
        position = {int(i): p for p, i in enumerate(chosen)}
        ties = np.flatnonzero(np.isin(self.owner, chosen))
        s, t = len(chosen), len(ties)
        Gs, Ts = self.G[chosen], self.T[ties]
        owners = np.array([position[int(i)] for i in self.owner[ties]], dtype=np.intp)
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

    def member(self, r: FloatArray, tol: float) -> tuple[bool, float, int]:
        """Is ``r`` within ``tol * ||r||`` of the cone? Records a separating vector when it is not.

        Returns
        -------
        The verdict, the relative residual ``rho`` and the count of positive multipliers.
        """
        rnorm = float(np.linalg.norm(r))
        if rnorm == 0.0:
            return True, 0.0, 0
        res, positive, residual = self.residual(r)
        rho = res / rnorm
        if rho > tol:
            self._remember(residual)
        return rho <= tol, rho, positive

    def _remember(self, y: FloatArray) -> None:
        """Keep ``y`` (normalised) as a separator once it is checked to lie in the polar cone.

        The residual of a projection lies in the polar cone only up to the solver's rounding; when the axis has a
        positive gain on every generator, ``y - (excess / gap) axis`` removes that excess, and is checked again.
        """
        norm = float(np.linalg.norm(y))
        if norm == 0 or len(self.separators) >= 4 * self.m + 64:
            return
        y = y / norm
        excess = self._polar_excess(y)
        if excess > POLAR_TOL and self._axis is not None and self._axis_gap > 0:
            y = y - (2.0 * excess / self._axis_gap) * self._axis
            y = y / float(np.linalg.norm(y))
            excess = self._polar_excess(y)
        if excess <= POLAR_TOL:
            self.separators.append(y)

    def _separated(self, direction: FloatArray, bound: float) -> bool:
        """Some known polar vector ``y`` has ``direction^T y > bound``: the direction is outside, exactly."""
        return bool(self.separators) and float(np.max(np.vstack(self.separators) @ direction)) > bound

    def members(self, R: FloatArray, tol: float, should_stop: Callable[[], bool] | None = None) -> NDArray[np.bool_]:
        """Verdicts for the rows of ``R`` (many directions): known separators first, one product for all scores.

        Each verdict is exact, as :meth:`member`'s: inside when multipliers leave a residual of at most
        ``tol ||r||``; outside when a polar vector proves ``rho > tol``. ``should_stop`` is polled between
        directions; when it answers True the remaining verdicts stay False.
        """
        R = np.asarray(R, dtype=np.float64)
        verdicts = np.zeros(R.shape[0], dtype=bool)
        norms = _row_norms(R)
        projected = self._project(R)
        open_rows = np.flatnonzero(norms > 0)
        verdicts[norms == 0] = True
        if self.separators and open_rows.size:
            bounds = np.max(np.vstack(self.separators) @ projected[open_rows].T, axis=0)
            open_rows = open_rows[bounds <= tol * norms[open_rows]]
        if self.G.shape[0] == 0:
            verdicts[open_rows] = np.linalg.norm(projected[open_rows], axis=1) <= tol * norms[open_rows]
            return verdicts
        scores = self._gains(projected[open_rows].T) if open_rows.size else np.zeros((0, 0))
        for column, index in enumerate(open_rows):
            if should_stop is not None and should_stop():
                break
            r, bound = projected[index], tol * norms[index]
            if self._separated(r, bound):
                continue  # rho >= r^T y / ||r|| > tol: outside, by an exact separating vector
            res, _, residual = self.residual(r, scores[:, column], enough=bound)
            verdicts[index] = res <= bound
            if not verdicts[index]:
                self._remember(residual)
        return verdicts


def _top(values: FloatArray, count: int) -> NDArray[np.intp]:
    """Indices of the ``count`` largest values, largest first (all of them when there are fewer)."""
    if values.size > count:
        best = np.argpartition(-values, count)[:count]
        return best[np.argsort(-values[best])]
    return np.argsort(-values)


def _row_norms(M: FloatArray) -> FloatArray:
    """The Euclidean norm of each row (one pass, no temporary of ``M``'s size)."""
    norms: FloatArray = np.sqrt(np.einsum("ij,ij->i", M, M))
    return norms


def _slice_factors(G: FloatArray, norms: FloatArray, unit_axis: FloatArray) -> FloatArray:
    """Per row, ``1 / (max(cos(g, axis), floor) ||g||)``: rows with ``g^T axis > 0`` land on the slice
    ``g^T axis = 1`` (up to the floor); the rest are made unit; zero rows stay zero."""
    safe = np.where(norms > 0, norms, 1.0)
    cosines = (G @ unit_axis) / safe
    return 1.0 / (np.maximum(cosines, SLICE_COSINE_FLOOR) * safe)


def nnls_distance(generators: FloatArray, free: FloatArray, r: FloatArray) -> tuple[float, int]:
    """``min ||G^T v + E^T u - r||`` over ``v >= 0`` and free ``u``, and the count of ``v_i > 0``."""
    empty = np.zeros((0, generators.shape[1]))
    cone = OptimalityCone(generators, empty, np.zeros(0, dtype=np.intp), empty, free)
    res, positive, _ = cone.residual(r)
    return res, positive


def optimality_cone(problem: ConvProblem, w: FloatArray, constraints: ResolvedConstraints | None = None,
                    tie_tol: float = TIE_RTOL) -> tuple[OptimalityCone, int]:
    """The cone of optimality at ``w`` (which must fit ``y``) and the number of tied patches.

    Parameters
    ----------
    problem : the problem data.
    w : a filter that fits ``y``.
    constraints : constraints on ``w`` (their active normals join the cone).
    tie_tol : patches with ``|X_ij w| <= tie_tol ||X_ij|| ||w||`` count as tied.

    Returns
    -------
    The cone and the count of tied patches that carry data (``X_ij != 0``).
    """
    pre = problem.preactivations(w)
    tied = problem.ties(w, pre, tie_tol)
    active = problem.active_mask(w, pre, tie_tol)  # beyond the ties: the same relative bound
    G = problem.gradient_rows(w, active, pre)  # sigma' per patch; at a kink the lower end lo
    tied, spread = problem.activation.cone_ties(tied, active)  # the activation's tie rule (module docstring)
    tie_i, tie_j = np.nonzero(tied)
    tie_rows = problem.patches[tie_i, tie_j] * spread
    carries = np.any(tie_rows != 0, axis=1)
    tie_i, tie_rows = tie_i[carries], tie_rows[carries]
    keep = np.any(G != 0, axis=1)
    keep[tie_i] = True
    rows = np.flatnonzero(keep)
    where = np.full(problem.n, -1, dtype=np.intp)
    where[rows] = np.arange(rows.size)
    one = free = np.zeros((0, problem.m))
    if constraints is not None:
        kappa = problem.w_scale
        u = w / kappa
        one, free = constraints.in_units(kappa).active_normals(u, 1e-7 * (1.0 + float(np.max(np.abs(u)))))
    cone = OptimalityCone(G[rows], tie_rows, where[tie_i], one, free, axis=np.asarray(w, dtype=np.float64))
    return cone, int(tie_rows.shape[0])


def cone_not_applicable(problem: ConvProblem, w: FloatArray, constraints: ResolvedConstraints | None,
                        fit_tol: float = DEFAULT_FIT_TOL) -> str | None:
    """Why the cone test does not apply at ``w`` (a sentence), or None when it does."""
    fit = fit_residual(problem, w)
    if fit > fit_tol:
        return (f"not applicable: the filter does not fit y (relative fit residual {fit:.3g} > {fit_tol:g}), "
                "so it is not an optimum of the LP's zero-loss face")
    if constraints is not None and not constraints.is_linear:
        kappa = problem.w_scale
        unit, u = constraints.in_units(kappa), w / kappa
        slack = 1e-7 * (1.0 + float(np.max(np.abs(u))))
        if ((unit.l1_bound is not None and np.abs(u).sum() >= unit.l1_bound - slack)
                or (unit.l2_bound is not None and np.linalg.norm(u) >= unit.l2_bound - slack)):
            return "not applicable: a norm bound on w is active, and its normal cone is not a finite cone"
    return None
