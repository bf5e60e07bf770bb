"""The working-set solver of the relaxations (SPEC 2): ``loop`` (rounds and verdicts), ``working_set`` (one pool of
cuts and cone samples), ``separation``, ``subproblem`` (Clarabel's assembly and status table), ``crossover``,
``feasibility`` (box, infeasibility, recession), ``normalised`` (the units), ``outcomes``, ``backends``."""

from ..records import OnRound
from .backends import RelaxationBackend, make_backend
from .loop import RelaxationSolver, solve_relaxation

__all__ = ["OnRound", "RelaxationBackend", "RelaxationSolver", "make_backend", "solve_relaxation"]
