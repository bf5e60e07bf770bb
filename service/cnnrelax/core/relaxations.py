"""The randomized convex relaxations (SPEC 2) as objects in one registry.

Minimising over ``z`` for fixed ``w`` leaves problems in the ``m`` entries of ``w`` alone, with
``s_i(w) = sum_j sigma(X_ij w)``:

- LP (eq. 9):   ``max r^T w``  s.t. ``s_i(w) <= y_i``;
- QP (eq. 8):   ``min 1/2 sum_i ((s_i(w) - y_i)_+)^2 - beta r^T w``;
- naive (eq. 7): the QP with ``beta = 0`` (``w = 0`` is always optimal).

A new kind is one more entry in :data:`REGISTRY`; the solver, the oracle and validation read a
:class:`Relaxation`'s fields instead of testing names, and it travels as this object once looked up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..errors import InvalidParameterError
from .activations import check_labels
from .problem import ConvProblem, FloatArray


@dataclass(frozen=True)
class Relaxation:
    """One kind of relaxation (SPEC 2): what its objective weighs and whether the fit is a hard constraint.

    Attributes
    ----------
    name : the kind's name in requests.
    hard_fit : ``sum_j sigma(X_ij w) <= y_i`` is a constraint (the LP limit); otherwise its excess ``t_i`` is
        penalised by ``1/2 ||t||^2`` (QP, naive).
    direction : how ``r^T u`` enters: ``"one"`` (LP: maximised), ``"beta"`` (QP: weighted by ``beta > 0``),
        ``"none"`` (naive: ``w = 0`` is optimal).
    summary : one line for documentation and messages.
    """

    name: str
    hard_fit: bool
    direction: Literal["one", "beta", "none"]
    summary: str

    @property
    def needs_beta(self) -> bool:
        return self.direction == "beta"

    @property
    def needs_label_range(self) -> bool:
        """Labels outside the activation's range make the hard fit infeasible: refuse them up front."""
        return self.hard_fit

    @property
    def has_direction(self) -> bool:
        """``r`` enters the objective (so the optimum may run off to infinity along a recession direction)."""
        return self.direction != "none"

    def direction_weight(self, beta: float) -> float:
        """The weight of ``-r^T u`` in the minimised objective."""
        return {"one": 1.0, "beta": float(beta), "none": 0.0}[self.direction]

    def effective_beta(self, beta: float) -> float:
        """``beta`` where the kind reads it, 0 elsewhere."""
        return float(beta) if self.needs_beta else 0.0


REGISTRY: dict[str, Relaxation] = {
    "lp": Relaxation("lp", True, "one", "the beta -> 0 limit: max r^T w s.t. sum_j sigma(X_ij w) <= y_i (eq. 9)"),
    "qp": Relaxation("qp", False, "beta", "min 1/2 ||(s(w) - y)_+||^2 - beta r^T w, for noisy labels (eq. 8)"),
    "naive": Relaxation("naive", False, "none", "the QP with beta = 0: w = 0 is always optimal (eq. 7)"),
}
RELAXATIONS: tuple[str, ...] = tuple(REGISTRY)


def relaxation_kind(relaxation: str | Relaxation) -> Relaxation:
    """The registered relaxation named ``relaxation`` (an object is returned as it is), or an
    :class:`InvalidParameterError` naming the choices."""
    if isinstance(relaxation, Relaxation):
        return relaxation
    kind = REGISTRY.get(relaxation)
    if kind is None:
        raise InvalidParameterError(
            "relaxation", f"relaxation must be one of {', '.join(RELAXATIONS)}, got {relaxation!r}."
        )
    return kind


def check_relaxation(relaxation: str | Relaxation, beta: float) -> Relaxation:
    """The relaxation, once its name and ``beta`` are acceptable (no data needed).

    Parameters
    ----------
    relaxation : the relaxation or its name.
    beta : the QP's weight of ``r^T w``.

    Returns
    -------
    The registered relaxation.
    """
    kind = relaxation_kind(relaxation)
    if kind.needs_beta and not (np.isfinite(beta) and beta > 0):
        raise InvalidParameterError(
            "beta",
            f"The randomized QP needs beta > 0 (e.g. 1e-4), got beta={beta!r}; use relaxation 'lp' for beta -> 0.",
        )
    return kind


def validate_relaxation(problem: ConvProblem, relaxation: str | Relaxation, beta: float) -> Relaxation:
    """The relaxation, once its name, ``beta`` and the problem's labels are acceptable to it."""
    kind = check_relaxation(relaxation, beta)
    if kind.needs_label_range:
        check_labels(problem.activation, problem.y)
    return kind


def objective_value(problem: ConvProblem, w: FloatArray, r: FloatArray, kind: Relaxation, beta: float) -> float:
    """The relaxation's optimal-value expression at ``w`` (after minimising over ``z``), in the user's units.

    LP: ``r^T w``. QP: ``1/2 sum_i ((s_i(w) - y_i)_+)^2 - beta * y_scale^2 / kappa * r^T w`` (``beta`` is
    dimensionless, :mod:`cnnrelax.core.solver`; ``y_scale^2 / kappa = x_scale y_scale`` for the degree-1 activations).
    Naive: the first term alone.
    """
    if kind.hard_fit:
        return float(r @ w)
    excess = np.maximum(problem.predict(w) - problem.y, 0.0)
    value = 0.5 * float(excess @ excess)
    if not kind.needs_beta:
        return value
    x_scale, y_scale = problem.scales
    if problem.activation.degree == 1:
        return value - beta * x_scale * y_scale * float(r @ w)
    # u = w / kappa: the normalised term beta r^T u, times y_scale^2, is beta y_scale^2 / kappa r^T w.
    return value - beta * y_scale * y_scale / problem.w_scale * float(r @ w)
