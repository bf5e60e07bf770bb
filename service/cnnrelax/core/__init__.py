"""The numerical core: the problem, the activations, the relaxations and their solver, the certificates, the
trials, the baselines and the cvxpy oracle. It knows nothing of HTTP or storage (docs/architecture-core.md)."""

from ..errors import InvalidParameterError
from .activations import (
    ACTIVATION_REGISTRY,
    ACTIVATIONS,
    Activation,
    PiecewiseLinear,
    make_activation,
    register_activation,
)
from .baselines import GradientDescentResult, gradient_descent, pseudo_inverse
from .certificates import DEFAULT_COVERAGE_SAMPLES, Certificate, ConeCertificate, certify, cone_certificate
from .constraints import FilterConstraints
from .options import SolveOptions, SolverSettings
from .planted import PlantedProblem, PlantedSpec, planted_problem
from .polishing import polish
from .problem import (
    BlockPatching,
    ConvProblem,
    ImagePatching,
    StridedPatching,
    make_patching,
    make_problem,
)
from .records import OnRound, RelaxationSolution, RoundRecord, SolveResult, TrialRecord, TrialStatus
from .relaxations import REGISTRY, Relaxation
from .solver import RelaxationSolver, solve_relaxation
from .trials import solve, trial_direction

__all__ = [
    "ACTIVATIONS", "ACTIVATION_REGISTRY", "Activation", "PiecewiseLinear", "REGISTRY", "Relaxation",
    "make_activation", "register_activation",
    "BlockPatching", "Certificate", "ConeCertificate", "ConvProblem", "DEFAULT_COVERAGE_SAMPLES", "FilterConstraints",
    "GradientDescentResult", "ImagePatching", "InvalidParameterError", "OnRound", "PlantedProblem", "PlantedSpec",
    "RelaxationSolution", "RelaxationSolver", "RoundRecord", "SolveOptions", "SolveResult", "SolverSettings",
    "StridedPatching", "TrialRecord", "TrialStatus", "certify", "cone_certificate", "gradient_descent",
    "make_patching", "make_problem", "planted_problem", "polish", "pseudo_inverse", "solve", "solve_relaxation",
    "trial_direction",
]
