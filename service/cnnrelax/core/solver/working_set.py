"""The working set: one pool for the cuts and the exact-cone samples of a problem, with one aging rule.

A *member* is either a cut ``a^T u <= b`` (a row, tagged by its sample and a key saying which piece it is) or a
sample whose exact cone constraint is in use (smooth activations; its right-hand side is ``y~_i``). Members do
not depend on ``r``, so the pool is shared by all trials of a problem. Only members in use enter a sub-problem.
A member slack for :data:`~cnnrelax.core.tolerances.IDLE_ROUNDS` rounds in a row leaves the sub-problem; if it
is violated again it comes back for good (*sticky*), so the loop cannot cycle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..problem import FloatArray
from ..tolerances import IDLE_ROUNDS, SLACK_TOL

IntArray = np.ndarray

#: The key of a cone member (a sample has at most one).
CONE_KEY = b"cone"


@dataclass(frozen=True)
class InUse:
    """The members of one sub-problem: the cuts (rows, right-hand sides, samples, pool positions) and the
    exact-cone samples (sorted, with their pool positions)."""

    rows: FloatArray
    rhs: FloatArray
    samples: IntArray
    cut_positions: IntArray
    cone_samples: IntArray
    cone_positions: IntArray

    def __len__(self) -> int:
        return int(self.rows.shape[0] + self.cone_samples.shape[0])


class WorkingSet:
    """The pool of members (module docstring) for filters of length ``m``."""

    def __init__(self, m: int, idle_rounds: int = IDLE_ROUNDS) -> None:
        self.m = m
        self.idle_rounds = idle_rounds
        self.index: dict[tuple[int, bytes], int] = {}
        self.rows = np.zeros((0, m))
        self.rhs = np.zeros(0)
        self.sample = np.zeros(0, dtype=np.intp)
        self.is_cone = np.zeros(0, dtype=bool)
        self.in_use = np.zeros(0, dtype=bool)
        self.sticky = np.zeros(0, dtype=bool)
        self.idle = np.zeros(0, dtype=np.intp)
        self._pending: list[tuple[int, FloatArray, float, bool]] = []

    def __len__(self) -> int:
        """Members ever pooled."""
        return len(self.index)

    def add_cut(self, i: int, key: bytes, row: FloatArray, rhs: float, sticky: bool = True) -> bool:
        """Add the cut ``row^T u <= rhs`` of sample ``i`` (or bring a dropped one back, sticky unless told
        otherwise: a seed at the start of a solve is not a return); False when in use."""
        return self._add(i, key, row, rhs, False, sticky)

    def add_cone(self, i: int, rhs: float) -> bool:
        """Put sample ``i``'s exact cone constraint in use (or bring it back); False when in use."""
        return self._add(i, CONE_KEY, np.zeros(self.m), rhs, True)

    def _add(self, i: int, key: bytes, row: FloatArray, rhs: float, cone: bool, sticky: bool = True) -> bool:
        position = self.index.get((i, key))
        if position is None:
            self.index[(i, key)] = len(self.index)
            self._pending.append((i, row, rhs, cone))
            return True
        if position >= len(self.in_use) or self.in_use[position]:
            return False
        self.in_use[position] = True
        self.sticky[position] |= sticky
        self.idle[position] = 0
        return True

    def _flush(self) -> None:
        if not self._pending:
            return
        count = len(self._pending)
        self.rows = np.vstack([self.rows, np.array([row for _, row, _, _ in self._pending])])
        self.rhs = np.concatenate([self.rhs, [rhs for _, _, rhs, _ in self._pending]])
        self.sample = np.concatenate([self.sample, np.array([i for i, _, _, _ in self._pending], dtype=np.intp)])
        self.is_cone = np.concatenate([self.is_cone, np.array([c for _, _, _, c in self._pending], dtype=bool)])
        self.in_use = np.concatenate([self.in_use, np.ones(count, dtype=bool)])
        self.sticky = np.concatenate([self.sticky, np.zeros(count, dtype=bool)])
        self.idle = np.concatenate([self.idle, np.zeros(count, dtype=np.intp)])
        self._pending.clear()

    def restart(self, cuts_in_use: bool = True) -> None:
        """Every cut back in use (or, ``cuts_in_use=False``, every cut out of use: a seeded solve starts from its
        seeds, and pooled cuts come back when violated) with a clean idle count (the start of a solve); cone
        members keep their state."""
        self._flush()
        cuts = ~self.is_cone
        self.in_use[cuts] = cuts_in_use
        self.idle[cuts] = 0

    def in_use_members(self) -> InUse:
        """The members of the next sub-problem."""
        self._flush()
        cuts = np.flatnonzero(self.in_use & ~self.is_cone)
        cones = np.flatnonzero(self.in_use & self.is_cone)
        cones = cones[np.argsort(self.sample[cones], kind="stable")]
        return InUse(self.rows[cuts], self.rhs[cuts], self.sample[cuts], cuts, self.sample[cones], cones)

    def age(self, positions: IntArray, slack: FloatArray) -> None:
        """Count rounds of slack (beyond ``SLACK_TOL (1 + |rhs|)``) for the members just used; drop the ones idle
        long enough and not sticky."""
        if not positions.size:
            return
        idle = slack > SLACK_TOL * (1.0 + np.abs(self.rhs[positions]))
        self.idle[positions] = np.where(idle, self.idle[positions] + 1, 0)
        drop = positions[(self.idle[positions] >= self.idle_rounds) & ~self.sticky[positions]]
        self.in_use[drop] = False
