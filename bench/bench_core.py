"""Core solve time against the plain cvxpy + Clarabel z-formulation of the same instance.

Run: ``python bench/bench_core.py`` (add ``--quick`` for the small size only).
For each size it solves the same planted instance and direction ``r`` with the core's working-set
solver and with ``cnnrelax.oracle`` (one ``z_ij`` per sample and patch), and prints both times,
their ratio, the relative difference of the optimal values and the peak memory of the process.
"""

from __future__ import annotations

import argparse
import resource
import time

import cvxpy as cp

from cnnrelax import PlantedSpec, RelaxationSolver, planted_problem, trial_direction
from cnnrelax.oracle import CvxpyRelaxation

SIZES = [(5000, 100, 4), (10000, 200, 5), (10000, 500, 5)]


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


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
    accuracy = f", vs HiGHS {max(exact_diffs):.1e}" if exact_diffs else ""
    print(
        f"{relaxation:5s} n={n:6d} d={d:4d} k={k} | core: one LP from scratch {first_core:6.3f} s, "
        f"mean of {trials} trials sharing cuts {core_time:6.3f} s | cvxpy+Clarabel build+solve {cvx_time:6.2f} s | "
        f"ratio {cvx_time / first_core:5.1f}x (one LP), {cvx_time / core_time:5.1f}x (per trial) | "
        f"rel value diff vs cvxpy+Clarabel {max(diffs):.1e}{accuracy} (trials {compare}) | statuses {[c.status for c in core]} | "
        f"first-trial outer rounds {first.outer_iterations}, cuts {first.working_set} | peak RSS {_peak_mib():.0f} MiB",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="only the first size")
    parser.add_argument("--trials", type=int, default=4)
    args = parser.parse_args()
    sizes = SIZES[:1] if args.quick else SIZES
    for n, d, k in sizes:
        bench(n, d, k, "lp", 0.0, args.trials)
    bench(*SIZES[0], "qp", 1e-4, args.trials)


if __name__ == "__main__":
    main()
