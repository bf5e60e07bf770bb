"""The solve options, typed once for the client: what ``POST /v1/solves`` takes besides the problem source.

:class:`SolveOptions` mirrors the service's one definition of the options (``cnnrelax.specs.SolveOptionsBase``,
inherited there by the request schema and the stored spec; ``tests/test_client_parity.py`` checks the two
agree). Every member is optional: a member left out takes the server's default. The client's methods take
them as typed keyword arguments (``client.submit(planted=..., trials=4, relaxation="qp", beta=1e-4)``) or as
one ``options=SolveOptions(...)`` mapping.

``stop_on_certificate`` (server default true) ends a solve at the first trial whose zero loss certifies a
global minimum: fewer trials run than asked, and the job's ``progress`` says so (``done`` of ``total``).
"""

from __future__ import annotations

from typing import Any, Literal, Mapping, Sequence, TypedDict

__all__ = ["Activation", "Relaxation", "SolveOptions", "TrialOptions", "option_members"]

Relaxation = Literal["lp", "qp", "naive"]
Activation = Literal["relu", "leaky_relu", "absolute", "squared_relu", "softplus"]


class TrialOptions(TypedDict, total=False):
    """The options of the trials themselves (every solve, planted ones included)."""

    #: ``lp`` (beta -> 0), ``qp`` (beta > 0) or ``naive``.
    relaxation: Relaxation
    #: Weight of the random linear term of the QP (dimensionless: the data are normalised by their scales).
    beta: float
    #: Randomized trials asked for (each a seeded direction r).
    trials: int
    #: Stop at the first trial certified globally optimal (zero loss); the server's default is true.
    stop_on_certificate: bool
    #: Least squares on the activation pattern of each trial's filter.
    polish: bool
    #: Convex constraints on w: nonnegative, lower, upper, l1_bound, l2_bound, equality/inequality matrices.
    constraints: Mapping[str, Any]
    #: Relative error that counts as recovering the planted filter.
    recovery_tol: float
    #: Run-time limit in seconds (capped by the server's).
    time_limit_s: float
    #: Directions sampled to estimate the certificate's coverage (0 skips it).
    coverage_samples: int
    #: The hidden layer's activation; a planted model's labels are drawn with it.
    activation: Activation
    #: leaky_relu's slope for negative inputs, in (0, 1).
    negative_slope: float


class SolveOptions(TrialOptions, total=False):
    """Every solve option: the trials' and the patching of a data source, and the trials' seed."""

    #: Patches per row of a data source (d = k*m); default 1.
    k: int
    #: A warm start of length m (e.g. a PyTorch filter): polished and certified first; trials run only if it is not.
    w_init: Sequence[float] | Any
    #: Seed of the trials' directions.
    seed: int
    #: c_j >= 0, one per patch (data sources).
    output_weights: Sequence[float] | Any
    #: 1-D patches of this length (with ``stride``).
    patch_size: int
    #: Stride of 1-D or 2-D patches.
    stride: int
    #: [H, W] of 2-D rows.
    image_shape: Sequence[int]
    #: [p, q] of a 2-D filter.
    filter_shape: Sequence[int]


def option_members(options: Mapping[str, Any] | None, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` updated by keyword ``overrides``, without the members left ``None`` (server defaults)."""
    merged = {**dict(options or {}), **overrides}
    return {key: value for key, value in merged.items() if value is not None}
