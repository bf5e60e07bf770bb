"""The cost model's coefficients: measured on this machine by ``bench/calibrate_costs.py``, kept as data.

``costs.json`` (beside this module) holds, for each unit of work the estimators count, a linear cost in CPU-seconds
over named features (a :class:`LinearCost`: ``sum_f c_f * feature_f``, every ``c_f >= 0``, fitted by non-negative
least squares (absolute, square-root or relative weights: the tightest of the three), then raised by its
``envelope``: the 75th percentile of the measured / fitted
ratios of its points, at least 1, so that the cost bounds most measurements), the multiplicative factors of the
relaxations and activations against the LP with ReLU, the safety factor every estimate is multiplied by, and where
and when they were measured.

The features (their names are the keys of each cost's ``coef`` in the file) are computed by the estimators
(:mod:`.estimators`); a name the code does not know is an error when the file is read, so a file and the code
cannot disagree silently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

#: Where the calibrated coefficients are kept (package data).
COSTS_PATH = Path(__file__).with_name("costs.json")

#: The units of work and the features each one's cost is linear in.
FEATURES: dict[str, tuple[str, ...]] = {
    # One relaxation trial of a solve (working-set rounds over the n*k*m patch entries, Clarabel on the working set,
    # the trial's polishing and certificate): E = n*k*m entries, m the filter length.
    "relaxation_trial": ("1", "E", "E*m", "m*r^2"),
    # One direction of the coverage estimate (an NNLS over the n cone generators of length m; its active-set
    # iterations grow with n, so its cost grows faster than n).
    "coverage_sample": ("1", "E", "n*m^2", "n^2*m"),
    # One gradient-descent restart of `it` iterations (a fixed cost and a pass over the E entries each), with its
    # step-size bound: the bound when every iteration runs.
    "gd_restart": ("1", "n*d", "it", "E*it"),
    # One gradient-descent restart at the phase transition's default tolerance, step and iteration budget on planted
    # data, as it runs (most restarts converge, or stall, long before the budget; the cheap cells below the
    # transition are the ones that use it all).
    "gd_restart_default": ("1", "n*d", "E*m"),
    # One planted problem drawn (phase transitions draw one per repetition and method).
    "planted_draw": ("1", "n*d"),
    # The pseudo-inverse on the positive labels (k = 1): a least-squares solve.
    "pseudo_inverse": ("1", "n*m^2"),
    # Rotating `images` images of `pixels` pixels (scipy.ndimage.rotate, one call per rotated copy).
    "rotation": ("1", "images", "images*pixels"),
    # One ridge fit over `alphas` penalties: rows x cols features (Gram matrix, one Cholesky per penalty).
    "ridge": ("1", "rows*cols^2", "alphas*cols^3", "alphas*rows*cols"),
    # The activation features sigma(X_ij w) of `filters` filters over rows x patches x filter entries.
    "features": ("1", "rows*patches*entries*filters"),
}


@dataclass(frozen=True)
class LinearCost:
    """A cost in CPU-seconds linear in named features: ``sum_f coef[f] * features[f]``."""

    name: str
    coef: Mapping[str, float]

    def __call__(self, **features: float) -> float:
        """The cost of one unit at these feature values (every feature of :data:`FEATURES` for this unit)."""
        return float(sum(c * features[_identifier(f)] for f, c in self.coef.items()))


def _identifier(feature: str) -> str:
    """A feature's name as a Python keyword: ``"E*m"`` -> ``"E_m"``, ``"m*r^2"`` -> ``"m_r2"``, ``"1"`` -> ``"one"``."""
    return "one" if feature == "1" else feature.replace("*", "_").replace("^", "")


@dataclass(frozen=True)
class Coefficients:
    """Everything the estimators read from ``costs.json``."""

    costs: Mapping[str, LinearCost]
    relaxation_factor: Mapping[str, float]
    activation_factor: Mapping[str, float]
    gd_activation_factor: Mapping[str, float]
    safety_factor: float
    measured: Mapping[str, Any] = field(default_factory=dict)

    def cost(self, unit: str) -> LinearCost:
        return self.costs[unit]


def parse_coefficients(data: Mapping[str, Any]) -> Coefficients:
    """Check and read the coefficients' JSON (as written by ``bench/calibrate_costs.py``).

    Parameters
    ----------
    data : mapping
        The decoded file.

    Returns
    -------
    Coefficients

    Raises
    ------
    ValueError
        A unit or a feature missing or unknown, or a coefficient negative or not finite.
    """
    costs: dict[str, LinearCost] = {}
    given = data["costs"]
    if set(given) != set(FEATURES):
        raise ValueError(f"costs.json names the units {sorted(given)}, the code {sorted(FEATURES)}")
    for unit, names in FEATURES.items():
        coef = {str(k): float(v) for k, v in given[unit]["coef"].items()}
        if set(coef) != set(names):
            raise ValueError(f"costs.json's {unit} has the features {sorted(coef)}, the code {sorted(names)}")
        if any(not (v >= 0.0 and v < float("inf")) for v in coef.values()):
            raise ValueError(f"costs.json's {unit} has a negative or non-finite coefficient: {coef}")
        costs[unit] = LinearCost(unit, coef)
    safety = float(data["safety_factor"])
    if not safety >= 1.0:
        raise ValueError(f"costs.json's safety_factor must be at least 1, got {safety}")
    return Coefficients(costs=costs, relaxation_factor=dict(data["relaxation_factor"]),
                        activation_factor=dict(data["activation_factor"]),
                        gd_activation_factor=dict(data["gd_activation_factor"]), safety_factor=safety,
                        measured={key: data.get(key) for key in ("date", "machine", "command", "checks")})


@lru_cache(maxsize=4)
def load_coefficients(path: Path = COSTS_PATH) -> Coefficients:
    """The coefficients kept in ``path`` (the package's ``costs.json`` by default), read once."""
    return parse_coefficients(json.loads(Path(path).read_text()))
