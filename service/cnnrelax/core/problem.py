"""Problem data: the patching of each row into ``k`` patches, the folded output weights, and the model.

A convolutional net with one hidden layer and a convex activation ``sigma`` (:mod:`cnnrelax.core.activations`)
predicts ``f_w(x_i) = sum_j c_j sigma(P_j x_i . w)``. For ``sigma`` positively homogeneous of degree ``q``,
``c sigma(u) = sigma(c^(1/q) u)`` for ``c >= 0``, so the weights are folded into the patches, and every
relaxation works on the tensor ``A[i, j, :] = c_j^(1/q) P_j x_i`` of shape ``(n, k, m)``.

For non-overlapping blocks with unit output weights (the paper's setting) that tensor is a view of
``X`` (``X.reshape(n, k, m)``): no copy is made. Other patchings gather it once in memory, or block by block
when ``X`` is memory-mapped: the tensor sits behind a data source (:mod:`cnnrelax.core.patches`) and every pass
is one of its primitives.

Units (SPEC 4c): the problems are covariant under ``X -> a X``, ``y -> b y`` (the filter maps to
``b^(1/q)/a w``). :attr:`ConvProblem.scales` gives the two numbers the solvers divide by, the RMS of the
patch entries and ``max |y|``, so that they work in normalised units without copying the data.

Every full pass over the patch tensor ticks :data:`PASSES` (instrumentation: ``bench/bench_core.py`` reports how
many passes over ``X`` a solve makes).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property, partial
from typing import Literal, Sequence, Union

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import InvalidParameterError
from ..validation import positive_integer
from . import passes
from .activations import DEFAULT_NEGATIVE_SLOPE, RELU, Activation, make_activation
from .patches import PASSES, PassCounter, PatchLayout, PatchSource, finite_array, source_kind
from .tolerances import TIE_RTOL

__all__ = ["ConvProblem", "make_problem", "make_patching", "BlockPatching", "StridedPatching", "ImagePatching",
           "Patching", "FloatArray", "PASSES", "PassCounter"]

FloatArray = NDArray[np.float64]


def _shape_error(parameter: str, message: str) -> InvalidParameterError:
    return InvalidParameterError(parameter, message)


@dataclass(frozen=True)
class BlockPatching:
    """Non-overlapping contiguous blocks: row ``x`` of length ``d = k*m`` splits into ``k`` blocks."""

    k: int
    kind: Literal["blocks"] = "blocks"

    def shape(self, d: int) -> tuple[int, int]:
        """Return ``(k, m)`` for rows of length ``d``."""
        positive_integer("k", self.k)
        if d % self.k != 0:
            raise _shape_error(
                "k",
                f"The row length d={d} is not divisible by k={self.k}: non-overlapping patches "
                f"need d = k*m. Choose k among the divisors of {d}, or use strided patches.",
            )
        return int(self.k), d // int(self.k)

    def index(self, d: int) -> NDArray[np.intp]:
        """Return the ``(k, m)`` array of column indices of each patch."""
        k, m = self.shape(d)
        return np.arange(d).reshape(k, m)


@dataclass(frozen=True)
class StridedPatching:
    """1-D patches of length ``size`` taken every ``stride`` columns (they overlap when stride < size)."""

    size: int
    stride: int = 1
    kind: Literal["strided"] = "strided"

    def shape(self, d: int) -> tuple[int, int]:
        if self.size < 1 or self.size > d:
            raise _shape_error("patch_size", f"patch_size must be between 1 and d={d}, got {self.size}.")
        if self.stride < 1:
            raise _shape_error("stride", f"stride must be a positive integer, got {self.stride}.")
        return (d - self.size) // self.stride + 1, self.size

    def index(self, d: int) -> NDArray[np.intp]:
        k, m = self.shape(d)
        return np.arange(k)[:, None] * self.stride + np.arange(m)[None, :]


@dataclass(frozen=True)
class ImagePatching:
    """2-D patches: rows are ``height x width`` images (row-major), the filter ``filter_height x filter_width``."""

    height: int
    width: int
    filter_height: int
    filter_width: int
    stride: int = 1
    kind: Literal["image"] = "image"

    def shape(self, d: int) -> tuple[int, int]:
        if self.height * self.width != d:
            raise _shape_error(
                "image_shape",
                f"Images of {self.height}x{self.width} pixels need rows of length "
                f"{self.height * self.width}, but X has d={d} columns.",
            )
        if not (1 <= self.filter_height <= self.height and 1 <= self.filter_width <= self.width):
            raise _shape_error(
                "filter_shape",
                f"The filter {self.filter_height}x{self.filter_width} must fit inside the "
                f"{self.height}x{self.width} image.",
            )
        if self.stride < 1:
            raise _shape_error("stride", f"stride must be a positive integer, got {self.stride}.")
        rows = (self.height - self.filter_height) // self.stride + 1
        cols = (self.width - self.filter_width) // self.stride + 1
        return rows * cols, self.filter_height * self.filter_width

    def index(self, d: int) -> NDArray[np.intp]:
        self.shape(d)
        top = np.arange(0, self.height - self.filter_height + 1, self.stride)
        left = np.arange(0, self.width - self.filter_width + 1, self.stride)
        dr, dc = np.meshgrid(np.arange(self.filter_height), np.arange(self.filter_width), indexing="ij")
        offsets = (dr * self.width + dc).ravel()
        starts = (top[:, None] * self.width + left[None, :]).ravel()
        return starts[:, None] + offsets[None, :]


Patching = Union[BlockPatching, StridedPatching, ImagePatching]


@dataclass(frozen=True)
class ConvProblem:
    """Validated problem data: patches ``A`` of shape ``(n, k, m)`` (output weights folded in), behind a
    :class:`~cnnrelax.core.patches.PatchSource` (in memory, memory-mapped, ...), and labels ``y``.

    Every method that reads the patches is written on the source's pass primitives (``map_rows``,
    ``reduce_rows``, ``take``), so it streams when ``X`` is memory-mapped.
    """

    source: PatchSource = field(repr=False)
    y: FloatArray
    patching: Patching
    output_weights: FloatArray
    activation: Activation = RELU

    @property
    def n(self) -> int:
        return self.source.shape[0]

    @property
    def k(self) -> int:
        return self.source.shape[1]

    @property
    def m(self) -> int:
        return self.source.shape[2]

    @property
    def d(self) -> int:
        return int(self.source.X.shape[1])

    @property
    def X(self) -> FloatArray:
        """The raw ``(n, d)`` data as given (a memory map stays one)."""
        data: FloatArray = self.source.X
        return data

    @property
    def patches(self) -> FloatArray:
        """The whole ``(n, k, m)`` patch tensor: for in-memory callers and tests (a view of ``X`` in the paper's
        layout, a copy otherwise). A pass over the data uses :attr:`source`'s primitives instead."""
        return self.source.dense()

    @property
    def flat(self) -> FloatArray:
        """The patches as an ``(n*k, m)`` matrix (rows are ``X_ij``; see :attr:`patches`)."""
        return self.patches.reshape(-1, self.m)

    def on_rows(self, rows: NDArray[np.intp]) -> ConvProblem:
        """The same problem restricted to the samples ``rows`` (an in-memory copy of those rows only)."""
        return replace(self, source=self.source.on_rows(rows), y=self.y[rows])

    @cached_property
    def scales(self) -> tuple[float, float]:
        """``(x_scale, y_scale)``: the RMS of the patch entries and ``max_i |y_i|`` (1 where they vanish).

        Both are covariant (``x_scale(a X) = a x_scale(X)``, ``y_scale(b y) = b y_scale(y)``), so data
        divided by them is the same for every choice of units. One pass over the data, no copy.
        """
        n, k, m = self.source.shape
        x_scale = float(np.sqrt(self.source.reduce_rows(passes.sum_of_squares) / max(n * k * m, 1)))
        y_scale = float(np.max(np.abs(self.y)))
        return (x_scale if x_scale > 0 and np.isfinite(x_scale) else 1.0,
                y_scale if y_scale > 0 else 1.0)

    @property
    def w_scale(self) -> float:
        """The natural size of a filter in the user's units: ``y_scale^(1/q) / x_scale`` for an activation
        homogeneous of degree ``q`` (``y_scale / x_scale`` for ReLU), ``1 / x_scale`` when not homogeneous."""
        return self.activation.w_scale(*self.scales)

    def preactivations(self, w: FloatArray) -> FloatArray:
        """``X_ij w`` for every sample and patch, shape ``(n, k)`` (one pass)."""
        return self.source.map_rows(partial(passes.preactivations, w=np.asarray(w, dtype=np.float64)))

    def patch_norms(self) -> FloatArray:
        """``||X_ij||`` for every sample and patch, shape ``(n, k)`` (one pass, no copy; cached)."""
        return self._patch_norms

    @cached_property
    def _patch_norms(self) -> FloatArray:
        return self.source.map_rows(passes.patch_norms)

    def active_mask(self, w: FloatArray, pre: FloatArray | None = None, rtol: float = TIE_RTOL) -> NDArray[np.bool_]:
        """Patches with ``X_ij w > rtol * ||X_ij|| * ||w||``: active in every unit (rounding-level values are ties)."""
        pre = self.preactivations(w) if pre is None else pre
        return pre > rtol * float(np.linalg.norm(w)) * self.patch_norms()

    def ties(self, w: FloatArray, pre: FloatArray | None = None, rtol: float = TIE_RTOL) -> NDArray[np.bool_]:
        """Patches with ``X_ij w = 0`` up to ``rtol * ||X_ij|| * ||w||`` (blank pixels under the filter), ``(n, k)``.

        Parameters
        ----------
        w : filter of length ``m``.
        pre : the pre-activations ``X_ij w`` when already computed.
        rtol : relative tolerance: a scale-free test, the same in every unit.

        Returns
        -------
        Boolean mask of the tied patches.
        """
        pre = self.preactivations(w) if pre is None else pre
        bound = rtol * float(np.linalg.norm(w))
        if bound == 0.0:
            return np.ones(pre.shape, dtype=bool)
        return np.abs(pre) <= bound * self.patch_norms()

    def predict(self, w: FloatArray) -> FloatArray:
        """``f_w(x_i) = sum_j sigma(X_ij w)``."""
        return self.predict_from(self.preactivations(w))

    def predict_from(self, pre: FloatArray) -> FloatArray:
        """The prediction from pre-activations already computed (no pass)."""
        values: FloatArray = self.activation.value(pre).sum(axis=1)
        return values

    def loss(self, w: FloatArray) -> float:
        """Non-convex training loss ``L(w) = sum_i (y_i - f_w(x_i))^2``."""
        return self.loss_from(self.preactivations(w))

    def loss_from(self, pre: FloatArray) -> float:
        """The loss from pre-activations already computed (no pass)."""
        return float(np.sum((self.y - self.predict_from(pre)) ** 2))

    def gradient_weights(self, w: FloatArray, active: NDArray[np.bool_] | None = None,
                         pre: FloatArray | None = None) -> FloatArray:
        """The weights ``sigma'(X_ij w)`` of each patch in the gradient rows, ``(n, k)`` (a pass only when ``pre``
        is needed and not given): the slope ``hi`` on ``active`` and ``lo`` elsewhere for a piecewise-linear
        activation (``active`` defaults to ``X_ij w > 0``), ``sigma'`` for a smooth one."""
        act = self.activation
        if pre is None and not (active is not None and act.piecewise_linear):
            pre = self.preactivations(w)
        weights: FloatArray = act.gradient_weights(pre, active)
        return weights

    def gradient_rows(self, w: FloatArray, active: NDArray[np.bool_] | None = None,
                      pre: FloatArray | None = None) -> FloatArray:
        """``sum_j sigma'(X_ij w) X_ij`` per sample, shape ``(n, m)``: the gradient of ``f_w(x_i)`` in ``w``.

        For a piecewise-linear activation ``active`` (default ``X_ij w > 0``) picks the slope ``hi`` and every
        other patch gets ``lo`` (for ReLU, ``g_i = sum_{j active} X_ij``, the generators of the cone of
        eq. (14)); smooth activations use ``sigma'`` and ignore ``active`` (:meth:`Activation.gradient_weights`).
        This materialises ``(n, m)``: for in-memory callers; the solve paths use :meth:`gradient_factor` and
        :meth:`gradient_moments`, which stream.
        """
        return self.source.map_rows(passes.weighted_rows, self.gradient_weights(w, active, pre))

    def gradient_factor(self, weights: FloatArray, target: FloatArray) -> passes.TriangularFactor:
        """The triangular factor of ``[G | target]`` with ``g_i = sum_j weights_ij X_ij`` (one pass, a QR per
        block): least squares over the gradient rows without forming them or their normal equations."""
        factor: passes.TriangularFactor = self.source.reduce_rows(passes.triangular_factor, weights, target)
        return factor

    def gradient_moments(self, weights: FloatArray, residual: FloatArray) -> tuple[FloatArray, float]:
        """``(G^T residual, ||G||_F)`` with ``g_i = sum_j weights_ij X_ij`` (one pass, no ``(n, m)`` array)."""
        product, squares = self.source.reduce_rows(passes.gradient_moments, weights, residual)
        return np.asarray(product, dtype=np.float64), float(np.sqrt(squares))


def make_patching(
    *,
    k: int | None = None,
    patch_size: int | None = None,
    stride: int | None = None,
    image_shape: Sequence[int] | None = None,
    filter_shape: Sequence[int] | None = None,
) -> Patching:
    """Build a patching from keyword options: blocks (``k``), strided 1-D, or 2-D image patches."""
    if image_shape is not None or filter_shape is not None:
        if image_shape is None or filter_shape is None:
            raise InvalidParameterError(
                "image_shape", "2-D patches need both image_shape [H, W] and filter_shape [p, q]."
            )
        if len(image_shape) != 2 or len(filter_shape) != 2:
            raise InvalidParameterError(
                "image_shape", "image_shape and filter_shape must each have two entries."
            )
        return ImagePatching(
            int(image_shape[0]), int(image_shape[1]), int(filter_shape[0]), int(filter_shape[1]),
            int(stride or 1),
        )
    if patch_size is not None:
        return StridedPatching(int(patch_size), int(stride or patch_size))
    return BlockPatching(1 if k is None else k)


def make_problem(
    X: ArrayLike,
    y: ArrayLike,
    *,
    patching: Patching | None = None,
    k: int | None = None,
    output_weights: ArrayLike | None = None,
    activation: Activation | str = "relu",
    negative_slope: float | None = None,
) -> ConvProblem:
    """Validate ``X`` (n x d), ``y`` (n), the patching, ``c >= 0`` and the activation; fold ``c`` into the patches.

    Parameters
    ----------
    X, y : the data (``n`` rows of length ``d``) and the labels.
    patching, k : the patching (``k`` non-overlapping blocks by default).
    output_weights : ``c_j >= 0`` per patch (1 by default), folded into the patches:
        ``c sigma(u) = sigma(s u)`` with ``s = c`` (degree-1 activations) or ``sqrt(c)`` (squared ReLU).
    activation : the activation's name (:data:`cnnrelax.core.activations.ACTIVATIONS`) or object.
    negative_slope : leaky ReLU's slope for negative inputs (default 0.01).

    Returns
    -------
    The problem.
    """
    act = make_activation(activation, DEFAULT_NEGATIVE_SLOPE if negative_slope is None else negative_slope)
    kind = source_kind(X)
    Xa = kind.prepare(X)
    ya = np.array(finite_array(y, "y", 1))  # a copy: y may be a column of a memory-mapped file (n numbers)
    n, d = Xa.shape
    if ya.shape[0] != n:
        raise InvalidParameterError(
            "y", f"y has {ya.shape[0]} labels but X has {n} rows: they must match."
        )
    if patching is None:
        patching = BlockPatching(1 if k is None else k)
    elif k is not None and isinstance(patching, BlockPatching) and patching.k != k:
        raise InvalidParameterError("k", f"k={k} contradicts the patching {patching}.")
    index = patching.index(d)
    kk = index.shape[0]
    if output_weights is None:
        c = np.ones(kk)
    else:
        c = finite_array(output_weights, "output_weights", 1)
        if c.shape[0] != kk:
            raise InvalidParameterError(
                "output_weights",
                f"output_weights has {c.shape[0]} entries but the patching makes k={kk} patches.",
            )
        if (c < 0).any():
            j = int(np.argmax(c < 0))
            raise InvalidParameterError(
                "output_weights",
                f"output_weights[{j}] = {c[j]:g} is negative: the relaxation is convex only for "
                "non-negative output weights, since c*(u)_+ = (c*u)_+ needs c >= 0.",
            )
    folded = act.fold(c)
    if folded is None:
        if not np.all(c == 1.0):
            raise InvalidParameterError(
                "output_weights",
                f"The activation {act.name} is not positively homogeneous, so output weights cannot be folded into "
                "the patches (c*sigma(u) != sigma(c*u)); use unit output weights with it.",
            )
        folded = c
    # The paper's setting: the patch tensor is a view of X (no copy of the data).
    view = isinstance(patching, BlockPatching) and bool(np.all(c == 1.0))
    source = kind.open(Xa, PatchLayout(index, np.asarray(folded, dtype=np.float64), view))
    return ConvProblem(source=source, y=ya, patching=patching, output_weights=c, activation=act)
