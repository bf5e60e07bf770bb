"""One estimator per job kind: the CPU-seconds a job's spec will cost, from its shapes alone (nothing is built).

The model counts the units of work a job runs and prices each by its calibrated linear cost
(:mod:`.coefficients`); the sum is multiplied by the calibration's safety factor. With ``E = n k m`` the entries
of a problem's patch tensor (``n`` samples, ``k`` patches of length ``m``, ``d`` the row length):

- **solve**: ``trials * trial(E, m) * f_relaxation * f_activation + coverage_samples * coverage(E, n, m)
  + draw(n, d)``. Every trial is counted, though ``stop_on_certificate`` may end the solve after the first:
  the estimate is an upper bound in trials (a planted noiseless solve often stops after one or two).
- **phase transition**: per cell ``(method, d, n)``, ``repetitions * (draw(n, d) + method)``, the method being
  ``trials`` relaxation trials, ``trials`` gradient-descent restarts, or one pseudo-inverse. A restart is priced
  at every one of its ``gd_iterations`` counted, or, at the default tolerance and step and at most the default
  budget of iterations, at the lesser of that and what such restarts were measured to cost here (they stop when
  they converge or stall: the large cells in tens of iterations, only the cheap cells below the transition run
  long).
- **rotated digits**: per seed, the rotations ``N * angles_per_image`` images of ``H W`` pixels and the ridge on
  the pixels; per filter shape ``p x q`` (``P`` patches per image), ``filters`` QP trials on
  ``fit_samples * P * p q`` entries, then for the learned and for the random filters the features
  ``sigma(X_ij w)`` and the ridge fits with ``H W + filters * P`` columns (one penalty grid each for one
  filter and for all).

A trial's cost ``a + b E + c E m + e m r^2`` reads: a fixed cost, the working-set rounds' passes over the
patch entries (the rounds grow with ``m``), and Clarabel on a working set of about ``r = min(m, n k)`` cuts of
length ``m`` (``m^3`` when there are at least ``m`` patches, as in every calibration point; a wide problem with
fewer patches than ``m`` has at most ``n k`` cuts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from ..experiments.specs import DEFAULT_GD_ITERATIONS, DEFAULT_GD_TOL, PhaseTransitionSpec, RotatedDigitsSpec
from ..specs import LimitExceeded, ProblemSize, SolveSpec
from .coefficients import Coefficients, load_coefficients


@dataclass(frozen=True)
class CostEstimate:
    """A job's estimated CPU-seconds on this machine (safety factor included) and its parts (before it)."""

    cpu_s: float
    parts: dict[str, float] = field(default_factory=dict)


class Estimator(Protocol):
    """Prices one job kind's spec; ``parameter`` and ``remedy`` are what a refusal names and advises."""

    parameter: str
    remedy: str

    def estimate(self, spec: Any, coefficients: Coefficients, size: ProblemSize | None = None) -> CostEstimate: ...


def _factor(table: Any, name: str) -> float:
    """A relaxation's or an activation's cost factor (1 for a name the calibration did not measure)."""
    return float(table.get(name, max(table.values(), default=1.0)))


def relaxation_trial(c: Coefficients, n: int, k: int, m: int, relaxation: str = "lp",
                     activation: str = "relu") -> float:
    """One relaxation trial (with its polishing) on an ``n x k x m`` patch tensor, in CPU-seconds."""
    entries = float(n) * k * m
    rows = float(min(m, n * k))  # the working set's size: about m cuts, fewer when there are fewer patches
    base = c.cost("relaxation_trial")(one=1.0, E=entries, E_m=entries * m, m_r2=m * rows * rows)
    return base * _factor(c.relaxation_factor, relaxation) * _factor(c.activation_factor, activation)


def ridge_fit(c: Coefficients, rows: int, cols: int, alphas: int) -> float:
    """One ridge fit over ``alphas`` penalties with ``rows`` training rows of ``cols`` features."""
    return c.cost("ridge")(one=1.0, rows_cols2=float(rows) * cols * cols, alphas_cols3=float(alphas) * cols ** 3,
                           alphas_rows_cols=float(alphas) * rows * cols)


class SolveCost:
    """A solve: its trials, its coverage directions and the drawing (or loading) of its problem."""

    parameter = "trials"
    remedy = "ask for fewer trials or coverage_samples, or solve a smaller problem"

    def estimate(self, spec: SolveSpec, coefficients: Coefficients, size: ProblemSize | None = None) -> CostEstimate:
        if size is None:
            raise ValueError("a solve is priced from its problem's size")
        c = coefficients
        n, d, k, m = size.n, size.d, size.k, size.m
        entries = float(size.entries)
        parts = {
            "trials": spec.trials * relaxation_trial(c, n, k, m, spec.relaxation, spec.activation),
            "coverage": spec.coverage_samples * c.cost("coverage_sample")(one=1.0, E=entries, n_m2=float(n) * m * m,
                                                                          n2_m=float(n) * n * m),
            "problem": c.cost("planted_draw")(one=1.0, n_d=float(n) * d),
        }
        return CostEstimate(c.safety_factor * sum(parts.values()), parts)


class PhaseTransitionCost:
    """A phase transition: every cell's repetitions, each a planted draw and its method's trials or restarts."""

    parameter = "repetitions"
    remedy = ("split it into several jobs (a few values of d, or one method, each), or ask for fewer repetitions, "
              "trials or gd_iterations")

    def estimate(self, spec: PhaseTransitionSpec, coefficients: Coefficients,
                 size: ProblemSize | None = None) -> CostEstimate:
        c = coefficients
        parts: dict[str, float] = {str(method): 0.0 for method in spec.methods}
        parts["draws"] = 0.0
        for d in spec.d:
            m = d // spec.k
            for n in spec.n:
                parts["draws"] += len(spec.methods) * c.cost("planted_draw")(one=1.0, n_d=float(n) * d)
                for method in spec.methods:
                    parts[method] += self.method_cost(spec, c, method, n, d, m)
        parts = {key: spec.repetitions * value for key, value in parts.items()}
        return CostEstimate(c.safety_factor * sum(parts.values()), parts)

    @staticmethod
    def method_cost(spec: PhaseTransitionSpec, c: Coefficients, method: str, n: int, d: int, m: int) -> float:
        """One repetition of one method in cell ``(d, n)`` (the draw left out)."""
        if method == "relaxation":
            return spec.trials * relaxation_trial(c, n, spec.k, m, spec.relaxation, spec.activation)
        if method == "gradient_descent":
            restart = c.cost("gd_restart")(one=1.0, n_d=float(n) * d, it=float(spec.gd_iterations),
                                           E_it=float(n) * d * spec.gd_iterations)
            if (spec.gd_iterations <= DEFAULT_GD_ITERATIONS and spec.gd_tol >= DEFAULT_GD_TOL
                    and spec.gd_step is None):  # as calibrated: restarts that stop when they converge
                restart = min(restart, c.cost("gd_restart_default")(one=1.0, n_d=float(n) * d,
                                                                    E_m=float(n) * d * m))
            return spec.trials * restart * _factor(c.gd_activation_factor, spec.activation)
        return c.cost("pseudo_inverse")(one=1.0, n_m2=float(n) * m * m)


class RotatedDigitsCost:
    """Rotated digits: per seed the rotations and the raw ridge; per filter shape the QP trials, the features and
    the ridge fits with the learned and with the random filters."""

    parameter = "seeds"
    remedy = "ask for fewer seeds, filters or filter_shapes, or set max_images"

    def estimate(self, spec: RotatedDigitsSpec, coefficients: Coefficients,
                 size: ProblemSize | None = None) -> CostEstimate:
        c = coefficients
        H, W = spec.image_shape
        pixels = H * W
        images = min(spec.image_count, spec.max_images or spec.image_count)
        copies = 1 if spec.angles_given else spec.angles_per_image
        samples = images * copies
        fitted = int(round((spec.train_fraction + spec.validation_fraction) * samples))
        train = int(round(spec.train_fraction * samples))
        alphas = len(spec.penalties)
        rotated = 0 if spec.angles_given else samples
        per_seed = {
            "rotation": c.cost("rotation")(one=1.0, images=float(rotated), images_pixels=float(rotated) * pixels),
            "ridge": ridge_fit(c, fitted, pixels, alphas),
            "relaxation": 0.0, "features": 0.0,
        }
        for p, q in spec.shapes:
            patches = (H - p + 1) * (W - q + 1)
            per_seed["relaxation"] += spec.filters * relaxation_trial(
                c, min(spec.fit_samples, train), patches, p * q, "qp", spec.activation)
            columns = pixels + spec.filters * patches
            fits = ridge_fit(c, fitted, columns, alphas) + (ridge_fit(c, fitted, pixels + patches, alphas)
                                                            if spec.filters > 1 else 0.0)
            features = c.cost("features")(one=1.0, rows_patches_entries_filters=float(samples) * patches * p * q
                                          * spec.filters)
            per_seed["ridge"] += 2 * fits  # the learned filters, then as many random ones
            per_seed["features"] += 2 * features
        parts = {key: spec.seeds * value for key, value in per_seed.items()}
        return CostEstimate(c.safety_factor * sum(parts.values()), parts)


#: The estimator of each job kind (a solve, or an experiment's ``kind``).
ESTIMATORS: dict[str, Estimator] = {
    "solve": SolveCost(),
    "phase_transition": PhaseTransitionCost(),
    "rotated_digits": RotatedDigitsCost(),
}


def check_time_limit(spec: SolveSpec | PhaseTransitionSpec | RotatedDigitsSpec, estimate: CostEstimate,
                     time_limit_s: float, setting: str = "CNNRELAX_JOB_TIME_LIMIT_S") -> None:
    """Refuse a job whose estimate exceeds the job time limit (a 422 naming the estimate, the limit and the setting).

    Raises
    ------
    LimitExceeded
        Naming the kind's main size parameter (``trials``, ``repetitions``, ``seeds``).
    """
    if estimate.cpu_s <= time_limit_s:
        return
    estimator = ESTIMATORS[job_kind(spec)]
    largest = max(estimate.parts, key=estimate.parts.__getitem__) if estimate.parts else None
    share = f" (mostly {largest})" if largest is not None else ""
    raise LimitExceeded(estimator.parameter, f"This {job_kind(spec).replace('_', ' ')} is estimated at "
                                             f"{estimate.cpu_s:.0f} CPU-seconds on this server{share}, more than the "
                                             f"job time limit of {time_limit_s:g} s: {estimator.remedy}, or raise "
                                             f"{setting}.", limit=time_limit_s, setting=setting)


def job_kind(spec: SolveSpec | PhaseTransitionSpec | RotatedDigitsSpec) -> str:
    """The registry key of a typed spec: ``solve``, or the experiment's ``kind``."""
    return "solve" if isinstance(spec, SolveSpec) else spec.kind


def estimate_cost(spec: SolveSpec | PhaseTransitionSpec | RotatedDigitsSpec, size: ProblemSize | None = None,
                  coefficients: Coefficients | None = None) -> CostEstimate:
    """The estimated CPU-seconds of a job from its typed spec (and a solve's problem size).

    Parameters
    ----------
    spec : SolveSpec, PhaseTransitionSpec or RotatedDigitsSpec
        The job.
    size : ProblemSize, optional
        A solve's problem size (:meth:`cnnrelax.specs.SolveSpec.size`).
    coefficients : Coefficients, optional
        Default: the package's calibrated ``costs.json``.

    Returns
    -------
    CostEstimate
    """
    return ESTIMATORS[job_kind(spec)].estimate(spec, coefficients or load_coefficients(), size)
