"""Constrained solves answer a KKT point and say what stops the fit (issue 19 item 2).

The issue's case: a planted problem whose w* lies outside the box [-0.3, 0.3]. The labels are exact; the box stops
the fit. The answer is polished within the box (cnnrelax.constrained), its KKT measures are zero with the pressed
bounds named, and the summary says that no filter within the constraints fits the labels. With noisy labels and a box
that does not bind, the summary says the labels are noisy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from cnnrelax.core import PlantedSpec, planted_problem
from cnnrelax.core.certificates.kkt import kkt_certificate
from cnnrelax.core.constraints import FilterConstraints
from cnnrelax.jobs import run_solve_job
from cnnrelax.specs import UNLIMITED, SolveSpec

BOX = {"lower": -0.3, "upper": 0.3}


def _solve(**members: Any) -> dict[str, Any]:
    spec = SolveSpec.model_validate(members)
    spec.check(None, UNLIMITED)
    return run_solve_job(spec, None, None)


def test_a_box_that_excludes_w_star_is_named_as_what_stops_the_fit() -> None:
    planted = {"n": 300, "d": 8, "k": 2, "seed": 0}
    assert np.max(np.abs(planted_problem(PlantedSpec(**planted)).w_star)) > 0.3
    result = _solve(planted=planted, trials=4, constraints=BOX)
    certificate, kkt = result["certificate"], result["certificate"]["kkt"]
    assert not certificate["global_optimum"] and kkt["stationary"] and kkt["residual"] <= 1e-9
    assert kkt["violation"] == 0.0 and kkt["binding"] and set(kkt["binding"]) <= set(kkt["active"])
    assert all(kkt["multipliers"][name] > 0 for name in kkt["binding"])
    assert certificate["summary"].startswith("No filter within the constraints fits the labels")
    assert "noisy" not in certificate["summary"] and "Polished within the constraints" in result["message"]
    # the filter presses against exactly the bounds named
    w = np.asarray(result["w"])
    pressed = {f"upper[{i}]" for i in np.flatnonzero(np.isclose(w, 0.3))} | \
              {f"lower[{i}]" for i in np.flatnonzero(np.isclose(w, -0.3))}
    assert set(kkt["active"]) == pressed


def test_noisy_labels_within_a_loose_box_are_called_noisy() -> None:
    result = _solve(planted={"n": 300, "d": 8, "k": 2, "seed": 0, "noise_std": 0.1}, relaxation="qp", trials=4,
                    constraints={"lower": -10.0, "upper": 10.0})
    kkt = result["certificate"]["kkt"]
    assert kkt["stationary"] and not kkt["binding"]
    assert "the labels are noisy" in result["certificate"]["summary"]


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "absolute", "squared_relu", "softplus"])
def test_every_activation_answers_a_kkt_point_within_the_box(activation: str) -> None:
    planted = {"n": 300, "d": 8, "k": 2, "seed": 0}
    result = _solve(planted=planted, trials=4, constraints=BOX, relaxation="qp", activation=activation,
                    negative_slope=0.1)
    drawn = planted_problem(PlantedSpec(**planted, activation=activation, negative_slope=0.1))
    kkt = kkt_certificate(drawn.problem, np.asarray(result["w"]), FilterConstraints(**BOX).resolve(drawn.problem.m))
    assert kkt.stationary, kkt.reason  # recomputed here from the answer alone
    assert result["certificate"]["kkt"]["stationary"]
    assert result["loss"] == pytest.approx(drawn.problem.loss(np.asarray(result["w"])), rel=1e-12)
