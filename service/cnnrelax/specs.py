"""The typed spec of a solve job: built once at the boundary, checked from shapes, stored, run by a worker.

A :class:`SolveSpec` is what a solve job *is*: its problem source (a stored dataset by ``dataset_id``, or
a planted model; inline data becomes a dataset at the boundary), its patching and every option with its
default filled in. Defaults are the core's (:class:`~cnnrelax.core.trials.SolveOptions`,
:class:`~cnnrelax.core.planted.PlantedSpec`), referenced here, not repeated.

Its life: the API (or the CLI) builds it from the request; :meth:`SolveSpec.check` prices and checks it
against the server's :class:`Limits` from shapes alone (the dataset's stored ``n``, ``d`` and smallest
label, the planted spec), so the API never builds the problem nor decodes a dataset; the store keeps
:meth:`~pydantic.BaseModel.model_dump_json` of it; the worker reads it back with
:meth:`~pydantic.BaseModel.model_validate_json` and :func:`cnnrelax.jobs.run_solve_job` builds the problem
once (:meth:`SolveSpec.build_problem`) and solves it.

An experiment job's typed spec is defined beside its experiment (:mod:`cnnrelax.experiments.specs`) and
takes the same path; :func:`price_experiment` prices it from its shapes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, Optional, cast

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .core.activations import (
    DEFAULT_NEGATIVE_SLOPE,
    Activation,
    ActivationName,
    check_labels,
    label_range_error,
    make_activation,
)
from .core.constraints import FilterConstraints
from .core.options import SolveOptions, SolverSettings
from .core.planted import PlantedSpec, planted_problem
from .core.problem import (
    BlockPatching,
    ConvProblem,
    FloatArray,
    Patching,
    make_patching,
    make_problem,
)
from .core.relaxations import check_relaxation
from .errors import InvalidParameterError
from .experiments.specs import PhaseTransitionSpec, RotatedDigitsSpec
from .validation import MAX_SEED

#: The core's defaults, read once: every default of a solve comes from here.
CORE_DEFAULTS = SolveOptions()
#: A dataset's arrays ``(X, y)``.
Arrays = tuple[FloatArray, FloatArray]
#: The names of :data:`cnnrelax.core.relaxation.REGISTRY`, as a type (``tests/test_specs.py`` checks they agree).
RelaxationName = Literal["lp", "qp", "naive"]
#: The core's default relaxation, as the name type the schemas use.
DEFAULT_RELAXATION = cast(RelaxationName, CORE_DEFAULTS.relaxation)
#: The core's default activation (a planted model's), as the name type the schemas use.
DEFAULT_ACTIVATION = cast(ActivationName, PlantedSpec(n=1, d=1).activation)


class LimitExceeded(InvalidParameterError):
    """A request priced over one of the server's limits (a 422 naming the parameter, the limit and its setting)."""

    def __init__(self, parameter: str, message: str, *, limit: int | float, setting: str) -> None:
        super().__init__(parameter, f"{message} Limit: {limit:g} ({setting}).")
        self.limit = limit
        self.setting = setting


@dataclass(frozen=True)
class Limits:
    """The sizes a server accepts (from its settings): see :meth:`SolveSpec.check` and :func:`price_experiment`."""

    max_matrix_entries: int = 20_000_000
    max_patch_entries: int = 20_000_000
    max_trials: int = 1000


#: No limits: the CLI's in-process solves (the machine is the caller's own).
UNLIMITED = Limits(max_matrix_entries=2**62, max_patch_entries=2**62, max_trials=2**62)


@dataclass(frozen=True)
class ProblemSize:
    """A solve's problem from its shapes: the source, ``n`` samples of length ``d``, ``k`` patches of length ``m``."""

    source: str
    n: int
    d: int
    k: int
    m: int

    @property
    def entries(self) -> int:
        """``n * k * m``, the entries of the patch tensor (8 bytes each)."""
        return self.n * self.k * self.m


@dataclass(frozen=True)
class DataShape:
    """What the boundary knows of a data source without decoding it: ``n``, ``d`` and the smallest label.

    ``labels`` are inline data's labels (already parsed, checked in full); a stored dataset has its smallest
    label ``y_min`` (at ``y_min_index``) in its metadata instead, or ``None`` when it was stored before that
    was recorded: the worker then checks the labels when it builds the problem (the job fails with the
    same sentence).
    """

    n: int
    d: int
    y_min: float | None = None
    y_min_index: int | None = None
    labels: FloatArray | None = None


#: Stated in the schema; enforced by the core, whose message names the value and the remedy.
_ITEMS_AT_LEAST_0: dict[str, Any] = {"anyOf": [{"type": "array", "items": {"type": "number", "minimum": 0}},
                                               {"type": "null"}]}
_ITEMS_AT_LEAST_1: dict[str, Any] = {"anyOf": [{"type": "array", "items": {"type": "integer", "minimum": 1},
                                                "minItems": 2, "maxItems": 2}, {"type": "null"}]}


class SolveOptionsBase(BaseModel):
    """The solve options, defined once: the patching of a data source and every option of the trials, with the
    core's defaults (:class:`~cnnrelax.core.trials.SolveOptions`) and the bounds the service states.

    Inherited by the request schema (:class:`cnnrelax.api.schemas.SolveRequest`, which adds the problem sources
    and the wire form of the constraints) and by the stored spec (:class:`SolveSpec`, which adds the normalised
    source and the core's constraints). The thin client types the same names (``cnnrelax_client.SolveOptions``).
    """

    k: Optional[int] = Field(None, ge=1, description="Patches per row for data sources (d = k*m); default 1.")
    relaxation: RelaxationName = Field(DEFAULT_RELAXATION, description="'lp' (beta -> 0), 'qp' (beta > 0) or "
                                                                       "'naive'.")
    beta: float = Field(CORE_DEFAULTS.beta, ge=0, description="Weight of the random linear term in the QP, "
                        "dimensionless: applied to the data normalised by their scales (X / RMS of the patch "
                        "entries, y / max|y|), so the same beta means the same thing in every unit.")
    trials: int = Field(CORE_DEFAULTS.trials, ge=1, description="Randomized trials (each a seeded direction r).")
    seed: int = Field(CORE_DEFAULTS.seed, ge=0, le=MAX_SEED, description="Seed of the trial directions.")
    w_init: Optional[list[float]] = Field(None, min_length=1, description="A warm start (length m, e.g. a PyTorch "
                                          "filter): polished and certified first; trials run only when it is not "
                                          "certified (with stop_on_certificate).")
    output_weights: Optional[list[float]] = Field(None, description="c_j >= 0, one per patch (default ones).",
                                                  json_schema_extra=_ITEMS_AT_LEAST_0)
    stop_on_certificate: bool = Field(CORE_DEFAULTS.stop_on_certificate, description="Stop at the first trial "
                                      "certified globally optimal (zero loss): fewer trials then run than asked, "
                                      "and the job's progress says how many (done of total).")
    polish: bool = Field(CORE_DEFAULTS.polish, description="Least squares on the activation pattern of each "
                         "trial's filter.")
    patch_size: Optional[int] = Field(None, ge=1, description="1-D patches of this length (with `stride`).")
    stride: Optional[int] = Field(None, ge=1, description="Stride of 1-D or 2-D patches.")
    image_shape: Optional[list[int]] = Field(None, min_length=2, max_length=2, description="[H, W] of 2-D rows.",
                                             json_schema_extra=_ITEMS_AT_LEAST_1)
    filter_shape: Optional[list[int]] = Field(None, min_length=2, max_length=2, description="[p, q] 2-D filter.",
                                              json_schema_extra=_ITEMS_AT_LEAST_1)
    recovery_tol: float = Field(CORE_DEFAULTS.recovery_tol, gt=0, description="Relative error that counts as "
                                "recovery (planted problems).")
    time_limit_s: Optional[float] = Field(None, gt=0, description="Run-time limit (capped by the server's).")
    coverage_samples: int = Field(CORE_DEFAULTS.coverage_samples, ge=0, le=10000, description="Random directions "
                                  "sampled to estimate certificate.coverage (the per-trial success probability at "
                                  "the selected filter); 0 skips the estimate.")
    activation: ActivationName = Field(DEFAULT_ACTIVATION, description="The hidden layer's activation sigma: relu, "
                                       "leaky_relu (labels may be negative), absolute (recovery up to sign), "
                                       "squared_relu or softplus. A planted model's labels are drawn with it.")
    negative_slope: float = Field(DEFAULT_NEGATIVE_SLOPE, gt=0, lt=1, description="leaky_relu's slope for "
                                  "negative inputs, strictly between 0 and 1 (the other activations ignore it).")


class SolveSpec(SolveOptionsBase):
    """A solve job, normalised: one source, the patching, every option with its default.

    Parameters
    ----------
    dataset_id : str, optional
        The stored dataset solved (inline data is stored as a dataset first).
    planted : PlantedSpec, optional
        A planted model, drawn from its seed on the worker.
    k, patch_size, stride, image_shape, filter_shape
        The patching of a data source (blocks of ``k``, strided 1-D patches, or 2-D image patches).
    output_weights : list of float, optional
        ``c_j >= 0``, one per patch (data sources only).
    relaxation, beta, trials, seed, stop_on_certificate, polish, constraints, recovery_tol, coverage_samples
        As :class:`~cnnrelax.core.trials.SolveOptions` (whose defaults these are).
    activation : str
        The hidden layer's activation (:data:`cnnrelax.core.activations.ACTIVATIONS`); a planted model's labels are
        drawn with it.
    negative_slope : float
        Leaky ReLU's slope for negative inputs, in ``(0, 1)`` (the others ignore it).
    w_init : list of float, optional
        A warm start (e.g. a PyTorch filter): polished and certified first; trials run only when it is not
        certified a global minimum (with ``stop_on_certificate``).
    time_limit_s : float, optional
        The caller's run-time limit (the server caps it).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset_id: str | None = None
    planted: PlantedSpec | None = None
    constraints: FilterConstraints = Field(default_factory=FilterConstraints)

    @model_validator(mode="before")
    @classmethod
    def _planted_activation(cls, data: Any) -> Any:
        """A planted model's labels are drawn with the solve's activation: copy it into the planted spec."""
        if isinstance(data, dict) and data.get("planted") is not None:
            same = {"activation": data.get("activation", DEFAULT_ACTIVATION),
                    "negative_slope": data.get("negative_slope", DEFAULT_NEGATIVE_SLOPE)}
            planted = data["planted"]
            if isinstance(planted, PlantedSpec):
                planted = dataclasses.replace(planted, **same)
            elif isinstance(planted, dict):
                planted = {**planted, **same}
            data = {**data, "planted": planted}
        return data

    # -- the problem ----------------------------------------------------------------------------------
    @property
    def source(self) -> Literal["planted", "dataset_id"]:
        """Which source the job reads: ``planted`` or ``dataset_id``."""
        return "planted" if self.planted is not None else "dataset_id"

    def patching(self) -> Patching | None:
        """The patching named by ``patch_size``/``stride``/``image_shape``/``filter_shape`` (else ``None``: blocks)."""
        if self.patch_size is None and self.image_shape is None and self.filter_shape is None:
            if self.stride is not None:
                raise InvalidParameterError("stride", "stride needs patch_size (1-D patches) or image_shape and "
                                                      "filter_shape (2-D patches).")
            return None
        return make_patching(k=self.k, patch_size=self.patch_size, stride=self.stride,
                             image_shape=self.image_shape, filter_shape=self.filter_shape)

    def make_activation(self) -> Activation:
        """The core's activation object (checks the name and ``negative_slope``)."""
        return make_activation(self.activation, self.negative_slope)

    def options(self, time_limit_s: float | None = None) -> SolveOptions:
        """The core's :class:`~cnnrelax.core.trials.SolveOptions`; ``time_limit_s`` caps each LP/QP."""
        return SolveOptions(
            relaxation=self.relaxation, beta=self.beta, trials=self.trials, seed=self.seed,
            stop_on_certificate=self.stop_on_certificate, polish=self.polish, constraints=self.constraints,
            recovery_tol=self.recovery_tol, coverage_samples=self.coverage_samples,
            solver=SolverSettings(time_limit_s=time_limit_s),
        )

    def build_problem(self, arrays: Arrays | None = None) -> tuple[ConvProblem, FloatArray | None]:
        """The core problem (and the planted filter ``w*``, else ``None``); built once, on the worker.

        Parameters
        ----------
        arrays : tuple of ndarray, optional
            ``(X, y)`` of the dataset (``dataset_id`` sources).

        Returns
        -------
        tuple
            The :class:`~cnnrelax.core.problem.ConvProblem` and ``w*`` (planted) or ``None``.
        """
        if self.planted is not None:
            drawn = planted_problem(self.planted, self.patching())
            return drawn.problem, drawn.w_star
        if arrays is None:
            raise InvalidParameterError("dataset_id", "The dataset's arrays were not supplied to the job.")
        patching = self.patching()
        problem = make_problem(arrays[0], arrays[1], patching=patching,
                               k=None if patching is not None else (self.k or 1),
                               output_weights=self.output_weights, activation=self.make_activation())
        return problem, None

    # -- the boundary's check -------------------------------------------------------------------------
    def size(self, data: DataShape | None) -> ProblemSize:
        """The problem's ``n``, ``d``, patches ``k`` and filter length ``m``, from shapes alone (what pricing reads).

        Parameters
        ----------
        data : DataShape, optional
            ``n`` and ``d`` of the dataset; ``None`` for a planted problem.

        Returns
        -------
        ProblemSize

        Raises
        ------
        InvalidParameterError
            A planted spec that contradicts the solve's options, or no source at all.
        """
        patching = self.patching()
        if self.planted is not None:
            self.planted.validate()
            if self.output_weights is not None:
                raise InvalidParameterError("output_weights", "output_weights apply to data and datasets; a planted "
                                                              "problem uses c = 1.")
            if self.k is not None and patching is None and self.k != self.planted.k:
                raise InvalidParameterError("k", f"k={self.k} contradicts planted.k={self.planted.k}; "
                                                 "set k inside planted.")
            source, n, d = "planted", self.planted.n, self.planted.d
        elif data is not None:
            source, n, d = "dataset_id", data.n, data.d
        else:
            raise InvalidParameterError("dataset_id", "Give exactly one problem source among data, dataset_id and "
                                                      "planted.")
        if patching is not None:
            k, m = patching.shape(d)
        elif self.planted is not None:
            k, m = self.planted.k, d // self.planted.k
        else:
            k, m = BlockPatching(self.k or 1).shape(d)
        return ProblemSize(source, n, d, k, m)

    def check(self, data: DataShape | None, limits: Limits) -> int:
        """Check the spec and price it against ``limits`` from shapes alone; return the patch-tensor entries.

        Everything the core would refuse that shapes decide is refused here (the patching against ``d``,
        output weights, constraints against ``m``, the relaxation's ``beta``, the labels' sign from the
        smallest label): nothing is built or decoded.

        Parameters
        ----------
        data : DataShape, optional
            ``n``, ``d`` (and the smallest label) of the dataset; ``None`` for a planted problem.
        limits : Limits
            The server's limits.

        Returns
        -------
        int
            ``n * k * m``, the entries of the patch tensor the worker will build (8 bytes each).

        Raises
        ------
        InvalidParameterError
            Naming the parameter; :class:`LimitExceeded` for a size over a limit.
        """
        options = self.options()
        options.validate()
        activation = self.make_activation()
        if self.trials > limits.max_trials:
            raise LimitExceeded("trials", f"trials={self.trials} is more than this server runs in one job.",
                                limit=limits.max_trials, setting="CNNRELAX_MAX_TRIALS")
        size = self.size(data)
        source, n, d, k, m = size.source, size.n, size.d, size.k, size.m
        if n * d > limits.max_matrix_entries:
            raise LimitExceeded(source, f"The problem has n*d = {n}*{d} = {n * d} entries, more than this server "
                                        "takes.", limit=limits.max_matrix_entries,
                                setting="CNNRELAX_MAX_MATRIX_ENTRIES")
        entries = n * k * m
        if entries > limits.max_patch_entries:
            parameter = next((name for name in ("patch_size", "filter_shape") if getattr(self, name) is not None),
                             source)
            raise LimitExceeded(parameter, f"The patch tensor would hold n*k*m = {n}*{k}*{m} = {entries} entries "
                                           f"({entries * 8 / 2**20:.0f} MiB), more than this server builds; use "
                                           "larger strides, fewer samples or smaller rows.",
                                limit=limits.max_patch_entries, setting="CNNRELAX_MAX_PATCH_ENTRIES")
        self._check_output_weights(k, activation)
        options.constraints.resolve(m)
        kind = check_relaxation(self.relaxation, self.beta)
        if data is not None and data.labels is not None and kind.needs_label_range:
            check_labels(activation, data.labels)
        elif data is not None and data.y_min is not None and kind.needs_label_range:
            check_labels_min(activation, data.y_min, data.y_min_index)
        self.check_filters(data, ("w_init",))
        return entries

    def filter_length(self, data: DataShape | None) -> int:
        """``m``, the filter's length, from shapes alone (once :meth:`check` has passed the patching)."""
        patching = self.patching()
        d = self.planted.d if self.planted is not None else (data.d if data is not None else 1)
        if patching is not None:
            return patching.shape(d)[1]
        if self.planted is not None:
            return d // self.planted.k
        return BlockPatching(self.k or 1).shape(d)[1]

    def check_filters(self, data: DataShape | None, names: tuple[str, ...]) -> None:
        """The filter-sized members ``names`` (e.g. ``w_init``) have the filter's length ``m`` and finite entries."""
        m = self.filter_length(data)
        for name in names:
            vector = getattr(self, name)
            if vector is None:
                continue
            if len(vector) != m:
                raise InvalidParameterError(name, f"{name} has {len(vector)} entries but the filter has length m={m} "
                                                  "(the patch length of this problem); send one number per entry.")
            if not np.isfinite(np.asarray(vector, dtype=np.float64)).all():
                raise InvalidParameterError(name, f"{name} contains NaN or infinite values.")

    def _check_output_weights(self, k: int, activation: Activation) -> None:
        weights = self.output_weights
        if weights is None:
            return
        if len(weights) != k:
            raise InvalidParameterError("output_weights", f"output_weights has {len(weights)} entries but the "
                                                          f"patching makes k={k} patches.")
        values = np.asarray(weights, dtype=np.float64)
        if not np.isfinite(values).all():
            raise InvalidParameterError("output_weights", "output_weights contains NaN or infinite values.")
        if (values < 0).any():
            j = int(np.argmax(values < 0))
            raise InvalidParameterError(
                "output_weights", f"output_weights[{j}] = {values[j]:g} is negative: the relaxation is convex only "
                                  "for non-negative output weights, since c*(u)_+ = (c*u)_+ needs c >= 0.")
        if activation.fold(values) is None and not np.all(values == 1.0):
            raise InvalidParameterError(
                "output_weights", f"The activation {activation.name} is not positively homogeneous, so output "
                                  "weights cannot be folded into the patches (c*sigma(u) != sigma(c*u)); use unit "
                                  "output weights with it.")


class CertifySpec(SolveSpec):
    """A certification job (``POST /v1/certificates``): a solve's problem and options, and the filter ``w`` to certify.

    Parameters
    ----------
    w : list of float
        The filter, of the problem's filter length ``m``.
    r : list of float, optional
        One direction to run the cone test for (default: the directions of trials ``0 .. trials-1`` with ``seed``).
    """

    w: list[float]
    r: list[float] | None = None

    def check(self, data: DataShape | None, limits: Limits) -> int:
        """:meth:`SolveSpec.check`, and ``w`` (and ``r``) of the filter's length ``m``, finite."""
        entries = super().check(data, limits)
        self.check_filters(data, ("w", "r"))
        return entries


def check_labels_min(activation: Activation, y_min: float, index: int | None = None) -> None:
    """The core's label check (:func:`cnnrelax.core.activations.check_labels`) knowing only the smallest label.

    The range of every activation is bounded below only, so the smallest label decides; the message names
    ``y[index]``.

    Parameters
    ----------
    activation : Activation
        The activation.
    y_min : float
        The smallest label.
    index : int, optional
        Where it is (named by the message).
    """
    if not activation.in_range(y_min):
        raise label_range_error(activation, "y" if index is None else f"y[{index}]", y_min)


def price_experiment(spec: PhaseTransitionSpec | RotatedDigitsSpec, limits: Limits) -> int:
    """Check an experiment's memory from its shapes: the largest problem one of its cells draws.

    What the whole sweep costs in time is the cost model's (:mod:`cnnrelax.pricing`), not an entry count.

    Parameters
    ----------
    spec : PhaseTransitionSpec or RotatedDigitsSpec
        The typed spec (:mod:`cnnrelax.experiments.specs`).
    limits : Limits
        The server's limits.

    Returns
    -------
    int
        The entries ``n * d`` of the largest problem a cell draws (a phase transition's largest cell); 0 for
        kinds whose size is fixed by their data.

    Raises
    ------
    LimitExceeded
        Naming ``n`` (a cell too large to hold), and the limit.
    """
    if not isinstance(spec, PhaseTransitionSpec):
        return 0
    largest = max(spec.n) * max(spec.d)
    if largest > limits.max_matrix_entries:
        raise LimitExceeded("n", f"The largest cell draws n*d = {max(spec.n)}*{max(spec.d)} = {largest} entries, more "
                                 "than this server takes in one problem.",
                            limit=limits.max_matrix_entries, setting="CNNRELAX_MAX_MATRIX_ENTRIES")
    return largest
