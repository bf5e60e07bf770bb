"""The relaxation backends behind one protocol: the working-set solver (Clarabel; the default) and the cvxpy
z-formulation (:mod:`cnnrelax.core.oracle`: one ``z_ij`` per sample and patch, Clarabel through cvxpy)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ...types import ShouldStop
from ..constraints import ResolvedConstraints
from ..options import SolveOptions
from ..polishing import PolishOutcome
from ..problem import ConvProblem, FloatArray
from ..records import Backend, OnRound, RelaxationSolution
from ..relaxations import relaxation_kind
from .loop import RelaxationSolver
from .shortcut import ProvenPoint


class RelaxationBackend(Protocol):
    """Solves one relaxation of one problem for a direction ``r`` (maximise ``r^T w``)."""

    def solve(self, r: FloatArray, *, should_stop: ShouldStop | None = None, on_round: OnRound | None = None,
              trial: int = 0) -> RelaxationSolution:
        ...


@runtime_checkable
class ProvesPoints(Protocol):
    """A backend that proved some point LP-optimal by a cone (:mod:`.shortcut`) and hands the proof on."""

    def proven(self, w: FloatArray) -> ProvenPoint | None:
        """The proven point when ``w`` is it, bit for bit, with its cone and its polishing; else None."""
        ...

    def twin(self, polished: PolishOutcome) -> ProvenPoint | None:
        """The proven point at the guess when a polished filter is the same filter to rounding; else None."""
        ...


def make_backend(problem: ConvProblem, options: SolveOptions, constraints: ResolvedConstraints) -> RelaxationBackend:
    """The relaxation solver of ``options.backend`` for ``problem``."""
    kind = relaxation_kind(options.relaxation)
    if options.backend == Backend.cvxpy:
        from ..oracle import CvxpyRelaxation  # cvxpy is slow to import: only when asked for

        return CvxpyRelaxation(problem, kind, beta=options.beta, constraints=constraints)
    return RelaxationSolver(problem, kind, beta=options.beta, constraints=constraints, settings=options.solver,
                            backend=options.backend)
