"""A planted problem written to disk block by block: ``X.npy`` and ``y.npy`` that no process ever holds whole.

For out-of-core and sharded solves (tests, ``bench/bench_scale_dask.py``): rows ``[start, start + rows)`` of ``X``
are drawn from ``default_rng([seed, start])`` (so a block is the same whatever else is written), the unit-norm
filter ``w*`` from ``default_rng([seed, 0x9E3779B9])``, and ``y_i = sum_j sigma(X_ij w*)`` for non-overlapping
blocks of ``m = d / k`` columns. Each block is appended to an ``.npy`` file after its header, so the writer's
memory is one block, not ``X``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..validation import positive_integer
from .activations import make_activation
from .problem import BlockPatching, FloatArray

#: Rows per block written (and per chunk read back by default): 8 MB at d = 1000.
PLANTED_BLOCK_ROWS = 1000


@dataclass(frozen=True)
class PlantedFiles:
    """Where the planted data went, and its filter."""

    X_path: Path
    y_path: Path
    w_star: FloatArray
    n: int
    d: int
    k: int


def _write_header(handle: BinaryIO, shape: tuple[int, ...]) -> None:
    np.lib.format.write_array_header_1_0(handle, {"descr": "<f8", "fortran_order": False, "shape": shape})


def write_planted(directory: Path | str, n: int, d: int, k: int = 1, seed: int = 0, *, activation: str = "relu",
                  block_rows: int = PLANTED_BLOCK_ROWS, nan_at: tuple[int, int] | None = None) -> PlantedFiles:
    """Write ``directory/X.npy`` (``n x d`` float64) and ``directory/y.npy`` block by block; return the paths.

    ``nan_at=(i, j)`` puts a NaN at ``X[i, j]`` (after ``y`` was computed: a bad dataset for tests).
    """
    for name, value in (("n", n), ("d", d), ("k", k), ("block_rows", block_rows)):
        positive_integer(name, value)
    kk, m = BlockPatching(k).shape(d)
    act = make_activation(activation)
    w_star = np.random.default_rng([seed, 0x9E3779B9]).standard_normal(m)
    w_star /= np.linalg.norm(w_star)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    x_path, y_path = directory / "X.npy", directory / "y.npy"
    with x_path.open("wb") as fx, y_path.open("wb") as fy:
        _write_header(fx, (n, d))
        _write_header(fy, (n,))
        for start in range(0, n, block_rows):
            rows = min(block_rows, n - start)
            block = np.random.default_rng([seed, start]).standard_normal((rows, d))
            labels = act.value(block.reshape(rows, kk, m) @ w_star).sum(axis=1)
            if nan_at is not None and start <= nan_at[0] < start + rows:
                block[nan_at[0] - start, nan_at[1]] = np.nan
            fx.write(np.ascontiguousarray(block).tobytes())
            fy.write(np.ascontiguousarray(labels, dtype="<f8").tobytes())
    return PlantedFiles(x_path, y_path, w_star, n, d, k)
