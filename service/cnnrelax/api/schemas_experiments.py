"""The experiment request, spec and result bodies of the HTTP API, typed per kind and discriminated by ``kind``.

Requests (:data:`ExperimentRequest`) carry the defaults of :mod:`cnnrelax.experiments` (the constants are
imported, not repeated). A job's normalised spec (:data:`ExperimentSpec`) and its result
(:data:`ExperimentResult`) declare every member the experiment sends; building one from a stored result with
a member it does not declare is an error, so nothing reaches the wire undeclared.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union, cast

from pydantic import BaseModel, ConfigDict, Field

from ..activations import DEFAULT_NEGATIVE_SLOPE, ActivationName
from ..experiments import phase_transition as pt
from ..experiments import rotated_digits as rd

MAX_SEED = 2**63 - 1
Method = Literal["relaxation", "gradient_descent", "pseudo_inverse"]
Distribution = Literal["gaussian", "rademacher", "laplace"]
Verdict = Literal["lower", "higher", "inconclusive"]
GridD = Annotated[int, Field(ge=1, le=pt.MAX_D)]
GridN = Annotated[int, Field(ge=1, le=pt.MAX_N)]
Side = Annotated[int, Field(ge=1)]
Penalty = Annotated[float, Field(gt=0)]


class _Strict(BaseModel):
    """Unknown members are an error (a typo must not be silently ignored); numbers must be finite."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class _Sent(BaseModel):
    """What the service sends: every member declared (``additionalProperties: false``)."""

    model_config = ConfigDict(extra="forbid")


# -------------------------------------------------------------------------------------------------
# requests and normalised specs
# -------------------------------------------------------------------------------------------------

class PhaseTransitionRequest(_Strict):
    """Paper Fig. 1: recovery of a planted filter over a grid of `(d, n)`, per method (defaults filled in)."""

    kind: Literal["phase_transition"]
    k: int = Field(1, ge=1, le=pt.MAX_K, description="Non-overlapping patches; every d must be divisible by k.")
    d: list[GridD] = Field(list(pt.DEFAULT_D), min_length=1, max_length=pt.MAX_GRID, description="Row lengths.")
    n: list[GridN] = Field(list(pt.DEFAULT_N), min_length=1, max_length=pt.MAX_GRID, description="Sample counts.")
    repetitions: int = Field(pt.DEFAULT_REPETITIONS, ge=1, le=pt.MAX_REPETITIONS,
                             description="Planted problems per cell (the paper: 100).")
    methods: list[Method] = Field(cast(list[Method], list(pt.DEFAULT_METHODS)), min_length=1,
                                  description="Methods compared.")
    trials: int = Field(pt.DEFAULT_TRIALS, ge=1, le=pt.MAX_TRIALS,
                        description="Relaxation directions / gradient-descent restarts per repetition.")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Seed of the whole sweep.")
    relaxation: Literal["lp", "qp"] = Field("lp", description="The relaxation solved.")
    beta: float = Field(pt.DEFAULT_BETA, gt=0, description="The QP's beta (relaxation 'qp' only).")
    gd_iterations: int = Field(pt.DEFAULT_GD_ITERATIONS, ge=1, le=pt.MAX_GD_ITERATIONS,
                               description="Gradient-descent steps per restart at most.")
    gd_step: Optional[float] = Field(None, gt=0, description="Gradient-descent step; null: 1 / Lipschitz bound "
                                     "(squared_relu, softplus: an Armijo line search starting there).")
    gd_tol: float = Field(pt.DEFAULT_GD_TOL, gt=0, description="Relative loss at which a descent has converged.")
    recovery_tol: float = Field(1e-4, gt=0, description="Relative error that counts as recovery (every method).")
    distribution: Distribution = Field("gaussian", description="Distribution of the entries of X.")
    polish: bool = Field(True, description="Report both methods' filters polished by least squares on their "
                                           "activation pattern (the unpolished figures are reported too).")
    activation: ActivationName = Field(
        "relu", description="The hidden layer's activation: the planted labels are drawn with it and every method "
                            "fits it; for 'absolute' recovery is judged up to sign (w* and -w* fit alike).")
    negative_slope: float = Field(DEFAULT_NEGATIVE_SLOPE, gt=0, lt=1,
                                  description="leaky_relu's slope for negative inputs (ignored by the others).")


class RotatedDigitsRequest(_Strict):
    """Paper Table 1: predict rotation angles by ridge on pixels, with and without learned ReLU features."""

    kind: Literal["rotated_digits"]
    seed: int = Field(0, ge=0, le=MAX_SEED, description="First replicate seed.")
    seeds: int = Field(rd.DEFAULT_SEEDS, ge=1, le=rd.MAX_SEEDS,
                       description="Replicate seeds seed, seed+1, ...: each redraws rotations, split, relaxation and "
                                   "random filters.")
    angles_per_image: int = Field(rd.DEFAULT_ANGLES_PER_IMAGE, ge=1, le=64, description="Rotated copies per image.")
    angle_range: float = Field(rd.DEFAULT_ANGLE_RANGE, gt=0, description="Angles uniform in [-range, range] degrees.")
    filter_shapes: Optional[list[Annotated[list[Side], Field(min_length=2, max_length=2)]]] = Field(
        None, min_length=1, description="[p, q] filter shapes; null: 4x4, 3x3 and 5x5 where they fit.")
    filters: int = Field(rd.DEFAULT_FILTERS, ge=1, le=rd.MAX_FILTERS, description="Relaxation trials per shape.")
    beta: float = Field(rd.DEFAULT_BETA, gt=0, description="The QP's beta (dimensionless).")
    max_images: Optional[int] = Field(None, ge=10, description="Use a seeded subset of this many images.")
    fit_samples: int = Field(rd.DEFAULT_FIT_SAMPLES, ge=10, le=rd.MAX_FIT_SAMPLES,
                             description="Training samples the relaxation is fitted on (a seeded subset).")
    train_fraction: float = Field(rd.DEFAULT_TRAIN_FRACTION, gt=0, lt=1, description="Images in the training split.")
    validation_fraction: float = Field(rd.DEFAULT_VALIDATION_FRACTION, gt=0, lt=1,
                                       description="Images in the validation split (the rest is the test split).")
    alphas: Optional[list[Penalty]] = Field(None, min_length=1, description="Ridge penalties tried; null: 1e-4..1e6.")
    images: Optional[list[list[list[float]]]] = Field(
        None, description="Your own images, N x H x W (N >= 10, H * W <= 4096); null: scikit-learn's 8x8 digits.")
    angles: Optional[list[float]] = Field(None, description="One angle per image: then nothing is rotated.")


ExperimentRequest = Annotated[Union[PhaseTransitionRequest, RotatedDigitsRequest], Field(discriminator="kind")]


class ImagesShape(_Sent):
    """Inline images are not echoed back: their shape stands for them."""

    shape: list[int] = Field(min_length=3, max_length=3, description="[N, H, W].")


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


class PhaseTransitionSpec(PhaseTransitionRequest):
    """A phase-transition spec as normalised by the server (every default filled in)."""


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
    """One seed and filter shape: learned filters, and as many random ones, all at unit norm."""

    seed: int
    part: Literal["filter"]
    filter_shape: list[int] = Field(min_length=2, max_length=2)
    patches: int = Field(description="Stride-1 patches per image.")
    fit_samples: int
    statuses: list[str] = Field(description="Each relaxation trial's status.")
    filter_norms: list[Optional[float]] = Field(description="Each trial's filter norm as solved (before unit norm).")
    n_filters: int = Field(description="Learned filters used (trials with a non-zero filter).")
    filters: list[list[list[float]]] = Field(description="The learned filters, unit norm, p x q.")
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
    filters: list[list[list[float]]] = Field(description="The first seed's learned filters (unit norm).")


class PaperNumbers(_Sent):
    """The paper's Table 1 (MNIST)."""

    raw: float
    filter: float
    dataset: str


class RotatedDigitsResult(_Sent):
    """Table 1 over several seeds: means, spreads, paired intervals and the verdicts they support."""

    kind: Literal["rotated_digits"]
    spec: RotatedDigitsSpec
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
    filter: Optional[list[list[float]]] = Field(description="The first seed's first learned filter (unit norm).")
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
