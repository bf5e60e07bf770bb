"""Certificates (SPEC 4): zero loss proves a global minimum; cone membership proves LP optimality.

For a filter ``w`` that fits ``y`` (``sum_j (X_ij w)_+ = y_i``) every sample constraint of the LP
``max r^T w  s.t.  s_i(w) <= y_i`` is active, and ``w`` is optimal iff (KKT, paper eq. 12-14)

    r = sum_i v_i (g_i + sum_{j tied} theta_ij X_ij) + (active constraint normals),
    v_i >= 0,  theta_ij in [0, 1],

with ``g_i = sum_{j : X_ij w > 0} X_ij`` and the *tied* patches ``X_ij w = 0`` (blank pixels under the
filter): the subgradient of ``(u)_+`` at 0 is ``[0, 1]``, so a tied patch may carry any multiplier
``lambda_ij = v_i theta_ij`` in ``[0, v_i]`` (SPEC 4). Membership is measured by the least-squares
distance ``rho = min ||M x - r|| / ||r||`` over those multipliers: non-negative least squares when no
patch is tied, a small bounded QP (Clarabel) when some are. Equality constraints on ``w`` add free
multipliers: they are projected out first.

Other activations (:mod:`cnnrelax.core.activations`): ``g_i = sum_j sigma'(X_ij w) X_ij``. At a kink of a
piecewise-linear ``sigma = max(lo u, hi u)`` the slope may be anything in ``[lo, hi]``: ``g_i`` takes ``lo``
and the tied patch ``(hi - lo) X_ij`` a multiplier in ``[0, v_i]`` (ReLU: ``lo = 0``, ``hi = 1``). Smooth
activations have no ties, except squared ReLU's samples with no active patch (a zero label), where
``sum_j (X_ij w)_+^2 <= 0`` is ``X_ij w <= 0`` patch by patch: ``g_i = 0`` and each tied patch carries a free
multiplier ``>= 0``.

Coverage: the probability ``p`` that ``r ~ N(0, I)`` lies in this cone is the per-trial success
probability at ``w`` (Theorem 1). A seeded Monte Carlo estimate with a Wilson 95% interval gives the
trials ``T = ceil(log(1 - q) / log(1 - p))`` that reach a success probability ``q``. Rejections are
cheap: every direction found outside the cone leaves a separating vector ``y`` (``y`` in the polar
cone, so ``rho(r) >= r^T y / (||r|| ||y||)``) that rejects later directions by one product.

Everything here is scale-free: the cone is unchanged by ``X -> a X`` and ``w -> (b/a) w``, ties and
active constraints are judged relative to ``||X_ij|| ||w||`` and to normalised constraint rows, and
the fit residual is relative to ``max |y|``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import clarabel
import numpy as np
import scipy.sparse as sp
from scipy.optimize import nnls

from .constraints import ResolvedConstraints
from .problem import ConvProblem, FloatArray

DEFAULT_CONE_TOL = 1e-6
DEFAULT_FIT_TOL = 1e-6
DEFAULT_OPTIMALITY_TOL = 1e-10
DEFAULT_TIE_TOL = 1e-9
DEFAULT_COVERAGE_SAMPLES = 256
COVERAGE_CONFIDENCE = 0.95
_Z95 = 1.959963984540054


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


@dataclass(frozen=True)
class Coverage:
    """Monte Carlo estimate of ``P(r ~ N(0, I) certifies w)``, the per-trial success probability at ``w``."""

    applicable: bool
    estimate: float | None
    interval: tuple[float, float] | None
    confidence: float
    directions: int
    certifying_directions: int
    trials_for_99: int | None
    trials_for_999: int | None
    reason: str


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


# -------------------------------------------------------------------------------------------------
# scale-free measures
# -------------------------------------------------------------------------------------------------

def fit_residual(problem: ConvProblem, w: FloatArray) -> float:
    """``max_i |sum_j (X_ij w)_+ - y_i|`` relative to ``max_i |y_i|`` (or to the largest prediction when ``y = 0``).

    Parameters
    ----------
    problem : the problem data.
    w : the filter.

    Returns
    -------
    The relative fit residual (0 for a filter that fits exactly), the same in every unit.
    """
    pred = problem.predict(w)
    scale = max(float(np.max(np.abs(problem.y))), float(np.max(np.abs(pred))), np.finfo(float).tiny)
    return float(np.max(np.abs(pred - problem.y)) / scale)


def relative_gradient_norm(problem: ConvProblem, w: FloatArray) -> float:
    """Stationarity of the loss at ``w``: ``||grad L(w)|| / (2 ||y|| ||G||_F)`` with ``G`` the active patch sums.

    ``grad L(w) = -2 sum_i (y_i - f_w(x_i)) g_i``; the ratio is scale-free, 0 at a stationary point and at
    most 1 (Cauchy-Schwarz, when predictions do not exceed the labels' norm).
    """
    G = problem.gradient_rows(w)
    residual = problem.y - problem.predict(w)
    grad = -2.0 * (G.T @ residual)
    denom = 2.0 * float(np.linalg.norm(problem.y)) * float(np.linalg.norm(G))
    return float(np.linalg.norm(grad) / denom) if denom > 0 else 0.0


# -------------------------------------------------------------------------------------------------
# the cone of optimality at w
# -------------------------------------------------------------------------------------------------

def _nnls_residual(generators: FloatArray, free: FloatArray, r: FloatArray) -> tuple[float, int]:
    """``min ||G^T v + E^T u - r||`` over ``v >= 0`` and free ``u``, and the count of ``v_i > 0``."""
    cone = OptimalityCone(generators, np.zeros((0, generators.shape[1])), np.zeros(0, dtype=np.intp),
                          np.zeros((0, generators.shape[1])), free)
    res, positive, _ = cone.residual(r)
    return res, positive


class OptimalityCone:
    """The cone of directions ``r`` for which a filter is LP-optimal (module docstring), ready for many ``r``.

    Parameters
    ----------
    generators : ``(s, m)`` rows ``g_i``, one per sample that has active or tied patches.
    tie_rows : ``(t, m)`` tied patches ``X_ij``.
    tie_owner : ``(t,)`` the row of ``generators`` each tied patch belongs to.
    one_sided : ``(p, m)`` outward normals of active inequality constraints (multipliers ``>= 0``).
    free : ``(q, m)`` equality-constraint rows (free multipliers, projected out).
    """

    def __init__(self, generators: FloatArray, tie_rows: FloatArray, tie_owner: np.ndarray,
                 one_sided: FloatArray, free: FloatArray) -> None:
        m = generators.shape[1]
        self.m = m
        self._Q: FloatArray | None = None
        if free.shape[0]:
            Q, _ = np.linalg.qr(free.T)
            self._Q = Q
        # One-sided normals are generators with no ties; appended after the samples.
        G = np.vstack([generators, one_sided]) if one_sided.shape[0] else generators
        G, T = self._project(G), self._project(tie_rows)
        scale = max(float(np.max(np.linalg.norm(G, axis=1), initial=0.0)),
                    float(np.max(np.linalg.norm(T, axis=1), initial=0.0)), np.finfo(float).tiny)
        self.G, self.T = G / scale, T / scale
        self.owner = np.asarray(tie_owner, dtype=np.intp)
        self.has_ties = self.T.shape[0] > 0
        self.separators: list[FloatArray] = []

    def _project(self, M: FloatArray) -> FloatArray:
        if self._Q is None or M.shape[0] == 0:
            return M
        return M - (M @ self._Q) @ self._Q.T

    def _polar_excess(self, y: FloatArray) -> float:
        """``max_i g_i^T y + sum_{tied j of i} (X_ij^T y)_+``: ``<= 0`` exactly when ``y`` is in the polar cone."""
        return float(np.max(self._gains(y), initial=-np.inf))

    def residual(self, r: FloatArray) -> tuple[float, int, FloatArray]:
        """``min ||M x - r||`` over the cone's multipliers (``r`` projected), positive multipliers, the residual.

        Parameters
        ----------
        r : a direction of length ``m``.

        Returns
        -------
        The distance from ``r`` to the cone, the number of positive sample multipliers, and the residual
        vector ``r - M x`` (a separating vector when the distance is positive).
        """
        r = self._project(np.asarray(r, dtype=np.float64)[None, :])[0]
        if self.G.shape[0] == 0:
            return float(np.linalg.norm(r)), 0, r
        return self._tied_residual(r) if self.has_ties else self._nnls(r)

    def _nnls(self, r: FloatArray) -> tuple[float, int, FloatArray]:
        """Lawson-Hanson NNLS with column generation over the generators (exact, active-set)."""
        G = self.G
        count, m = G.shape
        batch = 4 * m + 10
        scores = G @ r
        chosen = np.argpartition(-scores, batch)[:batch] if count > batch else np.arange(count)
        for _ in range(count):
            sub = G[chosen]
            v, res = nnls(sub.T, r, maxiter=50 * max(sub.shape))
            residual = r - sub.T @ v
            gain = G @ residual
            gain[chosen] = -np.inf
            entering = np.flatnonzero(gain > 1e-12 * max(float(np.linalg.norm(r)), 1e-300))
            if entering.size == 0:
                break
            chosen = np.concatenate([chosen[v > 0], entering[np.argsort(-gain[entering])][:batch]])
        top = float(np.max(v)) if v.size else 0.0
        return float(res), int(np.sum(v > 1e-12 * max(top, 1.0))), residual

    def _tied_residual(self, r: FloatArray) -> tuple[float, int, FloatArray]:
        """The bounded QP ``min ||G_S^T v + T_S^T lambda - r||``, ``0 <= lambda_ij <= v_i``, over samples ``S``.

        Column generation by sample: a sample enters when ``g_i^T e + sum_j (X_ij^T e)_+ > 0`` for the
        current residual ``e`` (the KKT condition it would violate).
        """
        count, m = self.G.shape
        batch = 4 * m + 10
        rnorm = max(float(np.linalg.norm(r)), 1e-300)
        gain = self._gains(r)
        chosen = np.argpartition(-gain, batch)[:batch] if count > batch else np.arange(count)
        residual, v = r, np.zeros(0)
        for _ in range(count):
            v, residual = self._tied_qp(chosen, r)
            gain = self._gains(residual)
            gain[chosen] = -np.inf
            entering = np.flatnonzero(gain > 1e-10 * rnorm)
            if entering.size == 0:
                break
            keep = chosen[v > 1e-12 * max(float(np.max(v, initial=0.0)), 1e-300)]
            chosen = np.concatenate([keep, entering[np.argsort(-gain[entering])][:batch]])
        top = float(np.max(v, initial=0.0))
        return float(np.linalg.norm(residual)), int(np.sum(v > 1e-9 * max(top, 1e-300))), residual

    def _gains(self, e: FloatArray) -> FloatArray:
        """Per sample, ``g_i^T e + sum_{tied j of i} (X_ij^T e)_+``: the most ``e`` can gain from its generators."""
        values = self.G @ e
        if self.has_ties:
            np.add.at(values, self.owner, np.maximum(self.T @ e, 0.0))
        return values

    def _tied_qp(self, chosen: np.ndarray, r: FloatArray) -> tuple[FloatArray, FloatArray]:
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
        norm = float(np.linalg.norm(y))
        if norm > 0 and self._polar_excess(y / norm) <= 1e-10 and len(self.separators) < 4 * self.m + 64:
            self.separators.append(y / norm)

    def members(self, R: FloatArray, tol: float, should_stop: Callable[[], bool] | None = None) -> np.ndarray:
        """Verdicts for the rows of ``R`` (many directions), rejecting by known separators first.

        ``should_stop`` is polled between directions; when it answers True the remaining verdicts stay False.
        """
        verdicts = np.zeros(R.shape[0], dtype=bool)
        norms = np.linalg.norm(R, axis=1)
        projected = self._project(R)
        for index in range(R.shape[0]):
            if should_stop is not None and should_stop():
                break
            if self.separators:
                bound = np.max(np.vstack(self.separators) @ projected[index])
                if bound > tol * norms[index]:
                    continue  # rho >= r^T y / ||r|| > tol: outside, by an exact separating vector
            verdicts[index] = self.member(R[index], tol)[0]
        return verdicts


def optimality_cone(problem: ConvProblem, w: FloatArray, constraints: ResolvedConstraints | None = None,
                    tie_tol: float = DEFAULT_TIE_TOL) -> tuple[OptimalityCone, int]:
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
    act = problem.activation
    G = problem.gradient_rows(w, active, pre)  # sigma' per patch; at a kink the lower end lo
    if act.lo is not None and act.hi is not None:
        spread = act.hi - act.lo  # a tied patch's slope lies in [lo, hi]: lo in G, the rest a multiplier in [0, v_i]
    else:
        spread = 1.0
    if not act.piecewise_linear:
        # Smooth: sigma' is unique, no ties, except for squared ReLU's samples with no active patch (a zero label):
        # there sum_j (X_ij w)_+^2 <= 0 is X_ij w <= 0 for each patch, whose tied patches carry free multipliers
        # (g_i = 0, so lambda_ij in [0, v_i] is any lambda_ij >= 0).
        tied = tied & ~active.any(axis=1, keepdims=True) if act.name == "squared_relu" else np.zeros_like(tied)
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
    return OptimalityCone(G[rows], tie_rows, where[tie_i], one, free), int(tie_rows.shape[0])


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


def cone_certificate(
    problem: ConvProblem,
    w: FloatArray,
    r: FloatArray,
    *,
    constraints: ResolvedConstraints | None = None,
    tol: float = DEFAULT_CONE_TOL,
    fit_tol: float = DEFAULT_FIT_TOL,
    cone: OptimalityCone | None = None,
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

    Returns
    -------
    The verdict with its residual and a sentence.
    """
    why_not = None if cone is not None else cone_not_applicable(problem, w, constraints, fit_tol)
    if why_not is not None:
        return ConeCertificate(False, False, None, tol, None, why_not)
    ties = None
    if cone is None:
        cone, ties = optimality_cone(problem, w, constraints)
    certified, rho, positive = cone.member(np.asarray(r, dtype=np.float64), tol)
    tied = "" if not ties else f" ({ties} tied patches X_ij w = 0 counted with multipliers in [0, v_i])"
    return ConeCertificate(
        applicable=True, certified=certified, residual=rho, tolerance=tol, positive_multipliers=positive,
        tied_patches=ties,
        reason=(f"r lies in the cone of optimality at w{tied}: (w, z) is optimal for the LP with this r" if certified
                else f"r is outside the cone of optimality at w{tied}: w is not the LP optimum for this r"),
    )


def trials_needed(p: float, target: float) -> int | None:
    """``ceil(log(1 - target) / log(1 - p))``: independent trials of success ``p`` that reach ``target``.

    Returns None when ``p = 0`` (no number of trials does), 1 when ``p = 1``.
    """
    if not 0.0 < target < 1.0:
        raise ValueError(f"target must lie in (0, 1), got {target!r}")
    if p <= 0.0:
        return None
    if p >= 1.0:
        return 1
    return max(1, math.ceil(math.log1p(-target) / math.log1p(-p) - 1e-12))


def wilson_interval(successes: int, total: int, z: float = _Z95) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion (95% for the default ``z``)."""
    if total <= 0:
        return 0.0, 1.0
    p = successes / total
    denom = 1.0 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def coverage(
    problem: ConvProblem,
    w: FloatArray,
    *,
    samples: int = DEFAULT_COVERAGE_SAMPLES,
    seed: int = 0,
    constraints: ResolvedConstraints | None = None,
    tol: float = DEFAULT_CONE_TOL,
    fit_tol: float = DEFAULT_FIT_TOL,
    cone: OptimalityCone | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Coverage:
    """Estimate the probability that ``r ~ N(0, I_m)`` certifies ``w`` (SPEC 4), seeded.

    Parameters
    ----------
    problem, w, constraints, tol, fit_tol : as for :func:`cone_certificate`.
    samples : directions to draw (0 skips the estimate).
    seed : seed of the directions (``default_rng([seed, 2**32 - 1])``, apart from the trials' streams).
    cone : a cone already built at ``w`` (the test then applies, as for :func:`cone_certificate`).
    should_stop : polled between directions (a cancelled job stops sampling).

    Returns
    -------
    The estimate, its Wilson 95% interval, and the trials needed for 99% and 99.9% success computed
    from the interval's lower end (so that they hold with 95% confidence).
    """
    why_not = None if cone is not None else cone_not_applicable(problem, w, constraints, fit_tol)
    if why_not is not None or samples <= 0:
        reason = why_not or "not computed: coverage_samples is 0"
        return Coverage(False, None, None, COVERAGE_CONFIDENCE, 0, 0, None, None, reason)
    if cone is None:
        cone, _ = optimality_cone(problem, w, constraints)
    R = np.random.default_rng([seed, 2**32 - 1]).standard_normal((samples, problem.m))
    hits = int(cone.members(R, tol, should_stop).sum())
    low, high = wilson_interval(hits, samples)
    p = hits / samples
    for99, for999 = trials_needed(low, 0.99), trials_needed(low, 0.999)
    reason = (f"{hits} of {samples} random directions r ~ N(0, I) make this filter LP-optimal: one trial finds it "
              f"with probability about {p:.3g} (95% interval {low:.3g} to {high:.3g})")
    reason += (f"; {for99} trials reach 99% and {for999} reach 99.9% (from the interval's lower end)"
               if for99 is not None else "; the interval reaches 0, so no number of trials can be promised")
    return Coverage(True, p, (low, high), COVERAGE_CONFIDENCE, samples, hits, for99, for999, reason)


def summary(global_optimum: bool, loss: float, threshold: float, cone: ConeCertificate,
            gradient: float | None) -> str:
    """One sentence on what the certificate proves about the selected filter."""
    if global_optimum:
        text = (f"Zero loss (L = {loss:.3g} <= {threshold:.3g}): the selected filter is a global minimum of the "
                "non-convex training loss.")
        if cone.applicable and not cone.certified:
            text += (" No direction tried makes it the relaxation's optimum (it came from polishing), which "
                     "does not weaken the zero-loss certificate.")
        return text
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
) -> Certificate:
    """Zero-loss global optimality (``L(w) <= tol * ||y||^2``), the cone test at ``w`` and stationarity.

    Parameters
    ----------
    problem, w, r, constraints : the filter and the direction to test.
    optimality_tol, cone_tol, fit_tol : relative tolerances.
    cone : the cone of optimality at ``w`` when already built (see :func:`cone_certificate`).

    Returns
    -------
    The certificate (coverage not estimated; see :func:`coverage`).
    """
    loss = problem.loss(w)
    threshold = optimality_tol * max(float(problem.y @ problem.y), np.finfo(float).tiny)
    tested = cone_certificate(problem, w, r, constraints=constraints, tol=cone_tol, fit_tol=fit_tol, cone=cone)
    optimum = bool(loss <= threshold)
    gradient = relative_gradient_norm(problem, w)
    return Certificate(
        global_optimum=optimum, loss=loss, loss_threshold=threshold, fit_residual=fit_residual(problem, w),
        cone=tested, summary=summary(optimum, loss, threshold, tested, gradient), relative_gradient_norm=gradient,
    )
