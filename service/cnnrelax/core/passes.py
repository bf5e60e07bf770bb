"""The kernels of the core's passes over the patch tensor: module-level functions (picklable, so a pass runs on
other processes), each given one block of patches ``A_b`` (``(b, k, m)``) and the same rows of its row arguments.

Run them through a source (:mod:`cnnrelax.core.patches`): ``source.map_rows(kernel, *row_args)`` stacks per-row
outputs, ``source.reduce_rows(kernel, *row_args)`` sums per-block outputs. Arguments that are not rows (a filter
``w``) are bound with :func:`functools.partial`, e.g. ``source.map_rows(partial(preactivations, w=w))``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

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
