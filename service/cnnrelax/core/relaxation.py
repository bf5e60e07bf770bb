"""The randomized convex relaxations (SPEC 2), solved by Clarabel on a working set of cuts.

Minimising over ``z`` for fixed ``w`` leaves problems in the ``m`` entries of ``w`` alone, with
``s_i(w) = sum_j (X_ij w)_+``:

- LP (eq. 9):   ``max r^T w``  s.t. ``s_i(w) <= y_i``;
- QP (eq. 8):   ``min 1/2 sum_i ((s_i(w) - y_i)_+)^2 - beta r^T w``;
- naive (eq. 7): the QP with ``beta = 0`` (``w = 0`` is always optimal).

``s_i(w) <= y_i`` is the intersection of the half-spaces ``sum_{j in J} X_ij w <= y_i`` over all subsets
``J``; the most violated one at ``w`` has ``J = {j : X_ij w > 0}``. Each sub-problem keeps only the cuts
found so far (Clarabel solves it), a full pass over the data finds the most violated cuts, and the
loop stops when none is violated: the sub-problem's optimum is then feasible, hence optimal, for
the full problem. Cuts do not depend on ``r``, so the pool is shared by all trials of a problem.
A temporary box ``|w| <= B`` keeps early sub-problems bounded; when it is active at the end, a
recession LP decides between a larger box and a true unbounded outcome.

Units (SPEC 4c). Everything is solved on normalised data, ``X / x_scale`` and ``y / y_scale``
(:attr:`ConvProblem.scales`), in the variable ``u = w / kappa`` with ``kappa = y_scale / x_scale``;
the data are never copied (the scales are numbers applied to small cut rows and to ``u``). Every
tolerance is therefore relative, and ``(a X, b y)`` gives the same statuses and ``(b/a) w``.
``beta`` is dimensionless: the QP minimised is ``1/2 sum_i ((s_i - y_i)_+)^2 / y_scale^2 - beta r^T u``,
which in the user's units penalises ``beta * x_scale * y_scale * r^T w``.

Verdicts are only those of the full problem. ``infeasible``: the cuts are valid inequalities of the
full problem, so a sub-problem infeasible *without* the temporary box proves it (with the box, the
box grows instead). ``unbounded``: a recession direction ``v`` (``X_ij v <= 0`` for every patch, in
the recession cone of the constraints, ``r^T v > 0``) found by HiGHS's simplex and checked on every
patch with tolerances relative to ``||X_ij|| ||v||``.
For the LP the optimum is finally moved onto the exact vertex of the cuts Clarabel marks active
(a crossover, kept only when it is feasible and no worse), so its value matches HiGHS's to ~1e-12.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import clarabel
import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from scipy.optimize import linprog

from ..types import ShouldStop
from .activations import check_labels
from .constraints import FilterConstraints, ResolvedConstraints, resolve_constraints
from .problem import ConvProblem, FloatArray, InvalidParameterError


@dataclass(frozen=True)
class Relaxation:
    """One kind of relaxation (SPEC 2): what its objective weighs and whether the fit is a hard constraint.

    A new kind is one more entry in :data:`REGISTRY`; the solver, the oracle and validation read these
    fields instead of testing names.

    Attributes
    ----------
    name : the kind's name in requests.
    hard_fit : ``sum_j sigma(X_ij w) <= y_i`` is a constraint (the LP limit); otherwise its excess ``t_i`` is
        penalised by ``1/2 ||t||^2`` (QP, naive).
    direction : how ``r^T u`` enters: ``"one"`` (LP: maximised), ``"beta"`` (QP: weighted by ``beta > 0``),
        ``"none"`` (naive: ``w = 0`` is optimal).
    summary : one line for documentation and messages.
    """

    name: str
    hard_fit: bool
    direction: Literal["one", "beta", "none"]
    summary: str

    @property
    def needs_beta(self) -> bool:
        return self.direction == "beta"

    @property
    def needs_label_range(self) -> bool:
        """Labels outside the activation's range make the hard fit infeasible: refuse them up front."""
        return self.hard_fit

    def direction_weight(self, beta: float) -> float:
        """The weight of ``-r^T u`` in the minimised objective."""
        return {"one": 1.0, "beta": float(beta), "none": 0.0}[self.direction]


REGISTRY: dict[str, Relaxation] = {
    "lp": Relaxation("lp", True, "one", "the beta -> 0 limit: max r^T w s.t. sum_j sigma(X_ij w) <= y_i (eq. 9)"),
    "qp": Relaxation("qp", False, "beta", "min 1/2 ||(s(w) - y)_+||^2 - beta r^T w, for noisy labels (eq. 8)"),
    "naive": Relaxation("naive", False, "none", "the QP with beta = 0: w = 0 is always optimal (eq. 7)"),
}
RELAXATIONS: tuple[str, ...] = tuple(REGISTRY)


def relaxation_kind(name: str) -> Relaxation:
    """The registered relaxation named ``name``, or an :class:`InvalidParameterError` naming the choices."""
    kind = REGISTRY.get(name)
    if kind is None:
        raise InvalidParameterError(
            "relaxation", f"relaxation must be one of {', '.join(RELAXATIONS)}, got {name!r}."
        )
    return kind


@dataclass(frozen=True)
class SolverSettings:
    """Clarabel tolerances and the working-set loop's limits."""

    tol_gap_abs: float = 1e-9
    tol_gap_rel: float = 1e-9
    tol_feas: float = 1e-9
    max_iter: int = 200
    max_outer_iterations: int = 500
    cut_tol: float = 1e-9
    batch: int | None = None
    time_limit_s: float | None = None


@dataclass(frozen=True)
class RelaxationSolution:
    """One solve of a relaxation for one direction ``r``."""

    status: str
    message: str
    w: FloatArray | None
    objective: float | None
    iterations: int
    outer_iterations: int
    working_set: int
    solve_time_s: float
    clarabel_status: str
    primal_residual: float | None = None
    dual_residual: float | None = None
    duality_gap: float | None = None


def check_relaxation(relaxation: str, beta: float) -> Relaxation:
    """The relaxation named ``relaxation``, once its name and ``beta`` are acceptable (no data needed).

    Parameters
    ----------
    relaxation : the relaxation's name.
    beta : the QP's weight of ``r^T w``.

    Returns
    -------
    The registered relaxation.
    """
    kind = relaxation_kind(relaxation)
    if kind.needs_beta and not (np.isfinite(beta) and beta > 0):
        raise InvalidParameterError(
            "beta",
            f"The randomized QP needs beta > 0 (e.g. 1e-4), got beta={beta!r}; use relaxation 'lp' for beta -> 0.",
        )
    return kind


def validate_relaxation(problem: ConvProblem, relaxation: str, beta: float) -> None:
    """Reject a relaxation name, ``beta`` or labels that the relaxation cannot take."""
    kind = check_relaxation(relaxation, beta)
    if kind.needs_label_range:
        check_labels(problem.activation, problem.y)


def objective_value(problem: ConvProblem, w: FloatArray, r: FloatArray, relaxation: str, beta: float) -> float:
    """The relaxation's optimal-value expression at ``w`` (after minimising over ``z``), in the user's units.

    LP: ``r^T w``. QP: ``1/2 sum_i ((s_i(w) - y_i)_+)^2 - beta * y_scale^2 / kappa * r^T w`` (``beta`` is
    dimensionless, see the module docstring; ``y_scale^2 / kappa = x_scale y_scale`` for the degree-1 activations).
    Naive: the first term alone.
    """
    kind = relaxation_kind(relaxation)
    if kind.hard_fit:
        return float(r @ w)
    excess = np.maximum(problem.predict(w) - problem.y, 0.0)
    value = 0.5 * float(excess @ excess)
    if not kind.needs_beta:
        return value
    x_scale, y_scale = problem.scales
    if problem.activation.degree == 1:
        return value - beta * x_scale * y_scale * float(r @ w)
    # u = w / kappa: the normalised term beta r^T u, times y_scale^2, is beta y_scale^2 / kappa r^T w.
    return value - beta * y_scale * y_scale / problem.w_scale * float(r @ w)


# Clarabel's statuses as ours: None means "solved, go on"; a name ends the solve with that status.
CLARABEL_STATUS: dict[str, str | None] = {
    "Solved": None,
    "AlmostSolved": None,
    "CallbackTerminated": "cancelled",
    "MaxTime": "time_limit",
    "PrimalInfeasible": "infeasible",
    "AlmostPrimalInfeasible": "infeasible",
    "DualInfeasible": "unbounded",
    "AlmostDualInfeasible": "unbounded",
    "MaxIterations": "max_iterations",
}
# Clarabel's interior point stalls now and then on degenerate sub-problems (an active norm bound with
# a tiny linear term): a shorter step or no equilibration gets through (measured on such instances).
_RETRY_SETTINGS: tuple[dict[str, Any], ...] = ({}, {"max_step_fraction": 0.9}, {"equilibrate_enable": False})
MAX_BOX = 1e12  # in normalised units: a filter this far beyond the data's scale is a numerical failure

_INFEASIBLE_MESSAGE = (
    "The relaxation is infeasible: the constraints on w exclude every filter with sum_j (X_ij w)_+ <= y_i "
    "(w = 0 satisfies the data rows, so the constraints on w are the cause)."
)
_UNBOUNDED_MESSAGE = (
    "The relaxation is unbounded for this r: there is a direction v with X_ij v <= 0 for every sample and "
    "patch and r^T v > 0, so n={n} samples do not pin the filter down (m={m}). More samples are needed "
    "than n={n}: the relaxation needs n well above 2m (the Wendel threshold), and in practice several times more."
)


class _Cuts:
    """The cut pool: rows ``a`` with right-hand sides, tagged by sample, without duplicates.

    Only cuts in use enter a sub-problem. A cut slack for ``idle_rounds`` rounds in a row leaves the
    sub-problem; if it is violated again it comes back for good, so the loop cannot cycle.
    """

    def __init__(self, m: int, idle_rounds: int = 2) -> None:
        self.m = m
        self.idle_rounds = idle_rounds
        self.index: dict[tuple[int, bytes], int] = {}
        self.rows = np.zeros((0, m))
        self.rhs = np.zeros(0)
        self.sample = np.zeros(0, dtype=np.intp)
        self.in_use = np.zeros(0, dtype=bool)
        self.sticky = np.zeros(0, dtype=bool)
        self.idle = np.zeros(0, dtype=np.intp)
        self._pending: list[tuple[int, FloatArray, float]] = []

    def __len__(self) -> int:
        return len(self.index)

    def add(self, i: int, key: bytes, row: FloatArray, rhs: float) -> bool:
        """Add a cut (or bring a dropped one back); False when it is already in use."""
        position = self.index.get((i, key))
        if position is None:
            self.index[(i, key)] = len(self.index)
            self._pending.append((i, row, rhs))
            return True
        if position >= len(self.in_use) or self.in_use[position]:
            return False
        self.in_use[position] = self.sticky[position] = True
        self.idle[position] = 0
        return True

    def _flush(self) -> None:
        if self._pending:
            count = len(self._pending)
            self.rows = np.vstack([self.rows, np.array([row for _, row, _ in self._pending])])
            self.rhs = np.concatenate([self.rhs, [rhs for _, _, rhs in self._pending]])
            self.sample = np.concatenate([self.sample, np.array([i for i, _, _ in self._pending], dtype=np.intp)])
            self.in_use = np.concatenate([self.in_use, np.ones(count, dtype=bool)])
            self.sticky = np.concatenate([self.sticky, np.zeros(count, dtype=bool)])
            self.idle = np.concatenate([self.idle, np.zeros(count, dtype=np.intp)])
            self._pending.clear()

    def use_all(self) -> None:
        self._flush()
        self.in_use[:] = True
        self.idle[:] = 0

    def arrays(self) -> tuple[FloatArray, FloatArray, np.ndarray, np.ndarray]:
        """Rows, right-hand sides, samples and pool positions of the cuts in use."""
        self._flush()
        used = np.flatnonzero(self.in_use)
        return self.rows[used], self.rhs[used], self.sample[used], used

    def age(self, used: np.ndarray, slack: FloatArray, tol: FloatArray) -> None:
        """Count rounds of slack for the cuts just used; drop the ones idle long enough."""
        idle = slack > tol
        self.idle[used] = np.where(idle, self.idle[used] + 1, 0)
        drop = used[(self.idle[used] >= self.idle_rounds) & ~self.sticky[used]]
        self.in_use[drop] = False


@dataclass
class _Sub:
    """One sub-problem's result."""

    status: str
    x: FloatArray
    iterations: int
    info: Any = field(repr=False, default=None)
    t_samples: np.ndarray | None = None  # the samples of the t_i variables, in column order (QP)


class RelaxationSolver:
    """Solve one relaxation of one problem for many directions ``r``, sharing the cut pool.

    Parameters
    ----------
    problem : the problem data (user units; never copied).
    relaxation : a name in :data:`REGISTRY` (``"lp"``, ``"qp"`` or ``"naive"``).
    beta : the QP's dimensionless weight of ``r^T w`` (ignored by the others).
    constraints : convex constraints on ``w`` in the user's units.
    settings : Clarabel tolerances and the loop's limits.
    """

    def __init__(
        self,
        problem: ConvProblem,
        relaxation: str = "lp",
        *,
        beta: float = 0.0,
        constraints: FilterConstraints | ResolvedConstraints | None = None,
        settings: SolverSettings | None = None,
    ) -> None:
        validate_relaxation(problem, relaxation, beta)
        self.problem = problem
        self.activation = problem.activation
        self._smooth = not problem.activation.piecewise_linear
        self.relaxation = relaxation
        self.kind = relaxation_kind(relaxation)
        self.beta = float(beta) if self.kind.needs_beta else 0.0
        self.constraints = resolve_constraints(constraints, problem.m)
        self.settings = settings or SolverSettings()
        self.x_scale, self.y_scale = problem.scales
        self.kappa = problem.w_scale
        # sigma~(p) = sigma(x_scale kappa p) / y_scale on normalised pre-activations p: sigma itself for the homogeneous
        # activations (kappa makes x_scale kappa = y_scale^(1/q)), softplus(p) / y_scale (kappa = 1/x_scale).
        self._sigma_div = self.y_scale if problem.activation.degree is None else 1.0
        self._cone_set: set[int] = set()  # smooth activations: the samples whose exact cones are in use
        self._cone_idle: dict[int, int] = {}  # ... rounds each has been slack in a row (it leaves after 2)
        self._cone_sticky: set[int] = set()  # ... samples that came back after leaving: they stay (no cycling)
        self._yn = problem.y / self.y_scale
        self._unit = self.constraints.in_units(self.kappa)
        self.cuts = _Cuts(problem.m)
        self._static = self._static_rows()
        self._bound0 = 100.0
        self._batch = self.settings.batch or max(2 * problem.m, 50)

    # -- assembly ---------------------------------------------------------------------------

    def _static_rows(self) -> dict[str, Any]:
        """User constraints on ``u`` as Clarabel rows over ``[u, s]`` (``s`` only for an l1 bound)."""
        c, m = self._unit, self.problem.m
        n_u = m if c.l1_bound is not None else 0
        width = m + n_u
        I = np.eye(m)  # noqa: E741 (the identity, as in the mathematics)
        zero_rows: list[FloatArray] = []
        zero_rhs: list[FloatArray] = []
        ineq: list[FloatArray] = []
        ineq_rhs: list[FloatArray] = []
        pad = np.zeros((m, n_u))
        if c.equality is not None:
            E, e = c.equality
            zero_rows.append(np.hstack([E, np.zeros((E.shape[0], n_u))]))
            zero_rhs.append(e)
        if c.lower is not None:
            keep = np.isfinite(c.lower)
            ineq.append(np.hstack([-I, pad])[keep])
            ineq_rhs.append(-c.lower[keep])
        if c.upper is not None:
            keep = np.isfinite(c.upper)
            ineq.append(np.hstack([I, pad])[keep])
            ineq_rhs.append(c.upper[keep])
        if c.inequality is not None:
            G, h = c.inequality
            ineq.append(np.hstack([G, np.zeros((G.shape[0], n_u))]))
            ineq_rhs.append(h)
        if c.l1_bound is not None:
            ineq.append(np.hstack([I, -I]))
            ineq.append(np.hstack([-I, -I]))
            ineq.append(np.hstack([np.zeros((1, m)), np.ones((1, m))]))
            ineq_rhs.extend([np.zeros(m), np.zeros(m), np.array([c.l1_bound])])
        soc: FloatArray | None = None
        if c.l2_bound is not None:
            soc = np.vstack([np.zeros((1, width)), np.hstack([-I, pad])])

        def stack(parts: list[FloatArray], cols: int) -> FloatArray:
            return np.vstack(parts) if parts else np.zeros((0, cols))

        return {
            "n_u": n_u,
            "zero": stack(zero_rows, width), "zero_rhs": np.concatenate(zero_rhs) if zero_rhs else np.zeros(0),
            "ineq": stack(ineq, width), "ineq_rhs": np.concatenate(ineq_rhs) if ineq_rhs else np.zeros(0),
            "soc": soc, "soc_rhs": None if soc is None else np.concatenate([[c.l2_bound], np.zeros(m)]),
        }

    def _solve_sub(
        self,
        rows: FloatArray,
        rhs: FloatArray,
        samples: np.ndarray | None,
        q_w: FloatArray,
        bound: float | None,
        should_stop: ShouldStop | None,
        deadline: float | None,
        cones_of: np.ndarray | None = None,
    ) -> _Sub:
        """``min 1/2 ||t||^2 + q_w^T u`` s.t. cut rows (with ``t_i`` when ``samples`` is given), box, user rows,
        and (smooth activations) the exact cones of the samples ``cones_of`` (with their ``t_i`` when given)."""
        m, st = self.problem.m, self._static
        n_u = st["n_u"]
        if samples is not None:
            uniq = self._t_samples(samples, cones_of)
            t_index = np.searchsorted(uniq, samples)
            n_t = len(uniq)
        else:
            uniq, n_t, t_index = None, 0, None
        cone_block = None
        if cones_of is not None and len(cones_of):
            t_of = None if uniq is None else np.searchsorted(uniq, cones_of) + m + n_u
            cone_block = self._cone_block(np.asarray(cones_of, dtype=np.intp), t_of, m + n_u + n_t)
        width = m + n_u + n_t + (0 if cone_block is None else cone_block["width"])
        blocks: list[sp.spmatrix] = []
        b_parts: list[FloatArray] = []
        cones: list[Any] = []

        def pad(M: FloatArray) -> sp.csr_matrix:
            M = sp.csr_matrix(M)
            return sp.hstack([M, sp.csr_matrix((M.shape[0], width - M.shape[1]))], format="csr")

        if st["zero"].shape[0]:
            blocks.append(pad(st["zero"]))
            b_parts.append(st["zero_rhs"])
            cones.append(clarabel.ZeroConeT(st["zero"].shape[0]))
        n_nonneg = 0
        if rows.shape[0]:
            cut = sp.csr_matrix(rows)
            cut = sp.hstack([cut, sp.csr_matrix((rows.shape[0], n_u))], format="csr")
            if n_t:
                T = sp.csr_matrix((-np.ones(rows.shape[0]), (np.arange(rows.shape[0]), t_index)),
                                  shape=(rows.shape[0], n_t))
                cut = pad(sp.hstack([cut, T], format="csr"))
            else:
                cut = pad(cut)
            blocks.append(cut)
            b_parts.append(rhs)
            n_nonneg += rows.shape[0]
        if n_t:
            blocks.append(pad(sp.hstack([sp.csr_matrix((n_t, m + n_u)), -sp.identity(n_t)], format="csr")))
            b_parts.append(np.zeros(n_t))
            n_nonneg += n_t
        if bound is not None:
            eye = np.eye(m)
            blocks.append(pad(np.vstack([eye, -eye])))
            b_parts.append(np.full(2 * m, bound))
            n_nonneg += 2 * m
        if st["ineq"].shape[0]:
            blocks.append(pad(st["ineq"]))
            b_parts.append(st["ineq_rhs"])
            n_nonneg += st["ineq"].shape[0]
        if n_nonneg:
            cones.append(clarabel.NonnegativeConeT(n_nonneg))
        if st["soc"] is not None:
            blocks.append(pad(st["soc"]))
            b_parts.append(st["soc_rhs"])
            cones.append(clarabel.SecondOrderConeT(st["soc"].shape[0]))
        if cone_block is not None:
            blocks.append(sp.csr_matrix(cone_block["A"], shape=(cone_block["A"].shape[0], width)))
            b_parts.append(cone_block["b"])
            cones.extend(cone_block["cones"])
        if not blocks:
            blocks.append(sp.csr_matrix((0, width)))
            b_parts.append(np.zeros(0))
        A = sp.vstack(blocks, format="csc")
        b = np.concatenate(b_parts)
        q = np.concatenate([q_w, np.zeros(width - m)])
        if n_t:
            diag = np.arange(m + n_u, m + n_u + n_t)
            P = sp.csc_matrix((np.ones(n_t), (diag, diag)), shape=(width, width))
        else:
            P = sp.csc_matrix((width, width))
        fallback: _Sub | None = None
        for variant in _RETRY_SETTINGS:
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
                s.time_limit = max(deadline - time.monotonic(), 1e-3)
            solver = clarabel.DefaultSolver(P, q, A, b, cones, s)
            if should_stop is not None:
                solver.set_termination_callback(lambda _info: bool(should_stop()))
            sol = solver.solve()
            status = str(sol.status)
            if status == "AlmostSolved" and cone_block is not None and self.activation.name == "squared_relu":
                # Second-order cones at a degenerate optimum (a patch at the kink of a tight sample) can stop Clarabel
                # at its reduced accuracy; another step rule often finishes. The first answer stays if none does better.
                # (Exponential cones end AlmostSolved on most sub-problems, and a retry rarely helps: measured, 2 of
                # 17 Solved on (5000, 100, 4), at three times the cost.)
                if fallback is None:
                    fallback = _Sub(status, np.asarray(sol.x), int(sol.iterations), solver.get_info(), uniq)
                continue
            if status not in ("InsufficientProgress", "NumericalError"):
                break
        if fallback is not None and str(sol.status) != "Solved":
            return fallback
        return _Sub(str(sol.status), np.asarray(sol.x), int(sol.iterations), solver.get_info(), uniq)

    def _age_cones(self, cone_s: np.ndarray | None, excess: FloatArray) -> None:
        """Like the cuts' aging: a sample whose constraint was slack two rounds in a row leaves the working set."""
        if cone_s is None:
            return
        slack = -excess[cone_s] > 1e-6 * (1.0 + np.abs(self._yn[cone_s]))
        for i, idle in zip(cone_s.tolist(), slack.tolist(), strict=True):
            self._cone_idle[i] = self._cone_idle.get(i, 0) + 1 if idle else 0
            if self._cone_idle[i] >= 2 and i not in self._cone_sticky:
                self._cone_set.discard(i)

    @staticmethod
    def _t_samples(samples: np.ndarray, cones_of: np.ndarray | None) -> np.ndarray:
        """The samples that carry a ``t_i`` (QP): those of the cuts and those with exact cones, sorted."""
        both = samples if cones_of is None else np.concatenate([samples, cones_of])
        return np.unique(both)

    def _cone_block(self, S: np.ndarray, t_col: np.ndarray | None, first: int) -> dict[str, Any]:
        """The exact constraints ``sum_j sigma~(X~_ij u) <= y~_i (+ t_i)`` of the samples ``S`` (smooth activations).

        Squared ReLU: ``a_ij >= X~_ij u`` and the rotated second-order cone
        ``sum_j a_ij^2 <= y~_i + t_i``, written ``||(2 a_i, y~_i + t_i - 1)|| <= y~_i + t_i + 1``.
        Softplus: ``b_ij >= log(1 + e^(X~_ij u))`` as ``e^(-b_ij) + e^(X~_ij u - b_ij) <= 1``, two exponential
        cones ``(x, 1, z) : e^x <= z`` with ``z = q_ij`` and ``z = 1 - q_ij``, then
        ``sum_j b_ij / y_scale <= y~_i + t_i``.
        New variables start at column ``first``; ``t_col`` gives each sample's ``t_i`` column (None for the LP).
        Returns the rows (COO, columns up to ``first + width``), right-hand sides, cones and ``width``.
        """
        m, k, s = self.problem.m, self.problem.k, len(S)
        Xs = self.problem.patches[S] / self.x_scale  # (s, k, m): a small copy, the working set only
        yn = self._yn[S]
        sk = s * k
        patch = np.arange(sk)
        rows: list[np.ndarray] = []
        cols: list[np.ndarray] = []
        vals: list[np.ndarray] = []
        offset = 0

        def put(r: np.ndarray, c: np.ndarray, v: np.ndarray | float) -> None:
            rows.append(np.asarray(r, dtype=np.intp) + offset)
            cols.append(np.asarray(c, dtype=np.intp))
            vals.append(np.broadcast_to(np.asarray(v, dtype=np.float64), np.shape(r)).copy())

        u_rows = np.repeat(patch, m)
        u_cols = np.tile(np.arange(m), sk)
        flat = Xs.reshape(sk, m)
        if self.activation.name == "squared_relu":
            a = first + patch
            # nonnegative block: a_ij - X~_ij u >= 0. (No a_ij >= 0: some a >= p with sum_j a_j^2 <= c exists iff
            # sum_j (p_j)_+^2 <= c, since |a_j| >= (p_j)_+ and a_j = (p_j)_+ is a choice.)
            put(u_rows, u_cols, flat.reshape(-1))
            put(patch, a, -1.0)
            offset += sk
            b_parts = [np.zeros(sk)]
            cones: list[Any] = [clarabel.NonnegativeConeT(sk)]
            # one rotated cone per sample, k + 2 rows: (y~ + t + 1, 2 a_i1 .. 2 a_ik, y~ + t - 1)
            size = k + 2
            base = np.arange(s) * size
            if t_col is not None:
                put(base, t_col, -1.0)
                put(base + k + 1, t_col, -1.0)
            put((base[:, None] + 1 + np.arange(k)[None, :]).reshape(-1), a, -2.0)
            rhs = np.zeros(s * size)
            rhs[base] = yn + 1.0
            rhs[base + k + 1] = yn - 1.0
            b_parts.append(rhs)
            cones.extend(clarabel.SecondOrderConeT(size) for _ in range(s))
            width = sk
            total = sk + s * size
        else:  # softplus
            b_col, q1 = first + 2 * patch, first + 2 * patch + 1
            owner = np.repeat(np.arange(s), k)
            # nonnegative block: y~_i + t_i - sum_j b_ij / y_scale >= 0
            put(owner, b_col, 1.0 / self.y_scale)
            if t_col is not None:
                put(np.arange(s), t_col, -1.0)
            offset += s
            b_parts = [yn.astype(np.float64)]
            cones = [clarabel.NonnegativeConeT(s)]
            # exponential cones, 3 rows each: (-b, 1, q1) and (X~ u - b, 1, 1 - q1), i.e. e^(-b) <= q1 and
            # e^(X~ u - b) <= 1 - q1: together e^(-b) + e^(X~ u - b) <= 1
            first_cone = 3 * patch
            second = 3 * sk + 3 * patch
            put(first_cone, b_col, 1.0)
            put(first_cone + 2, q1, -1.0)
            put(second[u_rows], u_cols, -flat.reshape(-1))
            put(second, b_col, 1.0)
            put(second + 2, q1, 1.0)
            rhs = np.zeros(6 * sk)
            rhs[first_cone + 1] = 1.0
            rhs[second + 1] = 1.0
            rhs[second + 2] = 1.0
            b_parts.append(rhs)
            cones.extend(clarabel.ExponentialConeT() for _ in range(2 * sk))
            width = 2 * sk
            total = s + 6 * sk
        A = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                          shape=(total, first + width)).tocsr()
        return {"A": A, "b": np.concatenate(b_parts), "cones": cones, "width": width}

    # -- normalised data ----------------------------------------------------------------------

    def _pre(self, u: FloatArray) -> FloatArray:
        """Normalised pre-activations ``(X_ij / x_scale) u``, shape ``(n, k)``, without copying ``X``."""
        return self.problem.preactivations(u / self.x_scale)

    def _violations(self, u: FloatArray, t: dict[int, float] | None) -> tuple[FloatArray, FloatArray]:
        """Per-sample excess ``s_i(u) - y_i - t_i`` (normalised) over the full data, and the pre-activations."""
        pre = self._pre(u)
        excess = self.activation.value(pre).sum(axis=1) / self._sigma_div - self._yn
        if t:
            idx = np.fromiter(t.keys(), dtype=np.intp)
            excess[idx] -= np.fromiter(t.values(), dtype=np.float64)
        return excess, pre

    # -- the working-set loop ---------------------------------------------------------------

    def solve(self, r: FloatArray, *, should_stop: ShouldStop | None = None) -> RelaxationSolution:
        """Solve the relaxation for direction ``r`` (maximise ``r^T w``, SPEC 2 convention).

        Parameters
        ----------
        r : the direction, length ``m``.
        should_stop : polled between rounds and inside Clarabel; True cancels the solve.

        Returns
        -------
        The solution, its filter in the user's units, and the solver's evidence.
        """
        r = np.asarray(r, dtype=np.float64)
        problem, st = self.problem, self.settings
        m = problem.m
        start = time.monotonic()
        deadline = None if st.time_limit_s is None else start + st.time_limit_s
        q_w = -self.kind.direction_weight(self.beta) * r
        with_t = not self.kind.hard_fit
        bound: float | None = None if self._unit.is_bounded else self._bound0
        iterations = outer = 0
        tol = st.cut_tol * (1.0 + np.abs(self._yn))
        sub: _Sub | None = None

        def finish(status: str, message: str, u: FloatArray | None = None) -> RelaxationSolution:
            return self._finish(status, message, u, r, iterations, outer, start, sub)

        self.cuts.use_all()
        while True:
            outer += 1
            if should_stop is not None and should_stop():
                return finish("cancelled", "The solve was cancelled.")
            if deadline is not None and time.monotonic() > deadline:
                return finish("time_limit", f"The solve exceeded its time limit of {st.time_limit_s:g} s.")
            if outer > st.max_outer_iterations:
                return finish("max_iterations", "The working-set loop did not converge within "
                              f"{st.max_outer_iterations} rounds.")
            rows, rhs, samples, used = self.cuts.arrays()
            cone_s = np.array(sorted(self._cone_set), dtype=np.intp) if self._smooth else None
            sub = self._solve_sub(rows, rhs, samples if with_t else None, q_w, bound, should_stop, deadline, cone_s)
            iterations += sub.iterations
            outcome = CLARABEL_STATUS.get(sub.status, "numerical_error")
            if outcome == "infeasible":
                feasible, size = self._feasible(rows, rhs, with_t, should_stop, deadline, cone_s)
                if feasible is None:
                    return finish("numerical_error", "Clarabel reported the sub-problem infeasible, and deciding "
                                  "feasibility without the temporary box failed too: a numerical failure.")
                if not feasible:
                    return finish("infeasible", _INFEASIBLE_MESSAGE)
                if bound is None:
                    return finish("numerical_error", "Clarabel reported the sub-problem infeasible, but a feasible "
                                  "filter exists: a numerical failure.")
                bound = max(100.0 * bound, 10.0 * size)
                if bound > MAX_BOX:
                    return finish("numerical_error", "Every feasible filter lies beyond 1e12 times the data's natural "
                                  "scale y_scale / x_scale: the problem is too ill-conditioned to solve reliably.")
                continue
            if outcome is not None:
                return self._status_outcome(outcome, sub, r, iterations, outer, start)
            u = sub.x[:m]
            t: dict[int, float] | None = None
            slack = rhs - rows @ u
            if sub.t_samples is not None:
                uniq = sub.t_samples
                first_t = m + self._static["n_u"]
                tv = np.maximum(sub.x[first_t:first_t + len(uniq)], 0.0)
                t = dict(zip(uniq.tolist(), tv.tolist(), strict=True))
                slack += tv[np.searchsorted(uniq, samples)]
            self.cuts.age(used, slack, 1e-6 * (1.0 + np.abs(rhs)))
            excess, pre = self._violations(u, t)
            if self._smooth and self._cone_set:
                self._age_cones(cone_s, excess)
            violated = np.flatnonzero(excess > tol)
            added = 0
            if violated.size > 8 * self._batch:
                # Only the most violated samples can make this round's batch: gather those alone.
                violated = violated[np.argpartition(-excess[violated], 8 * self._batch)[: 8 * self._batch]]
            if violated.size and self._smooth:
                # Exact cones for the most violated samples not yet in the working set (a sample already in it is
                # violated only by the interior point's accuracy). A zero label in the LP makes the constraint
                # sum_j sigma(X_ij u) <= 0, i.e. X_ij u <= 0 for each patch: linear cuts (the cone would have no
                # interior, and interior-point accuracy suffers).
                for i in violated[np.argsort(-excess[violated])].tolist():
                    if not with_t and self._yn[i] == 0.0:
                        positive = np.flatnonzero(pre[i] > 0)
                        for j in positive.tolist():
                            if self.cuts.add(i, b"patch" + j.to_bytes(4, "little"),
                                             problem.patches[i, j] / self.x_scale, 0.0):
                                added += 1
                    elif i not in self._cone_set:
                        if i in self._cone_idle:
                            self._cone_sticky.add(int(i))
                        self._cone_set.add(int(i))
                        self._cone_idle[int(i)] = 0
                        added += 1
                    if added >= self._batch:
                        break
            elif violated.size and not self._smooth:
                masks = pre[violated] > 0
                # The most violated piece: slope sigma'(X_ij u) per patch (1/0 for ReLU, hi/lo for the others).
                slopes = self.activation.slopes(masks)
                cut_rows = np.einsum("vk,vkm->vm", slopes, problem.patches[violated]) / self.x_scale
                # Deepest cuts first: the distance from u to each violated half-space.
                depth = excess[violated] / np.maximum(np.linalg.norm(cut_rows, axis=1), 1e-300)
                for v in np.argsort(-depth):
                    i = int(violated[v])
                    if self.cuts.add(i, np.packbits(masks[v]).tobytes(), cut_rows[v], float(self._yn[i])):
                        added += 1
                        if added >= self._batch:
                            break
            if added:
                continue
            if bound is not None and self.kind.direction != "none" and np.max(np.abs(u)) >= 0.99 * bound:
                if self._recession_direction(r, should_stop, deadline) is not None:
                    return finish("unbounded", _UNBOUNDED_MESSAGE.format(n=problem.n, m=m))
                bound *= 100.0
                if bound > MAX_BOX:
                    return finish("numerical_error", "The filter keeps growing (beyond 1e12 times the data's natural "
                                  "scale y_scale / x_scale) although no recession direction exists: the problem is "
                                  "too ill-conditioned to solve reliably.")
                continue
            if self.kind.hard_fit and not self._smooth:
                u = self._crossover(u, r, rows, rhs, tol, bound)
            return finish("optimal", "Solved to optimality.", u)

    def _feasible(self, rows: FloatArray, rhs: FloatArray, with_t: bool, should_stop: ShouldStop | None,
                  deadline: float | None, cones_of: np.ndarray | None = None) -> tuple[bool | None, float]:
        """Do the cuts and the user constraints admit a filter, box or no box? (None: undecided.)

        The cuts are valid inequalities of the full problem, so "no" proves the full problem infeasible.
        Linear constraints are decided by HiGHS's simplex (exact); norm bounds by Clarabel with a zero
        objective (bounded without a box). Returns the verdict and ``max|u|`` of a feasible point.
        """
        m, c = self.problem.m, self._unit
        use_rows, use_rhs = (np.zeros((0, m)), np.zeros(0)) if with_t else (rows, rhs)
        use_cones = None if with_t else cones_of
        if c.is_linear and (use_cones is None or not len(use_cones)):
            res = self._highs(np.zeros(m), use_rows, use_rhs, None)
            if res.status == 2:
                return False, 0.0
            if res.status != 0 or res.x is None:
                return None, 0.0
            return True, float(np.max(np.abs(res.x), initial=0.0))
        sub = self._solve_sub(use_rows, use_rhs, None, np.zeros(m), None, should_stop, deadline, use_cones)
        verdict = CLARABEL_STATUS.get(sub.status, "numerical_error")
        if verdict is None:
            return True, float(np.max(np.abs(sub.x[:m]), initial=0.0))
        return (False, 0.0) if verdict == "infeasible" else (None, 0.0)

    def _crossover(self, u: FloatArray, r: FloatArray, rows: FloatArray, rhs: FloatArray,
                   tol: FloatArray, bound: float | None) -> FloatArray:
        """Replace the interior-point LP optimum by an exact vertex (a crossover, as commercial LP solvers do).

        Two candidates: the projection of ``u`` onto the cuts and constraints tight at it, and HiGHS's simplex
        on the final working set (the cuts in use, the user constraints and the box). A projection whose tight
        rows have full rank is that vertex already (HiGHS is then skipped: it costs a third of a trial). The
        best candidate that satisfies every sample and user constraint and whose value ``r^T u`` is no worse
        (to 1e-7 relative) replaces ``u``; Clarabel's interior point stays otherwise. (The value may drop a
        little when the interior point was itself infeasible by up to the cut tolerance.)
        """
        if rows.shape[0] == 0:
            return u
        c = self._unit
        value = float(r @ u)
        floor = value - 1e-7 * (abs(value) + float(np.linalg.norm(r)))

        def acceptable(candidate: FloatArray | None) -> bool:
            if candidate is None or not np.all(np.isfinite(candidate)):
                return False
            excess, _ = self._violations(candidate, None)
            scale = 1.0 + float(np.max(np.abs(candidate)))
            return not (np.any(excess > tol) or c.violation(candidate) > 1e-9 * scale or float(r @ candidate) < floor)

        projection, rank = self._projection(u, rows, rhs)
        if rank == self.problem.m and acceptable(projection):
            assert projection is not None
            return projection
        vertex = self._vertex(r, rows, rhs, bound)
        # On an optimal face that is not a point, ties within rounding go to the vertex: which point wins must not
        # depend on the last bits (the same answer in every unit).
        rounding = 1e-12 * (abs(value) + float(np.linalg.norm(r)))
        best, best_value = u, -np.inf
        for candidate in (vertex, projection):
            if acceptable(candidate):
                assert candidate is not None
                candidate_value = float(r @ candidate)
                if candidate_value > best_value + rounding:
                    best, best_value = candidate, candidate_value
        return best

    def _vertex(self, r: FloatArray, rows: FloatArray, rhs: FloatArray, bound: float | None) -> FloatArray | None:
        """HiGHS's simplex on the working-set LP ``max r^T u`` (linear constraints only; None otherwise)."""
        if not self._unit.is_linear:
            return None
        res = self._highs(-r, rows, rhs, bound, tight=True)
        return np.asarray(res.x, dtype=np.float64) if res.status == 0 and res.x is not None else None

    def _highs(self, cost: FloatArray, rows: FloatArray, rhs: FloatArray, bound: float | None,
               tight: bool = False) -> Any:
        """``min cost^T u`` over the cut rows, the (linear) user constraints and the box, by HiGHS's simplex.

        ``tight`` lowers HiGHS's feasibility tolerances to 1e-10 (a vertex to report, not a yes/no).
        """
        m, c = self.problem.m, self._unit
        A_ub = np.vstack([rows, c.inequality[0]]) if c.inequality is not None else rows
        b_ub = np.concatenate([rhs, c.inequality[1]]) if c.inequality is not None else rhs
        lower = c.lower if c.lower is not None else np.full(m, -np.inf)
        upper = c.upper if c.upper is not None else np.full(m, np.inf)
        if bound is not None:
            lower, upper = np.maximum(lower, -bound), np.minimum(upper, bound)
        options = {"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10} if tight else {}
        return linprog(cost, A_ub=A_ub if A_ub.shape[0] else None, b_ub=b_ub if A_ub.shape[0] else None,
                       A_eq=None if c.equality is None else c.equality[0],
                       b_eq=None if c.equality is None else c.equality[1],
                       bounds=[(lo if np.isfinite(lo) else None, hi if np.isfinite(hi) else None)
                               for lo, hi in zip(lower, upper, strict=True)],
                       method="highs", options=options)

    def _projection(self, u: FloatArray, rows: FloatArray, rhs: FloatArray) -> tuple[FloatArray | None, int]:
        """``u`` projected onto ``{A u = b}`` for the cuts and user constraints tight at it; and the rank of ``A``."""
        # Active: tight at the interior point (Clarabel's duals of slack rows are small but not zero, and on
        # this degenerate LP many tight rows have zero duals, so slack decides; a wrong guess is rejected below).
        active = rhs - rows @ u <= 1e-6 * (1.0 + np.abs(rhs))
        A, b = rows[active], rhs[active]
        c = self._unit
        extra_rows: list[FloatArray] = []
        extra_rhs: list[FloatArray] = []
        if c.equality is not None:
            extra_rows.append(c.equality[0])
            extra_rhs.append(c.equality[1])
        scale = 1.0 + float(np.max(np.abs(u)))

        def near(gap: FloatArray) -> NDArray[np.bool_]:
            return gap <= 1e-7 * scale

        if c.lower is not None:
            hit = np.flatnonzero(np.isfinite(c.lower) & near(u - c.lower))
            extra_rows.append(np.eye(self.problem.m)[hit])
            extra_rhs.append(c.lower[hit])
        if c.upper is not None:
            hit = np.flatnonzero(np.isfinite(c.upper) & near(c.upper - u))
            extra_rows.append(np.eye(self.problem.m)[hit])
            extra_rhs.append(c.upper[hit])
        if c.inequality is not None:
            G, h = c.inequality
            hit = np.flatnonzero(near(h - G @ u))
            extra_rows.append(G[hit])
            extra_rhs.append(h[hit])
        if extra_rows:
            A = np.vstack([A, *extra_rows])
            b = np.concatenate([b, *extra_rhs])
        if A.shape[0] == 0:
            return None, 0
        step, _, rank, _ = np.linalg.lstsq(A, b - A @ u, rcond=None)
        return np.asarray(u + step, dtype=np.float64), int(rank)

    def _status_outcome(self, outcome: str, sub: _Sub, r: FloatArray, iterations: int, outer: int,
                        start: float) -> RelaxationSolution:
        """The solution for a sub-problem that ended the solve (status mapped by :data:`CLARABEL_STATUS`)."""
        messages = {
            "cancelled": "The solve was cancelled.",
            "time_limit": f"The solve exceeded its time limit of {self.settings.time_limit_s or 0:g} s.",
            "infeasible": _INFEASIBLE_MESSAGE,
            # Every sub-problem has a box or bounded constraints, so Clarabel's "unbounded" is a numerical failure.
            "unbounded": "Clarabel reported a bounded sub-problem unbounded: a numerical failure.",
            "max_iterations": f"Clarabel stopped after {sub.iterations} iterations without converging.",
        }
        status = "numerical_error" if outcome == "unbounded" else outcome
        message = messages.get(outcome, f"Clarabel ended with status {sub.status}.")
        return self._finish(status, message, None, r, iterations, outer, start, sub)

    def _recession_direction(self, r: FloatArray, should_stop: ShouldStop | None,
                             deadline: float | None) -> FloatArray | None:
        """A ``v`` with ``X_ij v <= 0`` for all patches, in the constraints' recession cone, and ``r^T v > 0``.

        HiGHS's simplex solves ``max r^T v`` over the patches chosen so far (rows scaled to unit norm),
        the homogeneous user constraints and ``|v| <= 1``; patches violated relative to ``||X_ij|| ||v||``
        join until none is. A direction is returned only when it is confirmed on every patch; ``None``
        means the problem is bounded in the direction ``r``.
        """
        m, c = self.problem.m, self._unit
        pieces = self._recession_pieces
        eq_rows = c.equality[0] if c.equality is not None else np.zeros((0, m))
        fixed: list[FloatArray] = []
        if c.lower is not None:
            fixed.append(-np.eye(m)[np.isfinite(c.lower)])
        if c.upper is not None:
            fixed.append(np.eye(m)[np.isfinite(c.upper)])
        if c.inequality is not None:
            fixed.append(c.inequality[0])
        user_rows = np.vstack(fixed) if fixed else np.zeros((0, m))
        chosen: list[FloatArray] = []
        seen: set[tuple[int, bytes]] = set()
        rn = r / max(float(np.linalg.norm(r)), 1e-300)
        options = {"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10}
        for _ in range(self.settings.max_outer_iterations):
            if (should_stop is not None and should_stop()) or (deadline is not None and time.monotonic() > deadline):
                return None
            A_ub = np.vstack([*chosen, user_rows]) if chosen else user_rows
            has_ub = A_ub.shape[0] > 0
            res = linprog(-rn, A_ub=A_ub if has_ub else None, b_ub=np.zeros(A_ub.shape[0]) if has_ub else None,
                          A_eq=eq_rows if eq_rows.shape[0] else None,
                          b_eq=np.zeros(eq_rows.shape[0]) if eq_rows.shape[0] else None,
                          bounds=[(-1.0, 1.0)] * m, method="highs", options=options)
            if res.status != 0 or res.x is None:
                return None
            v = np.asarray(res.x)
            vnorm = float(np.linalg.norm(v))
            # On a cone cut by the box, a positive optimum sits on the box: |v|_inf = 1.
            if float(np.max(np.abs(v))) < 0.5 or float(rn @ v) <= 1e-9 * vnorm:
                return None
            relative, piece = pieces(v, vnorm)
            violated = np.flatnonzero(relative > 1e-9)
            if not violated.size:
                return v * self.kappa
            added = 0
            for index in violated[np.argsort(-relative[violated])].tolist():
                key, row = piece(index)
                if key not in seen:
                    seen.add(key)
                    chosen.append(row[None, :])
                    added += 1
                    if added >= self._batch:
                        break
            if not added:
                return None
        return None

    def _recession_pieces(self, v: FloatArray, vnorm: float
                          ) -> tuple[FloatArray, Callable[[int], tuple[tuple[int, bytes], FloatArray]]]:
        """The recession cone's inequalities at ``v``: violations relative to ``||v||``; each one's key and row.

        The recession cone of ``{sum_j sigma(X_ij w) <= y_i}`` is ``{v : sum_j sigma_inf(X_ij v) <= 0}`` with
        ``sigma_inf`` the activation's recession function: ``(u)_+`` for ReLU, squared ReLU and softplus (so
        ``X_ij v <= 0`` for every patch), ``|u|`` for the absolute value (``X_ij v = 0``), and leaky ReLU itself
        (``sum_j c_j X_ij v <= 0`` for every choice of slopes: sample-level rows).
        """
        problem = self.problem
        norms = problem.patch_norms()
        act = self.activation
        if act.name == "leaky_relu":
            pre = problem.preactivations(v)
            masks = pre > 0
            slopes = act.slopes(masks)
            value = (slopes * pre).sum(axis=1)
            scale = norms.sum(axis=1)
            usable = scale > 0
            relative = np.full(problem.n, -np.inf)
            relative[usable] = value[usable] / (scale[usable] * vnorm)

            def sample_piece(i: int) -> tuple[tuple[int, bytes], FloatArray]:
                row: FloatArray = slopes[i] @ problem.patches[i] / scale[i]
                return (i, np.packbits(masks[i]).tobytes()), row

            return relative, sample_piece
        flat, flat_norms = problem.flat, norms.reshape(-1)
        usable = flat_norms > 0
        pre = flat @ v
        signed = np.abs(pre) if act.name == "absolute" else pre
        relative = np.full(flat.shape[0], -np.inf)
        relative[usable] = signed[usable] / (flat_norms[usable] * vnorm)
        sign = np.where(pre < 0, -1.0, 1.0) if act.name == "absolute" else np.ones_like(pre)

        def patch_piece(i: int) -> tuple[tuple[int, bytes], FloatArray]:
            row: FloatArray = flat[i] * (sign[i] / flat_norms[i])
            return (i, b"+" if sign[i] > 0 else b"-"), row

        return relative, patch_piece

    def _finish(self, status: str, message: str, u: FloatArray | None, r: FloatArray, iterations: int,
                outer: int, start: float, sub: _Sub | None) -> RelaxationSolution:
        info = sub.info if sub is not None else None
        w = None if u is None else np.asarray(u, dtype=np.float64) * self.kappa
        return RelaxationSolution(
            status=status,
            message=message,
            w=w,
            objective=None if w is None else objective_value(self.problem, w, r, self.relaxation, self.beta),
            iterations=iterations,
            outer_iterations=outer,
            working_set=len(self.cuts) + len(self._cone_idle),
            solve_time_s=time.monotonic() - start,
            clarabel_status=sub.status if sub is not None else "NotStarted",
            primal_residual=None if info is None else float(info.res_primal),
            dual_residual=None if info is None else float(info.res_dual),
            duality_gap=None if info is None else float(info.gap_rel),
        )


def solve_relaxation(
    problem: ConvProblem,
    r: FloatArray,
    relaxation: str = "lp",
    *,
    beta: float = 0.0,
    constraints: FilterConstraints | None = None,
    settings: SolverSettings | None = None,
    should_stop: ShouldStop | None = None,
) -> RelaxationSolution:
    """One-shot convenience: build a :class:`RelaxationSolver` and solve for ``r``."""
    return RelaxationSolver(problem, relaxation, beta=beta, constraints=constraints, settings=settings).solve(
        r, should_stop=should_stop
    )
