"""One out-of-core solve in its own process, with its anonymous memory sampled (issue 20).

``python bench/scale_probe.py write DIR --n N --d D --k K [--seed S]`` writes a planted ReLU problem (``X.npy``,
``y.npy``, ``w_star.npy``) block by block (never all of ``X`` in memory): Gaussian rows from a seeded generator,
``y_i = sum_j (X_ij w*)_+``.

``python bench/scale_probe.py solve DIR --k K [--trials T] [--coverage-samples C] [--stage full|trials] [--copy]``
opens ``X.npy`` memory-mapped, builds the problem and solves it (``full``: :func:`cnnrelax.core.solve` with its
certificate; ``trials``: the working-set trials, polish and the streamed measures, without the cone certificate
and coverage), and prints one JSON line: the time, the passes over ``X``
(:data:`cnnrelax.core.patches.PASSES`), the anonymous memory (``RssAnon`` of ``/proc/self/status``: the process's
own allocations; the page cache the memory map reads through is file-backed and not counted) at the start and at
its peak during the solve (sampled every 2 ms by a thread), and the largest error of the filter against ``w*``.
``--copy`` reads ``X`` into memory first (``np.array(X)``): the control that shows the measure catches a copy.
"""

from __future__ import annotations

import os

# Single-threaded BLAS, as the service's workers run (cnnrelax.executors); also keeps BLAS buffers out of the peak.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse
import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

#: Rows written per block by ``write`` (about 32 MiB of float64 at d = 400).
WRITE_BYTES = 32 * 2**20


def anonymous_bytes() -> int:
    """The process's resident anonymous memory (``RssAnon``), in bytes."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon in /proc/self/status (Linux only)")


class AnonymousPeak:
    """Samples :func:`anonymous_bytes` every 2 ms in a thread; ``peak`` is the largest value seen."""

    def __init__(self) -> None:
        self.start = self.peak = anonymous_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, anonymous_bytes())
            time.sleep(0.002)

    def __enter__(self) -> AnonymousPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, anonymous_bytes())


def write_planted(directory: Path, n: int, d: int, k: int, seed: int = 0) -> None:
    """``X.npy`` (``n x d`` float64), ``y.npy`` and ``w_star.npy`` of a planted ReLU problem, written in blocks."""
    directory.mkdir(parents=True, exist_ok=True)
    m = d // k
    rng = np.random.default_rng(seed)
    w_star = rng.standard_normal(m)
    X = np.lib.format.open_memmap(directory / "X.npy", mode="w+", dtype=np.float64, shape=(n, d))
    y = np.empty(n)
    step = max(1, WRITE_BYTES // (8 * d))
    for start in range(0, n, step):
        block = rng.standard_normal((min(step, n - start), d))
        X[start:start + block.shape[0]] = block
        y[start:start + block.shape[0]] = np.maximum(block.reshape(-1, k, m) @ w_star, 0.0).sum(axis=1)
    X.flush()
    del X
    np.save(directory / "y.npy", y)
    np.save(directory / "w_star.npy", w_star)


def _trials(problem: Any, trials: int) -> tuple[Any, float | None]:
    """The solve's trials without its certificate: working-set LP, polish, stop at zero loss; then the streamed
    measures (fit residual, relative gradient norm). Returns the best filter and its loss."""
    from cnnrelax.core import RelaxationSolver, polish, trial_direction
    from cnnrelax.core.certificates import fit_residual, loss_threshold, relative_gradient_norm

    solver = RelaxationSolver(problem)
    best, best_loss = None, None
    for t in range(trials):
        solution = solver.solve(trial_direction(0, t, problem.m))
        if solution.w is None:
            continue
        outcome = polish(problem, solution.w)
        if best_loss is None or outcome.loss < best_loss:
            best, best_loss = outcome.w, outcome.loss
        if best_loss <= loss_threshold(problem):
            break
    if best is not None:
        fit_residual(problem, best)
        relative_gradient_norm(problem, best)
    return best, best_loss


def solve_mapped(directory: Path, k: int, trials: int, coverage_samples: int, copy: bool,
                 stage: str) -> dict[str, Any]:
    """Solve the problem in ``directory`` from its memory-mapped ``X``; the measures (module docstring)."""
    from cnnrelax.core import SolveOptions, make_problem, solve
    from cnnrelax.core.patches import PASSES

    X = np.load(directory / "X.npy", mmap_mode="r")
    y = np.load(directory / "y.npy")
    w_star = np.load(directory / "w_star.npy")
    PASSES.reset()
    started = time.perf_counter()
    with AnonymousPeak() as memory:
        data = np.array(X) if copy else X
        problem = make_problem(data, y, k=k)
        if stage == "full":
            result = solve(problem, SolveOptions(trials=trials, coverage_samples=coverage_samples))
            w, loss = result.w, result.loss
        else:
            w, loss = _trials(problem, trials)
    seconds = time.perf_counter() - started
    error = None if w is None else float(np.max(np.abs(w - w_star)))
    return {"n": int(X.shape[0]), "d": int(X.shape[1]), "k": k, "stage": stage, "x_bytes": int(X.nbytes),
            "seconds": seconds, "passes": PASSES.count, "anon_start": memory.start, "anon_peak": memory.peak,
            "anon_rise": memory.peak - memory.start, "w_error": error, "loss": loss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    write = sub.add_parser("write")
    write.add_argument("directory", type=Path)
    write.add_argument("--n", type=int, required=True)
    write.add_argument("--d", type=int, required=True)
    write.add_argument("--k", type=int, required=True)
    write.add_argument("--seed", type=int, default=0)
    run = sub.add_parser("solve")
    run.add_argument("directory", type=Path)
    run.add_argument("--k", type=int, required=True)
    run.add_argument("--trials", type=int, default=8)
    run.add_argument("--coverage-samples", type=int, default=64)
    run.add_argument("--copy", action="store_true")
    run.add_argument("--stage", choices=("trials", "full"), default="full",
                     help="full: solve() with its certificate; trials: the trials, polish and measures only")
    args = parser.parse_args()
    if args.command == "write":
        write_planted(args.directory, args.n, args.d, args.k, args.seed)
    else:
        print(json.dumps(solve_mapped(args.directory, args.k, args.trials, args.coverage_samples, args.copy,
                                      args.stage)))


if __name__ == "__main__":
    main()
