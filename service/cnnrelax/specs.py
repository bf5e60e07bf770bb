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
from typing import Any, Literal, cast

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
from .core.planted import PlantedSpec, planted_problem
from .core.problem import (
    BlockPatching,
    ConvProblem,
    FloatArray,
    InvalidParameterError,
    Patching,
    make_patching,
    make_problem,
)
from .core.relaxation import SolverSettings, check_relaxation
from .core.trials import SolveOptions
from .experiments.specs import PhaseTransitionSpec, RotatedDigitsSpec

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

    def __init__(self, parameter: str, message: str, *, limit: int, setting: str) -> None:
        super().__init__(parameter, f"{message} Limit: {limit} ({setting}).")
        self.limit = limit
        self.setting = setting


@dataclass(frozen=True)
class Limits:
    """The sizes a server accepts (from its settings): see :meth:`SolveSpec.check` and :func:`price_experiment`."""

    max_matrix_entries: int = 20_000_000
    max_patch_entries: int = 20_000_000
    max_trials: int = 1000
    max_experiment_entries: int = 400_000_000


#: No limits: the CLI's in-process solves (the machine is the caller's own).
UNLIMITED = Limits(max_matrix_entries=2**62, max_patch_entries=2**62, max_trials=2**62, max_experiment_entries=2**62)


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


class SolveSpec(BaseModel):
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
    time_limit_s : float, optional
        The caller's run-time limit (the server caps it).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset_id: str | None = None
    planted: PlantedSpec | None = None
    k: int | None = None
    relaxation: RelaxationName = DEFAULT_RELAXATION
    beta: float = CORE_DEFAULTS.beta
    trials: int = CORE_DEFAULTS.trials
    seed: int = CORE_DEFAULTS.seed
    output_weights: list[float] | None = None
    stop_on_certificate: bool = CORE_DEFAULTS.stop_on_certificate
    polish: bool = CORE_DEFAULTS.polish
    patch_size: int | None = None
    stride: int | None = None
    image_shape: tuple[int, int] | None = None
    filter_shape: tuple[int, int] | None = None
    constraints: FilterConstraints = Field(default_factory=FilterConstraints)
    recovery_tol: float = CORE_DEFAULTS.recovery_tol
    time_limit_s: float | None = None
    coverage_samples: int = CORE_DEFAULTS.coverage_samples
    activation: ActivationName = DEFAULT_ACTIVATION
    negative_slope: float = DEFAULT_NEGATIVE_SLOPE

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
        patching = self.patching()
        source: str
        if self.planted is not None:
            source = "planted"
            self.planted.validate()
            if self.output_weights is not None:
                raise InvalidParameterError("output_weights", "output_weights apply to data and datasets; a planted "
                                                              "problem uses c = 1.")
            if self.k is not None and patching is None and self.k != self.planted.k:
                raise InvalidParameterError("k", f"k={self.k} contradicts planted.k={self.planted.k}; "
                                                 "set k inside planted.")
            n, d = self.planted.n, self.planted.d
        elif data is not None:
            source = "dataset_id"
            n, d = data.n, data.d
        else:
            raise InvalidParameterError("dataset_id", "Give exactly one problem source among data, dataset_id and "
                                                      "planted.")
        if n * d > limits.max_matrix_entries:
            raise LimitExceeded(source, f"The problem has n*d = {n}*{d} = {n * d} entries, more than this server "
                                        "takes.", limit=limits.max_matrix_entries,
                                setting="CNNRELAX_MAX_MATRIX_ENTRIES")
        if patching is not None:
            k, m = patching.shape(d)
        elif self.planted is not None:
            k, m = self.planted.k, d // self.planted.k
        else:
            k, m = BlockPatching(self.k or 1).shape(d)
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
        return entries

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
    """Price an experiment's typed spec from its shapes: every cell's size, and the sum of cells times repetitions.

    Parameters
    ----------
    spec : PhaseTransitionSpec or RotatedDigitsSpec
        The typed spec (:mod:`cnnrelax.experiments.specs`).
    limits : Limits
        The server's limits.

    Returns
    -------
    int
        The sum over cells of ``repetitions * n * d`` (the entries of every problem drawn); 0 for kinds
        whose size is fixed by their data.

    Raises
    ------
    LimitExceeded
        Naming ``n`` (a cell too large) or ``repetitions`` (the whole sweep too large), and the limit.
    """
    if not isinstance(spec, PhaseTransitionSpec):
        return 0
    repetitions, methods, ns, ds = spec.repetitions, len(spec.methods), spec.n, spec.d
    largest = max(ns) * max(ds)
    if largest > limits.max_matrix_entries:
        raise LimitExceeded("n", f"The largest cell draws n*d = {max(ns)}*{max(ds)} = {largest} entries, more than "
                                 "this server takes in one problem.",
                            limit=limits.max_matrix_entries, setting="CNNRELAX_MAX_MATRIX_ENTRIES")
    total = repetitions * methods * sum(ns) * sum(ds)
    if total > limits.max_experiment_entries:
        raise LimitExceeded("repetitions", f"The experiment draws repetitions*methods*sum(n)*sum(d) = {repetitions}*"
                                           f"{methods}*{sum(ns)}*{sum(ds)} = {total} entries over its cells, more "
                                           "than this server runs in one job.",
                            limit=limits.max_experiment_entries, setting="CNNRELAX_MAX_EXPERIMENT_ENTRIES")
    return total
