"""Every request and response body of the HTTP API (pydantic v2), in one place.

The names of :class:`SolveRequest` and of the job/result members are SPEC section 7's fixed contract.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any, Literal, Optional, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, model_validator

from ..results import (  # the result models live below the API, where the worker builds them; named here too
    CertificateOut as CertificateOut,
)
from ..results import ClarabelStatus as ClarabelStatus
from ..results import ConeCertificateOut as ConeCertificateOut
from ..results import CoverageOut as CoverageOut
from ..results import Sent as _Sent
from ..results import ShapeOut as ShapeOut
from ..results import SolveResultOut as SolveResultOut
from ..results import SolverStatsOut as SolverStatsOut
from ..results import SolveStatus as SolveStatus
from ..results import TrialOut as TrialOut
from ..results import TrialStatus as TrialStatus
from ..specs import RelaxationName, SolveOptionsBase
from ..types import JobStatus as JobStatus  # defined once, in cnnrelax.types; the routes name it from here
from ..validation import MAX_SEED

Relaxation = RelaxationName  # the registry's names (cnnrelax.core.relaxation.REGISTRY), as specs.py states them
Distribution = Literal["gaussian", "rademacher", "laplace"]
DatasetId = str
DATASET_ID_PATTERN = r"^[0-9a-f]{64}$"

#: A listing cursor is base64url("seq:" + up to 18 digits), unpadded (``store.encode_cursor``): every
#: string this pattern matches decodes to a sequence number, so a well-formed cursor is never refused.
_DIGIT_MID = "[AEIMQUYcgk]"
_DIGIT_LAST = "[w-z0-5]"
_DIGIT_PAIR = "(?:M[DTjz]|N[DTjz]|O[DT])"
_DIGIT_TAIL = "(?:M[AQgw]|N[AQgw]|O[AQ])"
CURSOR_PATTERN = (f"^c2VxOj{_DIGIT_MID}(?:{_DIGIT_LAST}(?:{_DIGIT_PAIR}{_DIGIT_MID}{_DIGIT_LAST})*"
                  f"(?:{_DIGIT_TAIL}|{_DIGIT_PAIR}{_DIGIT_MID})?)?$")
CURSOR_MAX_LENGTH = 30
#: Largest planted label noise accepted (past it the labels are noise, and squares overflow).
MAX_NOISE_STD = 1e6


class _Strict(BaseModel):
    """Unknown members are an error (a typo must not be silently ignored); numbers must be finite; no
    coercion (``true`` is not a number, ``"3"`` not an integer), so what the schema refuses is refused."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)

    @model_validator(mode="before")
    @classmethod
    def _integral_numbers(cls, data: Any) -> Any:
        """``3.0`` is an integer in JSON Schema: give the integer members an ``int`` (strict mode would not)."""
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for name in _integer_members(cls):
            value = out.get(name)
            if isinstance(value, float) and value.is_integer():
                out[name] = int(value)
            elif isinstance(value, list):
                out[name] = [int(v) if isinstance(v, float) and v.is_integer() else v for v in value]
        return out


@lru_cache(maxsize=None)
def _integer_members(model: type[BaseModel]) -> tuple[str, ...]:
    """Members of ``model`` typed ``int``, ``Optional[int]`` or a list of ``int``."""
    names = []
    for name, info in model.model_fields.items():
        options = get_args(info.annotation) or (info.annotation,)
        for option in options:
            if option is int or (get_origin(option) is list and get_args(option) == (int,)):
                names.append(name)
                break
    return tuple(names)


# -------------------------------------------------------------------------------------------------
# errors
# -------------------------------------------------------------------------------------------------

class FieldProblem(_Sent):
    """One invalid member of a request."""

    location: str = Field(description="Where, e.g. `body.planted.n` or `query.limit`.")
    message: str = Field(description="What is wrong with it.")


class Problem(_Sent):
    """RFC 9457 problem details: every 4xx and 5xx answer has this shape (`application/problem+json`)."""

    type: str = Field("about:blank", description="A URI naming the kind of problem.")
    title: str = Field(description="A short summary of the kind of problem.")
    status: int = Field(ge=400, le=599, description="The HTTP status code.")
    detail: str = Field(description="A sentence a person understands, about this occurrence.")
    instance: Optional[str] = Field(None, description="The request path.")
    parameter: Optional[str] = Field(None, description="The request member at fault, when one is.")
    errors: Optional[list[FieldProblem]] = Field(None, description="Every invalid member, for validation errors.")
    reference: Optional[str] = Field(None, description="500 only: the reference of the logged error.")
    job_id: Optional[str] = Field(None, description="409 on a reused Idempotency-Key: the job it was first used for.")
    checks: Optional[dict[str, bool]] = Field(None, description="503 from /readyz: which readiness checks passed.")
    limit: Optional[float] = Field(None, description="422 for a request over a server limit: the limit.")
    setting: Optional[str] = Field(None, description="422 for a request over a server limit: the setting that "
                                                     "raises it (e.g. CNNRELAX_MAX_PATCH_ENTRIES).")
    missing_parts: Optional[list[int]] = Field(None, description="409 when an upload in parts is completed "
                                                                 "before every part arrived: the parts to send.")


# -------------------------------------------------------------------------------------------------
# solve requests
# -------------------------------------------------------------------------------------------------

#: Rows of X are not empty (stated in the schema; the core's message says so with the shape it got).
_ROWS_NOT_EMPTY: dict[str, Any] = {"items": {"type": "array", "items": {"type": "number"}, "minItems": 1}}


class InlineData(_Strict):
    """A small problem's data inline: `X` is n rows of d numbers, `y` n labels (in the activation's range)."""

    X: list[list[StrictFloat]] = Field(min_length=1, description="The n x d data matrix, one list per row.",
                                 json_schema_extra=_ROWS_NOT_EMPTY)
    y: list[StrictFloat] = Field(min_length=1, description="The n labels.")


class PlantedSpecIn(_Strict):
    """A planted (teacher) model: `y_i = sum_j sigma(X_ij w*) + noise_std e_i`, all seeded (sigma: the solve's
    `activation`)."""

    n: int = Field(ge=1, description="Samples.")
    d: int = Field(ge=1, description="Row length.")
    k: int = Field(1, ge=1, description="Non-overlapping patches (d = k*m).")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Seed of X, w* and the noise.")
    noise_std: float = Field(0.0, ge=0, le=MAX_NOISE_STD, description="Standard deviation of the label noise.")
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

    @model_validator(mode="after")
    def _rectangular(self) -> "ConstraintsIn":
        for name in ("equality_matrix", "inequality_matrix"):
            rows = getattr(self, name)
            widths = sorted({len(row) for row in rows or []})
            if len(widths) > 1:
                raise ValueError(f"the rows of {name} have different lengths ({widths[:5]}); {name} must be a "
                                 "matrix with one row per constraint and m columns")
            vector = getattr(self, name.replace("matrix", "vector"))
            if rows is not None and vector is not None and len(vector) != len(rows):
                raise ValueError(f"{name} has {len(rows)} rows but {name.replace('matrix', 'vector')} has "
                                 f"{len(vector)} entries; they must match")
        return self


_SOURCES = ("data", "dataset_id", "planted")
#: Exactly one source: not (none given, or two given). Stated with `not` rather than a top-level `oneOf`,
#: which code generators read as a union of partial request types.
_NOT_ONE_SOURCE: dict[str, Any] = {"anyOf": [
    {"properties": {source: {"type": "null"} for source in _SOURCES}},
    *({"required": [a, b], "properties": {a: {"not": {"type": "null"}}, b: {"not": {"type": "null"}}}}
      for i, a in enumerate(_SOURCES) for b in _SOURCES[i + 1:]),
]}


class ProblemSourceIn(BaseModel):
    """The problem sources of a solve request: exactly one of them is given (``SolveRequest`` checks it)."""

    data: Optional[InlineData] = Field(None, description="Inline X and y (small problems).")
    dataset_id: Optional[str] = Field(None, pattern=DATASET_ID_PATTERN,
                                      description="A dataset uploaded with POST /v1/datasets.")
    planted: Optional[PlantedSpecIn] = Field(None, description="A planted model drawn from its seed.")


class SolveRequest(_Strict, SolveOptionsBase, ProblemSourceIn):  # the options: specs.SolveOptionsBase, once
    """A solve: exactly one problem source (`data`, `dataset_id` or `planted`) and the options."""

    model_config = ConfigDict(json_schema_extra={"not": _NOT_ONE_SOURCE})  # as _one_source checks

    constraints: Optional[ConstraintsIn] = Field(None, description="Convex constraints on w.")

    @model_validator(mode="after")
    def _one_source(self) -> "SolveRequest":
        given = [name for name in ("data", "dataset_id", "planted") if getattr(self, name) is not None]
        if len(given) != 1:
            named = " and ".join(given) if given else "none of them"
            raise ValueError(f"give exactly one problem source among data, dataset_id and planted (got {named})")
        return self


class CertifyRequest(SolveRequest):
    """A filter to certify (`POST /v1/certificates`): the problem as in a solve (one source, patching, activation,
    output weights, constraints) and `w`. `trials` and `seed` name the directions the cone test is run for (those
    of a solve with these options), unless `r` gives one."""

    w: list[StrictFloat] = Field(min_length=1, description="The filter to certify (length m, the patch length).")
    r: Optional[list[StrictFloat]] = Field(None, min_length=1, description="One direction for the cone test "
                                           "(default: the directions of trials 0..trials-1 with `seed`).")


# -------------------------------------------------------------------------------------------------
# results and jobs
# -------------------------------------------------------------------------------------------------

class ProgressOut(_Sent):
    """How far a job has come: trials run of a solve, cells done of an experiment."""

    done: int = Field(ge=0, description="Trials run (a solve) or cells done (an experiment).")
    total: int = Field(ge=0, description="Trials asked for, or cells in all.")


class JobOut(_Sent):
    """A solve job."""

    id: str = Field(description="The job's id.")
    status: JobStatus
    created_at: datetime
    started_at: Optional[datetime] = Field(description="When its (latest) run started.")
    finished_at: Optional[datetime] = Field(description="When it ended.")
    attempts: int = Field(ge=0, description="Runs started (a run interrupted by a restart is run again).")
    cancel_requested: bool = Field(description="A cancellation was asked for.")
    progress: Optional[ProgressOut] = Field(description="Trials run of the trials asked for: a solve that stops on "
                                            "a certificate (stop_on_certificate) ends with done below total.")
    error: Optional[str] = Field(description="Why the job failed or was cancelled.")
    estimated_cpu_s: Optional[float] = Field(None, description="What the job is estimated to cost, in CPU-seconds of "
                                             "this server (its cost model, cnnrelax.pricing); null for a job "
                                             "stored before jobs were priced.")
    result: Optional[SolveResultOut] = Field(description="Set once the job succeeded (or partial).")


class CertificationJobOut(JobOut):
    """A queued certification (`POST /v1/certificates` of a large problem): a job whose result is the certificate."""

    result: Optional[CertificateOut] = Field(  # type: ignore[assignment]  # a certification's result is a certificate
        description="The certificate, once the job succeeded.")


class JobSummary(_Sent):
    """A job in a listing (no result: fetch the job for it)."""

    id: str
    status: JobStatus
    created_at: datetime
    started_at: Optional[datetime]
    finished_at: Optional[datetime]
    attempts: int = Field(ge=0)
    progress: Optional[ProgressOut]
    error: Optional[str]
    estimated_cpu_s: Optional[float] = Field(None, description="What the job is estimated to cost, in CPU-seconds of "
                                             "this server (its cost model, cnnrelax.pricing); null for a job "
                                             "stored before jobs were priced.")


class JobPage(_Sent):
    """One page of a listing, newest first; pass `next_cursor` as `cursor` for the next one."""

    items: list[JobSummary]
    next_cursor: Optional[str] = Field(description="The cursor of the next page; null on the last one.")


# -------------------------------------------------------------------------------------------------
# datasets
# -------------------------------------------------------------------------------------------------

class DatasetJson(_Strict):
    """A dataset as JSON (the same as inline solve data)."""

    X: list[list[StrictFloat]] = Field(min_length=1, description="The n x d matrix, one list per row.",
                                 json_schema_extra=_ROWS_NOT_EMPTY)
    y: list[StrictFloat] = Field(min_length=1, description="The n labels.")


class DatasetOut(_Sent):
    """A stored dataset; `id` is the sha256 of its canonical float64 content."""

    id: str = Field(pattern=DATASET_ID_PATTERN)
    n: int = Field(ge=1, description="Rows of X (samples).")
    d: int = Field(ge=1, description="Columns of X.")
    size_bytes: int = Field(ge=0, description="Bytes stored.")
    source: Literal["npy", "npz", "json", "inline", "parts"] = Field(
        description="The upload format (`inline`: the `data` of a solve, kept as a dataset of its caller; `parts`: "
                    "an upload in parts, /v1/datasets/uploads).")
    created_at: datetime
    image_shape: Optional[list[int]] = Field(None, min_length=2, max_length=2, description="An image set "
                                             "(`images` in a .npz, for rotated digits' `images_dataset_id`): "
                                             "[H, W]; its rows are the flattened images. Null for X and y.")
    angles_given: Optional[bool] = Field(None, description="An image set: it holds one angle per image.")


class DatasetPage(_Sent):
    """Every stored dataset."""

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
    estimated_cpu_s: Optional[float] = Field(None, description="What the job is estimated to cost, in CPU-seconds of "
                                             "this server (its cost model, cnnrelax.pricing); null for a job "
                                             "stored before jobs were priced.")
    spec: ExperimentSpec = Field(description="The normalised spec, defaults filled in (inline images as their shape).")
    result: Optional[ExperimentResult] = None
    figure_url: Optional[str] = Field(None, description="Where the PNG figure is, once succeeded.")


class ExperimentPage(BaseModel):
    items: list[JobSummary]
    next_cursor: Optional[str] = None


# -------------------------------------------------------------------------------------------------
# operations
# -------------------------------------------------------------------------------------------------

class Health(_Sent):
    """The process is up."""

    status: Literal["ok"] = "ok"


class ReadinessChecks(_Sent):
    """Each readiness check: the store answers, the disk has room, the dispatcher runs, the workers are up."""

    store: bool
    disk: bool = Field(description="The data directory has at least CNNRELAX_MIN_FREE_BYTES free.")
    dispatcher: bool
    workers: bool


class Readiness(_Sent):
    """Ready for jobs: every check passed."""

    status: Literal["ready"] = "ready"
    checks: ReadinessChecks
    queue_depth: int = Field(ge=0, description="Jobs queued.")
    running: int = Field(ge=0, description="Jobs running.")
