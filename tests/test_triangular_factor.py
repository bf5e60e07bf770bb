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
