"""Every tolerance of the core, named once. All are relative (SPEC 4c): to ``1 + |rhs|`` on normalised rows, to
``||X_ij|| ||w||`` for patches, to ``||r||`` or ``1 + max|u|`` for filters; the solvers work in normalised units.
"""

from __future__ import annotations

#: Clarabel's absolute and relative duality gap and its feasibility tolerance (SPEC 4b: about 1e-10 is needed on
#: this degenerate LP; polishing and the crossover finish the job).
CLARABEL_GAP = 1e-9
CLARABEL_FEASIBILITY = 1e-9
#: A sample is violated when its excess exceeds this times ``1 + |y~_i|`` (normalised).
CUT_TOL = 1e-9
#: A working-set member is slack when its slack exceeds this times ``1 + |rhs|``; slack long enough, it leaves.
SLACK_TOL = 1e-6
#: Rounds a member may be slack in a row before it leaves the sub-problem.
IDLE_ROUNDS = 2

#: The first working set (:mod:`cnnrelax.core.solver.seeding`): a polished guess seeds cuts when its loss is at
#: most ``SEED_FIT ||y||^2``; it seeds the cuts of its ``SEED_ROWS m`` samples of smallest positive label; the guess
#: is polished by ``SEED_POLISH_ROUNDS`` least-squares rounds (its pattern settles in a few).
SEED_FIT = 1e-6
SEED_ROWS = 4
SEED_POLISH_ROUNDS = 10
#: ... on an evenly spaced subset of ``SEED_SUBSET m`` samples (and checked on all).
SEED_SUBSET = 40

#: The shortcut (:mod:`cnnrelax.core.solver.shortcut`): the guess stands for the LP's vertex only when its relative
#: fit residual is at most ``SHORTCUT_FIT`` (rounding); a direction is inside a cone when NNLS leaves a relative
#: residual of at most ``SHORTCUT_CONE_TOL`` (far below the certificate's ``DEFAULT_CONE_TOL``: an answer, not a
#: verdict, hangs on it).
SHORTCUT_FIT = 1e-12
SHORTCUT_CONE_TOL = 1e-10
#: ... and it runs only for filters of at most this many weights (not a tolerance: a bound on uninterruptible work;
#: at m = 1000 one membership took 10 s, where a cancel must be answered within 1 s).
SHORTCUT_MAX_M = 200
#: A trial's polished filter with the guess's pattern, within this relative distance of the guess, is the guess (the
#: same least squares to rounding; :meth:`cnnrelax.core.solver.shortcut.Shortcut.twin`).
TWIN_RTOL = 1e-12

#: HiGHS's primal and dual feasibility tolerances when a vertex (not a yes/no) is wanted.
HIGHS_VERTEX_TOL = 1e-10

#: Crossover: a cut is tight at the interior point when its slack is below this times ``1 + |rhs|``.
CROSSOVER_ACTIVE = 1e-6
#: ... a user bound or row is tight within this times ``1 + max|u|``.
CROSSOVER_NEAR = 1e-7
#: ... a candidate vertex may lose at most this times ``|r^T u| + ||r||`` of the interior point's value.
CROSSOVER_VALUE = 1e-7
#: ... a candidate may violate the user constraints by at most this times ``1 + max|u|``.
CROSSOVER_FEASIBILITY = 1e-9
#: ... two candidates within this times ``|r^T u| + ||r||`` are equal (the vertex wins: the same answer in any unit).
CROSSOVER_ROUNDING = 1e-12

#: Recession: a patch row is violated when ``X_ij v`` exceeds this times ``||X_ij|| ||v||``; a direction gains when
#: ``r^T v`` exceeds this times ``||r|| ||v||``.
RECESSION_TOL = 1e-9
#: ... a positive optimum of the recession LP over ``|v| <= 1`` lies on the box: ``max|v|`` at least this.
RECESSION_ON_BOX = 0.5

#: The temporary box ``|u| <= B`` in normalised units: its first size, its growth, and where it gives up
#: (a filter that far beyond the data's scale is a numerical failure).
BOX_START = 100.0
BOX_GROWTH = 100.0
MAX_BOX = 1e12
#: The box counts as active when ``max|u|`` reaches this fraction of it.
BOX_ACTIVE = 0.99

#: Patches with ``|X_ij w| <= TIE_RTOL ||X_ij|| ||w||`` are tied (at the kink); beyond, active.
TIE_RTOL = 1e-9
#: A polished filter must satisfy the user constraints to this relative violation.
POLISH_FEASIBILITY_TOL = 1e-9
#: Gauss-Newton stops at a loss of this times ``||y||^2`` (zero to rounding) or a relative decrease below
#: :data:`GAUSS_NEWTON_DECREASE`.
GAUSS_NEWTON_FLOOR = 1e-30
GAUSS_NEWTON_DECREASE = 1e-15

#: Guards against division by zero (not tolerances: the smallest positive scale taken).
TINY = 1e-300

#: The certificates' default tolerances (SPEC 4): a loss at most ``OPTIMALITY_TOL * ||y||^2`` is zero; the cone
#: test certifies at a relative residual up to ``CONE_TOL``; it applies to a filter whose relative fit residual is
#: at most ``FIT_TOL``. A trial recovered the planted filter within ``RECOVERY_TOL * ||w*||`` (SPEC 3).
DEFAULT_OPTIMALITY_TOL = 1e-10
DEFAULT_CONE_TOL = 1e-6
DEFAULT_FIT_TOL = 1e-6
DEFAULT_RECOVERY_TOL = 1e-4

#: Losses within this relative distance of the least are equal (selection takes the first: scale-free).
SELECTION_RTOL = 1e-9
#: Gradient descent (the baseline): a restart has converged at a loss of ``GD_TOL * ||y||^2`` and stalled when a
#: step moves ``w`` by at most ``GD_STALL_TOL * (1 + ||w||)``.
GD_TOL = 1e-12
GD_STALL_TOL = 1e-10
#: The shortest time limit handed to a solver (seconds): a deadline already passed still gets one short try.
MIN_TIME_LIMIT_S = 1e-3
