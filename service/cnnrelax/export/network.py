"""The fitted network as a self-contained description: filter, patching, activation and output weights.

The network predicts ``f_w(x) = sum_j c_j sigma(P_j x . w)`` for a row ``x`` of length ``d``: patch ``j`` gathers
the columns ``index[j]`` of ``x`` (non-overlapping blocks, strided 1-D windows or 2-D image windows, as
:class:`cnnrelax.core.problem.Patching` builds them), ``w`` is the filter, ``sigma`` the activation and ``c_j >= 0``
the output weights. This is the same function as :meth:`cnnrelax.core.problem.ConvProblem.predict`, which folds
``c`` into the patches (``c sigma(u) = sigma(s u)``); here the weights stay outside the activation, as a reader
of the model expects.

:func:`network_description` is the JSON form a solve's result carries (``result.network``); every exporter (ONNX,
the client's PyTorch module) builds from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np
from numpy.typing import NDArray

from ..core.activations import DEFAULT_NEGATIVE_SLOPE, Activation, make_activation
from ..core.problem import BlockPatching, ConvProblem, FloatArray, ImagePatching, Patching, StridedPatching
from ..errors import InvalidParameterError

#: The patchings by their ``kind`` (the tag their description carries).
PATCHINGS: dict[str, type[BlockPatching] | type[StridedPatching] | type[ImagePatching]] = {
    "blocks": BlockPatching, "strided": StridedPatching, "image": ImagePatching}


@dataclass(frozen=True)
class Network:
    """A fitted one-hidden-layer convolutional network, ready to export or evaluate.

    Attributes
    ----------
    w : the filter, length ``m``.
    d : the row length the network reads.
    patching : how rows are cut into ``k`` patches of length ``m``.
    output_weights : ``c_j >= 0``, one per patch.
    activation : the hidden layer's activation.
    """

    w: FloatArray
    d: int
    patching: Patching
    output_weights: FloatArray
    activation: Activation

    @property
    def patch_index(self) -> NDArray[np.intp]:
        """``(k, m)`` column indices of each patch."""
        return self.patching.index(self.d)

    @property
    def negative_slope(self) -> float:
        """Leaky ReLU's slope for negative inputs (the others have none: their default is reported)."""
        slope = getattr(self.activation, "lo", None)  # a piecewise-linear activation's lower slope
        return float(slope) if self.activation.name == "leaky_relu" and slope is not None else DEFAULT_NEGATIVE_SLOPE

    def predict(self, X: Any) -> FloatArray:
        """``f_w(x_i)`` for the rows of ``X`` (``n x d``)."""
        rows = np.asarray(X, dtype=np.float64)
        pre = rows[:, self.patch_index] @ self.w
        values: FloatArray = self.activation.value(pre) @ self.output_weights
        return values

    def describe(self) -> dict[str, Any]:
        """The JSON description (``result.network``)."""
        return {"d": self.d, "m": int(self.w.shape[0]), "patching": asdict(self.patching),
                "activation": self.activation.name, "negative_slope": self.negative_slope,
                "output_weights": [float(c) for c in self.output_weights]}


def network_of(problem: ConvProblem, w: FloatArray) -> Network:
    """The network of ``problem`` with the filter ``w``."""
    return Network(w=np.asarray(w, dtype=np.float64), d=problem.d, patching=problem.patching,
                   output_weights=np.asarray(problem.output_weights, dtype=np.float64), activation=problem.activation)


def network_description(problem: ConvProblem) -> dict[str, Any]:
    """The description of ``problem``'s network without its filter (what a result adds beside ``w``)."""
    return network_of(problem, np.zeros(problem.m)).describe()


def network_from_description(description: Mapping[str, Any], w: Any) -> Network:
    """Rebuild a :class:`Network` from its description and a filter (checked against each other).

    Parameters
    ----------
    description : ``result.network`` (see :meth:`Network.describe`).
    w : the filter.

    Returns
    -------
    The network.
    """
    fields = dict(description["patching"])
    kind = fields.pop("kind")
    patching: Patching = PATCHINGS[kind](**fields)
    d = int(description["d"])
    network = Network(w=np.asarray(w, dtype=np.float64), d=d, patching=patching,
                      output_weights=np.asarray(description["output_weights"], dtype=np.float64),
                      activation=make_activation(description["activation"], float(description["negative_slope"])))
    k, m = patching.shape(d)
    if network.w.shape != (m,) or network.output_weights.shape != (k,):
        raise InvalidParameterError("w", f"The filter has shape {network.w.shape} and the output weights "
                                         f"{network.output_weights.shape}, but the patching makes k={k} patches "
                                         f"of length m={m}.")
    return network
