"""Out-of-core passes (issue 20): the patch tensor behind a data source (cnnrelax.core.patches).

A memory-mapped ``X`` is read in blocks of rows; every primitive (map, reduction, gather) must give what the
whole in-memory tensor gives, for every patching, and a problem that fits in one block must give the same bits.
A solve from a memory map of 200 MB runs in a subprocess whose anonymous memory (``RssAnon``: the page cache the
map reads through does not count) is sampled against a chunk plus the working set; the same solve after a copy of
``X`` must break that bound (the measure can fail).
"""

from __future__ import annotations

import json
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer

from cnnrelax.cli.commands import load_problem_data
from cnnrelax.core import (
    InvalidParameterError,
    PlantedSpec,
    SolveOptions,
    SolveResult,
    make_patching,
    make_problem,
    planted_problem,
    solve,
)
from cnnrelax.core import patches as patches_module
from cnnrelax.core.activations import ACTIVATIONS
from cnnrelax.core.passes import label_moment, preactivations
from cnnrelax.core.patches import (
    CHUNK_BYTES,
    SOURCE_KINDS,
    ChunkedPatches,
    InMemoryPatches,
    PatchLayout,
    PatchSource,
    register_source_kind,
    source_kind,
)
from cnnrelax.datafiles import checked_dataset

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


SOLVE_CASES = [(act, name) for act in ACTIVATIONS for name in ("blocks", "weighted", "strided")
               if not (name == "weighted" and act == "softplus")]  # softplus cannot fold output weights


def _solve_pair(tmp_path: Path, activation: str, name: str, one_block: bool) -> tuple[SolveResult, SolveResult]:
    pp = planted_problem(PlantedSpec(n=120, d=12, k=3, seed=7, activation=activation))
    X, y = pp.problem.X, pp.problem.y
    options = SolveOptions(trials=2, seed=1, coverage_samples=8)
    dense = make_problem(X, y, activation=activation, **PATCHINGS[name])
    mapped = make_problem(_memmap(tmp_path, X), y, activation=activation, **PATCHINGS[name])
    assert isinstance(mapped.source, ChunkedPatches) and (mapped.source.rows_per_block >= 120) == one_block
    return solve(dense, options), solve(mapped, options)


@pytest.mark.parametrize(("activation", "name"), SOLVE_CASES)
def test_a_memmapped_solve_equals_the_in_memory_one(tmp_path: Path, activation: str, name: str) -> None:
    """One block (the problem is small): the same kernels on the same numbers, so the same bits throughout."""
    dense, mapped = _solve_pair(tmp_path, activation, name, one_block=True)
    assert dense.status == mapped.status
    assert repr(dense.w) == repr(mapped.w) and dense.loss == mapped.loss
    assert repr(dense.certificate) == repr(mapped.certificate)


@pytest.mark.parametrize(("activation", "name"), [("relu", "strided"), ("leaky_relu", "blocks"), ("absolute", "image"),
                                                  ("squared_relu", "weighted"), ("softplus", "blocks")])
def test_a_solve_over_many_blocks_gives_the_same_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        activation: str, name: str) -> None:
    """Blocks of 9 rows (5 when strided): sums in another order, so equal to rounding, with the same verdicts."""
    monkeypatch.setattr(patches_module, "CHUNK_BYTES", 9 * 8 * 12)
    dense, mapped = _solve_pair(tmp_path, activation, name, one_block=False)
    assert dense.status == mapped.status
    assert dense.w is not None and mapped.w is not None
    scale = float(np.max(np.abs(dense.w)))
    np.testing.assert_allclose(mapped.w, dense.w, atol=1e-9 * scale)
    assert dense.loss is not None and mapped.loss is not None
    assert abs(mapped.loss - dense.loss) <= 1e-9 * (1.0 + dense.loss)
    assert dense.certificate is not None and mapped.certificate is not None
    assert mapped.certificate.global_optimum == dense.certificate.global_optimum
    assert mapped.certificate.cone.certified == dense.certificate.cone.certified


PROBE = Path(__file__).resolve().parents[1] / "bench" / "scale_probe.py"


def _probe(*args: str | Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, str(PROBE), *map(str, args)], capture_output=True, text=True,
                          timeout=600, check=True)
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}
    return out


def _planted_on_disk(directory: Path, n: int) -> Path:
    _probe("write", directory, "--n", n, "--d", 400, "--k", 4, "--seed", 2)
    return directory


def _bound(n: int, k: int) -> int:
    """A chunk of patches plus the working set: a block's worth of rows (its gradient rows, the QR slices), a
    dozen ``(n, k)`` vectors (pre-activations, norms, masks, weights), and 32 MiB for the working-set LP."""
    return CHUNK_BYTES + 12 * n * k * 8 + 32 * 2**20


@pytest.fixture(scope="module")
def mapped_200mb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _planted_on_disk(tmp_path_factory.mktemp("mapped"), 62_500)  # 62500 x 400 float64: 200 MB


def test_a_solve_on_a_memmap_holds_a_chunk_not_a_copy(mapped_200mb: Path) -> None:
    """A subprocess solves from the memory map (trials, polish, measures) with its anonymous memory sampled: the
    rise stays within a chunk plus the working set, far below the 200 MB of X, and w* is recovered."""
    result = _probe("solve", mapped_200mb, "--k", 4, "--stage", "trials")
    assert result["x_bytes"] == 200_000_000
    assert result["anon_rise"] <= _bound(62_500, 4) < result["x_bytes"] / 2, result
    assert result["w_error"] <= 1e-9 and result["passes"] > 5


def test_the_memory_bound_catches_a_copy_of_x(mapped_200mb: Path) -> None:
    """The control: the same solve after ``np.array(X)`` (one copy) breaks the bound."""
    result = _probe("solve", mapped_200mb, "--k", 4, "--stage", "trials", "--copy")
    assert result["anon_rise"] > _bound(62_500, 4), result
    assert result["anon_rise"] >= result["x_bytes"]


@pytest.fixture()
def opted_in(request: pytest.FixtureRequest) -> None:
    if "out_of_core_long" not in (request.config.option.markexpr or ""):
        pytest.skip("opt-in: run with pytest -m out_of_core_long")


@pytest.mark.out_of_core_long
@pytest.mark.usefixtures("opted_in")
def test_a_2gb_memmap_is_solved_within_the_same_bound(tmp_path: Path) -> None:
    """Opt-in (``pytest -m out_of_core_long``): 2 GB of X (625000 x 400), the same bound."""
    directory = _planted_on_disk(tmp_path, 625_000)
    result = _probe("solve", directory, "--k", 4, "--stage", "trials")
    assert result["anon_rise"] <= _bound(625_000, 4) < result["x_bytes"] / 4, result
    assert result["w_error"] <= 1e-9


def test_the_cli_keeps_an_npy_dataset_memory_mapped(tmp_path: Path) -> None:
    """``.npy`` data files open memory-mapped: ``X`` (the columns before ``y``) reaches the core as a map, the
    finiteness check reads it in blocks, and a NaN is still refused naming X."""
    X = np.random.default_rng(8).standard_normal((50, 6))
    np.save(tmp_path / "data.npy", np.column_stack([X, X[:, 0]]))
    mapped, y = load_problem_data(tmp_path / "data.npy", None)
    assert isinstance(mapped, np.memmap)
    np.testing.assert_array_equal(mapped, X)
    assert isinstance(make_problem(mapped, y, k=2).source, ChunkedPatches)
    X[3, 2] = np.nan
    np.save(tmp_path / "bad.npy", np.column_stack([X, X[:, 1]]))
    with pytest.raises(typer.Exit):
        load_problem_data(tmp_path / "bad.npy", None)
    with pytest.raises(InvalidParameterError, match=r"X contains NaN .*index \(3, 2\)"):
        checked_dataset(np.load(tmp_path / "bad.npy", mmap_mode="r")[:, :-1], X[:, 1])
