"""The problem in normalised units (SPEC 4c), built once per solver and handed to every stage.

The solver works on ``X / x_scale`` and ``y / y_scale`` (:attr:`ConvProblem.scales`) in the variable
``u = w / kappa`` with ``kappa = w_scale`` (:meth:`Activation.w_scale`); the data are never copied: the scales are
numbers applied to ``u`` and to the few rows a round gathers. ``sigma~(p) = sigma(x_scale kappa p) / y_scale`` on
normalised pre-activations is ``sigma`` itself for a homogeneous activation and ``sigma(p) / y_scale`` otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..constraints import ResolvedConstraints
from ..problem import ConvProblem, FloatArray


@dataclass(frozen=True)
class Violations:
    """One pass over the data at ``u``: per-sample excess ``s~_i(u) - y~_i - t_i`` and the pre-activations."""

    excess: FloatArray
    pre: FloatArray


class NormalisedProblem:
    """A :class:`ConvProblem` seen in normalised units, with its constraints on ``u``."""

    def __init__(self, problem: ConvProblem, constraints: ResolvedConstraints) -> None:
        self.problem = problem
        self.activation = problem.activation
        self.m = problem.m
        self.x_scale, self.y_scale = problem.scales
        self.kappa = problem.w_scale
        self.yn: FloatArray = problem.y / self.y_scale
        self.divisor = problem.activation.normalised_divisor(self.y_scale)
        self.constraints = constraints.in_units(self.kappa)

    def pre(self, u: FloatArray) -> FloatArray:
        """Normalised pre-activations ``(X_ij / x_scale) u``, shape ``(n, k)``: one pass, no copy of ``X``."""
        return self.problem.preactivations(u / self.x_scale)

    def violations(self, u: FloatArray, t_samples: np.ndarray | None = None,
                   t_values: FloatArray | None = None) -> Violations:
        """The excess of every sample at ``u`` (less its ``t_i`` where the sub-problem has one)."""
        pre = self.pre(u)
        excess = self.activation.value(pre).sum(axis=1) / self.divisor - self.yn
        if t_samples is not None and t_values is not None and t_samples.size:
            excess[t_samples] -= t_values
        return Violations(excess, pre)

    def patches(self, samples: np.ndarray) -> FloatArray:
        """The normalised patches of ``samples``, ``(s, k, m)`` (a small copy: the working set only)."""
        out: FloatArray = self.problem.source.take(samples) / self.x_scale
        return out

    def to_user(self, u: FloatArray) -> FloatArray:
        """``w = kappa u``."""
        return np.asarray(u, dtype=np.float64) * self.kappa
