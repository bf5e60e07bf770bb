"""Smooth activations, represented exactly by cones in the solver's sub-problems.

- ``squared_relu``, ``(u)_+^2``: ``a_ij >= X~_ij u`` and the rotated second-order cone
  ``sum_j a_ij^2 <= y~_i + t_i``, written ``||(2 a_i, y~_i + t_i - 1)|| <= y~_i + t_i + 1``. Homogeneous of degree 2.
- ``softplus``, ``log(1 + e^u)``: ``b_ij >= log(1 + e^(X~_ij u))`` as ``e^(-b_ij) + e^(X~_ij u - b_ij) <= 1``, two
  exponential cones ``(x, 1, z) : e^x <= z`` with ``z = q_ij`` and ``z = 1 - q_ij``, then
  ``sum_j b_ij / y_scale <= y~_i + t_i``. Not homogeneous; always positive.

The derivative is unique everywhere. Both have the recession function ``(u)_+`` (or ``+inf`` for ``u > 0``),
and a sum of either is zero only where every ``X_ij w <= 0``.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import clarabel
import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike

from ...errors import InvalidParameterError
from .base import Activation, BoolArray, ConeBlock, FloatArray, RecessionForm

if TYPE_CHECKING:
    import cvxpy as cp


class _Triplets:
    """COO entries of a block of rows, appended piecewise (rows offset by the rows written so far)."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []
        self.cols: list[np.ndarray] = []
        self.vals: list[np.ndarray] = []
        self.offset = 0

    def put(self, r: np.ndarray, c: np.ndarray, v: np.ndarray | float) -> None:
        self.rows.append(np.asarray(r, dtype=np.intp) + self.offset)
        self.cols.append(np.asarray(c, dtype=np.intp))
        self.vals.append(np.broadcast_to(np.asarray(v, dtype=np.float64), np.shape(r)).copy())

    def matrix(self, total: int, columns: int) -> sp.csr_matrix:
        return sp.coo_matrix((np.concatenate(self.vals), (np.concatenate(self.rows), np.concatenate(self.cols))),
                             shape=(total, columns)).tocsr()


@dataclass(frozen=True)
class Smooth(Activation):
    """A smooth convex activation with an exact cone representation (:meth:`cone_block`)."""

    #: Clarabel may stop at reduced accuracy on these cones where another step rule finishes: retry then.
    retry_almost_solved: bool = False

    @property
    def piecewise_linear(self) -> bool:
        return False

    @property
    def recession_form(self) -> RecessionForm:
        return RecessionForm.PATCH_NONPOSITIVE

    @abstractmethod
    def cone_block(self, flat: FloatArray, yn: FloatArray, k: int, t_col: np.ndarray | None, first: int,
                   y_scale: float) -> ConeBlock:
        """``sum_j sigma~(X~_ij u) <= y~_i (+ t_i)`` for ``s`` samples.

        ``flat`` holds their normalised patches as ``(s*k, m)`` rows, ``yn`` their normalised labels; new
        variables start at column ``first``; ``t_col`` gives each sample's ``t_i`` column (None for the LP).
        """


@dataclass(frozen=True)
class SquaredReLU(Smooth):
    """``(u)_+^2``."""

    def value(self, u: ArrayLike) -> FloatArray:
        positive = np.maximum(np.asarray(u, dtype=np.float64), 0.0)
        out: FloatArray = positive * positive
        return out

    def derivative(self, u: ArrayLike) -> FloatArray:
        out: FloatArray = 2.0 * np.maximum(np.asarray(u, dtype=np.float64), 0.0)
        return out

    def cvxpy_constraints(self, z: cp.Expression, pre: cp.Expression, y: FloatArray, hard_fit: bool,
                          y_scale: float) -> list[Any]:
        import cvxpy as cp

        out: list[Any] = [z >= cp.square(cp.pos(pre))]
        if hard_fit and (y == 0).any():
            # sum_j (p_j)_+^2 <= 0 is p_j <= 0: said linearly, since the cone form has no interior (Slater fails).
            out.append(pre[y == 0] <= 0)
        return out

    def inverse_targets(self, y: FloatArray) -> tuple[BoolArray, FloatArray]:
        rows = y > 0
        return rows, np.sqrt(np.where(rows, y, 0.0))

    def cone_ties(self, tied: BoolArray, active: BoolArray) -> tuple[BoolArray, float]:
        # A sample with no active patch (a zero label): sum_j (X_ij w)_+^2 <= 0 is X_ij w <= 0 patch by patch, whose
        # tied patches carry free multipliers (g_i = 0, so lambda_ij in [0, v_i] is any lambda_ij >= 0).
        return tied & ~active.any(axis=1, keepdims=True), 1.0

    def cone_block(self, flat: FloatArray, yn: FloatArray, k: int, t_col: np.ndarray | None, first: int,
                   y_scale: float) -> ConeBlock:
        sk, m = flat.shape
        s = sk // k
        patch = np.arange(sk)
        u_rows, u_cols = np.repeat(patch, m), np.tile(np.arange(m), sk)
        out = _Triplets()
        a = first + patch
        # nonnegative block: a_ij - X~_ij u >= 0. (No a_ij >= 0: some a >= p with sum_j a_j^2 <= c exists iff
        # sum_j (p_j)_+^2 <= c, since |a_j| >= (p_j)_+ and a_j = (p_j)_+ is a choice.)
        out.put(u_rows, u_cols, flat.reshape(-1))
        out.put(patch, a, -1.0)
        out.offset += sk
        # one rotated cone per sample, k + 2 rows: (y~ + t + 1, 2 a_i1 .. 2 a_ik, y~ + t - 1)
        size = k + 2
        base = np.arange(s) * size
        if t_col is not None:
            out.put(base, t_col, -1.0)
            out.put(base + k + 1, t_col, -1.0)
        out.put((base[:, None] + 1 + np.arange(k)[None, :]).reshape(-1), a, -2.0)
        rhs = np.zeros(s * size)
        rhs[base] = yn + 1.0
        rhs[base + k + 1] = yn - 1.0
        cones: list[Any] = [clarabel.NonnegativeConeT(sk)]
        cones.extend(clarabel.SecondOrderConeT(size) for _ in range(s))
        return ConeBlock(out.matrix(sk + s * size, first + sk), np.concatenate([np.zeros(sk), rhs]), cones, sk)


@dataclass(frozen=True)
class Softplus(Smooth):
    """``log(1 + e^u)``."""

    def value(self, u: ArrayLike) -> FloatArray:
        out: FloatArray = np.logaddexp(0.0, np.asarray(u, dtype=np.float64))  # without overflow
        return out

    def derivative(self, u: ArrayLike) -> FloatArray:
        out: FloatArray = 0.5 * (1.0 + np.tanh(0.5 * np.asarray(u, dtype=np.float64)))  # the logistic function
        return out

    def cvxpy_constraints(self, z: cp.Expression, pre: cp.Expression, y: FloatArray, hard_fit: bool,
                          y_scale: float) -> list[Any]:
        import cvxpy as cp

        return [z >= cp.logistic(pre) / y_scale]

    def inverse_targets(self, y: FloatArray) -> tuple[BoolArray, FloatArray]:
        """``sigma^-1(y) = log(e^y - 1) = y + log(1 - e^-y)``, finite for ``y > 0``: every label must be positive."""
        rows = y > 0
        if not rows.all():
            i = int(np.argmin(rows))
            raise InvalidParameterError(
                "y", f"y[{i}] = {y[i]:g}: the pseudo-inverse of softplus needs every label > 0 (softplus is "
                "always positive).")
        return rows, y + np.log(-np.expm1(-y))

    def cone_ties(self, tied: BoolArray, active: BoolArray) -> tuple[BoolArray, float]:
        return np.zeros_like(tied), 1.0

    def cone_block(self, flat: FloatArray, yn: FloatArray, k: int, t_col: np.ndarray | None, first: int,
                   y_scale: float) -> ConeBlock:
        sk, m = flat.shape
        s = sk // k
        patch = np.arange(sk)
        u_rows, u_cols = np.repeat(patch, m), np.tile(np.arange(m), sk)
        out = _Triplets()
        b_col, q1 = first + 2 * patch, first + 2 * patch + 1
        owner = np.repeat(np.arange(s), k)
        # nonnegative block: y~_i + t_i - sum_j b_ij / y_scale >= 0
        out.put(owner, b_col, 1.0 / y_scale)
        if t_col is not None:
            out.put(np.arange(s), t_col, -1.0)
        out.offset += s
        # exponential cones, 3 rows each: (-b, 1, q1) and (X~ u - b, 1, 1 - q1), i.e. e^(-b) <= q1 and
        # e^(X~ u - b) <= 1 - q1: together e^(-b) + e^(X~ u - b) <= 1
        first_cone = 3 * patch
        second = 3 * sk + 3 * patch
        out.put(first_cone, b_col, 1.0)
        out.put(first_cone + 2, q1, -1.0)
        out.put(second[u_rows], u_cols, -flat.reshape(-1))
        out.put(second, b_col, 1.0)
        out.put(second + 2, q1, 1.0)
        rhs = np.zeros(6 * sk)
        rhs[first_cone + 1] = 1.0
        rhs[second + 1] = 1.0
        rhs[second + 2] = 1.0
        cones: list[Any] = [clarabel.NonnegativeConeT(s)]
        cones.extend(clarabel.ExponentialConeT() for _ in range(2 * sk))
        b = np.concatenate([yn.astype(np.float64), rhs])
        return ConeBlock(out.matrix(s + 6 * sk, first + 2 * sk), b, cones, 2 * sk)


def squared_relu(_negative_slope: float) -> Activation:
    return SquaredReLU("squared_relu", degree=2, retry_almost_solved=True)


def softplus(_negative_slope: float) -> Activation:
    return Softplus("softplus", degree=None, lower_attained=False)
