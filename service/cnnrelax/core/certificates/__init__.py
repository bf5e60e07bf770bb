"""Certificates of a filter (SPEC 4), one concern per module:

- :mod:`.measures`: the tolerances, the relative fit residual and the stationarity of the loss;
- :mod:`.cone`: the cone of optimality at ``w`` and exact membership tests (NNLS, or a bounded QP with ties);
- :mod:`.generators`: the cone's generators, held or implicit over the patches;
- :mod:`.nnls`: the least-squares kernels those tests rest on, each answer checked optimal;
- :mod:`.coverage`: the seeded Monte Carlo estimate of the per-trial success probability, with sequential
  stopping and an exact interval;
- :mod:`.assembly`: the certificate put together (zero loss, the cone test, a sentence).

This face is what the rest of the package imports.
"""

from .assembly import Certificate, ConeCertificate, ConeStatus, certify, cone_certificate, summary, tied_note
from .cone import (
    OptimalityCone,
    cone_not_applicable,
    nnls_distance,
    optimality_cone,
)
from .coverage import (
    COVERAGE_CONFIDENCE,
    DEFAULT_COVERAGE_HALF_WIDTH,
    DEFAULT_COVERAGE_SAMPLES,
    Coverage,
    CoverageStatus,
    clopper_pearson_interval,
    coverage,
    trials_needed,
    wilson_interval,
)
from .measures import (
    DEFAULT_CONE_TOL,
    DEFAULT_FIT_TOL,
    DEFAULT_OPTIMALITY_TOL,
    TIE_RTOL,
    fit_residual,
    loss_threshold,
    relative_gradient_norm,
)

__all__ = [
    "COVERAGE_CONFIDENCE", "DEFAULT_CONE_TOL", "DEFAULT_COVERAGE_HALF_WIDTH", "DEFAULT_COVERAGE_SAMPLES",
    "DEFAULT_FIT_TOL", "DEFAULT_OPTIMALITY_TOL", "TIE_RTOL", "Certificate", "ConeCertificate", "ConeStatus",
    "Coverage", "CoverageStatus", "OptimalityCone", "certify", "clopper_pearson_interval",
    "cone_certificate", "cone_not_applicable", "coverage", "fit_residual", "loss_threshold",
    "nnls_distance", "optimality_cone", "relative_gradient_norm", "summary", "tied_note", "trials_needed",
    "wilson_interval",
]
