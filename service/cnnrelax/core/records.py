"""Records the core hands to its callers while it works.

:class:`RoundRecord` describes one round of the working-set loop (a sub-problem solved, cuts or cone samples
added); :func:`cnnrelax.core.trials.solve` passes each to its ``on_round`` hook.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RoundRecord:
    """One working-set round of one trial.

    ``trial`` and ``round`` count from 0 and 1; ``working_set`` is the number of constraints (cuts and cone
    samples) the round's sub-problem held; ``added`` how many the round added for the next one (0: the loop ends
    or grows its box); ``status`` is the sub-problem solver's own status; ``seconds`` the time since the trial
    started.
    """

    trial: int
    round: int
    working_set: int
    added: int
    status: str
    seconds: float
