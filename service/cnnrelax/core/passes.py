"""The kernels of the core's passes over the patch tensor: module-level functions (picklable, so a pass runs on
other processes), each given one block of patches ``A_b`` (``(b, k, m)``) and the same rows of its row arguments.

Run them through a source (:mod:`cnnrelax.core.patches`): ``source.map_rows(kernel, *row_args)`` stacks per-row
outputs, ``source.reduce_rows(kernel, *row_args)`` sums per-block outputs. Arguments that are not rows (a filter
``w``) are bound with :func:`functools.partial`, e.g. ``source.map_rows(partial(preactivations, w=w))``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Iterable, Iterator

import numpy as np
from numpy.typing import NDArray
from threadpoolctl import ThreadpoolController

FloatArray = NDArray[np.float64]


def sum_of_squares(patches: FloatArray) -> float:
    """``sum A_ijl^2`` over the block (a reduction)."""
    # einsum's own loop, not BLAS: a threaded BLAS sums in an order that depends on the thread count, and
    # the scale must be the same bits in every process (a resumed job equals an uninterrupted one).
    flat = patches.reshape(-1)
    return float(np.einsum("i,i->", flat, flat))


def preactivations(patches: FloatArray, w: FloatArray) -> FloatArray:
    """``A_ij w`` per row and patch, ``(b, k)`` (a map)."""
    out: FloatArray = (patches.reshape(-1, patches.shape[2]) @ w).reshape(patches.shape[0], patches.shape[1])
    return out


def patch_norms(patches: FloatArray) -> FloatArray:
    """``||A_ij||`` per row and patch, ``(b, k)`` (a map)."""
    norms: FloatArray = np.sqrt(np.einsum("ikm,ikm->ik", patches, patches))
    return norms


def weighted_rows(patches: FloatArray, weights: FloatArray) -> FloatArray:
    """``g_i = sum_j weights_ij A_ij`` per row, ``(b, m)`` (a map: gradient rows, cut rows)."""
    out: FloatArray = np.einsum("ik,ikm->im", weights, patches)
    return out


def weighted_sum(patches: FloatArray, weights: FloatArray) -> FloatArray:
    """``sum_ij weights_ij A_ij``, ``(m,)`` (a reduction: ``G^T 1`` for ``G``'s weights folded with a residual)."""
    out: FloatArray = np.einsum("ik,ikm->m", weights, patches)
    return out


def label_moment(patches: FloatArray, y: FloatArray) -> FloatArray:
    """``sum_i y_i sum_j A_ij``, ``(m,)`` (a reduction: Stein's moment)."""
    out: FloatArray = np.einsum("i,ikm->m", y, patches)
    return out


#: :func:`gradient_moments` makes the gradient rows of this many samples at a time.
GRADIENT_ROWS_AT_ONCE = 4096


def gradient_moments(patches: FloatArray, weights: FloatArray, residual: FloatArray) -> tuple[FloatArray, float]:
    """``(G_b^T r_b, ||G_b||_F^2)`` for ``g_i = sum_j weights_ij A_ij`` (a reduction: the loss's gradient and the
    scale it is measured against). The rows are made a few thousand at a time, so a block's ``(b, m)`` rows never
    exist at once (an in-memory source is one block: that would be ``(n, m)``)."""
    moment = np.zeros(patches.shape[2])
    squares = 0.0
    for start in range(0, patches.shape[0], GRADIENT_ROWS_AT_ONCE):
        rows = slice(start, start + GRADIENT_ROWS_AT_ONCE)
        G = np.einsum("ik,ikm->im", weights[rows], patches[rows])
        moment += residual[rows] @ G
        squares += float(np.einsum("im,im->", G, G))
    return moment, squares


#: Rows per Householder QR inside a block: LAPACK's QR of a tall matrix is memory-bound, so a block is factored in
#: slices of this many rows (they stay in cache), their factors combined pairwise; measured 3x faster than one QR
#: of 100000 x 101 rows, single-threaded.
QR_ROWS = 1024


@lru_cache(maxsize=1)
def _blas() -> ThreadpoolController:
    """The process's BLAS thread pools (inspected once)."""
    return ThreadpoolController()


def _qr_slices(rows: int, columns: int) -> Iterator[slice]:
    """The row slices the QR factors one at a time: :data:`QR_ROWS` rows (at least four times the columns)."""
    step = max(QR_ROWS, 4 * columns)
    for start in range(0, rows, step):
        yield slice(start, min(rows, start + step))


def _stacked_r(pieces: Iterable[FloatArray]) -> FloatArray:
    """The ``R`` of the rows of ``pieces`` stacked (``Q`` never formed): Householder QR of each piece stacked under
    the factor so far.

    On one BLAS thread: slices this small gain nothing from threads, and on a loaded machine a threaded LAPACK
    spent 86 ms per 1024 x 31 slice synchronising (measured; 0.4 ms on one thread)."""
    R: FloatArray | None = None
    with _blas().limit(limits=1, user_api="blas"):
        for piece in pieces:
            stacked = piece if R is None else np.vstack((R, piece))
            R = np.asarray(np.linalg.qr(stacked, mode="r"), dtype=np.float64)
    assert R is not None, "a factor of no rows"
    return R


def _r_factor(rows: FloatArray) -> FloatArray:
    """The ``R`` of ``rows = Q R`` (``min(b, c) x c``): QR on the slices of :func:`_qr_slices`."""
    return _stacked_r(rows[part] for part in _qr_slices(rows.shape[0], rows.shape[1]))


class TriangularFactor:
    """The triangular factor ``R`` of ``[G | t]`` (``Q R = [G | t]``), built block by block: a streaming QR.

    ``R^T R = [G | t]^T [G | t]``, so ``R`` carries everything least squares needs without the normal equations
    (which would square ``G``'s condition number): ``R = [[R11, z], [0, rho]]`` gives ``||G x - t||^2 =
    ||R11 x - z||^2 + rho^2``. Blocks combine with ``+``: the factor of two stacked factors is the factor of the
    stacked rows (a tree of small QRs, so any order of blocks gives the same ``R`` up to rounding and row signs).
    """

    def __init__(self, R: FloatArray) -> None:
        self.R = R

    @classmethod
    def of(cls, rows: FloatArray) -> TriangularFactor:
        """The factor of the matrix ``rows`` (``R^T R = rows^T rows``; for :meth:`solve` the last column is ``t``)."""
        return cls(_r_factor(rows))

    @classmethod
    def of_system(cls, G: FloatArray, t: FloatArray) -> TriangularFactor:
        """The factor of the rows ``[G | t]``."""
        return cls.of(np.column_stack((G, t)))

    def __add__(self, other: TriangularFactor) -> TriangularFactor:
        return TriangularFactor(_r_factor(np.vstack((self.R, other.R))))

    def __radd__(self, other: object) -> TriangularFactor:
        if other == 0:  # sum() starts from 0
            return self
        return NotImplemented

    def scaled(self, g_scale: float, t_scale: float) -> tuple[FloatArray, FloatArray]:
        """``(R11 * g_scale, z * t_scale)``: ``||(g_scale G) x - t_scale t||^2 = ||R11' x - z'||^2 + const``."""
        return self.R[:, :-1] * g_scale, self.R[:, -1] * t_scale

    def solve(self) -> FloatArray:
        """``argmin ||G x - t||`` (the minimum-norm one when ``G`` is rank deficient), as ``lstsq`` on ``[G | t]``
        gives it, to rounding: ``G`` and ``R11`` have the same Gram matrix, hence the same solutions."""
        x = np.linalg.lstsq(self.R[:, :-1], self.R[:, -1], rcond=None)[0]
        return np.asarray(x, dtype=np.float64)


def triangular_factor(patches: FloatArray, weights: FloatArray, target: FloatArray) -> TriangularFactor:
    """The block's :class:`TriangularFactor` of ``[G_b | t_b]``, ``g_i = sum_j weights_ij A_ij`` (a reduction).

    Rows whose weights are all zero (``g_i = 0``: for ReLU the samples with no active patch, about half of them when
    ``k = 1``) are left out: they add ``t_i^2`` to ``rho^2`` alone, and change neither ``R11`` nor ``z``, so neither
    the least-squares solution nor the residual's dependence on ``x`` (``rho`` is a constant that no caller reads).
    The other rows ``[g_i | t_i]`` are made one QR slice at a time (the slices :meth:`TriangularFactor.of_system`
    would cut from them, so the factor is the same bits): the block's ``(b, m + 1)`` rows, and their copy into one
    array, never exist (at (100000, 400, 4) that was 160 MiB, half of ``X``, the peak of the default solve)."""
    counted = np.flatnonzero(np.any(weights != 0, axis=1))
    if counted.size == 0:
        return TriangularFactor(np.zeros((1, patches.shape[2] + 1)))  # G = 0: the factor of one zero row
    rows = None if counted.size == weights.shape[0] else counted  # None: every row counts, slices with no gather

    def pieces() -> Iterator[FloatArray]:
        for part in _qr_slices(counted.size, patches.shape[2] + 1):
            index = part if rows is None else rows[part]
            yield np.column_stack((np.einsum("ik,ikm->im", weights[index], patches[index]), target[index]))

    return TriangularFactor(_stacked_r(pieces()))


def patch_factor(patches: FloatArray) -> TriangularFactor:
    """The block's :class:`TriangularFactor` of its ``b*k`` patches stacked as rows (a reduction: the singular
    values of all patches, ``sigma(A_flat) = sigma(R)``)."""
    return TriangularFactor.of(patches.reshape(-1, patches.shape[2]))
