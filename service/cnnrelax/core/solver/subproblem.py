"""One sub-problem of the working-set loop, assembled for Clarabel, and Clarabel's statuses as outcomes.

Variables ``[u, s, t, extra]``: the filter ``u`` (normalised), ``s`` for an l1 bound (``|u| <= s``), ``t_i`` per
sample of the working set when the fit is penalised (QP, naive), and the exact-cone variables of smooth
activations (:meth:`Smooth.cone_block`). The problem is ``min 1/2 ||t||^2 + q_w^T u`` subject to the user's
constraints (:class:`StaticRows`, built once), the cuts ``a^T u - t_i <= b``, ``t >= 0``, the temporary box
``|u| <= B`` and the exact cones.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum
from typing import Any

import clarabel
import numpy as np
import scipy.sparse as sp

from ...types import ShouldStop
from ..activations import ConeBlock, Smooth
from ..constraints import ResolvedConstraints
from ..options import SolverSettings
from ..problem import FloatArray
from ..tolerances import MIN_TIME_LIMIT_S
from .normalised import NormalisedProblem
from .working_set import InUse


class Outcome(Enum):
    """What a sub-problem's status means for the loop."""

    solved = "solved"
    cancelled = "cancelled"
    time_limit = "time_limit"
    infeasible = "infeasible"
    unbounded = "unbounded"
    max_iterations = "max_iterations"
    numerical_error = "numerical_error"


#: Clarabel's statuses as outcomes; any other status is a numerical error.
CLARABEL_OUTCOME: dict[str, Outcome] = {
    "Solved": Outcome.solved,
    "AlmostSolved": Outcome.solved,
    "CallbackTerminated": Outcome.cancelled,
    "MaxTime": Outcome.time_limit,
    "PrimalInfeasible": Outcome.infeasible,
    "AlmostPrimalInfeasible": Outcome.infeasible,
    "DualInfeasible": Outcome.unbounded,
    "AlmostDualInfeasible": Outcome.unbounded,
    "MaxIterations": Outcome.max_iterations,
}
#: Statuses after which another step rule is tried (:data:`RETRY_SETTINGS`).
RETRY_STATUSES = frozenset({"InsufficientProgress", "NumericalError"})
# Clarabel's interior point stalls now and then on degenerate sub-problems (an active norm bound with
# a tiny linear term): a shorter step or no equilibration gets through (measured on such instances).
RETRY_SETTINGS: tuple[dict[str, Any], ...] = ({}, {"max_step_fraction": 0.9}, {"equilibrate_enable": False})
#: A sub-problem whose optimum goes on to an exact vertex (:mod:`.crossover`) is first solved without Clarabel's
#: iterative refinement of each KKT solve (to ``1e-13``, up to 10 steps an iteration): the crossover recomputes the
#: vertex from the tight rows, so the interior point only has to find the optimal face. Measured on 156 LP-limit
#: trials (the loop alone; ReLU with k = 1 to 4, leaky ReLU, ``|u|``): the same statuses and iterations, the same
#: vertices to 3e-14, and each LP trial 15-25% faster. Any status but ``Solved`` (a stall, or Clarabel's
#: reduced-accuracy ``AlmostSolved``, whose vertex can then be off by 1e-2) solves the sub-problem again with
#: refinement on, and the solver's later sub-problems go with refinement from the start: where one ends short,
#: most do (19 of 25 at (10000, 500, 5), each solved twice before this rule).
VERTEX_SETTINGS: dict[str, Any] = {"iterative_refinement_enable": False}


def outcome_of(status: str) -> Outcome:
    return CLARABEL_OUTCOME.get(status, Outcome.numerical_error)


@dataclass(frozen=True)
class Evidence:
    """Clarabel's residuals and gap of a solve (SPEC 4.4)."""

    primal_residual: float
    dual_residual: float
    duality_gap: float


@dataclass(frozen=True)
class SubproblemResult:
    """One sub-problem's backend status (and what it means), primal point and iterations; ``t_samples`` are the
    samples of its ``t_i`` columns in order (penalised fit), ``first_t`` the column of the first."""

    status: str
    x: FloatArray
    iterations: int
    evidence: Evidence | None
    t_samples: np.ndarray | None
    first_t: int
    outcome: Outcome

    def t_values(self) -> FloatArray | None:
        """The ``t_i`` (clipped at 0) in the order of :attr:`t_samples`."""
        if self.t_samples is None:
            return None
        return np.maximum(self.x[self.first_t:self.first_t + len(self.t_samples)], 0.0)


@dataclass(frozen=True)
class StaticRows:
    """The user's constraints on ``u`` as Clarabel rows over ``[u, s]`` (``s`` only for an l1 bound)."""

    n_u: int
    zero: FloatArray
    zero_rhs: FloatArray
    ineq: FloatArray
    ineq_rhs: FloatArray
    soc: FloatArray | None
    soc_rhs: FloatArray | None

    @classmethod
    def build(cls, c: ResolvedConstraints) -> StaticRows:
        """Equalities (zero cone), linear inequalities and the l1 bound (nonnegative cone), the l2 bound (SOC)."""
        m = c.m
        n_u = m if c.l1_bound is not None else 0
        width = m + n_u
        linear = c.linear
        A, b = linear.rows
        zero = np.hstack([linear.A_eq, np.zeros((linear.A_eq.shape[0], n_u))])
        ineq = [np.hstack([A, np.zeros((A.shape[0], n_u))])]
        ineq_rhs = [b]
        if c.l1_bound is not None:
            eye = np.eye(m)
            ineq += [np.hstack([eye, -eye]), np.hstack([-eye, -eye]), np.hstack([np.zeros((1, m)), np.ones((1, m))])]
            ineq_rhs += [np.zeros(m), np.zeros(m), np.array([c.l1_bound])]
        soc = soc_rhs = None
        if c.l2_bound is not None:
            soc = np.vstack([np.zeros((1, width)), np.hstack([-np.eye(m), np.zeros((m, n_u))])])
            soc_rhs = np.concatenate([[c.l2_bound], np.zeros(m)])
        return cls(n_u, zero, linear.b_eq, np.vstack(ineq), np.concatenate(ineq_rhs), soc, soc_rhs)


class _Rows:
    """Row blocks of a sub-problem over ``width`` columns, with their cones in order, gathered as coordinates and
    turned into one CSC matrix at the end (no per-block sparse padding and stacking: that was a fifth of a
    round's time at (5000, 100, 4)). Dense blocks keep their nonzeros only, sparse ones their stored entries, so
    the matrix is the one ``vstack`` of padded blocks gave."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.height = 0
        self.coords: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.rhs: list[FloatArray] = []
        self.cones: list[Any] = []
        self.nonneg = 0

    def add(self, M: Any, b: FloatArray, nonneg: bool = True, column: int = 0) -> None:
        """Rows ``M`` (dense or sparse) with their columns starting at ``column``."""
        if sp.issparse(M):
            coo = sp.coo_matrix(M)
            rows, cols, vals = coo.row, coo.col, coo.data
        else:
            M = np.asarray(M, dtype=np.float64)
            rows, cols = np.nonzero(M)
            vals = M[rows, cols]
        self.coords.append((rows.astype(np.intp) + self.height, cols.astype(np.intp) + column, vals))
        self.rhs.append(b)
        self.height += M.shape[0]
        if nonneg:
            self.nonneg += M.shape[0]

    def add_entries(self, height: int, rows: np.ndarray, cols: np.ndarray, vals: FloatArray, b: FloatArray,
                    nonneg: bool = True) -> None:
        """``height`` rows given by their entries (row, column, value)."""
        self.coords.append((rows.astype(np.intp) + self.height, cols.astype(np.intp), vals))
        self.rhs.append(b)
        self.height += height
        if nonneg:
            self.nonneg += height

    def matrix(self) -> tuple[sp.csc_matrix, FloatArray]:
        if not self.coords:
            return sp.csc_matrix((0, self.width)), np.zeros(0)
        rows = np.concatenate([c[0] for c in self.coords])
        cols = np.concatenate([c[1] for c in self.coords])
        vals = np.concatenate([c[2] for c in self.coords])
        A = sp.csc_matrix((vals, (rows, cols)), shape=(self.height, self.width))
        A.sort_indices()
        return A, np.concatenate(self.rhs)


class Subproblems:
    """Assembles and solves the sub-problems of one solver (its data, constraints and settings fixed)."""

    def __init__(self, data: NormalisedProblem, settings: SolverSettings) -> None:
        self.data = data
        self.settings = settings
        self.static = StaticRows.build(data.constraints)
        activation = data.activation
        self.cones: Smooth | None = activation if isinstance(activation, Smooth) else None
        #: Whether a sub-problem that asks for it is still tried without refinement first (:data:`VERTEX_SETTINGS`).
        self.unrefined_first = True

    def solve(self, members: InUse, with_t: bool, q_w: FloatArray, bound: float | None,
              should_stop: ShouldStop | None, deadline: float | None, refine: bool = True) -> SubproblemResult:
        """``min 1/2 ||t||^2 + q_w^T u`` over the ``members`` (with ``t_i`` when ``with_t``) and the box;
        ``refine=False``: first without Clarabel's iterative refinement (:data:`VERTEX_SETTINGS`), for an LP over a
        polyhedron whose optimum the crossover takes to its vertex, until one such sub-problem ends short of
        ``Solved``."""
        m, n_u = self.data.m, self.static.n_u
        cone_of = members.cone_samples if self.cones is not None and members.cone_samples.size else None
        uniq: np.ndarray | None = None
        n_t = 0
        if with_t:
            both = members.samples if cone_of is None else np.concatenate([members.samples, cone_of])
            uniq = np.unique(both)
            n_t = len(uniq)
        block = None
        if cone_of is not None:
            t_of = None if uniq is None else np.searchsorted(uniq, cone_of) + m + n_u
            block = self._cone_block(cone_of, t_of, m + n_u + n_t)
        width = m + n_u + n_t + (0 if block is None else block.width)
        rows = self._rows(width, members, uniq, n_t, bound, block)
        A, b = rows.matrix()
        q = np.concatenate([q_w, np.zeros(width - m)])
        if n_t:
            diag = np.arange(m + n_u, m + n_u + n_t)
            P = sp.csc_matrix((np.ones(n_t), (diag, diag)), shape=(width, width))
        else:
            P = sp.csc_matrix((width, width))
        variants = RETRY_SETTINGS if refine or not self.unrefined_first else (VERTEX_SETTINGS, *RETRY_SETTINGS)
        return self._clarabel(P, q, A, b, rows.cones, uniq, m + n_u, block is not None, should_stop, deadline,
                              variants)

    def _cone_block(self, samples: np.ndarray, t_col: np.ndarray | None, first: int) -> ConeBlock:
        assert self.cones is not None
        data = self.data
        flat = data.patches(samples).reshape(-1, data.m)
        return self.cones.cone_block(flat, data.yn[samples], data.problem.k, t_col, first, data.y_scale)

    def _rows(self, width: int, members: InUse, uniq: np.ndarray | None, n_t: int, bound: float | None,
              block: ConeBlock | None) -> _Rows:
        m, st = self.data.m, self.static
        out = _Rows(width)
        if st.zero.shape[0]:
            out.add(st.zero, st.zero_rhs, nonneg=False)
            out.cones.append(clarabel.ZeroConeT(st.zero.shape[0]))
        cuts = members.rows
        if cuts.shape[0]:
            if n_t:
                # The cut a^T u - t_i <= b: its dense row, then -1 in its sample's t column.
                assert uniq is not None
                rows, cols = np.nonzero(cuts)
                count = cuts.shape[0]
                out.add_entries(count, np.concatenate([rows, np.arange(count)]),
                                np.concatenate([cols, np.searchsorted(uniq, members.samples) + m + st.n_u]),
                                np.concatenate([cuts[rows, cols], -np.ones(count)]), members.rhs)
            else:
                out.add(cuts, members.rhs)
        if n_t:
            out.add_entries(n_t, np.arange(n_t), np.arange(n_t) + m + st.n_u, -np.ones(n_t), np.zeros(n_t))
        if bound is not None:
            out.add_entries(2 * m, np.arange(2 * m), np.tile(np.arange(m), 2),
                            np.concatenate([np.ones(m), -np.ones(m)]), np.full(2 * m, bound))
        if st.ineq.shape[0]:
            out.add(st.ineq, st.ineq_rhs)
        if out.nonneg:
            out.cones.append(clarabel.NonnegativeConeT(out.nonneg))
        if st.soc is not None and st.soc_rhs is not None:
            out.add(st.soc, st.soc_rhs, nonneg=False)
            out.cones.append(clarabel.SecondOrderConeT(st.soc.shape[0]))
        if block is not None:
            out.add(sp.csr_matrix(block.A, shape=(block.A.shape[0], width)), block.b, nonneg=False)
            out.cones.extend(block.cones)
        return out

    def _settings(self, variant: dict[str, Any], deadline: float | None) -> Any:
        s = clarabel.DefaultSettings()
        s.verbose = False
        s.presolve_enable = False
        s.direct_solve_method = "qdldl"  # "auto" picked a supernodal solver that was 10x slower on these dense rows
        s.tol_gap_abs = self.settings.tol_gap_abs
        s.tol_gap_rel = self.settings.tol_gap_rel
        s.tol_feas = self.settings.tol_feas
        s.max_iter = self.settings.max_iter
        for name, value in variant.items():
            setattr(s, name, value)
        if deadline is not None:
            s.time_limit = max(deadline - time.monotonic(), MIN_TIME_LIMIT_S)
        return s

    def _clarabel(self, P: sp.csc_matrix, q: FloatArray, A: sp.csc_matrix, b: FloatArray, cones: list[Any],
                  uniq: np.ndarray | None, first_t: int, has_cones: bool, should_stop: ShouldStop | None,
                  deadline: float | None, variants: tuple[dict[str, Any], ...] = RETRY_SETTINGS) -> SubproblemResult:
        """Clarabel with the settings ``variants`` in turn: another step rule after a stall (:data:`RETRY_SETTINGS`),
        refinement on again after anything short of ``Solved`` without it (:data:`VERTEX_SETTINGS`; a cancel or the
        time limit ends it all the same); an activation that asks for it (:attr:`Smooth.retry_almost_solved`) retries
        an ``AlmostSolved`` too and keeps the first answer if no retry does better."""
        retry_almost = has_cones and self.cones is not None and self.cones.retry_almost_solved
        fallback: SubproblemResult | None = None
        result: SubproblemResult | None = None
        for variant in variants:
            solver = clarabel.DefaultSolver(P, q, A, b, cones, self._settings(variant, deadline))
            if should_stop is not None:
                solver.set_termination_callback(lambda _info: bool(should_stop()))
            sol = solver.solve()
            info = solver.get_info()
            status = str(sol.status)
            result = SubproblemResult(status, np.asarray(sol.x), int(sol.iterations),
                                      Evidence(float(info.res_primal), float(info.res_dual), float(info.gap_rel)),
                                      uniq, first_t, outcome_of(status))
            if result.status == "AlmostSolved" and retry_almost:
                # Second-order cones at a degenerate optimum (a patch at the kink of a tight sample) can stop Clarabel
                # at its reduced accuracy; another step rule often finishes. (Exponential cones end AlmostSolved on
                # most sub-problems, and a retry rarely helps: measured, 2 of 17 Solved on (5000, 100, 4), at three
                # times the cost.)
                fallback = fallback or result
                continue
            if variant is VERTEX_SETTINGS and result.status != "Solved" \
                    and result.outcome not in (Outcome.cancelled, Outcome.time_limit):
                self.unrefined_first = False  # short of full accuracy: solved again with refinement, as the rest
                continue
            if result.status not in RETRY_STATUSES:
                break
        assert result is not None
        if fallback is not None and result.status != "Solved":
            return fallback
        return result
