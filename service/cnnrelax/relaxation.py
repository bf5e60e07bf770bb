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
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Literal

import clarabel
import numpy as np
import scipy.sparse as sp

from .constraints import FilterConstraints, ResolvedConstraints, resolve_constraints
from .problem import ConvProblem, FloatArray, InvalidParameterError

RelaxationKind = Literal["lp", "qp", "naive"]
RELAXATIONS: tuple[str, ...] = ("lp", "qp", "naive")
ShouldStop = Callable[[], bool]


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

    def solver_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("w")
        out.pop("objective")
        return out


def validate_relaxation(problem: ConvProblem, relaxation: str, beta: float) -> None:
    """Reject a relaxation name, ``beta`` or labels that the relaxation cannot take."""
    if relaxation not in RELAXATIONS:
        raise InvalidParameterError(
            "relaxation", f"relaxation must be one of {', '.join(RELAXATIONS)}, got {relaxation!r}."
        )
    if relaxation == "qp" and not (np.isfinite(beta) and beta > 0):
        raise InvalidParameterError(
            "beta", f"The randomized QP needs beta > 0 (e.g. 1e-4), got beta={beta!r}; use relaxation 'lp' for beta -> 0."
        )
    if relaxation == "lp" and (problem.y < 0).any():
        i = int(np.argmax(problem.y < 0))
        raise InvalidParameterError(
            "y",
            f"y[{i}] = {problem.y[i]:g} is negative: the LP limit needs labels >= 0, since a sum of ReLUs "
            "cannot be negative. Use relaxation 'qp' (beta > 0) for noisy labels.",
        )


def objective_value(problem: ConvProblem, w: FloatArray, r: FloatArray, relaxation: str, beta: float) -> float:
    """The relaxation's optimal-value expression at ``w`` (after minimising over ``z``)."""
    if relaxation == "lp":
        return float(r @ w)
    excess = np.maximum(problem.predict(w) - problem.y, 0.0)
    value = 0.5 * float(excess @ excess)
    return value - beta * float(r @ w) if relaxation == "qp" else value


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


class RelaxationSolver:
    """Solve one relaxation of one problem for many directions ``r``, sharing the cut pool."""

    def __init__(
        self,
        problem: ConvProblem,
        relaxation: RelaxationKind = "lp",
        *,
        beta: float = 0.0,
        constraints: FilterConstraints | ResolvedConstraints | None = None,
        settings: SolverSettings | None = None,
    ) -> None:
        validate_relaxation(problem, relaxation, beta)
        self.problem = problem
        self.relaxation = relaxation
        self.beta = float(beta) if relaxation == "qp" else 0.0
        self.constraints = resolve_constraints(constraints, problem.m)
        self.settings = settings or SolverSettings()
        self.cuts = _Cuts(problem.m)
        self._static = self._static_rows()
        y_scale = float(np.max(np.abs(problem.y)))
        rms = float(np.sqrt(np.mean(problem.patches**2))) or 1.0
        self._bound0 = 100.0 * max(y_scale, 1.0) / rms
        self._batch = self.settings.batch or max(2 * problem.m, 50)

    # -- assembly ---------------------------------------------------------------------------

    def _static_rows(self) -> dict[str, Any]:
        """User constraints as Clarabel rows over ``[w, u]`` (``u`` only for an l1 bound)."""
        c, m = self.constraints, self.problem.m
        n_u = m if c.l1_bound is not None else 0
        width = m + n_u
        I = np.eye(m)
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
        stack = lambda rows, w: np.vstack(rows) if rows else np.zeros((0, w))  # noqa: E731
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
        homogeneous: bool,
        should_stop: ShouldStop | None,
        deadline: float | None,
    ) -> _Sub:
        """``min 1/2 ||t||^2 + q_w^T w`` s.t. cut rows (with ``t_i`` when ``samples`` is given), box, user rows."""
        m, st = self.problem.m, self._static
        n_u = st["n_u"]
        if samples is not None:
            uniq, t_index = np.unique(samples, return_inverse=True)
            n_t = len(uniq)
        else:
            n_t, t_index = 0, None
        width = m + n_u + n_t
        blocks: list[sp.spmatrix] = []
        b_parts: list[FloatArray] = []
        cones: list[Any] = []

        def pad(M: FloatArray) -> sp.csr_matrix:
            M = sp.csr_matrix(M)
            return sp.hstack([M, sp.csr_matrix((M.shape[0], width - M.shape[1]))], format="csr")

        scale = 0.0 if homogeneous else 1.0
        if st["zero"].shape[0]:
            blocks.append(pad(st["zero"]))
            b_parts.append(scale * st["zero_rhs"])
            cones.append(clarabel.ZeroConeT(st["zero"].shape[0]))
        n_nonneg = 0
        if rows.shape[0]:
            cut = sp.csr_matrix(rows)
            cut = sp.hstack([cut, sp.csr_matrix((rows.shape[0], n_u))], format="csr")
            if n_t:
                T = sp.csr_matrix((-np.ones(rows.shape[0]), (np.arange(rows.shape[0]), t_index)), shape=(rows.shape[0], n_t))
                cut = sp.hstack([cut, T], format="csr")
            else:
                cut = pad(cut)
            blocks.append(cut)
            b_parts.append(rhs)
            n_nonneg += rows.shape[0]
        if n_t:
            blocks.append(sp.hstack([sp.csr_matrix((n_t, m + n_u)), -sp.identity(n_t)], format="csr"))
            b_parts.append(np.zeros(n_t))
            n_nonneg += n_t
        if bound is not None:
            eye = np.eye(m)
            blocks.append(pad(np.vstack([eye, -eye])))
            b_parts.append(np.full(2 * m, bound))
            n_nonneg += 2 * m
        if st["ineq"].shape[0]:
            blocks.append(pad(st["ineq"]))
            b_parts.append(scale * st["ineq_rhs"])
            n_nonneg += st["ineq"].shape[0]
        if n_nonneg:
            cones.append(clarabel.NonnegativeConeT(n_nonneg))
        if st["soc"] is not None:
            blocks.append(pad(st["soc"]))
            b_parts.append(scale * st["soc_rhs"])
            cones.append(clarabel.SecondOrderConeT(st["soc"].shape[0]))
        A = sp.vstack(blocks, format="csc")
        b = np.concatenate(b_parts)
        q = np.concatenate([q_w, np.zeros(n_u + n_t)])
        if n_t:
            P = sp.csc_matrix((np.ones(n_t), (np.arange(m + n_u, width), np.arange(m + n_u, width))), shape=(width, width))
        else:
            P = sp.csc_matrix((width, width))
        s = clarabel.DefaultSettings()
        s.verbose = False
        s.presolve_enable = False
        s.direct_solve_method = "qdldl"  # "auto" picked a supernodal solver that was 10x slower on these dense rows
        s.tol_gap_abs = self.settings.tol_gap_abs
        s.tol_gap_rel = self.settings.tol_gap_rel
        s.tol_feas = self.settings.tol_feas
        s.max_iter = self.settings.max_iter
        if deadline is not None:
            s.time_limit = max(deadline - time.monotonic(), 1e-3)
        solver = clarabel.DefaultSolver(P, q, A, b, cones, s)
        if should_stop is not None:
            solver.set_termination_callback(lambda _info: bool(should_stop()))
        sol = solver.solve()
        return _Sub(str(sol.status), np.asarray(sol.x), int(sol.iterations), solver.get_info())

    # -- the working-set loop ---------------------------------------------------------------

    def _violations(self, w: FloatArray, t: dict[int, float] | None) -> tuple[FloatArray, FloatArray]:
        """Per-sample excess ``s_i(w) - y_i - t_i`` over the full data, and the pre-activations."""
        pre = self.problem.preactivations(w)
        excess = np.maximum(pre, 0.0).sum(axis=1) - self.problem.y
        if t:
            idx = np.fromiter(t.keys(), dtype=np.intp)
            excess[idx] -= np.fromiter(t.values(), dtype=np.float64)
        return excess, pre

    def solve(self, r: FloatArray, *, should_stop: ShouldStop | None = None) -> RelaxationSolution:
        """Solve the relaxation for direction ``r`` (maximise ``r^T w``, SPEC 2 convention)."""
        r = np.asarray(r, dtype=np.float64)
        problem, st = self.problem, self.settings
        start = time.monotonic()
        deadline = None if st.time_limit_s is None else start + st.time_limit_s
        weight = 1.0 if self.relaxation == "lp" else self.beta
        q_w = -weight * r
        with_t = self.relaxation != "lp"
        bound: float | None = None if self.constraints.is_bounded else self._bound0
        iterations = outer = 0
        tol = st.cut_tol * (1.0 + np.abs(problem.y))
        sub: _Sub | None = None
        self.cuts.use_all()
        while True:
            outer += 1
            if should_stop is not None and should_stop():
                return self._finish("cancelled", "The solve was cancelled.", None, r, iterations, outer, start, sub)
            if deadline is not None and time.monotonic() > deadline:
                return self._finish("time_limit", f"The solve exceeded its time limit of {st.time_limit_s:g} s.",
                                    None, r, iterations, outer, start, sub)
            if outer > st.max_outer_iterations:
                return self._finish("max_iterations", "The working-set loop did not converge within "
                                    f"{st.max_outer_iterations} rounds.", None, r, iterations, outer, start, sub)
            rows, rhs, samples, used = self.cuts.arrays()
            sub = self._solve_sub(rows, rhs, samples if with_t else None, q_w, bound, False, should_stop, deadline)
            iterations += sub.iterations
            early = self._status_outcome(sub, r, iterations, outer, start)
            if early is not None:
                return early
            w = sub.x[: problem.m]
            t: dict[int, float] | None = None
            slack = rhs - rows @ w
            if with_t and len(samples):
                uniq, t_index = np.unique(samples, return_inverse=True)
                tv = np.maximum(sub.x[problem.m + self._static["n_u"]:], 0.0)
                t = dict(zip(uniq.tolist(), tv.tolist()))
                slack += tv[t_index]
            self.cuts.age(used, slack, 1e-6 * (1.0 + np.abs(rhs)))
            excess, pre = self._violations(w, t)
            violated = np.flatnonzero(excess > tol)
            added = 0
            if violated.size:
                masks = pre[violated] > 0
                rows = np.einsum("vk,vkm->vm", masks.astype(np.float64), problem.patches[violated])
                # Deepest cuts first: the distance from w to each violated half-space.
                depth = excess[violated] / np.maximum(np.linalg.norm(rows, axis=1), 1e-300)
                for v in np.argsort(-depth):
                    i = int(violated[v])
                    if self.cuts.add(i, np.packbits(masks[v]).tobytes(), rows[v], float(problem.y[i])):
                        added += 1
                        if added >= self._batch:
                            break
            if added:
                continue
            if bound is not None and self.relaxation != "naive" and np.max(np.abs(w)) >= 0.99 * bound:
                if self._recession_unbounded(r, should_stop, deadline):
                    return self._finish("unbounded", _UNBOUNDED_MESSAGE.format(n=problem.n, m=problem.m),
                                        None, r, iterations, outer, start, sub)
                bound *= 100.0
                continue
            return self._finish("optimal", "Solved to optimality.", w, r, iterations, outer, start, sub)

    def _status_outcome(self, sub: _Sub, r: FloatArray, iterations: int, outer: int, start: float) -> RelaxationSolution | None:
        status = sub.status
        if status in ("Solved", "AlmostSolved"):
            return None
        if status == "CallbackTerminated":
            return self._finish("cancelled", "The solve was cancelled.", None, r, iterations, outer, start, sub)
        if status == "MaxTime":
            return self._finish("time_limit", f"The solve exceeded its time limit of {self.settings.time_limit_s:g} s.",
                                None, r, iterations, outer, start, sub)
        if status in ("PrimalInfeasible", "AlmostPrimalInfeasible"):
            return self._finish(
                "infeasible", "The relaxation is infeasible: the constraints on w exclude every filter with "
                "sum_j (X_ij w)_+ <= y_i (w = 0 satisfies the data rows, so the constraints on w are the cause).",
                None, r, iterations, outer, start, sub)
        if status in ("DualInfeasible", "AlmostDualInfeasible"):
            return self._finish("unbounded", _UNBOUNDED_MESSAGE.format(n=self.problem.n, m=self.problem.m),
                                None, r, iterations, outer, start, sub)
        if status == "MaxIterations":
            return self._finish("max_iterations", f"Clarabel stopped after {sub.iterations} iterations without converging.",
                                None, r, iterations, outer, start, sub)
        return self._finish("numerical_error", f"Clarabel ended with status {status}.", None, r, iterations, outer, start, sub)

    def _recession_unbounded(self, r: FloatArray, should_stop: ShouldStop | None, deadline: float | None) -> bool:
        """Is there ``v`` with ``X_ij v <= 0`` for all ``i, j``, the constraints' recession cone, and ``r^T v > 0``?"""
        problem = self.problem
        flat = problem.patches.reshape(-1, problem.m)
        chosen: list[int] = []
        seen: set[int] = set()
        for _ in range(self.settings.max_outer_iterations):
            rows = flat[chosen] if chosen else np.zeros((0, problem.m))
            sub = self._solve_sub(rows, np.zeros(len(chosen)), None, -r, 1.0, True, should_stop, deadline)
            if sub.status not in ("Solved", "AlmostSolved"):
                return False
            v = sub.x[: problem.m]
            if float(r @ v) <= 1e-7 * float(np.linalg.norm(r)):
                return False
            pre = flat @ v
            new = [int(i) for i in np.argsort(-pre)[: self._batch] if pre[i] > 1e-9 and int(i) not in seen]
            if not new:
                return True
            chosen.extend(new)
            seen.update(new)
        return False

    def _finish(self, status: str, message: str, w: FloatArray | None, r: FloatArray, iterations: int,
                outer: int, start: float, sub: _Sub | None) -> RelaxationSolution:
        info = sub.info if sub is not None else None
        return RelaxationSolution(
            status=status,
            message=message,
            w=None if w is None else np.array(w),
            objective=None if w is None else objective_value(self.problem, w, r, self.relaxation, self.beta),
            iterations=iterations,
            outer_iterations=outer,
            working_set=len(self.cuts),
            solve_time_s=time.monotonic() - start,
            clarabel_status=sub.status if sub is not None else "NotStarted",
            primal_residual=None if info is None else float(info.res_primal),
            dual_residual=None if info is None else float(info.res_dual),
            duality_gap=None if info is None else float(info.gap_abs),
        )


def solve_relaxation(
    problem: ConvProblem,
    r: FloatArray,
    relaxation: RelaxationKind = "lp",
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
