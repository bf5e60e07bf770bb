"""What the core returns: one relaxation solve (:class:`RelaxationSolution`), one working-set round
(:class:`RoundRecord`, the progress hook's payload), one trial (:class:`TrialRecord`) and one solve
(:class:`SolveResult`); statuses as ``str``-valued enums (they compare equal to their strings and go into JSON
as them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ..types import StrEnum
from .problem import FloatArray

if TYPE_CHECKING:
    from .certificates import Certificate


class TrialStatus(StrEnum):
    """How one relaxation solve ended (only verdicts of the full problem)."""

    optimal = "optimal"
    unbounded = "unbounded"
    infeasible = "infeasible"
    max_iterations = "max_iterations"
    numerical_error = "numerical_error"
    time_limit = "time_limit"
    cancelled = "cancelled"


class Backend(StrEnum):
    """The solver behind a relaxation solve: the working-set solver (Clarabel, HiGHS on LP working sets), or the
    cvxpy z-formulation (the oracle, Clarabel through cvxpy)."""

    clarabel = "clarabel"
    highs = "highs"
    cvxpy = "cvxpy"


@dataclass(frozen=True)
class RelaxationSolution:
    """One solve of a relaxation for one direction ``r``.

    Attributes
    ----------
    status, message : the verdict and a sentence.
    w, objective : the filter (user units) and the relaxation's value there; None without a filter.
    iterations : the inner solver's iterations over every round.
    outer_iterations : working-set rounds.
    pool_size : constraints ever pooled for this problem (cuts and exact-cone samples), shared by its trials.
    solve_time_s : wall time.
    backend : which solver produced ``backend_status``.
    backend_status : that solver's own status of its last solve (Clarabel's, HiGHS's or cvxpy's names).
    primal_residual, dual_residual, duality_gap : Clarabel's evidence of its last solve (None otherwise).
    """

    status: TrialStatus
    message: str
    w: FloatArray | None
    objective: float | None
    iterations: int
    outer_iterations: int
    pool_size: int
    solve_time_s: float
    backend: Backend
    backend_status: str
    primal_residual: float | None = None
    dual_residual: float | None = None
    duality_gap: float | None = None


@dataclass(frozen=True)
class RoundRecord:
    """One working-set round, as the progress hook ``on_round`` receives it.

    ``working_set`` counts the constraints of the round's sub-problem, ``added`` those the round's separation
    added, ``status`` is the sub-problem's backend status, ``seconds`` the time since the trial started.
    """

    trial: int
    round: int
    working_set: int
    added: int
    status: str
    seconds: float


#: The progress hook: called once per working-set round with its record.
OnRound = Callable[[RoundRecord], None]


@dataclass(frozen=True)
class TrialRecord:
    """One trial: its direction, the relaxation's filter, its polished filter, and how they fared.

    ``recovered`` and ``predicted`` both speak of the relaxation's own filter ``w`` (Theorem 1's
    statement); ``recovered_after_polish`` of the polished one.
    """

    index: int
    r: FloatArray
    w: FloatArray | None
    w_polished: FloatArray | None
    loss: float | None
    raw_loss: float | None
    objective: float | None
    recovered: bool | None
    recovered_after_polish: bool | None
    recovery_error: float | None
    predicted: bool | None
    solution: RelaxationSolution

    @property
    def final_w(self) -> FloatArray | None:
        """The filter this trial offers for selection: polished when polishing helped."""
        return self.w_polished if self.w_polished is not None else self.w


@dataclass(frozen=True)
class SolveResult:
    """The selected filter with its certificate, and every trial's record."""

    status: str
    message: str
    w: FloatArray | None
    loss: float | None
    certificate: Certificate | None
    recovery_error: float | None
    selected_trial: int | None
    trials: list[TrialRecord]
    relaxation: str
    n: int
    d: int
    k: int
    m: int
    solve_time_s: float
    w_star: FloatArray | None = None
    recovery_sign: int | None = None
