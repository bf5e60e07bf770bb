"""Wall and CPU time of the phase-transition sweep (paper Fig. 1), and of the paper's grid, extrapolated honestly.

Each ``k`` is one experiment job (the default ``(d, n)`` grid, 8 x 8, both methods, polished). By default
the script runs the service's default sweep (20 repetitions a cell). ``--paper`` asks for the paper's 100
repetitions (k = 1, 2, 5); ``--fraction 0.05`` runs only that fraction of the repetitions and extrapolates
linearly (every repetition is an independent planted problem of the same size, so the time per repetition
of a cell does not depend on how many are run), printing the measured and the extrapolated figures side by
side.

Cells run in a process pool through the experiments' ``map_cells`` hook -- the same path a Dask executor
takes -- with one BLAS thread per process, as the service's workers do. CPU time (user + system of every
process) is printed beside the wall time: on a shared machine it is the better measure of the work.

Run: ``python bench/bench_phase_transition.py`` (default sweep, k = 1, 2, 5),
``python bench/bench_phase_transition.py --paper --fraction 0.05`` (the paper's grid, 5 of 100
repetitions, extrapolated), ``--quick`` for a 3 x 3 grid, ``--out DIR`` for figures and JSON results.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from typing import Any, Callable, Iterator

from cnnrelax.experiments import parse_experiment_spec, render_figure, run_experiment
from cnnrelax.experiments.specs import PhaseTransitionSpec


def _one_blas_thread() -> None:
    """Pool initializer: one BLAS thread per process, as the service's workers run."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)


def cpu_seconds() -> float:
    """User + system CPU time of this process, plus what the pool's workers spent in cells."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime + WORKER_CPU[0]


WORKER_CPU = [0.0]  # CPU seconds the pool's workers spent in cells (they are not reaped until the pool ends)


def _timed(run: Callable[[dict], dict], cell: dict) -> tuple[dict, float]:
    """Run one cell in a worker and return its result with the worker's CPU seconds for it."""
    start = time.process_time()
    result = run(cell)
    return result, time.process_time() - start


def pool_map(pool: ProcessPoolExecutor) -> Callable[[Callable[[dict], dict], list], Iterator[dict]]:
    """``map_cells`` over a process pool: submit every cell, yield results as they finish, cancel the rest on close."""

    def map_cells(run: Callable[[dict], dict], cells: list) -> Iterator[dict]:
        futures: list[Future] = [pool.submit(_timed, run, cell) for cell in cells]
        try:
            for future in as_completed(futures):
                result, cpu = future.result()
                WORKER_CPU[0] += cpu
                yield result
        finally:
            for future in futures:
                future.cancel()

    return map_cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repetitions", type=int, default=None, help="repetitions a cell (default 20; --paper: 100)")
    parser.add_argument("--paper", action="store_true", help="the paper's 100 repetitions a cell")
    parser.add_argument("--fraction", type=float, default=1.0,
                        help="run this fraction of the repetitions and extrapolate (e.g. 0.05)")
    parser.add_argument("--k", type=int, nargs="+", default=[1, 2, 5])
    parser.add_argument("--quick", action="store_true", help="3 x 3 grid, 5 repetitions")
    parser.add_argument("--out", default=None, help="directory for figures and JSON results")
    args = parser.parse_args()
    target = args.repetitions or (100 if args.paper else 20)
    if args.quick:
        target = 5
    run_reps = max(1, int(round(target * args.fraction)))
    scale = target / run_reps
    total_start, cpu_start = time.perf_counter(), cpu_seconds()
    totals = {"wall": 0.0, "cell": 0.0}
    with ProcessPoolExecutor(max_workers=args.workers, initializer=_one_blas_thread) as pool:
        for k in args.k:
            request: dict[str, Any] = {"kind": "phase_transition", "k": k, "repetitions": run_reps,
                                       "methods": ["relaxation", "gradient_descent"], "seed": 0}
            if args.quick:
                request.update(d=[10, 20, 40], n=[40, 320, 2560])
            spec = parse_experiment_spec(request)
            assert isinstance(spec, PhaseTransitionSpec)
            start, cpu = time.perf_counter(), cpu_seconds()
            result = run_experiment(spec, progress=lambda done, total, state: None, should_stop=lambda: False,
                                    map_cells=pool_map(pool))
            wall, used = time.perf_counter() - start, cpu_seconds() - cpu
            totals["wall"] += wall
            totals["cell"] += result["cell_time_s"]
            per_method = {m: sum(c["time_s"] for c in result["cells"] if c["method"] == m) for m in spec.methods}
            line = (f"k={k}: d={spec.d} n={spec.n} R={run_reps} trials/rep={spec.trials} "
                    f"| wall {wall:6.1f} s | cell time {result['cell_time_s']:6.1f} s "
                    f"({', '.join(f'{m} {t:.1f} s' for m, t in per_method.items())}) | CPU {used:6.1f} s")
            if scale != 1:
                line += (f"\n    extrapolated to R={target}: wall {wall * scale:7.1f} s, "
                         f"cell time {result['cell_time_s'] * scale:7.1f} s, CPU {used * scale:7.1f} s "
                         f"(/ {args.workers} workers: {used * scale / args.workers:7.1f} s)")
            print(line, flush=True)
            for method, rows in result["transition"].items():
                marks = ", ".join(f"d={r['d']}: n={r['n']} (plateau {r['plateau']:.2f})" for r in rows)
                print(f"    transition {method}: {marks}", flush=True)
            both = [(c["min_error"], c["method"]) for c in result["cells"] if c["min_error"] is not None
                    and c["success_rate"] > 0]
            if both:
                worst = {m: max(e for e, mm in both if mm == m) for m in spec.methods
                         if any(mm == m for _, mm in both)}
                print("    largest min error where a method recovers: "
                      + ", ".join(f"{m} {e:.1e}" for m, e in worst.items()), flush=True)
            if args.out:
                os.makedirs(args.out, exist_ok=True)
                with open(os.path.join(args.out, f"phase_transition_k{k}.png"), "wb") as fh:
                    fh.write(render_figure(result))
                with open(os.path.join(args.out, f"phase_transition_k{k}.json"), "w") as fh:
                    json.dump(result, fh)
    wall, used = time.perf_counter() - total_start, cpu_seconds() - cpu_start
    print(f"total wall time {wall:.1f} s, CPU time {used:.1f} s, cell time {totals['cell']:.1f} s for k={args.k} "
          f"with {args.workers} worker processes, R={run_reps} (load average {os.getloadavg()[0]:.1f})", flush=True)
    if scale != 1:
        print(f"extrapolated to R={target}: wall {wall * scale:.1f} s, cell time {totals['cell'] * scale:.1f} s, "
              f"CPU {used * scale:.1f} s (CPU / {args.workers} workers = {used * scale / args.workers:.1f} s: the wall "
              f"time on {args.workers} idle cores)", flush=True)


if __name__ == "__main__":
    main()
