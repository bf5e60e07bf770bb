"""The scale curve (issue 20): planted problems from n*d = 1e7 to 1e9 solved from a memory-mapped ``.npy``.

Run: ``python bench/bench_scale.py [--sizes 1e7 1e8 1e9] [--d 400] [--k 4] [--dir /work/tmp/scale]
[--stage trials|full] [--keep]``. For each size it writes a planted ReLU problem (``X.npy`` of ``n x d`` float64,
written in blocks, ``y = sum_j (X_ij w*)_+``) under ``--dir``, then solves it in a fresh process
(``bench/scale_probe.py``, one BLAS thread) from the memory map, and prints one row: ``n``, the size of ``X``, the
time, the passes over ``X`` (the core's :data:`~cnnrelax.core.patches.PASSES` counter), the peak anonymous memory
of the solving process (``RssAnon``: its own allocations; the page cache the map reads through is file-backed and
not counted) and its rise during the solve, and the largest error of the filter against ``w*``.

The shape: ``d = 400, k = 4`` (``m = 100``). Out of core, what stays in memory is a block of patches plus a few
vectors of one number per sample and patch (pre-activations, patch norms, masks, gradient weights), each
``n k`` floats, that is ``k / d = 1/100`` of ``X``; a small ``k`` keeps them small, a large ``d`` makes ``X`` big
for a given ``n``. (At ``n*d = 1e9``: ``X`` is 8 GB, each such vector 80 MB.)

``--stage trials`` (the default) runs the solve's trials, polish and streamed measures; ``--stage full`` runs
:func:`cnnrelax.core.solve` with its certificate and coverage (``--coverage-samples``), whose cone of optimality
is rebuilt over the same primitives in its own change (until then it holds ``(n, m)`` gradient rows).

``--dask``: the same curve on a two-worker Dask LocalCluster (:func:`dask_curve`; added with the dask backend).
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

PROBE = Path(__file__).resolve().parent / "scale_probe.py"
MIB = 2**20


def _probe(*args: str | Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, str(PROBE), *map(str, args)], capture_output=True, text=True, check=True)
    lines = done.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else {}


def local_curve(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per size: write the planted problem, solve it from the memory map in a fresh process."""
    rows = []
    for size in args.sizes:
        n = int(round(float(size) / args.d))
        directory = args.dir / f"n{n}_d{args.d}_k{args.k}"
        if not (directory / "y.npy").exists():
            _probe("write", directory, "--n", n, "--d", args.d, "--k", args.k, "--seed", args.seed)
        row = _probe("solve", directory, "--k", args.k, "--stage", args.stage, "--trials", args.trials,
                     "--coverage-samples", args.coverage_samples)
        rows.append(row)
        print(_format(row), flush=True)
        if not args.keep:
            shutil.rmtree(directory)
    return rows


def dask_curve(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The same curve on a two-worker Dask LocalCluster (``bench/bench_scale_dask.py``, its options there)."""
    import bench_scale_dask  # a sibling script (bench/ is the script's directory, first on sys.path)

    return bench_scale_dask.dask_curve(args)


HEADER = (f"{'n*d':>8} {'n':>9} {'X GB':>6} {'stage':>6} {'time s':>8} {'passes':>6} {'anon peak MiB':>13} "
          f"{'rise MiB':>9} {'|w - w*|':>9}")


def _format(row: dict[str, Any]) -> str:
    error = "-" if row["w_error"] is None else f"{row['w_error']:.1e}"
    return (f"{row['n'] * row['d']:>8.0e} {row['n']:>9} {row['x_bytes'] / 1e9:>6.2f} {row['stage']:>6} "
            f"{row['seconds']:>8.1f} {row['passes']:>6} {row['anon_peak'] / MIB:>13.0f} "
            f"{row['anon_rise'] / MIB:>9.0f} {error:>9}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["1e7", "1e8", "1e9"], help="n*d of each problem")
    parser.add_argument("--d", type=int, default=400)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--coverage-samples", type=int, default=64)
    parser.add_argument("--stage", choices=("trials", "full"), default="trials")
    parser.add_argument("--dir", type=Path, default=Path("/work/tmp/scale"), help="where the .npy files go")
    parser.add_argument("--keep", action="store_true", help="keep the written problems")
    parser.add_argument("--dask", action="store_true", help="the two-worker LocalCluster curve")
    import bench_scale_dask  # its options: --modes, --worker-limit-mb, --out

    bench_scale_dask.add_arguments(parser)
    args = parser.parse_args()
    if not args.dask:  # the Dask curve prints its own header
        print(f"d={args.d} k={args.k} m={args.d // args.k}, one BLAS thread, X memory-mapped from {args.dir}")
        print(HEADER)
    (dask_curve if args.dask else local_curve)(args)


if __name__ == "__main__":
    main()
