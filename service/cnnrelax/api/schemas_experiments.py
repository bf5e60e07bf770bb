"""The experiment request, spec and result bodies of the HTTP API, typed per kind and discriminated by ``kind``.

The requests (:data:`ExperimentRequest`) are the experiments' own typed specs (:mod:`cnnrelax.experiments.specs`,
where every parameter, default and check is defined once): :class:`PhaseTransitionRequest` is
:class:`~cnnrelax.experiments.specs.PhaseTransitionSpec` under its request name, and
:class:`~cnnrelax.experiments.specs.RotatedDigitsRequest` is the rotated-digits spec's members less what only an
in-process run may name. A job's spec as shown (:data:`ExperimentSpec`) and its result (:data:`ExperimentResult`)
declare every member the experiment sends; building one from a stored result with a member it does not declare
is an error, so nothing reaches the wire undeclared.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from ..core.activations import DEFAULT_NEGATIVE_SLOPE, ActivationName
from ..experiments.specs import Method, PhaseTransitionSpec, RotatedDigitsRequest

Verdict = Literal["lower", "higher", "inconclusive"]


class _Sent(BaseModel):
    """What the service sends: every member declared (``additionalProperties: false``)."""

    model_config = ConfigDict(extra="forbid")


# -------------------------------------------------------------------------------------------------
# requests and specs
# -------------------------------------------------------------------------------------------------

class PhaseTransitionRequest(PhaseTransitionSpec):
    """Paper Fig. 1: recovery of a planted filter over a grid of `(d, n)`, per method (defaults filled in)."""


ExperimentRequest = Annotated[Union[PhaseTransitionRequest, RotatedDigitsRequest], Field(discriminator="kind")]


class ImagesShape(_Sent):
    """Inline images are not echoed back: their shape stands for them."""

    shape: list[int] = Field(min_length=3, max_length=3, description="[N, H, W].")


# How cnnrelax.experiments.specs.RotatedDigitsSpec is shown: inline images replaced by their shape, angles left out.
class RotatedDigitsSpec(_Sent):
    """A rotated-digits spec as normalised by the server (every default filled in)."""

    kind: Literal["rotated_digits"]
    seed: int
    seeds: int
    angles_per_image: int
    angle_range: float
    filter_shapes: list[list[int]]
    filters: int
    beta: float
    max_images: Optional[int]
    fit_samples: int
    train_fraction: float
    validation_fraction: float
    alphas: list[float]
    source: str = Field(description="Where the images came from.")
    image_shape: list[int] = Field(min_length=2, max_length=2, description="[H, W].")
    angles_given: bool = Field(description="The images came with their angles (nothing was rotated).")
    images: Optional[ImagesShape] = Field(None, description="The shape of inline images, when they were sent.")
    images_path: Optional[str] = Field(None, description="The .npz file read (in-process runs only).")
    activation: ActivationName = Field("relu", description="The hidden layer's activation (filters and features).")
    negative_slope: float = Field(DEFAULT_NEGATIVE_SLOPE, description="leaky_relu's slope for negative inputs.")


ExperimentSpec = Annotated[Union[PhaseTransitionSpec, RotatedDigitsSpec], Field(discriminator="kind")]


# -------------------------------------------------------------------------------------------------
# phase-transition result
# -------------------------------------------------------------------------------------------------

class PhaseTransitionCell(_Sent):
    """One `(method, d, n)` cell; the headline figures are the polished ones unless the spec says otherwise."""

    method: Method
    d: int
    n: int
    k: int
    m: int = Field(description="Filter length d / k.")
    repetitions: int
    trials_run: int = Field(description="Trials (relaxation) or restarts (gradient descent) run in all.")
    min_error: Optional[float] = Field(description="Least relative error of a repetition's selected filter.")
    median_error: Optional[float] = Field(description="Median of the repetitions' selected errors.")
    success_rate: float = Field(description="Fraction of trials whose filter is within recovery_tol of w*.")
    successes: int
    no_filter: int = Field(description="Trials that produced no filter (unbounded LP).")
    time_s: float
    time_per_repetition_s: float
    min_error_polished: Optional[float]
    min_error_unpolished: Optional[float]
    success_rate_polished: float
    success_rate_unpolished: float = Field(description="For the relaxation: Theorem 1's per-trial probability.")


class TransitionRow(_Sent):
    """Where a method's success rate, smoothed by a monotone fit over n, first reaches half its plateau."""

    d: int
    n: Optional[int] = Field(description="The smallest such n; null when the rate never rises above zero.")
    plateau: float
    threshold: float
    at_grid_start: bool = Field(description="The crossing is at the grid's first n (it may lie below it).")


class PhaseTransitionResult(_Sent):
    """Every cell of the grid and the transitions."""

    kind: Literal["phase_transition"]
    spec: PhaseTransitionSpec
    k: int
    d: list[int]
    n: list[int]
    methods: list[Method]
    cells: list[PhaseTransitionCell]
    transition: dict[str, list[TransitionRow]] = Field(description="Per method.")
    time_s: float
    cell_time_s: float


# -------------------------------------------------------------------------------------------------
# rotated-digits result
# -------------------------------------------------------------------------------------------------

class Samples(_Sent):
    """Samples (rotated copies) per split."""

    train: int
    validation: int
    test: int


class StageTimes(_Sent):
    """Seconds spent in each stage of a cell."""

    data: float = Field(description="Rotating and splitting the images (cached between cells of a process).")
    ridge: float = Field(description="Features and ridge fits.")
    relaxation: Optional[float] = Field(None, description="Filter cells: the relaxation's trials.")


class RawCell(_Sent):
    """One seed's ridge on the pixels alone."""

    seed: int
    part: Literal["raw"]
    rmse: float = Field(description="Test RMSE (degrees).")
    validation_rmse: float
    alpha: float
    alpha_at_edge: bool = Field(description="The chosen alpha is an end of the grid.")
    features: int
    samples: Samples
    images: int
    source: str
    stage_time_s: StageTimes
    time_s: float


class FilterCell(_Sent):
    """One seed and filter shape: learned filters, and as many random ones, all at unit norm (softplus: at the
    learned norms)."""

    seed: int
    part: Literal["filter"]
    filter_shape: list[int] = Field(min_length=2, max_length=2)
    patches: int = Field(description="Stride-1 patches per image.")
    fit_samples: int
    statuses: list[str] = Field(description="Each relaxation trial's status.")
    filter_norms: list[Optional[float]] = Field(description="Each trial's filter norm as solved (before unit norm).")
    n_filters: int = Field(description="Learned filters used (trials with a non-zero filter).")
    filters: list[list[list[float]]] = Field(
        description="The learned filters, unit norm (softplus: as learned), p x q.")
    rmse_one_filter: float
    alpha_one_filter: float
    rmse_all_filters: float
    alpha_all_filters: float
    rmse_random_one_filter: float
    rmse_random_all_filters: float
    alpha_at_edge: bool
    stage_time_s: StageTimes
    time_s: float


DigitsCell = Annotated[Union[RawCell, FilterCell], Field(discriminator="part")]


class Summary(_Sent):
    """Mean and standard deviation (ddof 1) over the seeds, and the per-seed values."""

    mean: float
    std: Optional[float] = Field(description="Null with one seed.")
    per_seed: list[float]


class Comparison(_Sent):
    """A paired difference over seeds with its Student-t interval."""

    mean: Optional[float]
    std: Optional[float]
    interval: Optional[list[float]] = Field(min_length=2, max_length=2, description="Null with one seed.")
    confidence: float
    seeds: int
    verdict: Verdict = Field(description="lower / higher: the interval lies below / above zero.")


class DigitsVariant(_Sent):
    """One filter shape over the seeds."""

    filter_shape: list[int] = Field(min_length=2, max_length=2)
    patches: int
    n_filters: list[int] = Field(description="Learned filters used, per seed.")
    rmse_one_filter: Summary
    rmse_all_filters: Summary
    rmse_random_one_filter: Summary
    rmse_random_all_filters: Summary
    one_minus_raw: Comparison
    one_minus_random: Comparison
    all_minus_raw: Comparison
    all_minus_random: Comparison
    filters: list[list[list[float]]] = Field(
        description="The first seed's learned filters (unit norm; softplus: as learned).")


class PaperNumbers(_Sent):
    """The paper's Table 1 (MNIST)."""

    raw: float
    filter: float
    dataset: str


class RotatedDigitsResult(_Sent):
    """Table 1 over several seeds: means, spreads, paired intervals and the verdicts they support."""

    kind: Literal["rotated_digits"]
    spec: RotatedDigitsSpec
    activation: ActivationName = Field("relu", description="The activation of the filters and the features.")
    seed: int
    seeds: list[int]
    rmse_raw: float = Field(description="Mean test RMSE on pixels (degrees).")
    rmse_raw_std: Optional[float]
    rmse_filter: float = Field(description="Mean test RMSE with one learned filter (first shape).")
    rmse_filter_std: Optional[float]
    rmse_random: float = Field(description="Mean test RMSE with one random filter of the same norm.")
    rmse_random_std: Optional[float]
    learned_minus_raw: Comparison
    learned_minus_random: Comparison
    filter_helps: bool = Field(description="The learned - raw interval lies below zero.")
    filter_beats_random: bool = Field(description="The learned - random interval lies below zero.")
    verdict: str
    filter: Optional[list[list[float]]] = Field(description="The first seed's first learned filter (unit norm; "
                                                            "softplus: the norm it was learned with).")
    filter_shape: list[int]
    rmse_raw_per_seed: list[float]
    alpha_raw: list[float]
    samples: Samples
    images: int
    source: str
    variants: list[DigitsVariant]
    cells: list[DigitsCell]
    paper: PaperNumbers
    time_s: float
    cell_time_s: float


ExperimentResult = Annotated[Union[PhaseTransitionResult, RotatedDigitsResult], Field(discriminator="kind")]
