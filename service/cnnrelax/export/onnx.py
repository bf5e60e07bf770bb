"""The fitted network as an ONNX model (built with ``onnx.helper``; no PyTorch needed).

The graph, in float64 throughout, for an input ``X`` of shape ``(N, d)``:

    P = Gather(X, index, axis=1)      (N, k, m)   patch j of row i: the columns index[j]
    U = MatMul(P, w)                  (N, k)      pre-activations X_ij . w
    S = sigma(U)                      (N, k)      one builder per activation (ACTIVATION_BUILDERS)
    y = ReduceSum(S * c, axis=1)      (N,)        the output weights' sum

``index`` is the patching's ``(k, m)`` column index (blocks, strided 1-D or 2-D image windows alike), so one graph
serves every patching. Softplus is written ``relu(u) + log(1 + exp(-|u|))`` (ONNX Runtime has no float64
``Softplus`` kernel; the form does not overflow) and leaky ReLU ``max(u, a u)`` with ``a`` a float64 constant
(``LeakyRelu``'s ``alpha`` attribute is a float32). The model predicts as
:meth:`cnnrelax.core.problem.ConvProblem.predict` to rounding.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .. import __version__
from .network import Network

#: The opset the graph uses (ReduceSum takes its axes as an input from 13 on).
OPSET = 17
#: The IR version: the one ONNX Runtime releases of the last years all read.
IR_VERSION = 8

#: A builder appends the nodes computing ``output = sigma(input)`` and returns them.
ActivationBuilder = Callable[[Network, str, str], list[onnx.NodeProto]]


def _relu(network: Network, source: str, target: str) -> list[onnx.NodeProto]:
    return [helper.make_node("Relu", [source], [target])]


def _constant(name: str, value: float) -> onnx.NodeProto:
    """A float64 scalar (an attribute such as LeakyRelu's ``alpha`` is float32: not exact enough)."""
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(value, dtype=np.float64)))


def _leaky_relu(network: Network, source: str, target: str) -> list[onnx.NodeProto]:
    return [_constant("slope", network.negative_slope),
            helper.make_node("Mul", [source, "slope"], ["sloped"]),
            helper.make_node("Max", [source, "sloped"], [target])]


def _absolute(network: Network, source: str, target: str) -> list[onnx.NodeProto]:
    return [helper.make_node("Abs", [source], [target])]


def _squared_relu(network: Network, source: str, target: str) -> list[onnx.NodeProto]:
    return [helper.make_node("Relu", [source], ["positive"]),
            helper.make_node("Mul", ["positive", "positive"], [target])]


def _softplus(network: Network, source: str, target: str) -> list[onnx.NodeProto]:
    return [_constant("one", 1.0),
            helper.make_node("Relu", [source], ["positive"]),
            helper.make_node("Abs", [source], ["magnitude"]),
            helper.make_node("Neg", ["magnitude"], ["negative_magnitude"]),
            helper.make_node("Exp", ["negative_magnitude"], ["decay"]),
            helper.make_node("Add", ["decay", "one"], ["one_plus_decay"]),
            helper.make_node("Log", ["one_plus_decay"], ["correction"]),
            helper.make_node("Add", ["positive", "correction"], [target])]


#: One builder per activation of :data:`cnnrelax.core.activations.ACTIVATIONS`.
ACTIVATION_BUILDERS: dict[str, ActivationBuilder] = {
    "relu": _relu, "leaky_relu": _leaky_relu, "absolute": _absolute, "squared_relu": _squared_relu,
    "softplus": _softplus,
}


def onnx_model(network: Network) -> onnx.ModelProto:
    """The network as a checked ONNX model with input ``X`` ``(N, d)`` and output ``y`` ``(N,)``, both float64.

    Parameters
    ----------
    network : the fitted network.

    Returns
    -------
    The model (``onnx.checker`` has passed it).
    """
    index = network.patch_index
    k, m = index.shape
    initializers = [
        numpy_helper.from_array(index.astype(np.int64), "index"),
        numpy_helper.from_array(network.w.astype(np.float64), "w"),
        numpy_helper.from_array(network.output_weights.astype(np.float64), "c"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "sum_axis"),
    ]
    nodes = [helper.make_node("Gather", ["X", "index"], ["patches"], axis=1),
             helper.make_node("MatMul", ["patches", "w"], ["pre"]),
             *ACTIVATION_BUILDERS[network.activation.name](network, "pre", "hidden"),
             helper.make_node("Mul", ["hidden", "c"], ["weighted"]),
             helper.make_node("ReduceSum", ["weighted", "sum_axis"], ["y"], keepdims=0)]
    graph = helper.make_graph(
        nodes, "cnnrelax_network",
        [helper.make_tensor_value_info("X", TensorProto.DOUBLE, ["N", network.d])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N"])],
        initializer=initializers,
    )
    graph.doc_string = (f"One-hidden-layer convolutional network: y = sum_j c_j {network.activation.name}(P_j x . w), "
                        f"{k} patches of length {m} from rows of length {network.d}.")
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="cnnrelax",
                              producer_version=__version__)
    model.ir_version = IR_VERSION
    helper.set_model_props(model, {"activation": network.activation.name,
                                   "patching": type(network.patching).__name__})
    onnx.checker.check_model(model, full_check=True)
    return model


def onnx_bytes(network: Network) -> bytes:
    """The serialised model (what ``GET /v1/solves/{id}/model.onnx`` sends)."""
    serialised: bytes = onnx_model(network).SerializeToString()
    return serialised
