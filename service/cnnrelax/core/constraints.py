"""Extra convex constraints on the filter ``w`` (SPEC 2.4), usable in every relaxation.

``w >= 0``; ``lower <= w <= upper``; ``||w||_1 <= l1_bound``; ``||w||_2 <= l2_bound``;
``E w = e``; ``G w <= h``. Any combination.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .problem import FloatArray, InvalidParameterError


def _vector_or_scalar(value: Any, m: int, parameter: str) -> FloatArray | None:
    if value is None:
        return None
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidParameterError(
            parameter, f"constraints.{parameter} must be a number or a list of m={m} numbers."
        ) from None
    if arr.ndim == 0:
        arr = np.full(m, float(arr))
    if arr.shape != (m,):
        raise InvalidParameterError(
            parameter, f"constraints.{parameter} must be a number or a vector of length m={m}, got shape {arr.shape}."
        )
    if np.isnan(arr).any():
        raise InvalidParameterError(parameter, f"constraints.{parameter} contains NaN.")
    return arr


def _matrix_pair(matrix: Any, vector: Any, m: int, name: str) -> tuple[FloatArray, FloatArray] | None:
    if matrix is None and vector is None:
        return None
    if matrix is None or vector is None:
        raise InvalidParameterError(
            f"{name}_matrix", f"constraints.{name}_matrix and constraints.{name}_vector go together."
        )
    try:
        M = np.atleast_2d(np.asarray(matrix, dtype=np.float64))
        v = np.atleast_1d(np.asarray(vector, dtype=np.float64))
    except (TypeError, ValueError):
        raise InvalidParameterError(
            f"{name}_matrix", f"constraints.{name}_matrix must be a rectangular matrix of numbers with m={m} "
            f"columns and constraints.{name}_vector a list of numbers, one per row: every row needs the same length.",
        ) from None
    if M.ndim != 2 or M.shape[1] != m:
        raise InvalidParameterError(
            f"{name}_matrix", f"constraints.{name}_matrix must have m={m} columns, got shape {M.shape}."
        )
    if v.shape != (M.shape[0],):
        raise InvalidParameterError(
            f"{name}_vector",
            f"constraints.{name}_vector must have {M.shape[0]} entries (one per row), got shape {v.shape}.",
        )
    if not (np.isfinite(M).all() and np.isfinite(v).all()):
        raise InvalidParameterError(f"{name}_matrix", f"constraints.{name} contains NaN or infinite values.")
    return M, v


@dataclass(frozen=True)
class FilterConstraints:
    """Convex constraints on ``w``; the default imposes nothing."""

    nonnegative: bool = False
    lower: Any = None
    upper: Any = None
    l1_bound: float | None = None
    l2_bound: float | None = None
    equality_matrix: Any = None
    equality_vector: Any = None
    inequality_matrix: Any = None
    inequality_vector: Any = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> "FilterConstraints":
        """Build from a plain mapping with the field names above (unknown keys are an error)."""
        if not data:
            return cls()
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise InvalidParameterError(
                "constraints", f"Unknown constraint(s): {', '.join(sorted(unknown))}."
            )
        return cls(**dict(data))

    def is_empty(self) -> bool:
        return self == FilterConstraints()

    def resolve(self, m: int) -> "ResolvedConstraints":
        """Check shapes against the filter length ``m`` and return arrays."""
        lower = _vector_or_scalar(self.lower, m, "lower")
        upper = _vector_or_scalar(self.upper, m, "upper")
        if self.nonnegative:
            lower = np.zeros(m) if lower is None else np.maximum(lower, 0.0)
        if lower is not None and upper is not None and (lower > upper).any():
            j = int(np.argmax(lower > upper))
            raise InvalidParameterError(
                "lower", f"constraints.lower[{j}] = {lower[j]:g} exceeds constraints.upper[{j}] = {upper[j]:g}."
            )
        for name in ("l1_bound", "l2_bound"):
            value = getattr(self, name)
            if value is not None and not (np.isfinite(value) and value >= 0):
                raise InvalidParameterError(name, f"constraints.{name} must be a finite number >= 0, got {value!r}.")
        return ResolvedConstraints(
            m=m,
            lower=None if lower is None or np.isneginf(lower).all() else lower,
            upper=None if upper is None or np.isposinf(upper).all() else upper,
            l1_bound=None if self.l1_bound is None else float(self.l1_bound),
            l2_bound=None if self.l2_bound is None else float(self.l2_bound),
            equality=_matrix_pair(self.equality_matrix, self.equality_vector, m, "equality"),
            inequality=_matrix_pair(self.inequality_matrix, self.inequality_vector, m, "inequality"),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if value is None or value is False:
                continue
            out[name] = np.asarray(value).tolist() if not isinstance(value, (bool, float, int)) else value
        return out


@dataclass(frozen=True)
class ResolvedConstraints:
    """Constraints as arrays for a filter of length ``m``."""

    m: int
    lower: FloatArray | None
    upper: FloatArray | None
    l1_bound: float | None
    l2_bound: float | None
    equality: tuple[FloatArray, FloatArray] | None
    inequality: tuple[FloatArray, FloatArray] | None

    @property
    def is_bounded(self) -> bool:
        """True when the constraints alone bound ``w`` (so no LP can be unbounded)."""
        if self.l1_bound is not None or self.l2_bound is not None:
            return True
        return (
            self.lower is not None and self.upper is not None
            and bool(np.isfinite(self.lower).all() and np.isfinite(self.upper).all())
        )

    @property
    def is_linear(self) -> bool:
        return self.l1_bound is None and self.l2_bound is None

    def in_units(self, kappa: float) -> "ResolvedConstraints":
        """The same constraints on ``u = w / kappa``, with every matrix row scaled to unit norm.

        Solvers work on ``u`` (normalised units, SPEC 4c); unit rows make every tolerance on them relative.

        Parameters
        ----------
        kappa : the positive factor with ``w = kappa * u``.

        Returns
        -------
        The constraints on ``u``.
        """

        def rows(pair: tuple[FloatArray, FloatArray] | None) -> tuple[FloatArray, FloatArray] | None:
            if pair is None:
                return None
            M, v = pair
            norms = np.linalg.norm(M, axis=1)
            norms[norms == 0] = 1.0
            return M / norms[:, None], v / (kappa * norms)

        return ResolvedConstraints(
            m=self.m,
            lower=None if self.lower is None else self.lower / kappa,
            upper=None if self.upper is None else self.upper / kappa,
            l1_bound=None if self.l1_bound is None else self.l1_bound / kappa,
            l2_bound=None if self.l2_bound is None else self.l2_bound / kappa,
            equality=rows(self.equality),
            inequality=rows(self.inequality),
        )

    def relative_violation(self, w: FloatArray, kappa: float) -> float:
        """Largest violation at ``w`` measured on ``u = w / kappa`` with unit rows, relative to ``1 + max|u|``.

        Scale-free: the same number for ``(a X, b y)`` with ``kappa`` and ``w`` mapped alike.
        """
        u = np.asarray(w, dtype=np.float64) / kappa
        return self.in_units(kappa).violation(u) / (1.0 + float(np.max(np.abs(u), initial=0.0)))

    def violation(self, w: FloatArray) -> float:
        """Largest violation of any constraint at ``w`` (0 when feasible)."""
        worst = 0.0
        if self.lower is not None:
            worst = max(worst, float(np.max(self.lower - w, initial=0.0)))
        if self.upper is not None:
            worst = max(worst, float(np.max(w - self.upper, initial=0.0)))
        if self.l1_bound is not None:
            worst = max(worst, float(np.abs(w).sum() - self.l1_bound))
        if self.l2_bound is not None:
            worst = max(worst, float(np.linalg.norm(w) - self.l2_bound))
        if self.equality is not None:
            E, e = self.equality
            worst = max(worst, float(np.max(np.abs(E @ w - e), initial=0.0)))
        if self.inequality is not None:
            G, h = self.inequality
            worst = max(worst, float(np.max(G @ w - h, initial=0.0)))
        return worst

    def active_normals(self, w: FloatArray, tol: float) -> tuple[FloatArray, FloatArray]:
        """Outward normals of the linear constraints active at ``w``: (one-signed rows, two-signed rows).

        At an optimum of ``max r^T w``, ``r`` is a non-negative combination of the cut generators and
        of the one-signed normals, plus any combination of the equality rows.
        """
        one: list[FloatArray] = []
        eye = np.eye(self.m)
        if self.lower is not None:
            one.extend(-eye[i] for i in np.flatnonzero(np.abs(w - self.lower) <= tol))
        if self.upper is not None:
            one.extend(eye[i] for i in np.flatnonzero(np.abs(self.upper - w) <= tol))
        if self.inequality is not None:
            G, h = self.inequality
            one.extend(G[i] for i in np.flatnonzero(np.abs(G @ w - h) <= tol * (1 + np.abs(h))))
        two = self.equality[0] if self.equality is not None else np.zeros((0, self.m))
        return (np.array(one).reshape(-1, self.m), two)


def resolve_constraints(constraints: "FilterConstraints | ResolvedConstraints | None", m: int) -> ResolvedConstraints:
    """Resolve user constraints for a filter of length ``m`` (``None`` means none)."""
    if constraints is None:
        constraints = FilterConstraints()
    return constraints.resolve(m) if isinstance(constraints, FilterConstraints) else constraints
