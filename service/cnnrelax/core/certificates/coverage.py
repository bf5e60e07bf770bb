"""Coverage (SPEC 4): the probability ``p`` that a random direction ``r ~ N(0, I)`` certifies a filter ``w``.

``p`` is the per-trial success probability at ``w`` (Theorem 1): the chance that one more randomized trial lands
on ``w``. It is estimated by Monte Carlo, seeded: directions are drawn from ``default_rng([seed, 2**32 - 1])``
(apart from the trials' streams) and each gets an exact verdict from :class:`OptimalityCone` (inside by
multipliers, outside by a polar vector). The trials that reach a success probability ``q`` follow as
``T = ceil(log(1 - q) / log(1 - p))``, computed from the interval's lower end so that they hold with the
interval's confidence.

Mirrored pairs. When the cone is pointed (:attr:`OptimalityCone.pointed`: every generator gains on the axis ``w``,
the case of a ReLU fit with positive labels), the draws ``r_1, r_2, ...`` are judged in pairs ``r_t, -r_t``: each
direction is still ``N(0, I)``, so the count over all of them still estimates ``p`` without bias, but at most one
of a pair is inside, so the pairs with a hit are independent Bernoulli draws of ``2p`` (antithetic sampling). The
interval is Clopper-Pearson's for ``2p`` over the pairs, halved: for ``p`` near 1/2 its variance is
``p (1 - 2p) / (2N)`` where ``2N`` independent directions give ``p (1 - p) / (2N)`` (about 10x smaller at
``p = 0.45``), and the mirror of a direction the axis rejects costs one product. Otherwise (ties, active
constraints, no axis) the draws are judged one by one.

Sequential stopping. Directions are judged in blocks of :data:`COVERAGE_BLOCK`; after at least
:data:`COVERAGE_MIN_DIRECTIONS` (:data:`COVERAGE_MIN_PAIRS` pairs) the estimate stops once the Wilson 95%
interval's half-width (for ``p``: over pairs, half that of ``2p``) is at most ``half_width``
(:data:`DEFAULT_COVERAGE_HALF_WIDTH`), and at ``samples`` directions at the latest (``samples`` rounded down to
even, in pairs). A stopping rule that looks at the data makes the Wilson interval too narrow (its coverage falls
to 0.89 near ``p = 1/2`` at half-width 0.2), so the interval reported is Clopper-Pearson's exact one, whose
coverage under this rule stays at about 95% for every ``p``, in pairs too (tests/test_coverage_fast.py simulates
both). With ``half_width=None`` exactly ``samples`` directions are judged. The first ``N`` directions are the same
whatever ``samples`` is, so an estimate that stops early is the prefix of the one that does not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Callable

import numpy as np
from scipy.special import betaincinv

from ..constraints import ResolvedConstraints
from ..problem import ConvProblem, FloatArray
from .cone import OptimalityCone, cone_not_applicable, optimality_cone
from .measures import DEFAULT_CONE_TOL, DEFAULT_FIT_TOL

#: The most directions an estimate judges (a solve's default ``coverage_samples``).
DEFAULT_COVERAGE_SAMPLES = 64
#: Stop once the Wilson 95% interval's half-width is at most this (None: judge every direction).
DEFAULT_COVERAGE_HALF_WIDTH: float | None = 0.2
#: Directions judged before the first look at the interval, and between looks ...
COVERAGE_MIN_DIRECTIONS = 16
COVERAGE_BLOCK = 8
#: ... and in mirrored pairs: 6 pairs (12 directions, 6 cone tests) give an interval at least as narrow as 16
#: independent directions (8 tests) for every ``p``, and about half as wide near ``p = 1/2``.
COVERAGE_MIN_PAIRS = 6
COVERAGE_CONFIDENCE = 0.95
_Z95 = 1.959963984540054
NOT_COMPUTED_REASON = "not computed: coverage_samples is 0"
STOPPED_REASON = "stopped: the job was cancelled while directions were judged"


class CoverageStatus(Enum):
    """What a :class:`Coverage` holds."""

    ESTIMATED = "estimated"
    NOT_APPLICABLE = "not_applicable"  # the filter does not fit y, or a norm bound is active
    NOT_COMPUTED = "not_computed"  # coverage_samples is 0
    STOPPED = "stopped"  # the job was cancelled while sampling


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

    @property
    def status(self) -> CoverageStatus:
        if self.applicable:
            return CoverageStatus.ESTIMATED
        return {NOT_COMPUTED_REASON: CoverageStatus.NOT_COMPUTED,
                STOPPED_REASON: CoverageStatus.STOPPED}.get(self.reason, CoverageStatus.NOT_APPLICABLE)


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


def clopper_pearson_interval(successes: int, total: int,
                             confidence: float = COVERAGE_CONFIDENCE) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval for a binomial proportion: beta quantiles, never too narrow.

    (``scipy.special.betaincinv(a, b, q)`` is the beta distribution's quantile; ``scipy.stats`` costs about
    20 MiB of memory to import.)
    """
    if total <= 0:
        return 0.0, 1.0
    alpha = 1.0 - confidence
    low = 0.0 if successes == 0 else float(betaincinv(successes, total - successes + 1, alpha / 2))
    high = 1.0 if successes == total else float(betaincinv(successes + 1, total - successes, 1 - alpha / 2))
    return low, high


def directions_to_judge(hits: list[bool], samples: int, half_width: float | None, paired: bool = False) -> bool:
    """Whether the sequential rule judges more directions after ``hits`` (module docstring); ``paired``: ``hits``
    holds the verdicts of mirrored pairs, in order (``r_1, -r_1, r_2, -r_2, ...``)."""
    judged = len(hits)
    if judged >= samples:
        return False
    if half_width is None or judged < _first_look(paired):
        return True
    if paired:
        low, high = wilson_interval(_pairs_with_a_hit(hits), judged // 2)
        return (high - low) / 4 > half_width  # the interval of p is half that of 2p
    low, high = wilson_interval(sum(hits), judged)
    return (high - low) / 2 > half_width


def _first_look(paired: bool) -> int:
    """Directions judged before the rule first looks at the interval."""
    return 2 * COVERAGE_MIN_PAIRS if paired else COVERAGE_MIN_DIRECTIONS


def _pairs_with_a_hit(hits: list[bool]) -> int:
    """Of the mirrored pairs ``hits[2t], hits[2t + 1]``, those with a direction inside."""
    return sum(a or b for a, b in zip(hits[0::2], hits[1::2], strict=True))


def coverage_directions(seed: int, samples: int, m: int, paired: bool) -> FloatArray:
    """The ``(samples, m)`` directions an estimate judges, in order: the draws of ``default_rng([seed, 2**32 - 1])``
    one by one, or (``paired``) the first ``samples // 2`` of them each followed by its mirror."""
    rng = np.random.default_rng([seed, 2**32 - 1])
    if not paired:
        return rng.standard_normal((samples, m))
    draws = rng.standard_normal((samples // 2, m))
    R = np.empty((2 * draws.shape[0], m))
    R[0::2], R[1::2] = draws, -draws
    return R


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
    half_width: float | None = DEFAULT_COVERAGE_HALF_WIDTH,
) -> Coverage:
    """Estimate the probability that ``r ~ N(0, I_m)`` certifies ``w`` (SPEC 4), seeded.

    Parameters
    ----------
    problem, w, constraints, tol, fit_tol : as for :func:`cnnrelax.core.certificates.cone_certificate`.
    samples : the most directions to judge (0 skips the estimate).
    seed : seed of the directions (``default_rng([seed, 2**32 - 1])``, apart from the trials' streams).
    cone : a cone already built at ``w`` (the test then applies).
    should_stop : polled between directions (a cancelled job stops sampling).
    half_width : stop once the Wilson interval's half-width is at most this; None judges all ``samples``.

    Returns
    -------
    The estimate, its Clopper-Pearson 95% interval, and the trials needed for 99% and 99.9% success computed
    from the interval's lower end (so that they hold with 95% confidence).
    """
    why_not = None if cone is not None else cone_not_applicable(problem, w, constraints, fit_tol)
    if why_not is not None or samples <= 0:
        reason = why_not or NOT_COMPUTED_REASON
        return Coverage(False, None, None, COVERAGE_CONFIDENCE, 0, 0, None, None, reason)
    if cone is None:
        cone, _ = optimality_cone(problem, w, constraints)
    paired = cone.pointed and samples >= 2
    R = coverage_directions(seed, samples, problem.m, paired)
    total = R.shape[0]
    hits: list[bool] = []
    first = _first_look(paired)
    while directions_to_judge(hits, total, half_width, paired):
        size = COVERAGE_BLOCK if len(hits) >= first else first
        if half_width is None:
            size = total
        block = R[len(hits):min(total, len(hits) + size)]
        verdicts = cone.members(block, tol, should_stop)
        if should_stop is not None and should_stop():  # verdicts left undone read False: not an estimate
            return Coverage(False, None, None, COVERAGE_CONFIDENCE, 0, 0, None, None, STOPPED_REASON)
        hits.extend(bool(v) for v in verdicts)
    judged, found = len(hits), sum(hits)
    if paired:  # Clopper-Pearson for 2p over the pairs, halved (module docstring)
        low, high = (bound / 2 for bound in clopper_pearson_interval(_pairs_with_a_hit(hits), judged // 2))
    else:
        low, high = clopper_pearson_interval(found, judged)
    p = found / judged
    for99, for999 = trials_needed(low, 0.99), trials_needed(low, 0.999)
    drawn = " (in mirrored pairs r, -r)" if paired else ""
    reason = (f"{found} of {judged} random directions r ~ N(0, I){drawn} make this filter LP-optimal: one trial "
              f"finds it with probability about {p:.3g} (95% interval {low:.3g} to {high:.3g})")
    reason += (f"; {for99} trials reach 99% and {for999} reach 99.9% (from the interval's lower end)"
               if for99 is not None else "; the interval reaches 0, so no number of trials can be promised")
    return Coverage(True, p, (low, high), COVERAGE_CONFIDENCE, judged, found, for99, for999, reason)
