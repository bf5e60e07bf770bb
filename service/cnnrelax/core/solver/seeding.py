"""The first working set: exact cuts at a cheap data-driven guess, so the loop can end in its first round.

Every cut ``sum_j c_j X_ij u <= y~_i`` with ``c_j in {lo, hi}`` is a valid inequality of the LP relaxation of a
piecewise-linear ``sigma`` (``c_j p <= sigma(p)``), whatever the pattern ``c`` it was taken at. Putting some of them
in the working set before the first round changes the loop's path only: it still ends when no sample is violated,
at an optimum of the full LP (the same optimum; the crossover then takes it to its vertex).

The guess: Stein's moment ``w0 = sum_i y_i sum_j X_ij`` (for Gaussian-like patches ``E[sigma(x^T w) x]`` is
``E[sigma'] w``: the direction of a planted filter), polished by least squares on its pattern
(:func:`~cnnrelax.core.polishing.polish`) on an evenly spaced subset of
:data:`~cnnrelax.core.tolerances.SEED_SUBSET` ``m`` samples and checked on all (one pass). Only a guess ``g``
that fits the labels (loss at most :data:`~cnnrelax.core.tolerances.SEED_FIT` ``||y||^2``) seeds anything;
otherwise the loop runs as without this module. An LP-limit optimum on planted data
is, for most directions ``r``, one of two points:

- ``g`` itself, when ``r`` lies in the cone of the cuts tight at ``g`` (samples with ``y_i > 0``, at ``g``'s
  pattern). On the plane ``{a : a^T g^ = 1}`` that cone is the convex hull of the points ``a_i / (a_i^T g^)``, and
  the points far out are the rows of the smallest labels (``a_i^T g = y_i``): the ``toward`` seeds are the cuts of
  the :data:`~cnnrelax.core.tolerances.SEED_ROWS` ``m`` samples of smallest positive label;
- the origin, when ``r`` lies in the cone of the zero-label samples' patches (``X_ij u <= 0``, tight at 0): the
  ``away`` seeds are the single-patch cuts of the ``SEED_ROWS m`` zero-label patches nearest the hyperplane
  ``X_ij^T g = 0`` (``|X_ij^T g^| / ||X_ij||`` smallest), far out on the other side.

The guess is built on first use apart from the cuts: it is also where :mod:`.shortcut` starts, which decides most
trials without any sub-problem; the cuts are built only when a solve runs the loop. Both sets are built once per
solver and seeded in every solve (``2 SEED_ROWS m`` rows): measured on planted
data, seeding both ended more trials in one round than seeding the side of ``r^T g`` alone (the LP optimum of some
directions is another vertex, supported by rows of both kinds). ``3m`` cuts best aligned with ``r``, or ``8m``
spread over all labels, held no direction the full cone held.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from ..activations import PiecewiseLinear
from ..passes import label_moment
from ..polishing import polish
from ..problem import FloatArray
from ..tolerances import SEED_FIT, SEED_POLISH_ROUNDS, SEED_ROWS, SEED_SUBSET, TINY
from .normalised import NormalisedProblem
from .working_set import WorkingSet


class FirstWorkingSet:
    """The cuts at a polished moment guess (module docstring), built on first use and shared by every solve."""

    def __init__(self, data: NormalisedProblem) -> None:
        self.data = data
        #: The guess's pre-activations on all samples when its check computed them (else None).
        self.guess_pre: FloatArray | None = None
        #: The pattern whose least squares on all samples gave the guess, when it was polished on all of them.
        self.guess_pattern: NDArray[np.bool_] | None = None

    @cached_property
    def guess(self) -> FloatArray | None:
        """The polished moment guess (user units), or None when it does not fit (or ``sigma`` is not piecewise
        linear). Built on first use, apart from the cuts: :mod:`.shortcut` needs it alone."""
        data = self.data
        problem = data.problem
        if not isinstance(data.activation, PiecewiseLinear):
            return None
        moment = problem.source.reduce_rows(label_moment, problem.y)
        if not (np.all(np.isfinite(moment)) and np.any(moment)):
            return None
        return self._guess(moment)

    @cached_property
    def seeds(self) -> _Seeds | None:
        """The candidate cuts on each side of the guess, or None without a guess."""
        g, act = self.guess, self.data.activation
        if g is None or not isinstance(act, PiecewiseLinear):
            return None
        direction = g / np.linalg.norm(g)
        return _Seeds(direction, self._toward(act, g), self._away(act, direction))

    def _guess(self, moment: FloatArray) -> FloatArray | None:
        """The moment polished on an evenly spaced subset of ``SEED_SUBSET m`` samples (a small copy) and checked
        on all of them (one pass); on all of them when there are no more than that. None when it does not fit: on
        data no filter fits (noise, real data) the first working set then costs two passes and a small polish."""
        problem = self.data.problem
        threshold = SEED_FIT * max(float(problem.y @ problem.y), TINY)
        count = SEED_SUBSET * problem.m
        if count < problem.n:
            subset = np.linspace(0, problem.n - 1, count).round().astype(np.intp)
            small = problem.on_rows(subset)
            guess = polish(small, moment, rounds=SEED_POLISH_ROUNDS).w
            self.guess_pre = problem.preactivations(guess)  # kept: the shortcut reads the guess's pattern off it
            return guess if problem.loss_from(self.guess_pre) <= threshold else None
        outcome = polish(problem, moment, rounds=SEED_POLISH_ROUNDS)
        if outcome.loss > threshold:
            return None
        self.guess_pattern = outcome.fit_pattern
        return outcome.w

    def _toward(self, act: PiecewiseLinear, g: FloatArray) -> _Cuts | None:
        """The cuts at the guess's pattern of the samples with the smallest positive labels (tight at ``g``)."""
        data = self.data
        positive = np.flatnonzero(data.yn > 0)
        count = min(positive.size, SEED_ROWS * data.m)
        if count < data.m:
            return None
        samples = np.sort(positive[np.argpartition(data.yn[positive], count - 1)[:count]])
        patches = data.patches(samples)
        masks = np.einsum("skm,m->sk", patches, g) > 0  # the pattern separation keys its cuts by
        rows = np.einsum("sk,skm->sm", act.slopes(masks), patches)
        return _Cuts(samples, rows, [np.packbits(mask).tobytes() for mask in masks])

    def _away(self, act: PiecewiseLinear, direction: FloatArray) -> _Cuts | None:
        """Single-patch cuts of zero-label samples (tight at ``u = 0``) whose patch is nearest the guess's
        hyperplane (``|X_ij g^| / ||X_ij||`` smallest, ``X_ij g < 0``). One pass for ``X g^`` (and the cached patch
        norms); only the chosen samples' patches are copied."""
        data = self.data
        problem = data.problem
        zero = np.flatnonzero(data.yn == 0)
        if zero.size == 0:
            return None
        norms = problem.patch_norms()[zero]
        heights = problem.preactivations(direction)[zero] / np.maximum(norms, TINY)
        sample_of, patch_of = np.nonzero((heights < 0) & (norms > 0))
        count = min(sample_of.size, SEED_ROWS * data.m)
        if count < data.m:
            return None
        nearest = np.argpartition(-heights[sample_of, patch_of], count - 1)[:count]
        order = np.lexsort((patch_of[nearest], sample_of[nearest]))
        sample_of, patch_of = sample_of[nearest][order], patch_of[nearest][order]
        masks = np.zeros((count, problem.k), dtype=bool)
        masks[np.arange(count), patch_of] = True
        rows = np.einsum("sk,skm->sm", act.slopes(masks), data.patches(zero[sample_of]))
        return _Cuts(zero[sample_of], rows, [np.packbits(mask).tobytes() for mask in masks])

    def applies(self) -> bool:
        """Whether solves are seeded (the guess fits and some candidate cuts exist)."""
        seeds = self.seeds
        return seeds is not None and (seeds.toward is not None or seeds.away is not None)

    def seed(self, pool: WorkingSet) -> int:
        """Put the candidate cuts of both sides in the working set of a solve; returns how many joined."""
        seeds = self.seeds
        if seeds is None:
            return 0
        added = 0
        for cuts in (seeds.toward, seeds.away):
            if cuts is None:
                continue
            for c, i in enumerate(cuts.samples.tolist()):
                if pool.add_cut(i, cuts.keys[c], cuts.rows[c], float(self.data.yn[i]), sticky=False):
                    added += 1
        return added


@dataclass(frozen=True)
class _Cuts:
    """Candidate cuts: their samples, normalised rows and pattern keys."""

    samples: np.ndarray
    rows: FloatArray
    keys: list[bytes]


@dataclass(frozen=True)
class _Seeds:
    """The guess's unit direction and the candidate cuts on each side of it."""

    direction: FloatArray
    toward: _Cuts | None
    away: _Cuts | None
