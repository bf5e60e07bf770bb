"""The working-set solver of the relaxations (SPEC 2): ``loop`` (rounds and verdicts), ``working_set`` (one pool of
cuts and cone samples), ``separation``, ``subproblem`` (Clarabel's assembly and status table), ``crossover``,
``feasibility`` (box, infeasibility, recession), ``normalised`` (the units), ``outcomes``, ``backends``,
``seeding`` (the first working set) and ``shortcut`` (trials decided by a cone membership)."""

from ..records import OnRound
from .backends import ProvesPoints, RelaxationBackend, make_backend
from .loop import RelaxationSolver, solve_relaxation
from .shortcut import ProvenPoint

__all__ = ["ProvenPoint", "OnRound", "ProvesPoints", "RelaxationBackend", "RelaxationSolver", "make_backend",
           "solve_relaxation"]
