"""Core solve time against the plain cvxpy + Clarabel z-formulation of the same instance.

Run: ``python bench/bench_core.py`` (add ``--quick`` for the small size only, ``--big`` for the
(100000, 400, 4) build-and-trial measurement alone, ``--activations`` for one LP-limit trial of every
activation at (5000, 100, 4) against ReLU's, with each value checked against cvxpy + Clarabel, ``--default N D K``
for the default solve ``solve(make_problem(X, y, k=K), SolveOptions())`` at that size: its time, its passes over
``X`` and its peak memory as a multiple of ``X``; ``--coverage-samples 0`` leaves the coverage estimate out).
For each size it solves the same planted instance and direction ``r`` with the core's working-set
solver and with ``cnnrelax.core.oracle`` (one ``z_ij`` per sample and patch), and prints both times,
their ratio, the relative difference of the optimal values against cvxpy + Clarabel and against
HiGHS's exact vertex, the cost of the coverage estimate next to one trial, and the peak memory.
``--big`` times building the problem from a float64 ``X`` (no copy for blocks) and one LP trial, and
reports the peak memory as a multiple of the size of ``X``. ``--highs N D K`` checks every trial of the default
solve (``--seeds`` of them, ``--backend``) against HiGHS (``--highs-method``) on the full LP as written (one
``z_ij`` per sample and patch, scipy's ``linprog``): the largest relative difference of the LP values, and how many
trials a cone decided (``cnnrelax.core.solver.shortcut``) and how many the working-set loop.
"""

from __future__ import annotations

import os

# Single-threaded BLAS, as the service's workers run (cnnrelax.executors): on a loaded 2-core machine a
# threaded BLAS turned a 531 x 100 least-squares solve from 7 ms into 1.7 s.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse
import resource
import time
from typing import Callable

import cvxpy as cp
import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from cnnrelax import PlantedSpec, RelaxationSolver, SolveOptions, make_problem, planted_problem, solve, trial_direction
from cnnrelax.core.certificates import coverage
from cnnrelax.core.oracle import CvxpyRelaxation

SIZES = [(5000, 100, 4), (10000, 200, 5), (10000, 500, 5)]


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _pool(solution: object) -> int:
    """Constraints pooled by a solve (``pool_size``; ``working_set`` before the core's rebuild)."""
    return int(getattr(solution, "pool_size", getattr(solution, "working_set", 0)))


def _pass_counter() -> Callable[[], int]:
    """A function returning the passes over the patch tensor since it was made: the core's own counter
    (``cnnrelax.core.problem.PASSES``), or, on a tree without it, a count of the calls of the problem's methods
    that read all of it (pre-activations, gradient rows, patch norms, scales)."""
    from cnnrelax.core import problem as core_problem

    counter = getattr(core_problem, "PASSES", None)
    if counter is not None:
        start = counter.count
        return lambda: int(counter.count) - start
    calls = [0]
    cls = core_problem.ConvProblem
    for name in ("preactivations", "gradient_rows"):
        method = getattr(cls, name)

        def counted(self: object, *args: object, _method: Callable[..., object] = method, **kwargs: object) -> object:
            calls[0] += 1
            return _method(self, *args, **kwargs)

        setattr(cls, name, counted)
    return lambda: calls[0] + 2  # + the scales and the patch norms, one pass each (cached)


def default_solve(n: int, d: int, k: int, coverage_samples: int | None, backend: str | None = None) -> None:
    """The default solve as a user runs it, from ``X`` in memory: time, passes over ``X``, peak memory over ``X``."""
    baseline = _peak_mib()
    planted = planted_problem(PlantedSpec(n=n, d=d, k=k, seed=0))
    X, y, w_star = planted.problem.X, planted.problem.y, planted.w_star
    del planted
    x_mib = X.nbytes / 2**20
    changes: dict[str, object] = {} if coverage_samples is None else {"coverage_samples": coverage_samples}
    options = SolveOptions(**changes) if backend is None else SolveOptions(**changes, backend=backend)
    passes = _pass_counter()
    t0, c0 = time.perf_counter(), time.process_time()
    result = solve(make_problem(X, y, k=k), options)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    data_peak = _peak_mib() - baseline
    error = float(min(abs(result.w - w_star).max(), abs(result.w + w_star).max())) if result.w is not None else None
    print(f"default n={n} d={d} k={k} coverage={options.coverage_samples} backend={options.backend} | "
          f"{seconds:.3f} s (CPU {cpu:.3f} s) | passes over X "
          f"{passes()} | trials {len(result.trials)}, rounds {[t.solution.outer_iterations for t in result.trials]} | "
          f"max |w - w*| {error:.1e} | peak RSS above the interpreter's: {data_peak:.0f} MiB = "
          f"{data_peak / x_mib:.2f}x "
          f"X ({x_mib:.0f} MiB)", flush=True)


def highs_value(X: np.ndarray, y: np.ndarray, k: int, r: np.ndarray, method: str = "highs") -> float:
    """``max r^T w`` s.t. ``sum_j z_ij = y_i``, ``z_ij >= X_ij w``, ``z >= 0`` (ReLU's LP limit, block patches), by
    HiGHS (``method``: scipy's ``linprog`` name; ``"highs"`` lets HiGHS choose, in practice its dual simplex;
    ``"highs-ipm"`` its interior point followed by crossover to a vertex, 14x faster at (20000, 200, 4)): an exact
    vertex, independent of the core's formulation and solvers."""
    n = X.shape[0]
    m = X.shape[1] // k
    nz = n * k
    A_ub = sp.hstack([sp.csr_matrix(X.reshape(nz, m)), -sp.identity(nz, format="csr")], format="csr")
    A_eq = sp.hstack([sp.csr_matrix((n, m)), sp.csr_matrix((np.ones(nz), (np.repeat(np.arange(n), k), np.arange(nz))),
                                                           shape=(n, nz))], format="csr")
    res = linprog(np.concatenate([-r, np.zeros(nz)]), A_ub=A_ub, b_ub=np.zeros(nz), A_eq=A_eq, b_eq=y,
                  bounds=[(None, None)] * m + [(0, None)] * nz, method=method)
    if res.status != 0:
        raise RuntimeError(f"HiGHS: {res.message}")
    return float(-res.fun)


def highs_agreement(n: int, d: int, k: int, seeds: int, backend: str | None, method: str = "highs") -> None:
    """Every trial of the default solve (coverage off) against HiGHS on the full LP (module docstring)."""
    worst, by_cone, by_loop, seconds = 0.0, 0, 0, 0.0
    for seed in range(seeds):
        planted = planted_problem(PlantedSpec(n=n, d=d, k=k, seed=seed))
        X, y = np.asarray(planted.problem.X), np.asarray(planted.problem.y)
        options = SolveOptions(coverage_samples=0) if backend is None else \
            SolveOptions(coverage_samples=0, backend=backend)
        result = solve(make_problem(X, y, k=k), options)
        for rec in result.trials:
            t0 = time.perf_counter()
            exact = highs_value(X, y, k, rec.r, method)
            seconds += time.perf_counter() - t0
            worst = max(worst, abs((rec.objective or 0.0) - exact) / max(abs(exact), 1.0))
            by_cone += rec.solution.outer_iterations == 0
            by_loop += rec.solution.outer_iterations > 0
        del planted, X, y
    print(f"highs n={n} d={d} k={k} backend={backend or 'clarabel'} seeds 0-{seeds - 1} | {by_cone + by_loop} trials "
          f"({by_cone} decided by a cone, {by_loop} by the loop) | largest relative LP value difference vs HiGHS "
          f"{worst:.1e} | HiGHS ({method}) {seconds:.1f} s", flush=True)


def bench(n: int, d: int, k: int, relaxation: str, beta: float, trials: int) -> None:
    pp = planted_problem(PlantedSpec(n=n, d=d, k=k, seed=0))
    problem = pp.problem
    rs = [trial_direction(0, t, problem.m) for t in range(trials)]
    t0 = time.perf_counter()
    first = RelaxationSolver(problem, relaxation, beta=beta).solve(rs[0])
    first_core = time.perf_counter() - t0
    t0 = time.perf_counter()
    solver = RelaxationSolver(problem, relaxation, beta=beta)
    core = [solver.solve(r) for r in rs]
    core_time = (time.perf_counter() - t0) / trials
    # Compare values on trial 0 and on the first trial whose optimum is not the trivial w ~ 0.
    compare = [0] + [t for t, c in enumerate(core) if t > 0 and abs(c.objective or 0.0) > 1e-3][:1]
    cvx_times, diffs, exact_diffs = [], [], []
    for t in compare:
        t0 = time.perf_counter()
        oracle = CvxpyRelaxation(problem, relaxation, beta=beta)
        value = oracle.solve(rs[t]).objective
        cvx_times.append(time.perf_counter() - t0)
        diffs.append(abs(core[t].objective - value) / max(abs(value), 1.0))
        if relaxation == "lp":
            # HiGHS's simplex lands on an exact vertex: the reference for accuracy.
            oracle.cvx.solve(solver=cp.HIGHS)
            exact = float(rs[t] @ (oracle.w.value * problem.w_scale))
            exact_diffs.append(abs(core[t].objective - exact) / max(abs(exact), 1.0))
    cvx_time = cvx_times[0]
    cov_note = ""
    if relaxation == "lp":
        t0 = time.perf_counter()
        cov = coverage(problem, pp.w_star, samples=64, seed=0)
        cov_time = time.perf_counter() - t0
        cov_note = (f" | coverage at w* (64 directions) {cov_time:.3f} s = {cov_time / core_time:.2f} trials, "
                    f"p ~ {cov.estimate:.2f}")
    accuracy = f", vs HiGHS {max(exact_diffs):.1e}" if exact_diffs else ""
    print(
        f"{relaxation:5s} n={n:6d} d={d:4d} k={k} | core: one LP from scratch {first_core:6.3f} s, "
        f"mean of {trials} trials sharing cuts {core_time:6.3f} s | cvxpy+Clarabel build+solve {cvx_time:6.2f} s | "
        f"ratio {cvx_time / first_core:5.1f}x (one LP), {cvx_time / core_time:5.1f}x (per trial) | "
        f"rel value diff vs cvxpy+Clarabel {max(diffs):.1e}{accuracy} (trials {compare}) | "
        f"statuses {[str(c.status) for c in core]} | "
        f"first-trial outer rounds {first.outer_iterations}, cuts {_pool(first)}{cov_note} | "
        f"peak RSS {_peak_mib():.0f} MiB",
        flush=True,
    )


def big(n: int = 100_000, d: int = 400, k: int = 4) -> None:
    """Build the problem from X (already in memory) and run one LP trial; time and peak memory over X."""
    baseline = _peak_mib()  # the interpreter and libraries, before any data
    planted = planted_problem(PlantedSpec(n=n, d=d, k=k, seed=0)).problem  # X drawn in place, no copy
    X, y = planted.X, planted.y
    del planted
    x_mib = X.nbytes / 2**20
    t0 = time.perf_counter()
    problem = make_problem(X, y, k=k)
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    sol = RelaxationSolver(problem, "lp").solve(trial_direction(0, 0, problem.m))
    trial = time.perf_counter() - t0
    data_peak = _peak_mib() - baseline
    print(f"big   n={n:6d} d={d:4d} k={k} | build {build:.3f} s + one LP trial {trial:.3f} s = {build + trial:.3f} s "
          f"(status {sol.status}, {sol.outer_iterations} rounds, {_pool(sol)} cuts) | X {x_mib:.0f} MiB; peak RSS "
          f"above the interpreter's {baseline:.0f} MiB: {data_peak:.0f} MiB = {data_peak / x_mib:.2f}x X", flush=True)


def activations(n: int = 5000, d: int = 100, k: int = 4, trials: int = 4) -> None:
    """One LP-limit trial per activation (planted labels drawn with it), its time as a multiple of ReLU's."""
    from cnnrelax.core.activations import ACTIVATIONS

    reference = None
    for name in ACTIVATIONS:
        pp = planted_problem(PlantedSpec(n=n, d=d, k=k, seed=0, activation=name, negative_slope=0.01))
        problem = pp.problem
        rs = [trial_direction(0, t, problem.m) for t in range(trials)]
        t0 = time.perf_counter()
        first = RelaxationSolver(problem, "lp").solve(rs[0])
        one = time.perf_counter() - t0
        t0 = time.perf_counter()
        solver = RelaxationSolver(problem, "lp")
        sols = [solver.solve(r) for r in rs]
        shared = (time.perf_counter() - t0) / trials
        reference = reference or (one, shared)
        t0 = time.perf_counter()
        value = CvxpyRelaxation(problem, "lp").solve(rs[0]).objective
        cvx = time.perf_counter() - t0
        diff = abs((first.objective or 0.0) - (value or 0.0)) / max(abs(value or 0.0), 1.0)
        recovered = sum(s.w is not None and min(float(abs(s.w - pp.w_star).max()), float(abs(s.w + pp.w_star).max()))
                        < 1e-6 for s in sols)
        print(f"{name:12s} n={n} d={d} k={k} | one LP trial from scratch {one:6.3f} s = {one / reference[0]:4.1f}x "
              f"ReLU's | mean of {trials} sharing the working set {shared:6.3f} s = {shared / reference[1]:4.1f}x | "
              f"cvxpy+Clarabel {cvx:6.2f} s ({cvx / one:5.1f}x slower), rel value diff {diff:.1e} | "
              f"recovered w* (up to sign) in {recovered}/{trials} | rounds {first.outer_iterations}, "
              f"pool {_pool(first)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="only the first size")
    parser.add_argument("--big", action="store_true", help="only the (100000, 400, 4) build + one trial")
    parser.add_argument("--activations", action="store_true", help="only one LP trial per activation vs ReLU")
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--default", type=int, nargs=3, metavar=("N", "D", "K"),
                        help="only the default solve at this size (time, passes over X, peak memory)")
    parser.add_argument("--coverage-samples", type=int, default=None, help="with --default: the coverage estimate's "
                        "directions (default: SolveOptions' own)")
    parser.add_argument("--backend", default=None, help="with --default or --highs: the backend (default: "
                        "SolveOptions' own)")
    parser.add_argument("--highs", type=int, nargs=3, metavar=("N", "D", "K"),
                        help="only every trial of the default solve at this size against HiGHS on the full LP")
    parser.add_argument("--seeds", type=int, default=5, help="with --highs: seeds 0 to this - 1")
    parser.add_argument("--highs-method", default="highs", choices=("highs", "highs-ds", "highs-ipm"),
                        help="with --highs: HiGHS's method (highs-ipm: interior point and crossover, for large sizes)")
    args = parser.parse_args()
    if args.highs:
        highs_agreement(*args.highs, args.seeds, args.backend, args.highs_method)
        return
    if args.default:
        default_solve(*args.default, args.coverage_samples, args.backend)
        return
    if args.activations:
        activations(trials=args.trials)
        return
    if args.big:
        big()
        return
    sizes = SIZES[:1] if args.quick else SIZES
    for n, d, k in sizes:
        bench(n, d, k, "lp", 0.0, args.trials)
    bench(*SIZES[0], "qp", 1e-4, args.trials)


if __name__ == "__main__":
    main()
