"""The numerical core: the problem, the activations, the relaxation and its solver, the certificates, the
trials, the baselines and the cvxpy oracle. It knows nothing of HTTP or storage."""

from .activations import ACTIVATIONS, Activation, make_activation
from .baselines import GradientDescentResult, gradient_descent, pseudo_inverse
from .certificate import Certificate, ConeCertificate, certify, cone_certificate
from .constraints import FilterConstraints
from .planted import PlantedProblem, PlantedSpec, planted_problem
from .problem import (
    BlockPatching,
    ConvProblem,
    ImagePatching,
    InvalidParameterError,
    StridedPatching,
    make_patching,
    make_problem,
)
from .relaxation import REGISTRY, Relaxation, RelaxationSolution, RelaxationSolver, SolverSettings, solve_relaxation
from .trials import SolveOptions, SolveResult, TrialRecord, polish, solve, trial_direction

__all__ = [
    "ACTIVATIONS", "Activation", "REGISTRY", "Relaxation", "make_activation",
    "BlockPatching", "Certificate", "ConeCertificate", "ConvProblem", "FilterConstraints", "GradientDescentResult",
    "ImagePatching", "InvalidParameterError", "PlantedProblem", "PlantedSpec", "RelaxationSolution",
    "RelaxationSolver", "SolveOptions", "SolveResult", "SolverSettings", "StridedPatching", "TrialRecord", "certify",
    "cone_certificate", "gradient_descent", "make_patching", "make_problem", "planted_problem", "polish",
    "pseudo_inverse", "solve", "solve_relaxation", "trial_direction",
]
