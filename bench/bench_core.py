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

import numpy as np

from cnnrelax import PlantedSpec, RelaxationSolver, planted_problem, trial_direction
from cnnrelax.oracle import CvxpyRelaxation

SIZES = [(5000, 100, 4), (10000, 200, 5)]


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench(n: int, d: int, k: int, relaxation: str, beta: float, trials: int) -> None:
    pp = planted_problem(PlantedSpec(n=n, d=d, k=k, seed=0))
    problem = pp.problem
    rs = [trial_direction(0, t, problem.m) for t in range(trials)]
    t0 = time.perf_counter()
    solver = RelaxationSolver(problem, relaxation, beta=beta)
    core = [solver.solve(r) for r in rs]
    core_time = (time.perf_counter() - t0) / trials
    first_core = time.perf_counter()
    RelaxationSolver(problem, relaxation, beta=beta).solve(rs[0])
    first_core = time.perf_counter() - first_core
    t0 = time.perf_counter()
    oracle = CvxpyRelaxation(problem, relaxation, beta=beta)
    ref = oracle.solve(rs[0])
    cvx_value = float(oracle.cvx.value)
    cvx_time = time.perf_counter() - t0
    ours = core[0].objective
    rel = abs(ours - cvx_value) / max(abs(cvx_value), 1.0)
    print(
        f"{relaxation:5s} n={n:6d} d={d:4d} k={k}  core first trial {first_core:7.3f} s, "
        f"mean over {trials} trials {core_time:7.3f} s | cvxpy+Clarabel {cvx_time:7.2f} s "
        f"({ref.iterations} it) | ratio first {cvx_time / first_core:6.1f}x, mean {cvx_time / core_time:6.1f}x | "
        f"values {ours:.9g} vs {cvx_value:.9g} (rel diff {rel:.1e}) | statuses {[c.status for c in core]} | peak RSS {_peak_mib():.0f} MiB",
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
