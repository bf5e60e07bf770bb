"""Wall time of the paper-like phase-transition sweep (Fig. 1): k = 1, 2, 5; 8 x 8 grid each; 20 repetitions.

Run: ``python bench/bench_phase_transition.py`` (``--workers 2`` by default, ``--quick`` for a 3 x 3 grid,
``--out DIR`` to write each k's figure and JSON result). Cells run in a process pool through the
experiments' ``map_cells`` hook -- the same path a Dask executor takes -- and the script prints the wall
time per k and in total (target: under 10 minutes on a 2-core machine), plus the transitions.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from typing import Callable, Iterator

from cnnrelax.experiments import render_figure, run_experiment, validate_experiment


def pool_map(pool: ProcessPoolExecutor) -> Callable[[Callable[[dict], dict], list], Iterator[dict]]:
    """``map_cells`` over a process pool: submit every cell, yield results as they finish, cancel the rest on close."""

    def map_cells(run: Callable[[dict], dict], cells: list) -> Iterator[dict]:
        futures: list[Future] = [pool.submit(run, cell) for cell in cells]
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            for future in futures:
                future.cancel()

    return map_cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repetitions", type=int, default=20)
    parser.add_argument("--k", type=int, nargs="+", default=[1, 2, 5])
    parser.add_argument("--quick", action="store_true", help="3 x 3 grid, 5 repetitions")
    parser.add_argument("--out", default=None, help="directory for figures and JSON results")
    args = parser.parse_args()
    total_start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for k in args.k:
            spec = {"kind": "phase_transition", "k": k, "repetitions": args.repetitions,
                    "methods": ["relaxation", "gradient_descent"], "seed": 0}
            if args.quick:
                spec.update(d=[10, 20, 40], n=[40, 320, 2560], repetitions=5)
            spec = validate_experiment(spec)
            start = time.perf_counter()
            result = run_experiment(spec, progress=lambda done, total, state: None, should_stop=lambda: False,
                                    map_cells=pool_map(pool))
            wall = time.perf_counter() - start
            per_method = {m: sum(c["time_s"] for c in result["cells"] if c["method"] == m) for m in spec["methods"]}
            print(f"k={k}: d={spec['d']} n={spec['n']} R={spec['repetitions']} trials/rep={spec['trials']} "
                  f"| wall {wall:6.1f} s | cell time {result['cell_time_s']:6.1f} s "
                  f"({', '.join(f'{m} {t:.1f} s' for m, t in per_method.items())})", flush=True)
            for method, rows in result["transition"].items():
                marks = ", ".join(f"d={r['d']}: n={r['n']} (plateau {r['plateau']:.2f})" for r in rows)
                print(f"    transition {method}: {marks}", flush=True)
            if args.out:
                os.makedirs(args.out, exist_ok=True)
                with open(os.path.join(args.out, f"phase_transition_k{k}.png"), "wb") as fh:
                    fh.write(render_figure(result))
                with open(os.path.join(args.out, f"phase_transition_k{k}.json"), "w") as fh:
                    json.dump(result, fh)
    print(f"total wall time {time.perf_counter() - total_start:.1f} s for k={args.k} "
          f"with {args.workers} worker processes", flush=True)


if __name__ == "__main__":
    main()
