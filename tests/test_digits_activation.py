"""Rotated digits with an activation other than ReLU (issue 12, item 1): the relaxation learns the filters with
it, the ridge's features are ``sigma(X_ij w)``, the labels are mapped per activation, and ReLU is unchanged."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from cnnrelax import InvalidParameterError
from cnnrelax.core.activations import make_activation
from cnnrelax.core.problem import make_patching, make_problem
from cnnrelax.experiments import parse_experiment_spec, run_experiment
from cnnrelax.experiments.rotated_digits import (
    filter_test_rmses,
    learn_filters,
    prepare_data,
    relaxation_labels,
    relu_features,
)
from cnnrelax.experiments.specs import RotatedDigitsSpec

from conftest import assert_problem, wait_job

TINY = {"kind": "rotated_digits", "seed": 2, "seeds": 2, "max_images": 60, "angles_per_image": 2,
        "filter_shapes": [[3, 3]], "filters": 2, "fit_samples": 60}
#: TINY's per-seed RMSEs (one learned, all learned, one random, all random) and raw RMSEs, computed by the code
#: before activations existed (commit 18edf0e); ReLU, by default or by name, must reproduce them.
RELU_CELLS = [(13.81970087705361, 13.872488333496186, 11.53501549306893, 13.507531966520828),
              (11.010921878936141, 10.984295973076419, 10.241361795515871, 11.17146262805969)]
RELU_RAW = [14.343261168920236, 10.040991554107594]
RMSE_KEYS = ("rmse_one_filter", "rmse_all_filters", "rmse_random_one_filter", "rmse_random_all_filters")


def _run(extra: dict) -> dict:
    return run_experiment({**TINY, **extra}, progress=lambda *a: None, should_stop=lambda: False)


def _filter_cells(result: dict) -> list[dict]:
    return [c for c in result["cells"] if c["part"] == "filter"]


@pytest.mark.parametrize("extra", [{}, {"activation": "relu", "negative_slope": 0.3}])
def test_relu_reproduces_the_results_from_before_activations(extra: dict) -> None:
    result = _run(extra)
    assert result["activation"] == "relu" and result["spec"]["activation"] == "relu"
    got = [tuple(c[k] for k in RMSE_KEYS) for c in _filter_cells(result)]
    assert got == pytest.approx(RELU_CELLS, rel=1e-12, abs=0)
    assert result["rmse_raw_per_seed"] == pytest.approx(RELU_RAW, rel=1e-12, abs=0)


def test_leaky_relu_run_records_its_activation_and_differs_from_relu() -> None:
    result = _run({"activation": "leaky_relu", "negative_slope": 0.1})
    assert result["activation"] == "leaky_relu"
    assert result["spec"]["activation"] == "leaky_relu" and result["spec"]["negative_slope"] == 0.1
    cells = _filter_cells(result)
    assert all(s in ("optimal", "almost_optimal") for c in cells for s in c["statuses"]), cells
    assert all(c["n_filters"] == 2 for c in cells)
    for c in cells:  # homogeneous: unit filters
        assert np.linalg.norm(c["filters"][0]) == pytest.approx(1.0, rel=1e-12)
    got = [tuple(c[k] for k in RMSE_KEYS) for c in cells]
    assert got != pytest.approx(RELU_CELLS, rel=1e-6)
    assert result["rmse_raw_per_seed"] == pytest.approx(RELU_RAW, rel=1e-12, abs=0)  # the raw ridge is the same


def test_softplus_run_keeps_the_learned_norm_and_records_its_activation() -> None:
    result = _run({"activation": "softplus"})
    assert result["activation"] == "softplus" and result["spec"]["activation"] == "softplus"
    for c in _filter_cells(result):
        assert c["n_filters"] >= 1, c["statuses"]
        norms = [v for v in c["filter_norms"] if v is not None]
        # not homogeneous: each filter enters the ridge at the norm the relaxation gave it
        assert [float(np.linalg.norm(w)) for w in c["filters"]] == pytest.approx(norms[:len(c["filters"])],
                                                                                 rel=1e-12)
        assert all(v > 1e-3 for v in norms)


def test_softplus_features_depend_on_the_filter_norm_and_leaky_relu_features_do_not() -> None:
    spec = parse_experiment_spec({**TINY, "activation": "softplus"})
    assert isinstance(spec, RotatedDigitsSpec)
    data = prepare_data(spec, 2)
    learned, statuses, _, _ = learn_filters(spec, data, 2, [3, 3])
    assert learned, statuses
    softplus, leaky = make_activation("softplus"), make_activation("leaky_relu", 0.1)
    for activation, scale_free in ((leaky, True), (softplus, False)):
        reference = filter_test_rmses(data, [3, 3], learned, spec.penalties, activation)
        scaled = filter_test_rmses(data, [3, 3], [5.0 * w for w in learned], spec.penalties, activation)
        same = scaled["one"]["rmse"] == pytest.approx(reference["one"]["rmse"], rel=1e-9, abs=0)
        assert same is scale_free, activation.name


@pytest.mark.parametrize(("name", "expected"), [
    ("leaky_relu", lambda f: f.value),
    ("softplus", lambda f: np.logaddexp(0.0, f)),
    ("absolute", np.abs),
    ("squared_relu", lambda f: np.maximum(f, 0.0) ** 2),
])
def test_features_equal_sigma_of_the_problems_preactivations(name: str, expected) -> None:
    rng = np.random.default_rng(4)
    X = rng.standard_normal((7, 6 * 5))
    filters = [rng.standard_normal(6), rng.standard_normal(6)]
    activation = make_activation(name, 0.2)
    features = relu_features(X, [6, 5], [2, 3], filters, activation)
    problem = make_problem(X, np.ones(7), patching=make_patching(image_shape=[6, 5], filter_shape=[2, 3]))
    pre = np.hstack([problem.preactivations(w) for w in filters])
    want = np.where(pre > 0, pre, 0.2 * pre) if name == "leaky_relu" else expected(pre)
    np.testing.assert_allclose(features, want, rtol=1e-12, atol=1e-12)


def test_labels_per_activation() -> None:
    y = np.array([-30.0, 10.0, 45.0, -5.0])
    shifted = y + 30.0
    np.testing.assert_array_equal(relaxation_labels(make_activation("relu"), y, 9), shifted)
    np.testing.assert_array_equal(relaxation_labels(make_activation("absolute"), y, 9), shifted)
    np.testing.assert_array_equal(relaxation_labels(make_activation("squared_relu"), y, 9), shifted)
    np.testing.assert_array_equal(relaxation_labels(make_activation("leaky_relu", 0.1), y, 9), y)
    soft = relaxation_labels(make_activation("softplus"), y, 9)
    base = 9 * np.log(2.0)  # sum_j softplus(0) over 9 patches: the zero filter's prediction
    np.testing.assert_allclose(soft, base * (1.0 + shifted / 75.0), rtol=1e-15)
    assert soft.min() == pytest.approx(base) and soft.max() == pytest.approx(2 * base)
    # degrees or radians, any range: the same softplus labels (the units are fixed)
    np.testing.assert_allclose(relaxation_labels(make_activation("softplus"), np.deg2rad(y), 9), soft, rtol=1e-14)
    np.testing.assert_array_equal(relaxation_labels(make_activation("softplus"), np.full(3, 7.0), 9),
                                  np.full(3, base))


@pytest.mark.parametrize(("extra", "parameter"), [
    ({"activation": "leaky_relu", "negative_slope": 1.0}, "negative_slope"),
    ({"activation": "leaky_relu", "negative_slope": 0.0}, "negative_slope"),
    ({"activation": "tanh"}, "activation"),
    ({"activation": "softplus", "negative_slope": float("nan")}, "negative_slope"),
])
def test_invalid_activation_parameters_are_named(extra: dict, parameter: str) -> None:
    with pytest.raises(InvalidParameterError) as info:
        parse_experiment_spec({**TINY, **extra})
    assert info.value.parameter == parameter
    assert parameter in str(info.value)


def test_a_leaky_relu_digits_experiment_over_http(http: httpx.Client) -> None:
    rng = np.random.default_rng(0)
    spec = {"kind": "rotated_digits", "images": rng.random((40, 6, 6)).tolist(), "seeds": 2,
            "filter_shapes": [[3, 3]], "filters": 1, "fit_samples": 20, "activation": "leaky_relu",
            "negative_slope": 0.2}
    answer = http.post("/v1/experiments", json=spec)
    assert answer.status_code == 202, answer.text
    done = wait_job(http, answer.headers["location"], timeout=120)
    assert done["status"] == "succeeded", done
    assert done["spec"]["activation"] == "leaky_relu" and done["spec"]["negative_slope"] == 0.2
    assert done["result"]["activation"] == "leaky_relu"
    local = run_experiment({**spec, "images": np.asarray(spec["images"])}, progress=lambda *a: None,
                           should_stop=lambda: False)
    for key in ("rmse_raw", "rmse_filter", "rmse_random"):
        assert done["result"][key] == pytest.approx(local[key], rel=1e-9), key
    bad = assert_problem(http.post("/v1/experiments", json={**spec, "negative_slope": 1.5}), 422)
    assert bad.get("parameter") == "negative_slope", bad
    bad = assert_problem(http.post("/v1/experiments", json={**spec, "activation": "tanh"}), 422)
    assert bad.get("parameter") == "activation", bad
