"""Planted (teacher) models: ``y_i = sum_j sigma(X_ij w*) + noise_std * e_i`` with seeded ``X``, ``w*``, ``e``.

``sigma`` is the spec's activation (ReLU by default, :mod:`cnnrelax.core.activations`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..validation import positive_integer
from .activations import ACTIVATIONS, DEFAULT_NEGATIVE_SLOPE, make_activation
from .problem import ConvProblem, FloatArray, InvalidParameterError, Patching, make_problem

Distribution = Literal["gaussian", "rademacher", "laplace"]
DISTRIBUTIONS: tuple[str, ...] = ("gaussian", "rademacher", "laplace")


@dataclass(frozen=True)
class PlantedSpec:
    """A planted model: ``n`` samples of dimension ``d``, ``k`` non-overlapping patches, seeded."""

    n: int
    d: int
    k: int = 1
    seed: int = 0
    noise_std: float = 0.0
    distribution: Distribution = "gaussian"
    activation: str = "relu"
    negative_slope: float = DEFAULT_NEGATIVE_SLOPE

    def validate(self) -> None:
        for name in ("n", "d", "k"):
            value = getattr(self, name)
            positive_integer(name, value, label=f"planted.{name}")
        if self.d % self.k != 0:
            raise InvalidParameterError(
                "k", f"planted.d={self.d} is not divisible by planted.k={self.k}: non-overlapping "
                "patches need d = k*m."
            )
        if not np.isfinite(self.noise_std) or self.noise_std < 0:
            raise InvalidParameterError(
                "noise_std", f"planted.noise_std must be a finite number >= 0, got {self.noise_std!r}."
            )
        if self.distribution not in DISTRIBUTIONS:
            raise InvalidParameterError(
                "distribution",
                f"planted.distribution must be one of {', '.join(DISTRIBUTIONS)}, got {self.distribution!r}.",
            )
        if self.activation not in ACTIVATIONS:
            raise InvalidParameterError(
                "activation", f"planted.activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}."
            )
        make_activation(self.activation, self.negative_slope)


@dataclass(frozen=True)
class PlantedProblem:
    """A planted problem and its ground-truth filter ``w*`` (unit norm)."""

    problem: ConvProblem
    w_star: FloatArray
    spec: PlantedSpec


def sample_matrix(rng: np.random.Generator, shape: tuple[int, ...], distribution: str) -> FloatArray:
    """Unit-variance i.i.d. entries from the named distribution."""
    if distribution == "gaussian":
        return rng.standard_normal(shape)
    if distribution == "rademacher":
        return rng.choice(np.array([-1.0, 1.0]), size=shape)
    if distribution == "laplace":
        return rng.laplace(0.0, 1.0 / np.sqrt(2.0), size=shape)
    raise InvalidParameterError("distribution", f"Unknown distribution {distribution!r}.")


def planted_problem(spec: PlantedSpec, patching: Patching | None = None) -> PlantedProblem:
    """Draw ``X``, a unit-norm ``w* ~ N(0, I)/||.||`` and noisy labels from ``spec.seed`` alone."""
    spec.validate()
    rng = np.random.default_rng([spec.seed, 0x9E3779B9])
    X = sample_matrix(rng, (spec.n, spec.d), spec.distribution)
    activation = make_activation(spec.activation, spec.negative_slope)
    probe = make_problem(X, np.zeros(spec.n), patching=patching, k=None if patching else spec.k,
                         activation=activation)
    w_star = rng.standard_normal(probe.m)
    w_star /= np.linalg.norm(w_star)
    y = probe.predict(w_star)
    if spec.noise_std > 0:
        y = y + spec.noise_std * rng.standard_normal(spec.n)
    problem = make_problem(X, y, patching=probe.patching, activation=activation)
    return PlantedProblem(problem=problem, w_star=w_star, spec=spec)
