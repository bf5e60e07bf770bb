"""Work priced by what it costs: each job's CPU-seconds on this machine, estimated from its spec's shapes.

:func:`estimate_cost` picks the job kind's estimator from :data:`ESTIMATORS` (:mod:`.estimators`, where the
model is stated) and prices the spec with the coefficients ``bench/calibrate_costs.py`` measured and kept in
``costs.json`` (:mod:`.coefficients`). The API refuses a job whose estimate exceeds the job time limit, and caps
the sum of a tenant's queued estimates.
"""

from .coefficients import COSTS_PATH, FEATURES, Coefficients, LinearCost, load_coefficients, parse_coefficients
from .estimators import (
    ESTIMATORS,
    CostEstimate,
    Estimator,
    check_time_limit,
    estimate_cost,
    job_kind,
    relaxation_trial,
    ridge_fit,
)

__all__ = [
    "COSTS_PATH", "ESTIMATORS", "FEATURES", "Coefficients", "CostEstimate", "Estimator", "LinearCost",
    "check_time_limit", "estimate_cost", "job_kind", "load_coefficients", "parse_coefficients", "relaxation_trial",
    "ridge_fit",
]
