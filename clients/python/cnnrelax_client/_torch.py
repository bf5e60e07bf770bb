"""``to_torch(result)``: a solve's fitted network as a ``torch.nn.Module`` (PyTorch is optional).

The module computes ``f_w(x) = sum_j c_j sigma(P_j x . w)`` for rows ``x`` of length ``d`` from the result's
``network`` description (patching, activation, output weights) and its filter ``w``, in float64, exactly as the
service's network predicts. Its filter is an ``nn.Parameter``: the module can be fine-tuned like any other.
The patch index is rebuilt here from the description (the client does not import the service); the service's
tests check that it equals the service's own index for every patching.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
import numpy.typing as npt

from ._models import SolveResult

__all__ = ["to_torch", "patch_index", "TORCH_MISSING"]

TORCH_MISSING = ("to_torch needs PyTorch, which is optional for cnnrelax_client: install it with `pip install torch` "
                 "(the CPU build is enough).")

IndexArray = npt.NDArray[np.intp]


def _blocks(d: int, fields: Mapping[str, Any]) -> IndexArray:
    k = int(fields["k"])
    return np.arange(d).reshape(k, d // k)


def _strided(d: int, fields: Mapping[str, Any]) -> IndexArray:
    size, stride = int(fields["size"]), int(fields["stride"])
    count = (d - size) // stride + 1
    return np.arange(count)[:, None] * stride + np.arange(size)[None, :]


def _image(d: int, fields: Mapping[str, Any]) -> IndexArray:
    height, width = int(fields["height"]), int(fields["width"])
    rows, cols, stride = int(fields["filter_height"]), int(fields["filter_width"]), int(fields["stride"])
    top = np.arange(0, height - rows + 1, stride)
    left = np.arange(0, width - cols + 1, stride)
    dr, dc = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    starts = (top[:, None] * width + left[None, :]).ravel()
    out: IndexArray = starts[:, None] + (dr * width + dc).ravel()[None, :]
    return out


#: Patch indices by the patching's ``kind``: rows of length ``d`` cut into ``(k, m)`` column indices.
PATCH_INDEX: dict[str, Callable[[int, Mapping[str, Any]], IndexArray]] = {
    "blocks": _blocks, "strided": _strided, "image": _image}


def patch_index(network: Mapping[str, Any]) -> IndexArray:
    """The ``(k, m)`` column index of each patch, from a result's ``network`` description."""
    patching = network["patching"]
    return PATCH_INDEX[str(patching["kind"])](int(network["d"]), patching)


def _description(result: SolveResult | Mapping[str, Any]) -> tuple[Mapping[str, Any], Any]:
    raw = result.raw if isinstance(result, SolveResult) else result
    network, w = raw.get("network"), raw.get("w")
    if network is None or w is None:
        raise ValueError("This result has no fitted network to export (no filter w, or a result from a server "
                         "older than result.network): solve again with a current server.")
    return network, w


def to_torch(result: SolveResult | Mapping[str, Any]) -> Any:
    """The fitted network of a solve's result as a ``torch.nn.Module`` (float64).

    Parameters
    ----------
    result : a :class:`SolveResult` (from :meth:`Client.solve` ...) or the result's JSON dict.

    Returns
    -------
    A ``torch.nn.Module`` mapping a ``(N, d)`` float64 tensor to the ``(N,)`` predictions; ``module.w`` is the
    filter (an ``nn.Parameter``), ``module.index`` the ``(k, m)`` patch index and ``module.c`` the output weights.

    Raises
    ------
    ImportError
        When PyTorch is not installed (the message says ``pip install torch``).
    """
    try:
        import torch
    except ImportError as exc:  # PyTorch is an optional dependency of the client
        raise ImportError(TORCH_MISSING) from exc
    network, w = _description(result)
    activations: dict[str, Callable[[Any], Any]] = {
        "relu": torch.relu,
        "leaky_relu": lambda u: torch.nn.functional.leaky_relu(u, float(network["negative_slope"])),
        "absolute": torch.abs,
        "squared_relu": lambda u: torch.relu(u) ** 2,
        "softplus": lambda u: torch.relu(u) + torch.log1p(torch.exp(-torch.abs(u))),
    }
    sigma = activations[str(network["activation"])]
    index = patch_index(network)
    shape = f"activation={network['activation']}, d={int(network['d'])}, k={index.shape[0]}, m={index.shape[1]}"

    class ConvNetwork(torch.nn.Module):
        """``f_w(x) = sum_j c_j sigma(x[index[j]] . w)``: one hidden convolutional layer, summed."""

        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor(np.asarray(w, dtype=np.float64)))
            self.register_buffer("index", torch.as_tensor(index, dtype=torch.long))
            self.register_buffer("c", torch.tensor(np.asarray(network["output_weights"], dtype=np.float64)))

        def forward(self, X: Any) -> Any:
            patches = X[:, self.index]  # (N, k, m)
            return (sigma(patches @ self.w) * self.c).sum(dim=1)

        def extra_repr(self) -> str:
            return shape

    return ConvNetwork()
