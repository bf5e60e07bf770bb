"""The typed spec of each experiment kind: its parameters, their defaults and their checks, defined once.

An experiment job *is* one of these (:data:`ExperimentSpec`, discriminated by ``kind``). The API's request
models are these classes (:class:`PhaseTransitionSpec` as it is; :class:`RotatedDigitsRequest`, the same
fields less what only an in-process run may name), so the published schema states their constraints.

Their life: the API (or the CLI, or a test) builds one from a request (:func:`parse_experiment_spec`, or
:meth:`~pydantic.BaseModel.model_validate` of the kind's class), :func:`cnnrelax.specs.price_experiment`
prices it from its shapes, the store keeps :meth:`~pydantic.BaseModel.model_dump_json` of it, and the worker
reads it back once (:func:`cnnrelax.jobs.load_spec`) and hands the object to
:func:`cnnrelax.experiments.run_experiment`. A spec stored as a normalised dict before these types existed
has the same members and validates to the same spec.

A check that one field decides is a ``Field`` constraint (pydantic's message names the member); a check that
needs several fields (or the images' shape) raises :class:`~cnnrelax.errors.InvalidParameterError` naming the
parameter, which pydantic carries in its error (:func:`invalid_parameter` takes it back out).
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Annotated, Any, Literal, Optional, Union, cast, get_args

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from ..core.activations import DEFAULT_NEGATIVE_SLOPE, ActivationName
from ..core.baselines import GD_ITERATIONS
from ..core.tolerances import DEFAULT_RECOVERY_TOL, GD_TOL
from ..errors import InvalidParameterError
from ..validation import MAX_SEED

__all__ = [
    "EXPERIMENT_KINDS", "ExperimentSpec", "PhaseTransitionSpec", "RotatedDigitsRequest", "RotatedDigitsSpec",
    "invalid_parameter", "parse_experiment_spec",
]

Method = Literal["relaxation", "gradient_descent", "pseudo_inverse"]
Distribution = Literal["gaussian", "rademacher", "laplace"]

# -- phase transition: defaults and limits ----------------------------------------------------------------
METHODS: tuple[str, ...] = ("relaxation", "gradient_descent", "pseudo_inverse")
DEFAULT_D: tuple[int, ...] = (10, 20, 30, 40, 50, 60, 70, 80)
DEFAULT_N: tuple[int, ...] = (40, 80, 160, 320, 640, 1280, 2560, 5120)
DEFAULT_METHODS: tuple[str, ...] = ("relaxation", "gradient_descent")
DEFAULT_REPETITIONS = 20
DEFAULT_TRIALS = 1
DEFAULT_BETA = 1e-4
DEFAULT_GD_ITERATIONS = GD_ITERATIONS
DEFAULT_GD_TOL = GD_TOL
MAX_CELLS = 5000
MAX_N = 200_000
MAX_D = 2_000
MAX_K = 64
MAX_GRID = 64
MAX_REPETITIONS = 10_000
MAX_TRIALS = 1_000
MAX_GD_ITERATIONS = 1_000_000

# -- rotated digits: defaults and limits ------------------------------------------------------------------
DEFAULT_FILTER_SHAPES: tuple[tuple[int, int], ...] = ((4, 4), (3, 3), (5, 5))
DEFAULT_ALPHAS: tuple[float, ...] = tuple(float(a) for a in np.logspace(-4, 6, 11))
DEFAULT_SEEDS = 5
DEFAULT_ANGLES_PER_IMAGE = 2
DEFAULT_ANGLE_RANGE = 45.0
DEFAULT_FILTERS = 2
DEFAULT_DIGITS_BETA = 0.1
DEFAULT_FIT_SAMPLES = 600
DEFAULT_TRAIN_FRACTION = 0.6
DEFAULT_VALIDATION_FRACTION = 0.2
MAX_SEEDS = 100
MAX_FILTERS = 64
MAX_FIT_SAMPLES = 100_000
MAX_ANGLES_PER_IMAGE = 64
MAX_PIXELS = 64 * 64
MIN_IMAGES = 10
#: Where the default images come from, and their shape (``tests/test_experiments.py`` checks it is sklearn's).
DIGITS_SOURCE = "sklearn.datasets.load_digits"
DIGITS_SHAPE: tuple[int, int] = (8, 8)
#: How many images scikit-learn's digits hold (``tests/test_experiments.py`` checks it).
DIGITS_COUNT = 1797
DATASET_ID_PATTERN = r"^[0-9a-f]{64}$"

GridD = Annotated[int, Field(ge=1, le=MAX_D)]
GridN = Annotated[int, Field(ge=1, le=MAX_N)]
Side = Annotated[int, Field(ge=1)]
Penalty = Annotated[float, Field(gt=0)]
FilterShape = Annotated[list[Side], Field(min_length=2, max_length=2)]


class _Strict(BaseModel):
    """Unknown members are an error (a typo must not be silently ignored); numbers must be finite; a boolean is not
    a number (``"seed": false`` is refused, not read as 0)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_booleans(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name in _numeric_members(cls):
                value = data.get(name)
                if _holds_boolean(value):
                    raise InvalidParameterError(name, f"{name}={value!r} holds a boolean where numbers go; give "
                                                      f"{name} as numbers (true and false are not 1 and 0 here).")
        return data


def _mentions_number(annotation: Any) -> bool:
    """Whether a field's type is, or holds, ``int`` or ``float`` (``Optional``, lists, tuples, ``Annotated``)."""
    if annotation in (int, float):
        return True
    return any(_mentions_number(arg) for arg in get_args(annotation) if not isinstance(arg, (str, int, float)))


@lru_cache(maxsize=None)
def _numeric_members(model: type[BaseModel]) -> tuple[str, ...]:
    return tuple(name for name, info in model.model_fields.items() if _mentions_number(info.annotation))


def _holds_boolean(value: Any) -> bool:
    """A boolean, or a (nested) list or tuple holding one; arrays (already numbers) are not looked into."""
    if isinstance(value, bool):
        return True
    if isinstance(value, (list, tuple)):
        return any(_holds_boolean(item) for item in value)
    return False


# -------------------------------------------------------------------------------------------------
# phase transition
# -------------------------------------------------------------------------------------------------

class PhaseTransitionSpec(_Strict):
    """A phase-transition spec as normalised by the server (every default filled in)."""

    kind: Literal["phase_transition"]
    k: int = Field(1, ge=1, le=MAX_K, description="Non-overlapping patches; every d must be divisible by k.")
    d: list[GridD] = Field(list(DEFAULT_D), min_length=1, max_length=MAX_GRID, description="Row lengths.")
    n: list[GridN] = Field(list(DEFAULT_N), min_length=1, max_length=MAX_GRID, description="Sample counts.")
    repetitions: int = Field(DEFAULT_REPETITIONS, ge=1, le=MAX_REPETITIONS,
                             description="Planted problems per cell (the paper: 100).")
    methods: list[Method] = Field(cast(list[Method], list(DEFAULT_METHODS)), min_length=1,
                                  description="Methods compared.")
    trials: int = Field(DEFAULT_TRIALS, ge=1, le=MAX_TRIALS,
                        description="Relaxation directions / gradient-descent restarts per repetition.")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Seed of the whole sweep.")
    relaxation: Literal["lp", "qp"] = Field("lp", description="The relaxation solved.")
    beta: float = Field(DEFAULT_BETA, gt=0, description="The QP's beta (relaxation 'qp' only).")
    gd_iterations: int = Field(DEFAULT_GD_ITERATIONS, ge=1, le=MAX_GD_ITERATIONS,
                               description="Gradient-descent steps per restart at most.")
    gd_step: Optional[float] = Field(None, gt=0, description="Gradient-descent step; null: 1 / Lipschitz bound "
                                     "(squared_relu, softplus: an Armijo line search starting there).")
    gd_tol: float = Field(DEFAULT_GD_TOL, gt=0, description="Relative loss at which a descent has converged.")
    recovery_tol: float = Field(DEFAULT_RECOVERY_TOL, gt=0,
                                description="Relative error that counts as recovery (every method).")
    distribution: Distribution = Field("gaussian", description="Distribution of the entries of X.")
    polish: bool = Field(True, strict=True,
                         description="Report both methods' filters polished by least squares on their activation "
                                     "pattern (the unpolished figures are reported too).")
    activation: ActivationName = Field(
        "relu", description="The hidden layer's activation: the planted labels are drawn with it and every method "
                            "fits it; for 'absolute' recovery is judged up to sign (w* and -w* fit alike).")
    negative_slope: float = Field(DEFAULT_NEGATIVE_SLOPE, gt=0, lt=1,
                                  description="leaky_relu's slope for negative inputs (ignored by the others).")

    @field_validator("d", "n")
    @classmethod
    def _grid(cls, values: list[int]) -> list[int]:
        """A grid is its distinct values, in increasing order."""
        return sorted(set(values))

    @field_validator("methods")
    @classmethod
    def _methods(cls, values: list[Method]) -> list[Method]:
        """Methods are distinct, in :data:`METHODS`' order."""
        return sorted(set(values), key=METHODS.index)

    @model_validator(mode="after")
    def _consistent(self) -> PhaseTransitionSpec:
        """The checks that need several members."""
        bad = [v for v in self.d if v % self.k]
        if bad:
            raise InvalidParameterError(
                "d", f"Every d must be divisible by k={self.k} (non-overlapping patches, d = k*m); {bad} are not.")
        if "pseudo_inverse" in self.methods and self.k != 1:
            raise InvalidParameterError("methods", f"The pseudo_inverse baseline needs k = 1, got k={self.k}.")
        if "pseudo_inverse" in self.methods and self.activation == "absolute":
            raise InvalidParameterError("methods", "The pseudo_inverse baseline cannot invert the activation "
                                                   "absolute (a label |u| does not say the sign of u); drop it "
                                                   "from methods.")
        total = len(self.methods) * len(self.d) * len(self.n)
        if total > MAX_CELLS:
            raise InvalidParameterError("d", f"The grid has {total} cells (methods x d x n); at most {MAX_CELLS} "
                                             "are allowed.")
        return self

    def public(self) -> dict[str, Any]:
        """The spec as the API shows it (every member)."""
        out: dict[str, Any] = self.model_dump(mode="json")
        return out


# -------------------------------------------------------------------------------------------------
# rotated digits
# -------------------------------------------------------------------------------------------------

def _as_array(value: Any) -> Any:
    """Inline numbers (nested lists, or an array) as a float64 array; ``None`` stays."""
    if value is None or isinstance(value, np.ndarray) and value.dtype == np.float64:
        return value
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("must be a numeric array") from None


def _as_list(value: Any) -> Any:
    return None if value is None else np.asarray(value).tolist()


#: Inline images or angles as the worker holds them: a float64 array (nested lists in JSON).
ArrayField = Annotated[np.ndarray, PlainValidator(_as_array), PlainSerializer(_as_list, when_used="json")]


class _DigitsFields(_Strict):
    """The members a caller of rotated digits sets, with their defaults and single-member checks."""

    kind: Literal["rotated_digits"]
    seed: int = Field(0, ge=0, le=MAX_SEED, description="First replicate seed.")
    seeds: int = Field(DEFAULT_SEEDS, ge=1, le=MAX_SEEDS,
                       description="Replicate seeds seed, seed+1, ...: each redraws rotations, split, relaxation and "
                                   "random filters.")
    angles_per_image: int = Field(DEFAULT_ANGLES_PER_IMAGE, ge=1, le=MAX_ANGLES_PER_IMAGE,
                                  description="Rotated copies per image.")
    angle_range: float = Field(DEFAULT_ANGLE_RANGE, gt=0, description="Angles uniform in [-range, range] degrees.")
    filter_shapes: Optional[list[FilterShape]] = Field(
        None, min_length=1, description="[p, q] filter shapes; null: 4x4, 3x3 and 5x5 where they fit.")
    filters: int = Field(DEFAULT_FILTERS, ge=1, le=MAX_FILTERS, description="Relaxation trials per shape.")
    beta: float = Field(DEFAULT_DIGITS_BETA, gt=0, description="The QP's beta (dimensionless).")
    max_images: Optional[int] = Field(None, ge=MIN_IMAGES, description="Use a seeded subset of this many images.")
    fit_samples: int = Field(DEFAULT_FIT_SAMPLES, ge=10, le=MAX_FIT_SAMPLES,
                             description="Training samples the relaxation is fitted on (a seeded subset).")
    train_fraction: float = Field(DEFAULT_TRAIN_FRACTION, gt=0, lt=1, description="Images in the training split.")
    validation_fraction: float = Field(DEFAULT_VALIDATION_FRACTION, gt=0, lt=1,
                                       description="Images in the validation split (the rest is the test split).")
    alphas: Optional[list[Penalty]] = Field(None, min_length=1, description="Ridge penalties tried; null: 1e-4..1e6.")
    activation: ActivationName = Field(
        "relu", description="The hidden layer's activation sigma: the relaxation learns the filters with it, and the "
                            "features added to the pixels are sigma(X_ij w) for the learned and the random filters. "
                            "The relaxation fits the angles shifted to y - min(y) >= 0 (relu, absolute, "
                            "squared_relu), as they are (leaky_relu: its range is every real), or mapped to "
                            "P log 2 (1 + (y - min(y)) / (max(y) - min(y))), P the patches per image (softplus: "
                            "its sums exceed 0, and it is not homogeneous, so a change of units changes its model; "
                            "these fixed units map the smallest angle to the zero filter's prediction and the "
                            "range to as much again, whatever the angles' unit); the homogeneous activations' "
                            "filters enter the ridge at unit norm, softplus's at their learned norm (and the random "
                            "filters at the learned ones' norms).")
    negative_slope: float = Field(DEFAULT_NEGATIVE_SLOPE, gt=0, lt=1,
                                  description="leaky_relu's slope for negative inputs (ignored by the others).")
    images_dataset_id: Optional[str] = Field(
        None, pattern=DATASET_ID_PATTERN,
        description="A dataset uploaded as a .npz with `images` (N x H x W) and optional `angles` (POST "
                    "/v1/datasets): the images of large sets (MNIST), instead of inline `images`.")


class RotatedDigitsRequest(_DigitsFields):
    """Paper Table 1: predict rotation angles by ridge on pixels, with and without learned ReLU (or other
    activation) features."""

    images: Optional[list[list[list[float]]]] = Field(
        None, description="Your own images, N x H x W (N >= 10, H * W <= 4096); null: scikit-learn's 8x8 digits.")
    angles: Optional[list[float]] = Field(None, description="One angle per image: then nothing is rotated.")


def _npz_images(path: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """The ``images`` (and ``angles``, if any) of a ``.npz`` file named by ``images_path``."""
    if not isinstance(path, (str, os.PathLike)) or not os.path.isfile(path):
        raise InvalidParameterError("images_path", f"images_path must name an existing .npz file, got {path!r}.")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "images" not in archive.files:
                raise InvalidParameterError(
                    "images_path", f"{path} has no 'images' array (it holds {', '.join(archive.files) or 'nothing'}).")
            images = np.array(archive["images"], dtype=np.float64)
            angles = np.array(archive["angles"], dtype=np.float64) if "angles" in archive.files else None
    except InvalidParameterError:
        raise
    except Exception as exc:  # noqa: BLE001 - a corrupt or non-npz file is the caller's parameter error
        raise InvalidParameterError("images_path", f"{path} is not a readable .npz file ({exc}).") from None
    return images, angles


def check_images(images: Any, angles: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Inline (or read) images and angles, checked: ``(N, H, W)`` with ``N >= 10``, at most :data:`MAX_PIXELS`
    pixels, finite, and one finite angle per image.

    Parameters
    ----------
    images : array-like
        ``N x H x W``.
    angles : array-like, optional
        One per image.

    Returns
    -------
    tuple
        The images and the angles (or ``None``) as float64 arrays.
    """
    try:
        arr = np.asarray(images, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidParameterError("images", "images must be a numeric array of shape (N, H, W).") from None
    if arr.ndim != 3 or arr.shape[0] < MIN_IMAGES:
        raise InvalidParameterError("images", f"images must have shape (N, H, W) with N >= {MIN_IMAGES}, got "
                                              f"{arr.shape}.")
    if arr.shape[1] * arr.shape[2] > MAX_PIXELS:
        raise InvalidParameterError("images", f"images of {arr.shape[1]}x{arr.shape[2]} pixels exceed {MAX_PIXELS} "
                                              "pixels.")
    if not np.isfinite(arr).all():
        raise InvalidParameterError("images", "images contain NaN or infinite values.")
    if angles is None:
        return arr, None
    try:
        given = np.asarray(angles, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InvalidParameterError("angles", "angles must be a numeric vector, one per image.") from None
    if given.shape[0] != arr.shape[0] or not np.isfinite(given).all():
        raise InvalidParameterError("angles", f"angles must hold {arr.shape[0]} finite numbers (one per image), "
                                              f"got {given.shape[0]}.")
    return arr, given


class RotatedDigitsSpec(_DigitsFields):
    """A rotated-digits job: the request's members with every default filled in, the inline images as arrays,
    and what is derived from the images (``source``, ``image_shape``, ``angles_given``).

    ``images_path`` (a ``.npz`` file with ``images`` and optional ``angles``) is for in-process runs only: the
    HTTP request (:class:`RotatedDigitsRequest`) has no such member. A normalised spec validates to itself.
    """

    images: Optional[ArrayField] = None
    angles: Optional[ArrayField] = None
    images_path: Optional[str] = None
    source: str = DIGITS_SOURCE
    image_shape: tuple[int, int] = DIGITS_SHAPE
    image_count: int = DIGITS_COUNT
    angles_given: bool = False

    @model_validator(mode="before")
    @classmethod
    def _derive(cls, data: Any) -> Any:
        """Check the images from their shape, fill the defaults that depend on it, derive the rest."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        images, angles, path = data.get("images"), data.get("angles"), data.get("images_path")
        stored = data.get("images_dataset_id")
        if stored is not None and (images is not None or path is not None or angles is not None):
            raise InvalidParameterError("images_dataset_id", "Give the images once: images_dataset_id, or inline "
                                                             "images (with angles), not both.")
        if stored is not None:
            # The dataset's shape comes from its record (the API resolves it, :meth:`with_dataset`); until then the
            # spec is unresolved: nothing that depends on the images is filled in or checked.
            if data.get("image_shape") is None:
                return {**data, "source": f"dataset {stored}", "image_shape": (0, 0), "image_count": 0}
            data.setdefault("source", f"dataset {stored}")
            source, shape = data["source"], tuple(data["image_shape"])
            count = int(data.get("image_count") or 0)
            given = bool(data.get("angles_given"))
        elif images is not None:
            images, angles = check_images(images, angles)
            data["images"], data["angles"], source = images, angles, "user images"
            shape, count, given = images.shape[1:], images.shape[0], angles is not None
        elif path is not None:
            read, read_angles = _npz_images(path)
            _, checked = check_images(read, read_angles if angles is None else angles)
            angles = checked
            data["images_path"], source, shape = str(path), str(path), read.shape[1:]
            count, given = read.shape[0], angles is not None
        else:
            if angles is not None:
                raise InvalidParameterError("angles", "angles need images (one angle per image): send images too, "
                                                      "or leave angles out.")
            source, shape, count, given = DIGITS_SOURCE, DIGITS_SHAPE, DIGITS_COUNT, False
        H, W = int(shape[0]), int(shape[1])
        if data.get("filter_shapes") is None:
            data["filter_shapes"] = ([list(s) for s in DEFAULT_FILTER_SHAPES if s[0] <= H and s[1] <= W]
                                     or [[min(H, 2), min(W, 2)]])
        if data.get("alphas") is None:
            data["alphas"] = list(DEFAULT_ALPHAS)
        data.update(source=source, image_shape=(H, W), image_count=int(count), angles_given=given)
        return data

    @model_validator(mode="after")
    def _consistent(self) -> RotatedDigitsSpec:
        """The checks that need several members."""
        if not self.resolved:
            return self
        H, W = self.image_shape
        shapes: list[list[int]] = []
        for p, q in self.filter_shapes or []:
            if p > H or q > W:
                raise InvalidParameterError("filter_shapes", f"filter {p}x{q} does not fit in {H}x{W} images.")
            if [p, q] not in shapes:
                shapes.append([p, q])
        self.filter_shapes = shapes
        if self.train_fraction + self.validation_fraction >= 1.0:
            raise InvalidParameterError(
                "train_fraction", f"train_fraction + validation_fraction must leave a test split, got "
                                  f"{self.train_fraction} + {self.validation_fraction}.")
        return self

    # -- what the experiment reads ------------------------------------------------------------------------
    @property
    def resolved(self) -> bool:
        """False for a spec naming ``images_dataset_id`` whose dataset's shape is not filled in yet."""
        return self.images_dataset_id is None or self.image_count > 0

    def with_dataset(self, image_shape: tuple[int, int], image_count: int, angles_given: bool) -> RotatedDigitsSpec:
        """This spec with its stored images' shape, count and angles filled in, checked as a whole again.

        Parameters
        ----------
        image_shape : pair of int
            ``(H, W)`` of the dataset's images.
        image_count : int
            ``N``.
        angles_given : bool
            The dataset holds one angle per image.

        Returns
        -------
        RotatedDigitsSpec
        """
        if image_count < MIN_IMAGES or image_shape[0] * image_shape[1] > MAX_PIXELS:
            raise InvalidParameterError("images_dataset_id", f"The dataset holds {image_count} images of "
                                                             f"{image_shape[0]}x{image_shape[1]} pixels; rotated "
                                                             "digits "
                                                             f"take at least {MIN_IMAGES} images of at most "
                                                             f"{MAX_PIXELS} pixels.")
        members = self.model_dump(exclude={"source", "image_shape", "image_count", "angles_given", "images", "angles"})
        resolved = parse_experiment_spec({**members, "image_shape": list(image_shape), "image_count": image_count,
                                          "angles_given": angles_given})
        assert isinstance(resolved, RotatedDigitsSpec)  # its kind is this spec's
        return resolved

    def with_images(self, images: np.ndarray, angles: np.ndarray | None) -> RotatedDigitsSpec:
        """This spec holding its stored dataset's arrays (on the worker; nothing is checked again)."""
        return self.model_copy(update={"images": images, "angles": angles})

    @property
    def shapes(self) -> list[tuple[int, int]]:
        """The filter shapes (distinct, in the given order)."""
        return [(int(s[0]), int(s[1])) for s in self.filter_shapes or []]

    @property
    def penalties(self) -> list[float]:
        """The ridge penalties tried."""
        return [float(a) for a in self.alphas or DEFAULT_ALPHAS]

    def public(self) -> dict[str, Any]:
        """The spec as the API shows it: inline images replaced by ``{"shape": [N, H, W]}``, angles left out."""
        out: dict[str, Any] = self.model_dump(mode="json", exclude={"images", "angles"})
        inline = self.images is not None and self.images_dataset_id is None
        out["images"] = {"shape": [int(v) for v in self.images.shape]} if inline and self.images is not None else None
        return out


# -------------------------------------------------------------------------------------------------
# the union, and parsing with errors that name the parameter
# -------------------------------------------------------------------------------------------------

#: An experiment job's typed spec, by ``kind``.
ExperimentSpec = Annotated[Union[PhaseTransitionSpec, RotatedDigitsSpec], Field(discriminator="kind")]
#: The kinds (the union's tags), in order.
EXPERIMENT_KINDS: tuple[str, ...] = ("phase_transition", "rotated_digits")
_ADAPTER: TypeAdapter[PhaseTransitionSpec | RotatedDigitsSpec] = TypeAdapter(ExperimentSpec)


def invalid_parameter(exc: ValidationError) -> InvalidParameterError:
    """Pydantic's first error as the parameter error it stands for.

    A check that raised :class:`~cnnrelax.errors.InvalidParameterError` inside a validator is returned as it
    was raised; another error names its member (the union's tag left out), the value and pydantic's reason.

    Parameters
    ----------
    exc : ValidationError
        Raised by validating an experiment spec.

    Returns
    -------
    InvalidParameterError
        Naming the parameter.
    """
    errors = exc.errors(include_url=False)
    for error in errors:
        raised = (error.get("ctx") or {}).get("error")
        if isinstance(raised, InvalidParameterError):
            return raised
    first = errors[0]
    loc = [str(part) for part in first.get("loc", ())]
    if first.get("type") in ("union_tag_invalid", "union_tag_not_found"):
        return InvalidParameterError("kind", f"kind must be one of {', '.join(EXPERIMENT_KINDS)}, got "
                                             f"{(first.get('input') or {}).get('kind')!r}.")
    kind = "experiment"
    if loc and loc[0] in EXPERIMENT_KINDS:
        kind, loc = loc[0], loc[1:]
    if not loc:
        return InvalidParameterError("kind", f"An experiment spec must be a JSON object with a kind: "
                                             f"{first.get('msg')}.")
    name = loc[0]
    where = ".".join(loc)
    value = first.get("input")
    shown = f"{type(value).__name__} of shape {value.shape}" if isinstance(value, np.ndarray) else repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    reason = str(first.get("msg", "is not valid"))
    if first.get("type") == "extra_forbidden":
        return InvalidParameterError(name, f"Unknown {kind} parameter {name}: remove it (a typo?).")
    return InvalidParameterError(name, f"{where}={shown} is not valid: {reason[0].lower() + reason[1:]}.")


def parse_experiment_spec(data: Any) -> PhaseTransitionSpec | RotatedDigitsSpec:
    """The typed spec of an experiment request (a mapping, or a spec already typed, returned as it is).

    Parameters
    ----------
    data : mapping or spec
        ``kind`` and any of that kind's parameters; a stored normalised spec validates to the same spec.

    Returns
    -------
    PhaseTransitionSpec or RotatedDigitsSpec
        With every default filled in.

    Raises
    ------
    InvalidParameterError
        Naming the parameter, its value and the remedy.
    """
    if isinstance(data, (PhaseTransitionSpec, RotatedDigitsSpec)):
        return data
    if not isinstance(data, dict):
        if hasattr(data, "keys"):
            data = dict(data)
        else:
            raise InvalidParameterError("kind", f"An experiment spec must be a JSON object, got "
                                                f"{type(data).__name__}.")
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise invalid_parameter(exc) from None


def load_experiment_spec(text: str | bytes) -> PhaseTransitionSpec | RotatedDigitsSpec:
    """A stored spec's JSON text (this type's, or a normalised dict stored before it) as its typed spec.

    Parameters
    ----------
    text : str or bytes
        The stored JSON.

    Returns
    -------
    PhaseTransitionSpec or RotatedDigitsSpec
    """
    try:
        return _ADAPTER.validate_json(text)
    except ValidationError as exc:
        raise invalid_parameter(exc) from None
