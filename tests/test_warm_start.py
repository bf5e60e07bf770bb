"""Warm starts (``w_init``): polished and certified first; trials only when the warm filter is not certified."""

from __future__ import annotations

import numpy as np
import pytest

from cnnrelax.core import PlantedSpec, planted_problem
from cnnrelax.errors import InvalidParameterError
from cnnrelax.jobs import run_solve_job
from cnnrelax.specs import UNLIMITED, SolveSpec

PLANTED = {"n": 300, "d": 12, "k": 2, "seed": 5}


def _w_star() -> np.ndarray:
    return planted_problem(PlantedSpec(**PLANTED)).w_star


def _run(**members: object) -> dict:
    spec = SolveSpec.model_validate({"planted": PLANTED, **members})
    spec.check(None, UNLIMITED)
    return run_solve_job(spec, None, None)


def test_a_certified_warm_start_runs_no_trial() -> None:
    w_star = _w_star()
    near = w_star + 1e-6 * np.random.default_rng(0).standard_normal(w_star.shape)
    result = _run(w_init=near.tolist())
    warm = result["warm_start"]
    assert result["trials"] == [] and result["selected_trial"] is None
    assert warm["polished"] and warm["certified"] and warm["selected"] and warm["w_init"] == near.tolist()
    assert result["w"] == warm["w"] and result["certificate"]["global_optimum"]
    assert result["recovery_error"] <= 1e-10  # polishing lands on w*: the pattern of w_init is w*'s
    assert "no trial ran" in result["message"]


def test_a_poor_warm_start_lets_the_trials_run() -> None:
    far = -_w_star()  # the wrong filter: a different activation pattern, far from zero loss
    result = _run(w_init=far.tolist(), trials=6)
    warm = result["warm_start"]
    assert not warm["certified"] and not warm["selected"] and result["trials"]
    assert result["certificate"]["global_optimum"] and result["selected_trial"] is not None
    assert result["loss"] < warm["loss"]


def test_without_stop_on_certificate_the_better_of_the_two_is_selected() -> None:
    result = _run(w_init=_w_star().tolist(), trials=3, stop_on_certificate=False)
    warm, losses = result["warm_start"], [t["loss"] for t in result["trials"] if t["loss"] is not None]
    assert len(result["trials"]) == 3 and warm["certified"]
    assert result["loss"] == min([warm["loss"], *losses])
    assert warm["selected"] == (result["selected_trial"] is None)


def test_a_warm_start_of_the_wrong_length_is_refused_naming_it() -> None:
    with pytest.raises(InvalidParameterError) as caught:
        SolveSpec.model_validate({"planted": PLANTED, "w_init": [1.0, 2.0]}).check(None, UNLIMITED)
    assert caught.value.parameter == "w_init" and "m=6" in caught.value.message
