"""Every request and response body of the HTTP API (pydantic v2), in one place.

The names of :class:`SolveRequest` and of the job/result members are SPEC section 7's fixed contract.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
Relaxation = Literal["lp", "qp", "naive"]
Distribution = Literal["gaussian", "rademacher", "laplace"]
DatasetId = str
DATASET_ID_PATTERN = r"^[0-9a-f]{64}$"
MAX_SEED = 2**63 - 1


class _Strict(BaseModel):
    """Unknown members are an error (a typo must not be silently ignored); numbers must be finite."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class _Open(BaseModel):
    """Output models that may carry more members than documented."""

    model_config = ConfigDict(extra="allow")


# -------------------------------------------------------------------------------------------------
# errors
# -------------------------------------------------------------------------------------------------

class FieldProblem(BaseModel):
    """One invalid member of a request."""

    location: str = Field(description="Where, e.g. `body.planted.n` or `query.limit`.")
    message: str = Field(description="What is wrong with it.")


class Problem(_Open):
    """RFC 9457 problem details: every 4xx and 5xx answer has this shape (`application/problem+json`)."""

    type: str = Field("about:blank", description="A URI naming the kind of problem.")
    title: str = Field(description="A short summary of the kind of problem.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="A sentence a person understands, about this occurrence.")
    instance: Optional[str] = Field(None, description="The request path.")
    parameter: Optional[str] = Field(None, description="The request member at fault, when one is.")
    errors: Optional[list[FieldProblem]] = Field(None, description="Every invalid member, for validation errors.")


# -------------------------------------------------------------------------------------------------
# solve requests
# -------------------------------------------------------------------------------------------------

class InlineData(_Strict):
    """A small problem's data inline: `X` is n rows of d numbers, `y` n non-negative labels."""

    X: list[list[float]] = Field(description="The n x d data matrix, one list per row.")
    y: list[float] = Field(description="The n labels.")


class PlantedSpecIn(_Strict):
    """A planted (teacher) model: `y_i = sum_j (X_ij w*)_+ + noise_std e_i`, all seeded."""

    n: int = Field(ge=1, description="Samples.")
    d: int = Field(ge=1, description="Row length.")
    k: int = Field(1, ge=1, description="Non-overlapping patches (d = k*m).")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Seed of X, w* and the noise.")
    noise_std: float = Field(0.0, ge=0, description="Standard deviation of the label noise.")
    distribution: Distribution = Field("gaussian", description="Distribution of the entries of X.")


Bound = Union[float, list[float]]


class ConstraintsIn(_Strict):
    """Extra convex constraints on the filter `w` (any combination)."""

    nonnegative: bool = False
    lower: Optional[Bound] = Field(None, description="w >= lower (a number or a vector of length m).")
    upper: Optional[Bound] = Field(None, description="w <= upper (a number or a vector of length m).")
    l1_bound: Optional[float] = Field(None, ge=0, description="||w||_1 <= l1_bound.")
    l2_bound: Optional[float] = Field(None, ge=0, description="||w||_2 <= l2_bound.")
    equality_matrix: Optional[list[list[float]]] = Field(None, description="E in E w = e.")
    equality_vector: Optional[list[float]] = Field(None, description="e in E w = e.")
    inequality_matrix: Optional[list[list[float]]] = Field(None, description="G in G w <= h.")
    inequality_vector: Optional[list[float]] = Field(None, description="h in G w <= h.")


class SolveRequest(_Strict):
    """A solve: exactly one problem source (`data`, `dataset_id` or `planted`) and the options."""

    data: Optional[InlineData] = Field(None, description="Inline X and y (small problems).")
    dataset_id: Optional[str] = Field(None, pattern=DATASET_ID_PATTERN,
                                      description="A dataset uploaded with POST /v1/datasets.")
    planted: Optional[PlantedSpecIn] = Field(None, description="A planted model drawn from its seed.")
    k: Optional[int] = Field(None, ge=1, description="Patches per row for data sources (d = k*m); default 1.")
    relaxation: Relaxation = Field("lp", description="'lp' (beta -> 0), 'qp' (beta > 0) or 'naive'.")
    beta: float = Field(1e-4, ge=0, description="Weight of the random linear term in the QP, dimensionless: "
                        "applied to the data normalised by their scales (X / RMS of the patch entries, y / max|y|), "
                        "so the same beta means the same thing in every unit.")
    trials: int = Field(8, ge=1, description="Randomized trials (each a seeded direction r).")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Seed of the trial directions.")
    output_weights: Optional[list[float]] = Field(None, description="c_j >= 0, one per patch (default ones).")
    stop_on_certificate: bool = Field(True, description="Stop at the first trial certified globally optimal.")
    polish: bool = Field(True, description="Least squares on the activation pattern of each trial's filter.")
    patch_size: Optional[int] = Field(None, ge=1, description="1-D patches of this length (with `stride`).")
    stride: Optional[int] = Field(None, ge=1, description="Stride of 1-D or 2-D patches.")
    image_shape: Optional[list[int]] = Field(None, min_length=2, max_length=2, description="[H, W] of 2-D rows.")
    filter_shape: Optional[list[int]] = Field(None, min_length=2, max_length=2, description="[p, q] 2-D filter.")
    constraints: Optional[ConstraintsIn] = Field(None, description="Convex constraints on w.")
    recovery_tol: Optional[float] = Field(None, gt=0, description="Relative error that counts as recovery.")
    time_limit_s: Optional[float] = Field(None, gt=0, description="Run-time limit (capped by the server's).")
    coverage_samples: int = Field(64, ge=0, le=10000, description="Random directions sampled to estimate "
                                  "certificate.coverage (the per-trial success probability at the selected filter); "
                                  "0 skips the estimate.")

    @model_validator(mode="after")
    def _one_source(self) -> "SolveRequest":
        given = [name for name in ("data", "dataset_id", "planted") if getattr(self, name) is not None]
        if len(given) != 1:
            named = " and ".join(given) if given else "none of them"
            raise ValueError(f"give exactly one problem source among data, dataset_id and planted (got {named})")
        return self


# -------------------------------------------------------------------------------------------------
# results and jobs
# -------------------------------------------------------------------------------------------------

class ConeCertificateOut(_Open):
    """Cone membership / dual feasibility at the selected filter (SPEC 4.2)."""

    residual: Optional[float] = Field(None, description="rho = min_{v>=0} ||G^T v - r|| / ||r||.")
    certified: bool
    applicable: bool


class CertificateOut(_Open):
    """What proves (or fails to prove) global optimality of the selected filter."""

    global_optimum: bool = Field(description="Zero non-convex loss: a global minimum.")
    cone: ConeCertificateOut


class SolverStatsOut(_Open):
    """The convex solver's evidence for one trial."""

    status: str
    iterations: int
    solve_time_s: float


class TrialOut(_Open):
    """One randomized trial."""

    index: int
    r: list[float] = Field(description="The trial's direction.")
    w: Optional[list[float]] = Field(None, description="The relaxation's filter, before selection.")
    loss: Optional[float] = None
    objective: Optional[float] = Field(None, description="Optimal value, maximise-r^T w convention.")
    recovered: Optional[bool] = Field(None, description="Planted only: recovered w* within recovery_tol.")
    predicted: Optional[bool] = Field(None, description="Planted only: the cone check at w* predicts recovery.")
    solver: SolverStatsOut


class SolveResultOut(_Open):
    """A solve's result: the selected filter, its loss and certificate, every trial."""

    status: str = Field(description="solved, unbounded, infeasible, cancelled, failed, ...")
    message: str
    w: Optional[list[float]] = Field(None, description="The selected filter.")
    loss: Optional[float] = Field(None, description="Its non-convex loss.")
    certificate: CertificateOut
    recovery_error: Optional[float] = Field(None, description="Planted only: ||w - w*|| / ||w*||.")
    trials: list[TrialOut]


class ProgressOut(BaseModel):
    """How far a job has come: trials of a solve, cells of an experiment."""

    done: int
    total: int


class JobOut(BaseModel):
    """A solve job."""

    id: str
    status: JobStatus
    created_at: datetime
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None
    attempts: int = Field(description="Runs started (a run interrupted by a restart is run again).")
    cancel_requested: bool = False
    progress: Optional[ProgressOut] = None
    error: Optional[str] = Field(None, description="Why the job failed or was cancelled.")
    result: Optional[SolveResultOut] = Field(None, description="Set once the job succeeded (or partial).")


class JobSummary(BaseModel):
    """A job in a listing (no result: fetch the job for it)."""

    id: str
    status: JobStatus
    created_at: datetime
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None
    attempts: int
    progress: Optional[ProgressOut] = None
    error: Optional[str] = None


class JobPage(BaseModel):
    """One page of a listing, newest first; pass `next_cursor` as `cursor` for the next one."""

    items: list[JobSummary]
    next_cursor: Optional[str] = None


# -------------------------------------------------------------------------------------------------
# datasets
# -------------------------------------------------------------------------------------------------

class DatasetJson(_Strict):
    """A dataset as JSON (the same as inline solve data)."""

    X: list[list[float]]
    y: list[float]


class DatasetOut(BaseModel):
    """A stored dataset; `id` is the sha256 of its canonical float64 content."""

    id: str
    n: int
    d: int
    size_bytes: int
    source: str = Field(description="The upload format: npy, npz or json.")
    created_at: datetime


class DatasetPage(BaseModel):
    items: list[DatasetOut]


# -------------------------------------------------------------------------------------------------
# experiments
# -------------------------------------------------------------------------------------------------

# Requests, specs and results typed per kind (discriminated by `kind`) live in schemas_experiments.
from .schemas_experiments import (  # noqa: E402,F401 (this section's models; ExperimentRequest is re-exported)
    ExperimentRequest,
    ExperimentResult,
    ExperimentSpec,
)


class ExperimentOut(BaseModel):
    """An experiment job, with progress over its cells."""

    id: str
    kind: Optional[Literal["phase_transition", "rotated_digits"]] = Field(None, description="The experiment's kind.")
    status: JobStatus
    created_at: datetime
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None
    attempts: int
    cancel_requested: bool = False
    progress: Optional[ProgressOut] = None
    error: Optional[str] = None
    spec: ExperimentSpec = Field(description="The normalised spec, defaults filled in (inline images as their shape).")
    result: Optional[ExperimentResult] = None
    figure_url: Optional[str] = Field(None, description="Where the PNG figure is, once succeeded.")


class ExperimentPage(BaseModel):
    items: list[JobSummary]
    next_cursor: Optional[str] = None


# -------------------------------------------------------------------------------------------------
# operations
# -------------------------------------------------------------------------------------------------

class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready"] = "ready"
    checks: dict[str, bool]
    queue_depth: int
    running: int
