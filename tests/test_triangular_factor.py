"""The streamed triangular factor of ``[G | t]`` (cnnrelax.core.passes.triangular_factor) makes the rows one QR
slice at a time: it must be the factor of the rows formed at once, bit for bit, and solve the least squares."""

from __future__ import annotations

import numpy as np
import pytest

from cnnrelax.core import passes


@pytest.mark.parametrize(("b", "k", "m"), [(1, 1, 3), (7, 2, 5), (1023, 1, 8), (1024, 4, 8), (1025, 4, 8),
                                            (3000, 3, 20), (2100, 2, 300)])
def test_streamed_factor_is_the_factor_of_the_rows_formed_at_once(b: int, k: int, m: int) -> None:
    rng = np.random.default_rng([b, k, m])
    patches = rng.standard_normal((b, k, m))
    weights = np.where(rng.random((b, k)) > 0.4, 1.0, 0.25)
    target = rng.standard_normal(b)
    streamed = passes.triangular_factor(patches, weights, target)
    G = np.einsum("ik,ikm->im", weights, patches)
    at_once = passes.TriangularFactor.of_system(G, target)
    assert np.array_equal(streamed.R, at_once.R)
    expected = np.linalg.lstsq(G, target, rcond=None)[0]
    assert np.allclose(streamed.solve(), expected, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize(("b", "k", "m", "zero_share"), [(2000, 1, 50, 0.5), (3000, 4, 20, 0.1), (50, 2, 5, 1.0)])
def test_rows_of_zero_weight_are_left_out_and_change_no_solution(b: int, k: int, m: int, zero_share: float) -> None:
    """Rows with ``g_i = 0`` (ReLU's samples with no active patch) only add ``t_i^2`` to ``rho^2``: left out, the
    factor keeps ``R11^T R11 = G^T G`` and ``R11^T z = G^T t``, and solves the same least squares."""
    rng = np.random.default_rng([b, k, m])
    patches = rng.standard_normal((b, k, m))
    weights = np.where(rng.random((b, k)) > 0.4, 1.0, 0.25)
    weights[rng.random(b) < zero_share] = 0.0
    target = rng.standard_normal(b)
    streamed = passes.triangular_factor(patches, weights, target)
    G = np.einsum("ik,ikm->im", weights, patches)
    R11, z = streamed.R[:, :-1], streamed.R[:, -1]
    scale = max(1.0, float(np.abs(G.T @ G).max()))
    assert np.allclose(R11.T @ R11, G.T @ G, rtol=0, atol=1e-10 * scale)
    assert np.allclose(R11.T @ z, G.T @ target, rtol=0, atol=1e-10 * scale)
    expected = np.linalg.lstsq(G, target, rcond=None)[0]
    assert np.allclose(streamed.solve(), expected, rtol=1e-8, atol=1e-10)
    kept = np.any(weights != 0, axis=1)
    if kept.any():  # the factor of the kept rows formed at once, bit for bit
        assert np.array_equal(streamed.R, passes.TriangularFactor.of_system(G[kept], target[kept]).R)
    else:
        assert not streamed.R.any()
