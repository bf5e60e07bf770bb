"""The coverage estimate's cost next to one trial's, and the cone's memory (issue 17 item 2, issue 20).

Run: ``python bench/bench_coverage.py`` (the four sizes of ``bench/bench_peers.py``, 3 seeds; ``--sizes 5000,100,4``
to choose, ``--seeds N``, ``--implicit`` to force the generators to stay implicit, every product a pass over ``X``).

For each planted instance (``cnnrelax.planted``, seed ``s``) the default solve runs without coverage; at its filter
the cone of optimality is built (what the certificate does anyway: every trial's direction is tested against it)
and the coverage estimate of the default options is timed alone. Both are reported as multiples of the mean
trial's time (``solution.solve_time_s``), medians over seeds, with the passes over ``X`` each made, the
directions judged, and the memory the cone holds (its arrays) as a multiple of ``X``.
"""

from __future__ import annotations

import os

# One thread for BLAS, as the service's workers run (cnnrelax.executors).
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse
import statistics
import time

import numpy as np

from cnnrelax import PlantedSpec, SolveOptions, planted_problem, solve
from cnnrelax.core.certificates import cone as cone_module
from cnnrelax.core.certificates import coverage, optimality_cone
from cnnrelax.core.patches import PASSES

SIZES: list[tuple[int, int, int]] = [(2000, 50, 1), (5000, 100, 4), (20000, 200, 4), (100000, 100, 4)]


def _held_bytes(cone: cone_module.OptimalityCone) -> int:
    """The bytes of the arrays the cone and its generators hold (the patches they read are not theirs)."""
    arrays = [value for value in (*vars(cone).values(), *vars(cone.generators).values())
              if isinstance(value, np.ndarray)]
    return sum(array.nbytes for array in arrays)


def measure(n: int, d: int, k: int, seeds: int) -> None:
    build, estimate, passes_build, passes_cov, directions, held = [], [], [], [], [], []
    store = ""
    for seed in range(seeds):
        problem = planted_problem(PlantedSpec(n=n, d=d, k=k, seed=seed)).problem
        options = SolveOptions(coverage_samples=0)
        result = solve(problem, options)
        assert result.w is not None
        trial = statistics.fmean(rec.solution.solve_time_s for rec in result.trials)
        start = PASSES.count
        t0 = time.perf_counter()
        cone, _ = optimality_cone(problem, result.w)
        t1 = time.perf_counter()
        middle = PASSES.count
        estimate_ = coverage(problem, result.w, samples=SolveOptions().coverage_samples, seed=seed, cone=cone)
        t2 = time.perf_counter()
        build.append((t1 - t0) / trial)
        estimate.append((t2 - t1) / trial)
        passes_build.append(middle - start)
        passes_cov.append(PASSES.count - middle)
        directions.append(estimate_.directions)
        held.append(_held_bytes(cone) / problem.X.nbytes)
        store = type(cone.generators).__name__
    print(f"({n}, {d}, {k}) {seeds} seeds, {store}: coverage {statistics.median(estimate):.2f} trials, cone "
          f"{statistics.median(build):.2f} trials, together {statistics.median(np.add(build, estimate)):.2f} | passes "
          f"over X: cone {max(passes_build)}, coverage {max(passes_cov)} | directions judged {directions} | the cone "
          f"holds {max(held):.3f}x X", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", nargs="*", default=None, help="sizes as n,d,k")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--implicit", action="store_true", help="no generator cache: every product streams X")
    args = parser.parse_args()
    if args.implicit:
        cone_module.GENERATOR_CACHE_BYTES = 0
    sizes = [tuple(int(v) for v in size.split(",")) for size in args.sizes] if args.sizes else SIZES
    for n, d, k in sizes:
        measure(n, d, k, args.seeds)


if __name__ == "__main__":
    main()
