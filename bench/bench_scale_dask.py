"""The scale curve on a two-worker Dask LocalCluster (issue 20): one solve with ``X`` spread over the workers.

Run: ``python bench/bench_scale_dask.py [--sizes 1e7 1e8] [--d 400] [--k 4] [--dir /work/tmp/scale]
[--modes read persist] [--worker-limit-mb 600] [--stage trials|full] [--out bench/results/scale_dask.txt]``
(``python bench/bench_scale.py --dask ...`` runs this too).

For each size it writes (or reuses) the same planted ReLU problem as the one-machine curve (``bench/scale_probe.py
write``: ``X.npy`` of ``n x d`` float64, ``y.npy``, ``w_star.npy``), starts a ``distributed.LocalCluster`` of two
worker processes with one thread each on loopback, each limited to ``--worker-limit-mb`` (the nanny terminates a
worker past 95% of it; no spilling, no pausing), opens ``X`` as a dask array of 32 MiB row chunks
(:func:`cnnrelax.executors.sharded.open_sharded_dataset`) and solves from this process (the driver). Modes:

- ``read``: every pass reads its chunks from the file on the workers (a worker holds a chunk or two; the file stays
  in the page cache between passes);
- ``persist``: the chunks are read once and kept in the workers' memory (each holds about half of ``X``), so the
  workers' limit must exceed ``X / 2`` plus their baseline (skipped when it cannot).

Columns: the time of the solve (``make_problem`` and the solve: validation, trials, polish, streamed measures), the
passes over ``X`` (:data:`~cnnrelax.core.patches.PASSES`), each worker's peak anonymous memory (``RssAnon``,
sampled every 5 ms from here), the driver's peak anonymous memory, the bytes the passes moved between driver and
workers (:data:`~cnnrelax.core.dask_patches.TRAFFIC`: row arguments sent, per-row results and sums received) and
between workers (``transfer_outgoing_bytes_total``), and the largest error of the filter against ``w*``.
``--stage trials`` (the default, as the one-machine curve) runs the solve's trials without the cone certificate;
``--stage full`` runs :func:`cnnrelax.core.solve` (it needs certificates/cone.py to stream through the source).
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import dask
import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))  # scale_probe: the writer and the trials stage shared with the one-machine curve

import scale_probe  # noqa: E402  (a sibling script)

MIB = 2**20
MB = 10**6


def anonymous(pid: int) -> int:
    """``RssAnon`` of process ``pid`` in bytes (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


class Peaks:
    """Samples the anonymous memory of ``pids`` every 5 ms in a thread; ``peak[pid]`` is the largest value seen."""

    def __init__(self, pids: list[int]) -> None:
        self.peak = {pid: anonymous(pid) for pid in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in self.peak:
                self.peak[pid] = max(self.peak[pid], anonymous(pid))
            time.sleep(0.005)

    def __enter__(self) -> Peaks:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def cluster(limit_bytes: int) -> Any:
    """Two worker processes, one thread each, on loopback, terminated past 95% of ``limit_bytes``; no spilling."""
    from distributed import LocalCluster

    with dask.config.set({"distributed.worker.memory.target": False, "distributed.worker.memory.spill": False,
                          "distributed.worker.memory.pause": False, "distributed.worker.memory.terminate": 0.95}):
        return LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit=limit_bytes,
                            host="127.0.0.1", dashboard_address=None, silence_logs=50)


def _outgoing(dask_worker: Any) -> int:
    return int(dask_worker.transfer_outgoing_bytes_total)


def solve_on_cluster(directory: Path, k: int, mode: str, limit_bytes: int, trials: int,
                     stage: str) -> dict[str, Any]:
    """One solve of the problem in ``directory`` on a fresh two-worker cluster; the row of measures."""
    from distributed import Client

    from cnnrelax.core import SolveOptions, make_problem, solve
    from cnnrelax.core.dask_patches import TRAFFIC
    from cnnrelax.core.patches import PASSES
    from cnnrelax.executors.sharded import open_sharded_dataset

    w_star = np.load(directory / "w_star.npy")
    local = cluster(limit_bytes)
    try:
        with Client(local) as client:
            pids = sorted(client.run(os.getpid).values())
            with Peaks([*pids, os.getpid()]) as peaks:
                started = time.perf_counter()
                X, y = open_sharded_dataset(directory, client, persist=mode == "persist")
                loaded = time.perf_counter() - started
                TRAFFIC.reset()
                PASSES.reset()
                started = time.perf_counter()
                problem = make_problem(X, y, k=k)
                if stage == "full":
                    result = solve(problem, SolveOptions(trials=trials))
                    w = result.w
                else:
                    w, _ = scale_probe._trials(problem, trials)
                seconds = time.perf_counter() - started
            passes = PASSES.reset()
            sent, received = TRAFFIC.reset()
            between = sum(client.run(_outgoing).values())
            workers = sorted(peaks.peak[pid] for pid in pids)
            driver = peaks.peak[os.getpid()]
            n, d = X.shape
            x_bytes = int(X.nbytes)
    finally:
        local.close()
    return {"n": int(n), "d": int(d), "k": k, "mode": mode, "x_bytes": x_bytes, "limit": limit_bytes,
            "load_s": loaded, "seconds": seconds, "passes": passes, "workers_anon_peak": workers,
            "driver_anon_peak": driver, "sent": sent, "received": received, "between_workers": between,
            "w_error": None if w is None else float(np.max(np.abs(np.asarray(w) - w_star)))}


HEADER = (f"{'n*d':>8} {'n':>9} {'X MB':>7} {'mode':>7} {'limit MB':>8} {'time s':>7} {'passes':>6} "
          f"{'worker anon MiB':>16} {'driver MiB':>10} {'sent MB':>8} {'recv MB':>8} {'w2w MB':>7} {'|w - w*|':>9}")


def format_row(row: dict[str, Any]) -> str:
    error = "-" if row["w_error"] is None else f"{row['w_error']:.1e}"
    workers = "/".join(f"{peak / MIB:.0f}" for peak in row["workers_anon_peak"])
    return (f"{row['n'] * row['d']:>8.0e} {row['n']:>9} {row['x_bytes'] / MB:>7.0f} {row['mode']:>7} "
            f"{row['limit'] / MB:>8.0f} {row['seconds']:>7.1f} {row['passes']:>6} {workers:>16} "
            f"{row['driver_anon_peak'] / MIB:>10.0f} {row['sent'] / MB:>8.1f} {row['received'] / MB:>8.1f} "
            f"{row['between_workers'] / MB:>7.1f} {error:>9}")


#: A worker's anonymous memory with the core imported and a chunk in hand, before it holds any of X (measured:
#: about 110 MB of RSS after the imports; bench/results/scale_dask.txt).
WORKER_BASELINE = 200 * MB


def dask_curve(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per size and mode; the table goes to stdout and to ``args.out``."""
    limit = int(args.worker_limit_mb) * MB
    lines = [f"two workers x 1 thread, each limited to {args.worker_limit_mb} MB; d={args.d} k={args.k} "
             f"m={args.d // args.k}; stage {args.stage}, {args.trials} trials; X read from {args.dir}", HEADER]
    print("\n".join(lines), flush=True)
    rows = []
    for size in args.sizes:
        n = int(round(float(size) / args.d))
        directory = args.dir / f"n{n}_d{args.d}_k{args.k}"
        if not (directory / "w_star.npy").exists():
            subprocess.run([sys.executable, str(BENCH / "scale_probe.py"), "write", str(directory), "--n", str(n),
                            "--d", str(args.d), "--k", str(args.k), "--seed", str(args.seed)], check=True)
        for mode in args.modes:
            if mode == "persist" and 8 * n * args.d / 2 + WORKER_BASELINE > 0.95 * limit:
                line = f"{float(size):>8.0e} {n:>9} {8 * n * args.d / MB:>7.0f} persist: X/2 does not fit a worker"
            else:
                row = solve_on_cluster(directory, args.k, mode, limit, args.trials, args.stage)
                rows.append(row)
                line = format_row(row)
            lines.append(line)
            print(line, flush=True)
        if not args.keep:
            for name in ("X.npy", "y.npy", "w_star.npy"):
                (directory / name).unlink(missing_ok=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the Dask curve (shared with ``bench/bench_scale.py --dask``)."""
    parser.add_argument("--modes", nargs="+", choices=("read", "persist"), default=["read", "persist"])
    parser.add_argument("--worker-limit-mb", type=int, default=600, help="each worker's memory limit")
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "scale_dask.txt")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["1e7", "1e8"], help="n*d of each problem")
    parser.add_argument("--d", type=int, default=400)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--stage", choices=("trials", "full"), default="trials")
    parser.add_argument("--dir", type=Path, default=Path("/work/tmp/scale"), help="where the .npy files go")
    parser.add_argument("--keep", action="store_true", help="keep the written problems")
    add_arguments(parser)
    dask_curve(parser.parse_args())


if __name__ == "__main__":
    main()
