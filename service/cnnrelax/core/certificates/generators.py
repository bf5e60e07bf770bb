"""The optimality cone's generators, as rows held in memory or implicit over the patch source.

A sample's generator is ``g_i = f_i P sum_j s_ij X_ij`` (slopes ``s``, a slice factor ``f_i``, ``P`` projecting out
the equality rows) and its tied rows ``f_i P spread_ij X_ij`` (:mod:`cnnrelax.core.certificates.cone`). Two stores
answer the cone's three questions (gains for directions, rows by index, the tied rows of samples):
:class:`ExplicitGenerators` holds the scaled rows; :class:`PatchGenerators` holds only the slopes ``(n, k)`` and the
factors ``(n,)`` and answers each product by one pass of :func:`gains_kernel` over the source (in memory, memory
mapped or on Dask), gathering rows by index. The kernels are module-level functions (picklable for Dask workers).
"""

from __future__ import annotations

from functools import partial
from typing import Iterator, Protocol

import numpy as np
from numpy.typing import NDArray

from ..patches import PatchSource
from ..problem import FloatArray

__all__ = ["ExplicitGenerators", "Generators", "PatchGenerators", "SUB_BLOCK_ROWS", "gains_kernel",
           "generator_rows_kernel", "generator_stats_kernel", "positions", "project_out", "row_norms", "sub_blocks"]

#: A kernel works on this many rows of its block at a time (its temporaries stay far below the block's size).
SUB_BLOCK_ROWS = 4096


class Generators(Protocol):
    """The cone's generators, scaled and projected: ``count`` rows, of which some samples carry tied patches."""

    count: int
    has_ties: bool

    def gains(self, E: FloatArray) -> FloatArray:
        """Per row, ``g_i^T e + sum_{tied j of i} (t_ij^T e)_+`` for ``E`` ``(m,)`` or each column of ``(m, q)``."""

    def rows(self, index: NDArray[np.intp]) -> FloatArray:
        """The rows ``g_i`` for ``index``, ``(len(index), m)``."""

    def tie_rows(self, samples: NDArray[np.intp]) -> tuple[FloatArray, NDArray[np.intp]]:
        """The tied rows ``t_ij`` of ``samples`` and, for each, its sample's position in ``samples``."""


class ExplicitGenerators:
    """Generators held as arrays: ``G`` ``(s, m)``, tied rows ``T`` ``(t, m)`` with the row each belongs to, and
    ``extra`` rows (no ties) indexed after ``G``'s."""

    def __init__(self, G: FloatArray, T: FloatArray, owner: NDArray[np.intp], extra: FloatArray | None = None) -> None:
        self.G, self.T, self.owner = G, T, np.asarray(owner, dtype=np.intp)
        self.extra = np.zeros((0, G.shape[1])) if extra is None else extra
        self.n = int(G.shape[0])
        self.count = self.n + int(self.extra.shape[0])
        self.has_ties = T.shape[0] > 0

    def gains(self, E: FloatArray) -> FloatArray:
        values: FloatArray = self.G @ E
        if self.has_ties:
            np.add.at(values, self.owner, np.maximum(self.T @ E, 0.0))
        if self.extra.shape[0]:
            values = np.concatenate([values, self.extra @ E])
        return values

    def rows(self, index: NDArray[np.intp]) -> FloatArray:
        index = np.asarray(index, dtype=np.intp)
        if not self.extra.shape[0]:
            picked: FloatArray = self.G[index]
            return picked
        out = np.empty((index.size, self.G.shape[1]))
        sample = index < self.n
        out[sample] = self.G[index[sample]]
        out[~sample] = self.extra[index[~sample] - self.n]
        return out

    def tie_rows(self, samples: NDArray[np.intp]) -> tuple[FloatArray, NDArray[np.intp]]:
        ties = np.flatnonzero(np.isin(self.owner, samples))
        return self.T[ties], positions(samples, self.owner[ties])


class PatchGenerators:
    """Generators never stored: ``g_i = f_i P sum_j s_ij X_ij``, tied rows ``f_i P spread_ij X_ij`` (module docstring).

    Parameters
    ----------
    source : the patch tensor's source (every product is one pass of :func:`gains_kernel`; rows are gathered).
    slopes : ``s_ij`` ``(n, k)``.
    spreads : the tied patches' spread, 0 where a patch is not tied ``(n, k)``.
    factors : ``f_i``, the slice factor over the common scale, 0 for a sample that is no generator ``(n,)``.
    basis : ``Q`` with orthonormal columns spanning the equality rows (None: nothing is projected out).
    extra : further rows, scaled and projected (active one-sided constraint normals), indexed after the samples.
    """

    def __init__(self, source: PatchSource, slopes: FloatArray, spreads: FloatArray, factors: FloatArray,
                 basis: FloatArray | None, extra: FloatArray) -> None:
        self.has_ties = bool(np.any(spreads != 0))
        self.source, self.slopes, self.factors = source, slopes, factors
        self.spreads = spreads if self.has_ties else np.zeros((0, 0))  # nothing held without ties
        self.basis, self.extra = basis, extra
        self.n = int(source.shape[0])
        self.count = self.n + int(extra.shape[0])

    def gains(self, E: FloatArray) -> FloatArray:
        E = np.asarray(project_out(E.T, self.basis).T, dtype=np.float64)  # P is symmetric: (P g)^T e = g^T (P e)
        if self.has_ties:
            values = self.source.map_rows(partial(gains_kernel, E=E), self.slopes, self.factors, self.spreads)
        else:
            values = self.source.map_rows(partial(gains_kernel, E=E), self.slopes, self.factors)
        if not self.extra.shape[0]:
            return values
        out: FloatArray = np.concatenate([values, self.extra @ E])
        return out

    def rows(self, index: NDArray[np.intp]) -> FloatArray:
        index = np.asarray(index, dtype=np.intp)
        out = np.empty((index.size, self.source.shape[2]))
        sample = index < self.n
        picked = index[sample]
        gathered = np.einsum("ck,ckm->cm", self.slopes[picked], self.source.take(picked))
        out[sample] = project_out(gathered, self.basis) * self.factors[picked][:, None]
        out[~sample] = self.extra[index[~sample] - self.n]
        return out

    def tie_rows(self, samples: NDArray[np.intp]) -> tuple[FloatArray, NDArray[np.intp]]:
        samples = np.asarray(samples, dtype=np.intp)
        if not self.has_ties:
            return np.zeros((0, self.source.shape[2])), np.zeros(0, dtype=np.intp)
        where = np.flatnonzero(samples < self.n)
        spreads = self.spreads[samples[where]]
        row, patch = np.nonzero(spreads)
        patches = self.source.take(samples[where])[row, patch]
        rows = patches * (spreads[row, patch] * self.factors[samples[where[row]]])[:, None]
        return project_out(rows, self.basis), where[row]



def positions(samples: NDArray[np.intp], owners: NDArray[np.intp]) -> NDArray[np.intp]:
    """For each of ``owners`` (all among ``samples``), its position in ``samples``."""
    order = np.argsort(samples, kind="stable")
    return order[np.searchsorted(samples[order], owners)]


def row_norms(M: FloatArray) -> FloatArray:
    """The Euclidean norm of each row (one pass, no temporary of ``M``'s size)."""
    norms: FloatArray = np.sqrt(np.einsum("ij,ij->i", M, M))
    return norms



def project_out(M: FloatArray, basis: FloatArray | None) -> FloatArray:
    """The rows of ``M`` with the span of ``basis`` projected out (``M`` itself when nothing is)."""
    if basis is None or M.shape[0] == 0:
        return M
    out: FloatArray = M - (M @ basis) @ basis.T
    return out



def sub_blocks(rows: int) -> Iterator[slice]:
    """Row ranges of a block, :data:`SUB_BLOCK_ROWS` at a time (a kernel's temporaries stay small)."""
    for start in range(0, rows, SUB_BLOCK_ROWS):
        yield slice(start, min(rows, start + SUB_BLOCK_ROWS))


def gains_kernel(patches: FloatArray, slopes: FloatArray, factors: FloatArray, spreads: FloatArray | None = None, *,
                 E: FloatArray) -> FloatArray:
    """A block's gains (a map): ``f_i (sum_j s_ij X_ij^T e + sum_j (spread_ij X_ij^T e)_+)`` per column ``e`` of ``E``
    (``(b,)`` for one direction, ``(b, q)`` for several)."""
    b, k, m = patches.shape
    out: FloatArray = np.empty((b,) + E.shape[1:])
    for rows in sub_blocks(b):
        block = patches[rows]
        XE = (block.reshape(-1, m) @ E).reshape(block.shape[:2] + E.shape[1:])
        if E.ndim == 1:
            values = np.einsum("ck,ck->c", slopes[rows], XE)
            if spreads is not None:
                values += np.maximum(spreads[rows] * XE, 0.0).sum(axis=1)
            out[rows] = values * factors[rows]
        else:
            values = np.einsum("ck,ckq->cq", slopes[rows], XE)
            if spreads is not None:
                values += np.maximum(spreads[rows][:, :, None] * XE, 0.0).sum(axis=1)
            out[rows] = values * factors[rows][:, None]
    return out


def generator_stats_kernel(patches: FloatArray, slopes: FloatArray, spreads: FloatArray | None = None, *,
                           basis: FloatArray | None, axis: FloatArray | None) -> FloatArray:
    """A block's per-sample ``(||P g_i||, (P g_i)^T axis, max_j ||P spread_ij X_ij||)`` (a map, ``(b, 3)``), with
    ``g_i = sum_j s_ij X_ij``; the rows themselves are made a few at a time and dropped."""
    b, k, m = patches.shape
    out: FloatArray = np.zeros((b, 3))
    for rows in sub_blocks(b):
        block = patches[rows]
        G = project_out(np.einsum("ck,ckm->cm", slopes[rows], block), basis)
        out[rows, 0] = row_norms(G)
        out[rows, 1] = G @ axis if axis is not None else 1.0
        if spreads is not None and np.any(spreads[rows]):
            out[rows, 2] = np.max(spreads[rows] * _projected_patch_norms(block, basis), axis=1)
    return out


def generator_rows_kernel(patches: FloatArray, slopes: FloatArray, *, basis: FloatArray | None) -> FloatArray:
    """A block's rows ``P sum_j s_ij X_ij`` (a map, ``(b, m)``): the cache of :class:`ExplicitGenerators`."""
    b, k, m = patches.shape
    out: FloatArray = np.empty((b, m))
    for rows in sub_blocks(b):
        out[rows] = project_out(np.einsum("ck,ckm->cm", slopes[rows], patches[rows]), basis)
    return out


def _projected_patch_norms(patches: FloatArray, basis: FloatArray | None) -> FloatArray:
    """``||P X_ij||`` per row and patch, ``(b, k)``."""
    squares = np.einsum("ckm,ckm->ck", patches, patches)
    if basis is not None:
        squares = squares - np.sum(np.einsum("ckm,mq->ckq", patches, basis) ** 2, axis=2)
    norms: FloatArray = np.sqrt(np.maximum(squares, 0.0))
    return norms
