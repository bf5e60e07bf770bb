"""How to solve: the solve's options (:class:`SolveOptions`) and the working-set solver's settings
(:class:`SolverSettings`), with their defaults defined here once."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InvalidParameterError
from ..validation import non_negative_integer, positive_integer
from .certificates.coverage import DEFAULT_COVERAGE_SAMPLES
from .constraints import FilterConstraints
from .records import Backend
from .relaxations import relaxation_kind
from .tolerances import (
    CLARABEL_FEASIBILITY,
    CLARABEL_GAP,
    CUT_TOL,
    DEFAULT_CONE_TOL,
    DEFAULT_FIT_TOL,
    DEFAULT_OPTIMALITY_TOL,
    DEFAULT_RECOVERY_TOL,
)


@dataclass(frozen=True)
class SolverSettings:
    """Clarabel's tolerances and the working-set loop's limits.

    ``batch`` caps the constraints one round adds (default ``max(2m, 50)``); ``time_limit_s`` caps one solve;
    ``cone_shortcut`` lets a cone membership decide a trial without a sub-problem
    (:mod:`~cnnrelax.core.solver.shortcut`; off: every trial runs the working-set loop, the path it replaces).
    """

    tol_gap_abs: float = CLARABEL_GAP
    tol_gap_rel: float = CLARABEL_GAP
    tol_feas: float = CLARABEL_FEASIBILITY
    max_iter: int = 200
    max_outer_iterations: int = 500
    cut_tol: float = CUT_TOL
    batch: int | None = None
    time_limit_s: float | None = None
    cone_shortcut: bool = True


@dataclass(frozen=True)
class SolveOptions:
    """How to solve: which relaxation, how many trials, seeds, tolerances, constraints on ``w``, the backend."""

    relaxation: str = "lp"
    beta: float = 1e-4
    trials: int = 8
    seed: int = 0
    stop_on_certificate: bool = True
    polish: bool = True
    constraints: FilterConstraints = field(default_factory=FilterConstraints)
    recovery_tol: float = DEFAULT_RECOVERY_TOL
    optimality_tol: float = DEFAULT_OPTIMALITY_TOL
    cone_tol: float = DEFAULT_CONE_TOL
    fit_tol: float = DEFAULT_FIT_TOL
    coverage_samples: int = DEFAULT_COVERAGE_SAMPLES
    backend: str = Backend.clarabel.value
    solver: SolverSettings = field(default_factory=SolverSettings)

    def validate(self) -> None:
        """Raise :class:`InvalidParameterError` naming the first option whose value is not acceptable."""
        relaxation_kind(self.relaxation)
        positive_integer("trials", self.trials)
        non_negative_integer("seed", self.seed)
        if (isinstance(self.coverage_samples, bool) or not isinstance(self.coverage_samples, (int, np.integer))
                or self.coverage_samples < 0):
            raise InvalidParameterError(
                "coverage_samples", f"coverage_samples must be an integer >= 0 (0 skips the estimate), "
                f"got {self.coverage_samples!r}.")
        if self.backend not in {b.value for b in Backend}:
            raise InvalidParameterError(
                "backend", f"backend must be one of {', '.join(repr(b.value) for b in Backend)}, "
                f"got {self.backend!r}.")
        for name in ("recovery_tol", "optimality_tol", "cone_tol", "fit_tol"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise InvalidParameterError(name, f"{name} must be a positive number, got {value!r}.")
