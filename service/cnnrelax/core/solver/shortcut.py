"""Trials decided without a sub-problem: a cone membership proves the seed guess, or the origin, LP-optimal for ``r``.

LP duality: a feasible point ``u`` of ``max r^T u`` s.t. ``sum_j sigma(X_ij u) <= y_i`` (``sigma`` piecewise
linear, so the feasible set is a polyhedron) is optimal exactly when ``r`` lies in the normal cone of the feasible
set at ``u``, the cone spanned by the (sub)gradients of the constraints tight at ``u``. Two points are the LP's
optimum for most directions on planted data (:mod:`.seeding`), and each has a cone that is cheap to test:

- **the guess** ``g`` of :mod:`.seeding`, refitted on all samples by least squares on its pattern: the fit that the
  trial's polishing computes from the LP's vertex, which has that pattern, so the trial ends with the same bits as
  through the loop. It must fit ``y`` to rounding (relative fit residual at most
  :data:`~cnnrelax.core.tolerances.SHORTCUT_FIT`) and keep its pattern. Every sample constraint is then tight, and
  the cone is the cone of optimality of :func:`~cnnrelax.core.certificates.optimality_cone` (SPEC 4.2), the one the
  certificate tests;
- **the origin**, when every label is non-negative (so ``0`` is feasible) and ``sigma`` has ``lo = 0`` (ReLU):
  the samples with ``y_i = 0`` are tight there, each one the same as ``X_ij u <= 0`` for every patch, so the cone
  is spanned by their patches ``X_ij``.

``r`` is decided inside by non-negative multipliers (NNLS, :class:`~cnnrelax.core.certificates.OptimalityCone`)
that leave a relative residual of at most :data:`~cnnrelax.core.tolerances.SHORTCUT_CONE_TOL`, on ``m`` positive
multipliers: ``r`` is then (to that residual) interior to the cone of ``m`` independent generators, so the point is
the LP's *unique* optimum, the vertex the working-set loop and its crossover would reach. Any other verdict (outside,
on the boundary, a cone with tied patches, user constraints, a guess that does not fit) leaves the trial to the
loop, as before. The tests run in every trial of an LP-limit solve of a piecewise-linear activation whose guess
fits, with at most :data:`~cnnrelax.core.tolerances.SHORTCUT_MAX_M` weights (a membership cannot be interrupted
within a direction and its cost grows about as ``m^3``; beyond, the loop, which a cancel stops inside Clarabel,
runs); ``SolverSettings(cone_shortcut=False)`` turns them off. A cancel is polled between the stages.

The point at the guess is handed on (:meth:`Shortcut.proven`): its cone, each direction's exact distance to it and
its polishing's outcome, so the trial's polishing and the certificate do not compute them again (and the coverage
estimate starts with the separating vectors the trials found).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from ...types import ShouldStop
from ..certificates import OptimalityCone, optimality_cone
from ..certificates.kkt import imposes_nothing
from ..polishing import PolishOutcome
from ..problem import FloatArray
from ..tolerances import SHORTCUT_CONE_TOL, SHORTCUT_FIT, SHORTCUT_MAX_M, TINY, TWIN_RTOL
from .normalised import NormalisedProblem
from .seeding import FirstWorkingSet

#: The origin's cone holds a copy of the zero-label samples' patches: at most this many bytes of them (beyond, the
#: origin is left to the loop; the guess's cone is the certificate's, kept within its own budget).
ORIGIN_CONE_BYTES = 64 * 2**20


@dataclass(frozen=True)
class ProvenPoint:
    """A point ``w`` (user units) the shortcut proves LP-optimal, with what it knows of it: the outcome of polishing
    it (nothing accepted: a fixed point), the cone that proves it, and each direction's relative distance to that cone
    with its count of positive multipliers, once measured (keyed by the direction's bytes).

    ``fit`` bounds the relative fit residual (``sqrt(L(w)) / max|y|``) at the guess, where the cone is the
    certificate's cone of optimality (with ``ties`` tied patches); it is None at the origin, which does not fit ``y``.
    ``pre``: the pre-activations ``X_ij w`` at the guess (``(n, k)``, an ``m``-th of ``X``), handed to the certificate,
    and ``pattern`` its activation pattern.
    """

    w: FloatArray
    polished: PolishOutcome
    cone: OptimalityCone
    ties: int = 0
    fit: float | None = None
    distances: dict[bytes, tuple[float, int]] = field(default_factory=dict)
    pre: FloatArray | None = None
    pattern: NDArray[np.bool_] | None = None

    def measured(self, r: FloatArray) -> tuple[float, int] | None:
        """The distance of ``r`` when already measured."""
        return self.distances.get(np.asarray(r, dtype=np.float64).tobytes())

    def distance(self, r: FloatArray) -> tuple[float, int]:
        """``dist(r, cone) / ||r||`` (exact) and the count of positive multipliers, measured once per direction."""
        r = np.asarray(r, dtype=np.float64)
        known = self.distances.get(r.tobytes())
        if known is None:
            _, rho, positive = self.cone.member(r, SHORTCUT_CONE_TOL)
            known = self.distances[r.tobytes()] = (rho, positive)
        return known

    def holds(self, r: FloatArray) -> bool:
        """``r`` within ``SHORTCUT_CONE_TOL ||r||`` of the cone on ``m`` positive multipliers (module docstring)."""
        rho, positive = self.distance(r)
        return rho <= SHORTCUT_CONE_TOL and positive >= self.cone.m


class Shortcut:
    """The two cone tests of the module docstring for one solver, built on first use and shared by its trials."""

    def __init__(self, data: NormalisedProblem, first: FirstWorkingSet) -> None:
        self.data = data
        self.first = first

    @cached_property
    def applies(self) -> bool:
        """No user constraints, at most ``SHORTCUT_MAX_M`` weights, a piecewise-linear ``sigma`` whose guess fits."""
        return (imposes_nothing(self.data.constraints) and self.data.m <= SHORTCUT_MAX_M
                and self.first.guess is not None)

    @cached_property
    def at_guess(self) -> ProvenPoint | None:
        """The guess refitted on all samples with its cone of optimality, when it fits ``y`` to rounding, keeps its
        pattern and has no tied patch."""
        guess = self.first.guess
        if guess is None:
            return None
        problem = self.data.problem
        guess_pre = problem.preactivations(guess) if self.first.guess_pre is None else self.first.guess_pre
        # The fit on the guess's pattern: what polishing computes from the LP's vertex (the same pattern), bit for bit.
        mask = problem.active_mask(guess, guess_pre)
        pattern = self.first.guess_pattern
        if pattern is not None and np.array_equal(pattern, mask):
            # The guess was polished on all samples, and this is the pattern its last least squares fitted: the same
            # computation would give the guess again, bit for bit (one factor and one pass saved).
            w, pre = guess, guess_pre
        else:
            w = problem.gradient_factor(problem.gradient_weights(guess, mask), problem.y).solve()  # as polish does
            pre = problem.preactivations(w)
        if not np.array_equal(problem.active_mask(w, pre), mask):
            return None
        # Polishing w fits the same rows again, gets the same bits and keeps w (no lower loss): its outcome, known.
        loss = problem.loss_from(pre)
        polished = PolishOutcome(w, False, False, loss, loss, pattern=mask)
        # max_i |f(x_i) - y_i| <= sqrt(L): a bound on the relative fit residual without another pass.
        fit = float(np.sqrt(loss)) / max(float(np.max(np.abs(problem.y))), TINY)
        if fit > SHORTCUT_FIT:
            return None
        cone, ties = optimality_cone(problem, w, pre=pre)  # the pre-activations at w handed on: one pass fewer
        return None if ties else ProvenPoint(w, polished, cone, ties, fit, pre=pre, pattern=mask)

    @cached_property
    def at_origin(self) -> ProvenPoint | None:
        """The origin with its cone, the zero-label samples' patches (``lo = 0`` and ``y >= 0`` only, at most
        ``ORIGIN_CONE_BYTES`` of them)."""
        guess, problem, act = self.first.guess, self.data.problem, self.data.activation
        if guess is None or getattr(act, "lo", None) != 0.0 or not np.all(problem.y >= 0):
            return None
        zero = np.flatnonzero(problem.y == 0)
        if zero.size == 0 or zero.size * problem.k * problem.m * 8 > ORIGIN_CONE_BYTES:
            return None
        patches = problem.source.take(zero).reshape(-1, problem.m)  # the zero-label rows only (not a pass)
        patches = patches[np.any(patches != 0, axis=1)]
        empty = np.zeros((0, problem.m))
        # Every zero-label patch has X_ij g <= 0 for a guess that fits: -g is the axis of the slice rescaling.
        cone = OptimalityCone(patches, empty, np.zeros(0, dtype=np.intp), empty, empty, axis=-guess)
        # Polishing the origin fits the zero rows of its empty pattern (lo = 0): least squares gives 0 again, whose
        # loss is not lower, so polishing keeps the origin with the loss ||y||^2 (computed as polishing computes it).
        loss = problem.loss_from(np.zeros((problem.n, problem.k)))
        origin = np.zeros(problem.m)
        return ProvenPoint(origin, PolishOutcome(origin, False, False, loss, loss), cone)

    def optimum(self, r: FloatArray, should_stop: ShouldStop | None = None) -> FloatArray | None:
        """The LP's unique optimum for ``r`` (user units) when one of the two cones proves it; else None (also when
        ``should_stop``, polled between the stages, answers True: the loop then reports the cancel).

        The guess's cone lies in the half-space ``r^T g > 0`` (each generator has ``g_i^T g = y_i > 0``) and the
        origin's in ``r^T g <= 0`` (each zero-label patch has ``X_ij g <= 0``): the sign of ``r^T g`` picks the one
        cone worth testing.
        """
        def stopped() -> bool:
            return should_stop is not None and should_stop()

        guess = self.first.guess if self.applies else None
        if guess is None or stopped():
            return None
        point = self.at_guess if float(r @ guess) > 0 else self.at_origin
        if point is None or stopped():
            return None
        return point.w if point.holds(r) else None

    def twin(self, polished: PolishOutcome) -> ProvenPoint | None:
        """The point at the guess when a trial's polished filter is the same filter: the same activation pattern, and
        within ``TWIN_RTOL ||g||`` of it, so both fit ``y`` on that pattern and differ in the last bits only
        (polishing from another vertex can stop on the fit of an intermediate pattern whose solution already has the
        guess's pattern, when the fit on that pattern lowers the loss no further). None otherwise, or when the
        point was not built."""
        point: ProvenPoint | None = self.__dict__.get("at_guess")
        if point is None or point.pattern is None or polished.pattern is None:
            return None
        if not np.array_equal(polished.pattern, point.pattern):
            return None
        if float(np.linalg.norm(polished.w - point.w)) > TWIN_RTOL * float(np.linalg.norm(point.w)):
            return None
        return point

    def proven(self, w: FloatArray) -> ProvenPoint | None:
        """The point proved optimal for some direction when ``w`` is it, bit for bit."""
        for name in ("at_guess", "at_origin"):
            point: ProvenPoint | None = self.__dict__.get(name)  # only points already built
            if point is not None and np.array_equal(point.w, w):
                return point
        return None


__all__ = ["ProvenPoint", "Shortcut"]
