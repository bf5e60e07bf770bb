"""The fitted network taken away: the ONNX model (through onnxruntime) and the client's ``to_torch`` module predict
as the service's own network (:meth:`ConvProblem.predict`) for every activation and every patching; the client's
patch index is the core's."""

from __future__ import annotations

import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnrelax.core.activations import ACTIVATIONS
from cnnrelax.core.problem import BlockPatching, ImagePatching, Patching, StridedPatching, make_problem
from cnnrelax.export.network import network_description, network_from_description
from cnnrelax.export.onnx import ACTIVATION_BUILDERS, onnx_bytes
from cnnrelax_client import to_torch
from cnnrelax_client._torch import TORCH_MISSING, patch_index

#: (patching, d): blocks, overlapping strided 1-D windows, 2-D image windows with a stride.
PATCHINGS: list[tuple[Patching, int]] = [
    (BlockPatching(3), 12),
    (StridedPatching(size=4, stride=2), 13),
    (ImagePatching(height=6, width=5, filter_height=3, filter_width=2, stride=2), 30),
]


def _problem(activation: str, patching: Patching, d: int, seed: int = 0) -> tuple[object, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((40, d))
    k, m = patching.shape(d)
    weights = None if activation == "softplus" else rng.uniform(0.2, 2.0, k)  # softplus takes unit weights only
    problem = make_problem(X, np.ones(40), patching=patching, output_weights=weights, activation=activation,
                           negative_slope=0.3)
    return problem, X, rng.standard_normal(m)


def _relative(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.max(np.abs(got - want)) / max(float(np.max(np.abs(want))), 1e-300))


def test_every_activation_has_a_builder() -> None:
    assert set(ACTIVATION_BUILDERS) == set(ACTIVATIONS)


@pytest.mark.parametrize("patching,d", PATCHINGS, ids=["blocks", "strided", "image"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_onnx_and_torch_predict_as_the_network(activation: str, patching: Patching, d: int) -> None:
    problem, X, w = _problem(activation, patching, d)
    want = problem.predict(w)  # type: ignore[attr-defined]
    description = network_description(problem)  # type: ignore[arg-type]
    model = onnx_bytes(network_from_description(description, w))
    onnx.checker.check_model(onnx.load_from_string(model), full_check=True)
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["X"]
    got = session.run(None, {"X": X})[0]
    assert got.dtype == np.float64 and got.shape == (40,)
    assert _relative(got, want) <= 1e-6
    torch = pytest.importorskip("torch")
    module = to_torch({"w": w.tolist(), "network": description})
    assert isinstance(module, torch.nn.Module)
    with torch.no_grad():
        predicted = module(torch.tensor(X)).numpy()
    assert _relative(predicted, want) <= 1e-6
    # the filter is a parameter: gradients flow (a module one can fine-tune)
    module(torch.tensor(X)).sum().backward()
    assert module.w.grad is not None and module.w.grad.shape == (w.shape[0],)


def test_a_different_filter_predicts_differently() -> None:
    """The model carries the filter: a test that cannot pass with any filter."""
    problem, X, w = _problem("relu", *PATCHINGS[0])
    model = onnx_bytes(network_from_description(network_description(problem), -w))  # type: ignore[arg-type]
    got = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"X": X})[0]
    assert _relative(got, problem.predict(w)) > 1e-2  # type: ignore[attr-defined]


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_the_clients_patch_index_is_the_cores(data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(["blocks", "strided", "image"]))
    patching: Patching
    if kind == "blocks":
        k = data.draw(st.integers(1, 6))
        patching, d = BlockPatching(k), k * data.draw(st.integers(1, 6))
    elif kind == "strided":
        d = data.draw(st.integers(1, 30))
        patching = StridedPatching(data.draw(st.integers(1, d)), data.draw(st.integers(1, 5)))
    else:
        height, width = data.draw(st.integers(1, 8)), data.draw(st.integers(1, 8))
        patching = ImagePatching(height, width, data.draw(st.integers(1, height)), data.draw(st.integers(1, width)),
                                 data.draw(st.integers(1, 3)))
        d = height * width
    description = {"d": d, "patching": {**patching.__dict__}}
    np.testing.assert_array_equal(patch_index(description), patching.index(d))


def test_to_torch_without_torch_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    with pytest.raises(ImportError, match="pip install torch") as caught:
        to_torch({"w": [1.0], "network": {}})
    assert str(caught.value) == TORCH_MISSING


def test_a_result_without_a_network_is_refused() -> None:
    with pytest.raises(ValueError, match="no fitted network"):
        to_torch({"w": None, "network": None})
