"""Out-of-core passes (issue 20): the patch tensor behind a data source (cnnrelax.core.patches).

A memory-mapped ``X`` is read in blocks of rows; every primitive (map, reduction, gather) must give what the
whole in-memory tensor gives, for every patching, and a problem that fits in one block must give the same bits.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cnnrelax.core import InvalidParameterError, make_patching, make_problem
from cnnrelax.core.passes import label_moment, preactivations
from cnnrelax.core.patches import (
    SOURCE_KINDS,
    ChunkedPatches,
    InMemoryPatches,
    PatchLayout,
    PatchSource,
    register_source_kind,
    source_kind,
)

PATCHINGS: dict[str, dict[str, Any]] = {
    "blocks": {"k": 3},
    "weighted": {"k": 3, "output_weights": [0.5, 2.0, 1.0]},
    "strided": {"patching": make_patching(patch_size=4, stride=2)},
    "image": {"patching": make_patching(image_shape=(3, 4), filter_shape=(2, 2))},
}


def _memmap(tmp_path: Path, X: np.ndarray) -> np.ndarray:
    np.save(tmp_path / "X.npy", X)
    mapped: np.ndarray = np.load(tmp_path / "X.npy", mmap_mode="r")
    return mapped


@pytest.mark.parametrize("name", sorted(PATCHINGS))
def test_chunked_primitives_equal_the_whole_tensor(tmp_path: Path, name: str) -> None:
    rng = np.random.default_rng(3)
    X, y, w = rng.standard_normal((101, 12)), rng.standard_normal(101), rng.standard_normal(4)
    dense = make_problem(X, y, **PATCHINGS[name])
    mapped = make_problem(_memmap(tmp_path, X), y, **PATCHINGS[name])
    assert isinstance(dense.source, InMemoryPatches) and isinstance(mapped.source, ChunkedPatches)
    mapped.source.rows_per_block = 7  # 15 blocks, the last one short
    A = dense.patches  # the independent computation: einsum over the whole tensor
    np.testing.assert_allclose(mapped.preactivations(w), np.einsum("ikm,m->ik", A, w), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(mapped.patch_norms(), np.linalg.norm(A, axis=2), rtol=1e-13)
    np.testing.assert_allclose(mapped.gradient_rows(w), dense.gradient_rows(w), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(mapped.source.reduce_rows(label_moment, y), np.einsum("i,ikm->m", y, A),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(mapped.source.map_rows(partial(preactivations, w=w)), mapped.preactivations(w))
    np.testing.assert_allclose(mapped.scales, dense.scales, rtol=1e-14)
    rows = np.array([100, 0, 7, 7, 50])
    np.testing.assert_array_equal(mapped.source.take(rows), A[rows])
    np.testing.assert_array_equal(mapped.on_rows(rows).patches, A[rows])
    assert mapped.loss(w) == pytest.approx(dense.loss(w), rel=1e-13)


def test_a_memmap_in_one_block_gives_the_same_bits(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    X, y, w = rng.standard_normal((64, 12)), rng.standard_normal(64), rng.standard_normal(4)
    dense, mapped = make_problem(X, y, k=3), make_problem(_memmap(tmp_path, X), y, k=3)
    assert mapped.source.rows_per_block >= 64
    assert mapped.scales == dense.scales
    np.testing.assert_array_equal(mapped.preactivations(w), dense.preactivations(w))
    np.testing.assert_array_equal(mapped.gradient_rows(w), dense.gradient_rows(w))


def test_the_memmap_is_validated_without_being_read_into_memory(tmp_path: Path) -> None:
    X = np.ones((40, 6))
    X[33, 4] = np.nan
    X[35, 0] = np.inf
    with pytest.raises(InvalidParameterError, match=r"\(2 of them, the first at index \(33, 4\)\)"):
        make_problem(_memmap(tmp_path, X), np.ones(40), k=2)
    mapped = make_problem(_memmap(tmp_path, np.ones((40, 6))), np.ones(40), k=2)
    assert isinstance(mapped.X, np.memmap)  # kept as given: no copy


class _Tagged(np.ndarray):
    """An array type no backend serves yet."""


class _CountingKind:
    """A backend registered by one call: in memory, but counting the sources it opens."""

    def __init__(self) -> None:
        self.opened = 0

    def prepare(self, X: Any) -> Any:
        return np.asarray(X, dtype=np.float64)

    def open(self, X: Any, layout: PatchLayout) -> PatchSource:
        self.opened += 1
        return InMemoryPatches(X, layout)


def test_a_backend_is_one_registered_object() -> None:
    X = np.random.default_rng(5).standard_normal((10, 4)).view(_Tagged)
    assert source_kind(X) is SOURCE_KINDS[np.ndarray]  # the nearest registered base type
    kind = _CountingKind()
    register_source_kind(_Tagged, kind)
    try:
        assert source_kind(X) is kind
        make_problem(X, np.ones(10), k=2)
        assert kind.opened == 1
    finally:
        del SOURCE_KINDS[_Tagged]
