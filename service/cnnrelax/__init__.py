"""cnnrelax: train one-hidden-layer convolutional nets (ReLU and other convex activations) by randomized
convex relaxation.

The numerical core (the subpackage :mod:`cnnrelax.core`) knows nothing of HTTP or storage.
"""

from importlib.metadata import version

from .core import (
    ACTIVATIONS,
    REGISTRY,
    Activation,
    BlockPatching,
    Certificate,
    ConeCertificate,
    ConvProblem,
    FilterConstraints,
    GradientDescentResult,
    ImagePatching,
    InvalidParameterError,
    PlantedProblem,
    PlantedSpec,
    Relaxation,
    RelaxationSolution,
    RelaxationSolver,
    SolveOptions,
    SolveResult,
    SolverSettings,
    StridedPatching,
    TrialRecord,
    certify,
    cone_certificate,
    gradient_descent,
    make_activation,
    make_patching,
    make_problem,
    planted_problem,
    polish,
    pseudo_inverse,
    solve,
    solve_relaxation,
    trial_direction,
)

__version__ = version("cnnrelax")  # from VERSION at the repository root, via the package metadata

__all__ = [
    "ACTIVATIONS", "Activation", "REGISTRY", "Relaxation", "make_activation",
    "BlockPatching", "Certificate", "ConeCertificate", "ConvProblem", "FilterConstraints", "GradientDescentResult",
    "ImagePatching", "InvalidParameterError", "PlantedProblem", "PlantedSpec", "RelaxationSolution",
    "RelaxationSolver", "SolveOptions", "SolveResult", "SolverSettings", "StridedPatching", "TrialRecord", "certify",
    "cone_certificate", "gradient_descent", "make_patching", "make_problem", "planted_problem", "polish",
    "pseudo_inverse", "solve", "solve_relaxation", "trial_direction",
]
