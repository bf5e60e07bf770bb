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
constraints add free multipliers: they are projected out (``P = I - Q Q^T``; ``(P g)^T e = g^T (P e)``, so a
product with the projected generators is a product with the projected directions).

Membership is measured by ``rho(r) = dist(r, cone) / ||r||``: non-negative least squares (Lawson-Hanson with
column generation) when no patch is tied, a small bounded QP (Clarabel) when some are. Both verdicts are exact:
*inside* is shown by multipliers whose residual is at most ``tol ||r||``; *outside* by a vector ``y`` of the
polar cone (``g^T y <= 0`` for every generator, checked over all of them), and ``rho(r) >= r^T y / (||r|| ||y||)``.
A polar vector found once rejects later directions by one product.

The cone's structure makes it cheap. Every generator of a filter that fits positive labels has ``g_i^T w > 0``,
so the cone lies in the half-space ``r^T w >= 0``: ``-w`` is a polar vector from the start (checked, as every
separator is), and rescaling each sample's generators to the slice ``g^T w = 1`` (which leaves the cone
unchanged) makes the largest scores ``g^T r`` pick the generators that matter, so column generation needs fewer
rounds (about 3x fewer at ``m = 50``). The axis also repairs a residual ``e`` of a restricted problem into a
separator: with ``a_i = g_i^T w_hat > 0`` for the generators ``e`` still gains on,
``y = e / ||e|| - c w_hat`` with ``c = max_i (g_i^T e / ||e||) / a_i`` has ``g_i^T y <= 0`` for every ``i``
(its gains are read off the two products already made), so a direction far outside is rejected after one
restricted solve instead of after its exact distance.

Many directions at once (:meth:`OptimalityCone.members`) go in rounds: each direction solves its restricted
NNLS (scipy's compiled Lawson-Hanson on a few hundred columns), and then *one* product of the generators with
every open residual prices them all, decides the outside ones (polar, or repaired) and picks each one's entering
columns.

The generators are not stored (:class:`.generators.PatchGenerators`): ``g_i = sum_j s_ij X_ij`` is the slopes ``s``
(``(n, k)``) applied to the patches, so a product ``G E`` is one streamed pass ``sum_j s_ij (X_ij E)``, the slice
factors are an ``(n,)`` vector and the rows that enter column generation are gathered by index. When they fit the budget
(:data:`GENERATOR_CACHE_BYTES`, and :data:`GENERATOR_CACHE_FRACTION` of the patches) the scaled rows are cached,
built in place chunk by chunk (:class:`ExplicitGenerators`): a product then reads ``n m`` numbers, not ``n k m``.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import numpy as np
from numpy.typing import NDArray

from ..constraints import ResolvedConstraints
from ..patches import PatchSource
from ..problem import ConvProblem, FloatArray
from .generators import (
    ExplicitGenerators,
    Generators,
    PatchGenerators,
    generator_rows_kernel,
    generator_stats_kernel,
    project_out,
    row_norms,
    sub_blocks,
)
from .measures import DEFAULT_FIT_TOL, TIE_RTOL, fit_residual
from .nnls import checked_nnls, tied_qp

#: The slice rescaling divides a generator by ``max(cos(g, w), SLICE_COSINE_FLOOR) ||g||``.
SLICE_COSINE_FLOOR = 1e-1
#: A residual ``e`` is kept as a separator when ``max_g g^T e / ||e|| <= POLAR_TOL`` (generators of norm <= 1).
POLAR_TOL = 1e-10
#: Column generation enters generators whose gain exceeds this times ``||r||``.
ENTERING_TOL = 1e-12
#: Column generation enters about this many columns per dimension a round ...
BATCH_PER_DIMENSION = 2
#: ... and, for verdicts only (:meth:`OptimalityCone.members`: the coverage estimate), this many: a verdict needs no
#: exact distance, and smaller restricted problems decide the same directions with less work (measured, issue 17).
VERDICT_BATCH_PER_DIMENSION = 1.0
#: The cone caches its scaled generators (``(n, m)`` and the tied rows) when they take at most this many bytes ...
GENERATOR_CACHE_BYTES = 256 * 2**20
#: ... and at most this fraction of the patches' bytes (otherwise every product is a streamed pass over X).
GENERATOR_CACHE_FRACTION = 0.25
#: The first core of generators every direction starts from holds this many per dimension (evenly spaced) ...
CORE_PER_DIMENSION = 32
#: ... and the sharp generators, whose gain on the axis is below this fraction of the largest (at most as many).
SHARP_AXIS_GAIN = 0.1
#: A direction starts from its best-scored generators and the passive sets of this many directions found inside.
RECENT_INSIDE = 2
#: Of the columns that enter a round, this share is the best by gain over axis gain (the rest by gain).
RATIO_SHARE = 0.5


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

    :func:`optimality_cone` builds the cone of a problem without these arrays (:class:`PatchGenerators`).
    """

    def __init__(self, generators: FloatArray, tie_rows: FloatArray, tie_owner: NDArray[np.intp],
                 one_sided: FloatArray, free: FloatArray, axis: FloatArray | None = None) -> None:
        m = generators.shape[1]
        basis = _basis(free)
        # One-sided normals are generators with no ties; appended after the samples.
        G = np.vstack([generators, one_sided]) if one_sided.shape[0] else generators
        G, T = project_out(G, basis), project_out(tie_rows, basis)
        owner = np.asarray(tie_owner, dtype=np.intp)
        unit_axis = _unit_axis(axis, basis)
        norms = row_norms(G)
        along = G @ unit_axis if unit_axis is not None else np.ones(G.shape[0])
        factors = _slice_factors(norms, along) if unit_axis is not None else np.ones(G.shape[0])
        tie_factors = factors[owner] if T.shape[0] else np.ones(0)
        scale = _common_scale(norms * factors, row_norms(T) * tie_factors)
        store = ExplicitGenerators(G * (factors / scale)[:, None], T * (tie_factors / scale)[:, None], owner)
        self._setup(store, m, basis, unit_axis, along * factors / scale, np.arange(G.shape[0]))

    @classmethod
    def from_generators(cls, store: Generators, m: int, basis: FloatArray | None, unit_axis: FloatArray | None,
                        axis_gains: FloatArray, live: NDArray[np.intp]) -> OptimalityCone:
        """The cone of generators already scaled and projected.

        Parameters
        ----------
        store : the generators.
        m : the dimension.
        basis : the equality rows' orthonormal basis (None when there are none).
        unit_axis : the projected unit axis (None: no slice, no ``-axis`` separator).
        axis_gains : ``g_i^T unit_axis`` per row of ``store``.
        live : the rows that are generators (the others are zero).
        """
        cone = cls.__new__(cls)
        cone._setup(store, m, basis, unit_axis, axis_gains, live)
        return cone

    def _setup(self, store: Generators, m: int, basis: FloatArray | None, unit_axis: FloatArray | None,
               axis_gains: FloatArray, live: NDArray[np.intp]) -> None:
        self.m = m
        self.generators = store
        self._Q = basis
        self._batch = BATCH_PER_DIMENSION * m + 10  # columns that enter per column-generation round
        self._verdict_batch = int(VERDICT_BATCH_PER_DIMENSION * m) + 10  # the same when only verdicts are asked
        self.has_ties = store.has_ties
        self.separators: list[FloatArray] = []
        self._separator_matrix: FloatArray | None = None
        self._recent: list[NDArray[np.intp]] = []  # core positions of the last inside directions' passive sets
        self._live = np.asarray(live, dtype=np.intp)
        self._axis = unit_axis if self._live.size else None
        self._axis_gains = axis_gains
        self._axis_inverse = np.zeros(0)
        self._axis_nonpositive = np.zeros(0, dtype=np.intp)
        if self._axis is not None:
            self._axis_inverse = np.where(axis_gains > 0, 1.0 / np.where(axis_gains > 0, axis_gains, 1.0), 0.0)
            live_mask = np.zeros(store.count, dtype=bool)
            live_mask[self._live] = True
            self._axis_nonpositive = np.flatnonzero((axis_gains <= 0) & live_mask)
        # The core: the generators every direction's column generation starts from (module docstring), grown by
        # the ones a full pricing finds; when it holds every generator, its pricing is the full one.
        size = CORE_PER_DIMENSION * m
        core = self._live if self._live.size <= size else \
            self._live[np.linspace(0, self._live.size - 1, size).astype(np.intp)]  # a step >= 1: distinct
        self._core = np.zeros(0, dtype=np.intp)
        self._core_rows = np.zeros((0, m))
        self._core_position = np.full(store.count, -1, dtype=np.intp)
        if self._axis is not None:  # the sharp generators: a residual they gain on cannot be repaired
            live_gains = axis_gains[self._live]
            sharp = np.flatnonzero(live_gains < SHARP_AXIS_GAIN * float(np.max(live_gains, initial=0.0)))
            sharp = sharp[np.argsort(live_gains[sharp], kind="stable")[:size]]
            core = np.concatenate([core, self._live[sharp]])
        self._grow_core(core)
        if self._axis is not None and not self.has_ties:  # -axis gains -a_i on g_i: checked with no product
            if float(np.max(-axis_gains[self._live], initial=-np.inf)) <= POLAR_TOL:
                self._keep(-self._axis)
        elif self._axis is not None:  # tied rows gain (t^T e)_+ too: one product
            self._remember(-self._axis)

    def _grow_core(self, index: NDArray[np.intp]) -> None:
        """Add the generators ``index`` (those not in it yet) to the core: one gather."""
        fresh = np.unique(index[self._core_position[index] < 0])
        if fresh.size == 0:
            return
        self._core_position[fresh] = self._core.size + np.arange(fresh.size)
        self._core = np.concatenate([self._core, fresh])
        self._core_rows = np.vstack([self._core_rows, self.generators.rows(fresh)])

    @property
    def _core_complete(self) -> bool:
        return self._core.size >= self._live.size

    @property
    def pointed(self) -> bool:
        """Every generator gains strictly on the axis (``g^T a > 0``) and no patch is tied: no nonzero element of
        the cone has a non-positive gain on ``a``, so of ``r`` and ``-r`` at most one lies in it (up to the
        tolerance of a verdict, within ``tol ||r||`` of the hyperplane ``a^T r = 0``)."""
        if self._axis is None or self.has_ties or self._live.size == 0:
            return False
        return bool(np.min(self._axis_gains[self._live]) > 0.0)

    @property
    def empty(self) -> bool:
        """No generators (the cone is ``{0}``, or the span of the equality rows)."""
        return self._live.size == 0

    def _project(self, M: FloatArray) -> FloatArray:
        return project_out(M, self._Q)

    def _gains(self, E: FloatArray) -> FloatArray:
        """Per sample, ``g_i^T e + sum_{tied j of i} (t_ij^T e)_+``: the most ``e`` can gain from its generators.

        ``E`` is one direction ``(m,)`` or several as columns ``(m, q)`` (one product for all of them).
        """
        return self.generators.gains(E)

    def residual(self, r: FloatArray, scores: FloatArray | None = None,
                 enough: float = 0.0) -> tuple[float, int, FloatArray]:
        """``min ||M x - r||`` over the cone's multipliers (``r`` projected), positive multipliers, the residual.

        Parameters
        ----------
        r : a direction of length ``m``.
        scores : ``_gains(r)`` when already computed.
        enough : stop as soon as a residual of at most this is found (0: the exact distance).

        Returns
        -------
        The distance from ``r`` to the cone (or a residual ``<= enough``), the number of positive sample
        multipliers, and the residual vector ``r - M x`` (a separating vector when the distance is positive).
        """
        r = self._project(np.asarray(r, dtype=np.float64)[None, :])[0]
        if self.empty:
            return float(np.linalg.norm(r)), 0, r
        if self.has_ties:
            gains = self._gains(r) if scores is None else np.array(scores, dtype=np.float64)
            return self._tied_residual(r, gains, enough)
        given = None if scores is None else np.asarray(scores, dtype=np.float64)[:, None]
        res, positive, residual, _ = self._judge(r[None, :], np.array([enough]), exact=True, scores=given)[0]
        return res, positive, residual

    def _judge(self, R: FloatArray, bounds: FloatArray, exact: bool, scores: FloatArray | None = None,
               should_stop: Callable[[], bool] | None = None) -> list[tuple[float, int, FloatArray, bool]]:
        """Lawson-Hanson NNLS with column generation for the rows of ``R`` (projected), in rounds (no ties).

        One product scores every direction: its best generators join the core and are its first columns. Each
        round runs every open direction's column generation over the core (:meth:`_on_core`); then *one*
        product prices the residuals of all directions left open over every generator. A direction is *inside*
        once its residual is at most its bound; *outside* once its residual gains on no generator (its exact
        distance) or, unless ``exact``, once a vector repaired along the axis proves ``rho > bound``. Otherwise the
        generators it gains most on join the core, and it goes on in the next round.

        Returns
        -------
        Per direction: the residual's norm (the distance when exact), the positive multipliers, the residual vector
        (or the separator that decided it), and the verdict ``inside``.
        """
        out: list[tuple[float, int, FloatArray, bool]] = [(float(np.linalg.norm(r)), 0, r, False) for r in R]
        batch = self._batch if exact else self._verdict_batch
        thresholds = ENTERING_TOL * np.maximum(np.linalg.norm(R, axis=1), 1e-300)
        scores = self._gains(R.T) if scores is None else scores  # one product: each direction's first columns
        by_direction = np.ascontiguousarray(scores.T)  # a direction's scores contiguous for its partition
        first = [_top(by_direction[c], batch) for c in range(R.shape[0])]
        self._grow_core(np.concatenate(first))
        chosen: dict[int, NDArray[np.intp] | None] = {c: self._core_position[f] for c, f in enumerate(first)}
        started: set[int] = set()
        unrepairable: set[int] = set()  # a candidate failed over all generators: exact column generation from now
        for _ in range(self.generators.count + 1):
            if not chosen:
                break
            if not exact:  # separators found this far decide some directions at once
                still = list(chosen)
                decided = self._separator_bounds(R[still]) > bounds[still]
                for c in np.asarray(still)[decided]:
                    del chosen[int(c)]
            pending: list[tuple[int, FloatArray, FloatArray | None]] = []
            for c in list(chosen):
                if should_stop is not None and should_stop():
                    return out
                res, positive, residual, columns, candidate, settled = self._on_core(
                    R[c], bounds[c], chosen[c], thresholds[c], exact or c in unrepairable, c not in started, batch)
                started.add(c)
                inside = res <= bounds[c]
                out[c] = (res, positive, residual if candidate is None or not settled else candidate, inside)
                if inside or settled:
                    del chosen[c]
                    continue
                chosen[c] = columns
                pending.append((c, residual, candidate))
            if not pending:
                break
            columns_of = [item[1] for item in pending] + [item[2] for item in pending if item[2] is not None]
            priced = self._gains(np.column_stack(columns_of))  # one product for every open direction
            fresh: list[NDArray[np.intp]] = []
            extra = len(pending)
            for j, (c, residual, candidate) in enumerate(pending):
                if candidate is not None:
                    gain_y = priced[:, extra]
                    extra += 1
                    if float(np.max(gain_y, initial=-np.inf)) <= POLAR_TOL:  # the candidate is polar: outside
                        self._keep(candidate)
                        out[c] = out[c][:2] + (candidate, False)
                        del chosen[c]
                        continue
                    unrepairable.add(c)
                gain = priced[:, j]
                res = out[c][0]
                outside = gain.copy()
                outside[self._core] = -np.inf
                entering = np.flatnonzero(outside > thresholds[c])
                if entering.size == 0 and candidate is None:  # optimal over every generator: res is the distance
                    if not exact and float(np.max(gain, initial=-np.inf)) <= POLAR_TOL * res:
                        self._keep(residual / res)  # checked by the product just made
                    del chosen[c]
                    continue
                separator = None if exact else self._repaired(residual, gain)
                if separator is not None and float(R[c] @ separator) > bounds[c]:
                    self._keep(separator)
                    out[c] = out[c][:2] + (separator, False)
                    del chosen[c]
                    continue
                if entering.size:
                    fresh.append(self._entering(entering, outside[entering], entering, batch))
            if fresh:
                self._grow_core(np.concatenate(fresh))
        return out

    def _on_core(self, r: FloatArray, bound: float, chosen: NDArray[np.intp] | None, threshold: float, exact: bool,
                 fresh_start: bool = False, batch: int | None = None
                 ) -> tuple[float, int, FloatArray, NDArray[np.intp], FloatArray | None, bool]:
        """Column generation for ``r`` over the core (positions into it), from ``chosen`` (or the best scores), with
        ``batch`` columns entering a round (default: the exact distance's).

        Returns
        -------
        The residual's norm, the positive multipliers, the residual, the passive columns, a candidate separator
        (polar over the core, proving ``rho > bound`` if it is polar over all generators) or None, and whether
        the verdict is settled (inside; or outside, proven over every generator when the core holds them all).
        """
        rows = self._core_rows
        complete = self._core_complete
        batch = self._batch if batch is None else batch
        if chosen is None:
            chosen = _top(rows @ r, batch)
        if fresh_start and self._recent:  # warm: the passive sets of the last directions found inside
            chosen = np.unique(np.concatenate([chosen, *self._recent]))
        res, positive, residual = float(np.linalg.norm(r)), 0, r
        for _ in range(rows.shape[0] + 1):
            v, res, residual = checked_nnls(rows[chosen], r)
            top = float(np.max(v, initial=0.0))
            positive = int(np.sum(v > 1e-12 * max(top, 1.0)))
            if res <= bound:
                self._recent = (self._recent + [chosen[v > 0]])[-RECENT_INSIDE:]
                return res, positive, residual, chosen, None, True
            gain = rows @ residual
            if not exact:
                candidate = self._repaired(residual, gain, self._core)
                if candidate is not None and float(r @ candidate) > bound:
                    if complete:
                        self._keep(candidate)
                    return res, positive, residual, chosen[v > 0], candidate, complete
            outside = gain.copy()
            outside[chosen] = -np.inf
            entering = np.flatnonzero(outside > threshold)
            if entering.size == 0:
                if complete and not exact and float(np.max(gain, initial=-np.inf)) <= POLAR_TOL * res:
                    self._keep(residual / res)
                return res, positive, residual, chosen[v > 0], None, complete
            picked = self._entering(entering, outside[entering], self._core[entering], batch)
            chosen = np.concatenate([chosen[v > 0], picked])
        return res, positive, residual, chosen, None, complete

    def _entering(self, entering: NDArray[np.intp], gain: FloatArray, generators: NDArray[np.intp],
                  batch: int) -> NDArray[np.intp]:
        """Of the columns ``entering`` (the generators ``generators``, gaining ``gain``), the ``batch`` that enter: the
        best by gain and, with an axis, the best by gain over axis gain (the generators that block a repair)."""
        if self._axis is None:
            return entering[_top(gain, batch)]
        by_ratio = int(batch * RATIO_SHARE)
        inverse = self._axis_inverse[generators]
        ratio = np.where(inverse > 0, gain * inverse, np.inf)
        by_gain = entering[_top(gain, batch - by_ratio)]
        return np.unique(np.concatenate([by_gain, entering[_top(ratio, by_ratio)]]))

    def _repaired(self, residual: FloatArray, gain: FloatArray,
                  rows: NDArray[np.intp] | None = None) -> FloatArray | None:
        """``e / ||e|| - c w_hat`` with ``c`` from ``e``'s gains (module docstring), polar over the generators
        ``rows`` (all of them when None) with no further product, or None when the axis cannot repair ``e``.

        ``gain`` holds ``g_i^T e`` for those generators, in their order.
        """
        if self._axis is None:
            return None
        norm = float(np.linalg.norm(residual))
        if norm == 0.0:
            return None
        if rows is None:
            inverse, axis_gains, nonpositive = self._axis_inverse, self._axis_gains, self._axis_nonpositive
        else:
            inverse, axis_gains = self._axis_inverse[rows], self._axis_gains[rows]
            nonpositive = np.flatnonzero(axis_gains <= 0)
        if nonpositive.size and float(np.max(gain[nonpositive])) > 0:
            return None  # a generator e gains on that the axis cannot push back
        c = max(float(np.max(gain * inverse, initial=0.0)), 0.0) / norm
        y = residual / norm - c * self._axis
        y_norm = float(np.linalg.norm(y))
        if y_norm == 0.0 or float(np.max(gain - (c * norm) * axis_gains)) > POLAR_TOL * norm * y_norm:
            return None
        unit: FloatArray = y / y_norm
        return unit

    def _tied_residual(self, r: FloatArray, gains: FloatArray, enough: float) -> tuple[float, int, FloatArray]:
        """The bounded QP ``min ||G_S^T v + T_S^T lambda - r||``, ``0 <= lambda_ij <= v_i``, over samples ``S``.

        Column generation by sample: a sample enters when ``g_i^T e + sum_j (t_ij^T e)_+ > 0`` for the
        current residual ``e`` (the KKT condition it would violate).
        """
        count = self.generators.count
        batch = self._batch
        rnorm = max(float(np.linalg.norm(r)), 1e-300)
        chosen = _top(gains, batch)
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
        """The restricted QP over the samples ``chosen`` (:func:`.nnls.tied_qp`): ``v`` and the residual."""
        Ts, owners = self.generators.tie_rows(chosen)
        return tied_qp(self.generators.rows(chosen), Ts, owners, r)

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
        """Keep ``y`` (normalised) as a separator once it is checked to lie in the polar cone (one product).

        The residual of a projection lies in the polar cone only up to the solver's rounding; when the axis has a
        positive gain on every generator it violates, the repair of :meth:`_repaired` removes that excess.
        """
        norm = float(np.linalg.norm(y))
        if norm == 0 or len(self.separators) >= 4 * self.m + 64:
            return
        y = y / norm
        gains = self._gains(y)
        if float(np.max(gains, initial=-np.inf)) <= POLAR_TOL:
            self._keep(y)
        elif not self.has_ties:
            repaired = self._repaired(y, gains)
            if repaired is not None:
                self._keep(repaired)

    def _keep(self, y: FloatArray) -> None:
        """Append a checked, unit polar vector to the separators."""
        if len(self.separators) < 4 * self.m + 64:
            self.separators.append(y)
            self._separator_matrix = None

    def _separator_bounds(self, R: FloatArray) -> FloatArray:
        """Per row of ``R``, ``max_y r^T y`` over the known separators (``-inf`` when there are none)."""
        if not self.separators:
            return np.full(R.shape[0], -np.inf)
        if self._separator_matrix is None:
            self._separator_matrix = np.vstack(self.separators)
        bounds: FloatArray = np.max(self._separator_matrix @ R.T, axis=0)
        return bounds

    def members(self, R: FloatArray, tol: float, should_stop: Callable[[], bool] | None = None) -> NDArray[np.bool_]:
        """Verdicts for the rows of ``R`` (many directions): known separators first, then in rounds (:meth:`_judge`).

        Each verdict is exact, as :meth:`member`'s: inside when multipliers leave a residual of at most
        ``tol ||r||``; outside when a polar vector proves ``rho > tol``. ``should_stop`` is polled between
        directions; when it answers True the remaining verdicts stay False.
        """
        R = np.asarray(R, dtype=np.float64)
        verdicts = np.zeros(R.shape[0], dtype=bool)
        norms = row_norms(R)
        projected = self._project(R)
        open_rows = np.flatnonzero(norms > 0)
        verdicts[norms == 0] = True
        if open_rows.size:  # rho >= r^T y / ||r|| > tol: outside, by an exact separating vector
            open_rows = open_rows[self._separator_bounds(projected[open_rows]) <= tol * norms[open_rows]]
        if self.empty:
            verdicts[open_rows] = np.linalg.norm(projected[open_rows], axis=1) <= tol * norms[open_rows]
            return verdicts
        if open_rows.size == 0:
            return verdicts
        bounds = tol * norms[open_rows]
        if not self.has_ties:
            judged = self._judge(projected[open_rows], bounds, exact=False, should_stop=should_stop)
            verdicts[open_rows] = [inside for *_, inside in judged]
            return verdicts
        scores = self._gains(projected[open_rows].T)
        for column, index in enumerate(open_rows):
            if should_stop is not None and should_stop():
                break
            r, bound = projected[index], bounds[column]
            if self._separator_bounds(r[None, :])[0] > bound:
                continue  # outside, by a separator found since the scores
            res, _, residual = self.residual(r, scores[:, column], enough=bound)
            verdicts[index] = res <= bound
            if not verdicts[index]:
                self._remember(residual)
        return verdicts


def _top(values: FloatArray, count: int) -> NDArray[np.intp]:
    """Indices of the ``count`` largest values, largest first (all of them when there are fewer)."""
    if values.size > count:
        best = np.argpartition(values, values.size - count)[values.size - count:]  # no negated copy of values
        return best[np.argsort(-values[best])]
    return np.argsort(-values)


def _basis(free: FloatArray) -> FloatArray | None:
    """An orthonormal basis ``Q`` of the equality rows' span (None when there are none)."""
    if not free.shape[0]:
        return None
    Q, _ = np.linalg.qr(free.T)
    return Q


def _unit_axis(axis: FloatArray | None, basis: FloatArray | None) -> FloatArray | None:
    """The axis projected and made unit (None when it vanishes or is not given)."""
    if axis is None:
        return None
    projected = project_out(np.asarray(axis, dtype=np.float64)[None, :], basis)[0]
    norm = float(np.linalg.norm(projected))
    return projected / norm if norm > 0 else None


def _slice_factors(norms: FloatArray, along: FloatArray) -> FloatArray:
    """Per row, ``1 / (max(cos(g, axis), floor) ||g||)`` from ``||g||`` and ``g^T axis`` (a unit axis): rows with
    ``g^T axis > 0`` land on the slice ``g^T axis = 1`` (up to the floor); the rest are made unit; zero rows stay
    zero."""
    safe = np.where(norms > 0, norms, 1.0)
    factors: FloatArray = 1.0 / (np.maximum(along / safe, SLICE_COSINE_FLOOR) * safe)
    return factors


def _common_scale(*scaled_norms: FloatArray) -> float:
    """The largest scaled row norm: dividing by it makes the largest row of norm 1."""
    return max([float(np.max(norms, initial=0.0)) for norms in scaled_norms] + [float(np.finfo(float).tiny)])


def nnls_distance(generators: FloatArray, free: FloatArray, r: FloatArray) -> tuple[float, int]:
    """``min ||G^T v + E^T u - r||`` over ``v >= 0`` and free ``u``, and the count of ``v_i > 0``."""
    empty = np.zeros((0, generators.shape[1]))
    cone = OptimalityCone(generators, empty, np.zeros(0, dtype=np.intp), empty, free)
    res, positive, _ = cone.residual(r)
    return res, positive


def optimality_cone(problem: ConvProblem, w: FloatArray, constraints: ResolvedConstraints | None = None,
                    tie_tol: float = TIE_RTOL, pre: FloatArray | None = None) -> tuple[OptimalityCone, int]:
    """The cone of optimality at ``w`` (which must fit ``y``) and the number of tied patches.

    Two passes over ``X`` (the pre-activations; the generators' norms and gains on ``w``), and no array of ``X``'s
    size: the generators stay implicit (:class:`PatchGenerators`) or, within the budget, are cached in place.

    Parameters
    ----------
    problem : the problem data.
    w : a filter that fits ``y``.
    constraints : constraints on ``w`` (their active normals join the cone).
    tie_tol : patches with ``|X_ij w| <= tie_tol ||X_ij|| ||w||`` count as tied.
    pre : the pre-activations ``X_ij w`` when already computed (one pass fewer; not modified).

    Returns
    -------
    The cone and the count of tied patches that carry data (``X_ij != 0``).
    """
    w = np.asarray(w, dtype=np.float64)
    source = problem.source
    pre = problem.preactivations(w) if pre is None else pre
    tied = problem.ties(w, pre, tie_tol)
    active = problem.active_mask(w, pre, tie_tol)  # beyond the ties: the same relative bound
    slopes = np.ascontiguousarray(problem.activation.gradient_weights(pre, active), dtype=np.float64)
    tied, spread = problem.activation.cone_ties(tied, active)  # the activation's tie rule (module docstring)
    carries = tied & (problem.patch_norms() > 0) & (float(spread) != 0.0)
    spreads = np.where(carries, float(spread), 0.0)
    del pre, tied, active
    one = free = np.zeros((0, problem.m))
    if constraints is not None:
        kappa = problem.w_scale
        u = w / kappa
        one, free = constraints.in_units(kappa).active_normals(u, 1e-7 * (1.0 + float(np.max(np.abs(u)))))
    basis = _basis(free)
    unit_axis = _unit_axis(w, basis)
    ties = int(np.count_nonzero(carries))
    n, m = problem.n, problem.m
    tie_args = (spreads,) if ties else ()
    patch_bytes = n * problem.k * m * 8
    cached = (n + ties) * m * 8 <= min(GENERATOR_CACHE_BYTES, GENERATOR_CACHE_FRACTION * patch_bytes)
    G: FloatArray | None = None
    if cached:  # one pass fills the cache; the numbers below are read off it
        G = source.map_rows(partial(generator_rows_kernel, basis=basis), slopes)
        norms = row_norms(G)
        along = G @ unit_axis if unit_axis is not None else np.ones(n)
        tie_i, tie_j = np.nonzero(carries)
        T = _gather_patches(source, tie_i, tie_j)
        T = project_out(T, basis) * spreads[tie_i, tie_j][:, None]
        tie_norms = np.zeros(n)
        np.maximum.at(tie_norms, tie_i, row_norms(T))
    else:  # one pass for the numbers only: the rows are made block by block and dropped
        stats = source.map_rows(partial(generator_stats_kernel, basis=basis, axis=unit_axis), slopes, *tie_args)
        norms, along, tie_norms = stats[:, 0], stats[:, 1], stats[:, 2]
    # A sample is a generator when g_i != 0 or it carries a tied patch (the norm is of the projected row).
    keep = (norms > 0) | carries.any(axis=1)
    extra = project_out(one, basis)
    extra_norms = row_norms(extra)
    extra_along = extra @ unit_axis if unit_axis is not None else np.ones(extra.shape[0])
    if unit_axis is not None:
        factors = np.where(keep, _slice_factors(norms, along), 0.0)
        extra_factors = _slice_factors(extra_norms, extra_along)
    else:
        factors, extra_factors = keep.astype(np.float64), np.ones(extra.shape[0])
    scale = _common_scale(norms * factors, tie_norms * factors, extra_norms * extra_factors)
    factors /= scale
    extra_factors /= scale
    extra = extra * extra_factors[:, None]
    axis_gains = np.concatenate([along * factors, extra_along * extra_factors])
    live = np.concatenate([np.flatnonzero(keep), n + np.arange(extra.shape[0])])
    store: Generators
    if G is not None:
        G *= factors[:, None]
        T *= factors[tie_i][:, None]
        store = ExplicitGenerators(G, T, tie_i, extra)
    else:
        store = PatchGenerators(source, slopes, spreads, factors, basis, extra)
    return OptimalityCone.from_generators(store, m, basis, unit_axis, axis_gains, live), ties


def _gather_patches(source: PatchSource, rows: NDArray[np.intp], patches: NDArray[np.intp]) -> FloatArray:
    """The patches ``X_{rows[t], patches[t]}``, ``(t, m)``, gathered a block of samples at a time."""
    out = np.empty((rows.size, source.shape[2]))
    for part in sub_blocks(rows.size):
        out[part] = source.take(rows[part])[np.arange(part.stop - part.start), patches[part]]
    return out


def cone_not_applicable(problem: ConvProblem, w: FloatArray, constraints: ResolvedConstraints | None,
                        fit_tol: float = DEFAULT_FIT_TOL, pre: FloatArray | None = None) -> str | None:
    """Why the cone test does not apply at ``w`` (a sentence), or None when it does (``pre``: the pre-activations
    ``X_ij w`` when already computed)."""
    fit = fit_residual(problem, w, pre)
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
