"""Feasibility and boundedness: the temporary box, deciding feasibility without it, and recession directions.

A temporary box ``|u| <= B`` keeps early sub-problems bounded. When a sub-problem with the box is infeasible, the
cuts and user constraints alone decide (:meth:`Feasibility.decide`): "no" proves the full problem infeasible (the
cuts are valid inequalities of it), "yes" grows the box (:meth:`Feasibility.grown_box`). When the box is active at
the end, a recession LP decides between a larger box and a true unbounded outcome
(:meth:`Feasibility.recession_direction`): a direction ``v`` with ``sum_j sigma_inf(X_ij v) <= 0`` for every
sample, in the recession cone of the constraints, and ``r^T v > 0``, found by HiGHS's simplex and checked on every
patch with tolerances relative to ``||X_ij|| ||v||``.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
from scipy.optimize import linprog

from ...types import ShouldStop
from ..activations import PiecewiseLinear, RecessionForm
from ..constraints import LinearForm
from ..options import SolverSettings
from ..problem import FloatArray
from ..tolerances import (
    BOX_GROWTH,
    HIGHS_VERTEX_TOL,
    MAX_BOX,
    RECESSION_ON_BOX,
    RECESSION_TOL,
    TINY,
)
from .normalised import NormalisedProblem
from .subproblem import Outcome, Subproblems
from .working_set import InUse

#: HiGHS's options when a vertex (not a yes/no) is wanted.
VERTEX_OPTIONS = {"primal_feasibility_tolerance": HIGHS_VERTEX_TOL, "dual_feasibility_tolerance": HIGHS_VERTEX_TOL}
#: A piece of the recession cone: its violation relative to ``||v||`` per candidate, and each candidate's key and row.
Pieces = tuple[FloatArray, Callable[[int], tuple[tuple[int, bytes], FloatArray]]]


def highs(cost: FloatArray, rows: FloatArray, rhs: FloatArray, linear: LinearForm, bound: float | None,
          tight: bool = False) -> Any:
    """``min cost^T u`` over the cut rows, the linear user constraints and the box, by HiGHS's simplex (scipy).

    ``tight`` lowers HiGHS's feasibility tolerances (a vertex to report, not a yes/no).
    """
    form = linear if bound is None else linear.boxed(bound)
    A_ub = np.vstack([rows, form.A_ub]) if form.A_ub.shape[0] else rows
    b_ub = np.concatenate([rhs, form.b_ub]) if form.A_ub.shape[0] else rhs
    has_eq = form.A_eq.shape[0] > 0
    return linprog(cost, A_ub=A_ub if A_ub.shape[0] else None, b_ub=b_ub if A_ub.shape[0] else None,
                   A_eq=form.A_eq if has_eq else None, b_eq=form.b_eq if has_eq else None, bounds=form.bounds,
                   method="highs", options=VERTEX_OPTIONS if tight else {})


class Feasibility:
    """The box and the feasibility and recession tests of one solver."""

    def __init__(self, data: NormalisedProblem, subproblems: Subproblems, settings: SolverSettings,
                 batch: int) -> None:
        self.data = data
        self.subproblems = subproblems
        self.settings = settings
        self.batch = batch

    @staticmethod
    def grown_box(bound: float, size: float = 0.0) -> float | None:
        """The next box after ``bound`` (at least ten times a feasible point's ``max|u|``), None beyond
        :data:`MAX_BOX`."""
        grown = max(BOX_GROWTH * bound, 10.0 * size)
        return None if grown > MAX_BOX else grown

    def decide(self, members: InUse, with_t: bool, should_stop: ShouldStop | None,
               deadline: float | None) -> tuple[bool | None, float]:
        """Do the cuts (and exact cones) and the user constraints admit a filter, box or no box? (None: undecided.)

        Linear constraints are decided by HiGHS's simplex (exact); cones and norm bounds by Clarabel with a zero
        objective (bounded without a box). With ``with_t`` the fit is penalised, so only the user constraints
        count. Returns the verdict and ``max|u|`` of a feasible point.
        """
        m = self.data.m
        if with_t:
            members = InUse(np.zeros((0, m)), np.zeros(0), np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp),
                            np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp))
        c = self.data.constraints
        if c.is_linear and not members.cone_samples.size:
            res = highs(np.zeros(m), members.rows, members.rhs, c.linear, None)
            if res.status == 2:
                return False, 0.0
            if res.status != 0 or res.x is None:
                return None, 0.0
            return True, float(np.max(np.abs(res.x), initial=0.0))
        sub = self.subproblems.solve(members, False, np.zeros(m), None, should_stop, deadline)
        if sub.outcome is Outcome.solved:
            return True, float(np.max(np.abs(sub.x[:m]), initial=0.0))
        return (False, 0.0) if sub.outcome is Outcome.infeasible else (None, 0.0)

    def recession_direction(self, r: FloatArray, should_stop: ShouldStop | None,
                            deadline: float | None) -> FloatArray | None:
        """A ``v`` (user units) in the recession cone of the samples and the constraints with ``r^T v > 0``.

        HiGHS's simplex solves ``max r^T v`` over the pieces chosen so far (rows scaled to unit norm), the
        homogeneous user constraints and ``|v| <= 1``; pieces violated relative to ``||X_ij|| ||v||`` join until
        none is. A direction is returned only when it is confirmed on every piece; ``None`` means the problem is
        bounded in the direction ``r``.
        """
        m, linear = self.data.m, self.data.constraints.linear
        user_rows, _ = linear.rows
        chosen: list[FloatArray] = []
        seen: set[tuple[int, bytes]] = set()
        rn = r / max(float(np.linalg.norm(r)), TINY)
        for _ in range(self.settings.max_outer_iterations):
            if (should_stop is not None and should_stop()) or (deadline is not None and time.monotonic() > deadline):
                return None
            A_ub = np.vstack([*chosen, user_rows]) if chosen else user_rows
            has_ub, has_eq = A_ub.shape[0] > 0, linear.A_eq.shape[0] > 0
            res = linprog(-rn, A_ub=A_ub if has_ub else None, b_ub=np.zeros(A_ub.shape[0]) if has_ub else None,
                          A_eq=linear.A_eq if has_eq else None, b_eq=np.zeros(linear.A_eq.shape[0]) if has_eq else None,
                          bounds=[(-1.0, 1.0)] * m, method="highs", options=VERTEX_OPTIONS)
            if res.status != 0 or res.x is None:
                return None
            v = np.asarray(res.x)
            vnorm = float(np.linalg.norm(v))
            # On a cone cut by the box, a positive optimum sits on the box: |v|_inf = 1.
            if float(np.max(np.abs(v))) < RECESSION_ON_BOX or float(rn @ v) <= RECESSION_TOL * vnorm:
                return None
            relative, piece = self.pieces(v, vnorm)
            violated = np.flatnonzero(relative > RECESSION_TOL)
            if not violated.size:
                return v * self.data.kappa
            added = 0
            for index in violated[np.argsort(-relative[violated])].tolist():
                key, row = piece(index)
                if key not in seen:
                    seen.add(key)
                    chosen.append(row[None, :])
                    added += 1
                    if added >= self.batch:
                        break
            if not added:
                return None
        return None

    def pieces(self, v: FloatArray, vnorm: float) -> Pieces:
        """The recession cone's inequalities at ``v`` (:class:`RecessionForm`): violations relative to ``||v||``;
        each one's key and row."""
        problem, form = self.data.problem, self.data.activation.recession_form
        norms = problem.patch_norms()
        if form is RecessionForm.SAMPLE:
            act = self.data.activation
            assert isinstance(act, PiecewiseLinear)
            pre = problem.preactivations(v)
            masks = pre > 0
            slopes = act.slopes(masks)
            value = (slopes * pre).sum(axis=1)
            scale = norms.sum(axis=1)
            usable = scale > 0
            relative = np.full(problem.n, -np.inf)
            relative[usable] = value[usable] / (scale[usable] * vnorm)

            def sample_piece(i: int) -> tuple[tuple[int, bytes], FloatArray]:
                row: FloatArray = slopes[i] @ problem.source.take(np.array([i]))[0] / scale[i]
                return (i, np.packbits(masks[i]).tobytes()), row

            return relative, sample_piece
        two_sided = form is RecessionForm.PATCH_ZERO
        k, flat_norms = problem.k, norms.reshape(-1)
        usable = flat_norms > 0
        pre_flat = problem.preactivations(v).reshape(-1)
        signed = np.abs(pre_flat) if two_sided else pre_flat
        relative = np.full(flat_norms.shape[0], -np.inf)
        relative[usable] = signed[usable] / (flat_norms[usable] * vnorm)
        sign = np.where(pre_flat < 0, -1.0, 1.0) if two_sided else np.ones_like(pre_flat)

        def patch_piece(i: int) -> tuple[tuple[int, bytes], FloatArray]:
            row: FloatArray = problem.source.take(np.array([i // k]))[0, i % k] * (sign[i] / flat_norms[i])
            return (i, b"+" if sign[i] > 0 else b"-"), row

        return relative, patch_piece
