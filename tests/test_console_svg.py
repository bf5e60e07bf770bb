"""The console's SVG pictures of a filter, parsed as XML: one shape per entry, colours and sizes as stated."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnnrelax.api.console import svg

NS = {"svg": "http://www.w3.org/2000/svg"}
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


def _rgb(fill: str) -> tuple[int, int, int]:
    return int(fill[1:3], 16), int(fill[3:5], 16), int(fill[5:7], 16)


def test_the_scale_ends_and_middle() -> None:
    assert svg.colour(2.0, 2.0) == "#b2182b"
    assert svg.colour(-2.0, 2.0) == "#2166ac"
    assert svg.colour(0.0, 2.0) == "#f7f7f7"
    assert svg.colour(5.0, 2.0) == svg.colour(2.0, 2.0)  # clipped
    assert svg.colour(1.0, 0.0) == "#f7f7f7"  # an all-zero filter is white


@given(st.floats(min_value=0, max_value=1), st.floats(min_value=0, max_value=1))
def test_a_larger_magnitude_is_darker(a: float, b: float) -> None:
    low, high = sorted((a, b))
    for sign in (1.0, -1.0):
        assert sum(_rgb(svg.colour(sign * high, 1.0))) <= sum(_rgb(svg.colour(sign * low, 1.0)))


@given(st.integers(1, 6), st.integers(1, 6), st.data())
def test_a_heat_map_has_a_cell_per_entry_with_its_value(rows: int, columns: int, data: st.DataObject) -> None:
    w = data.draw(st.lists(finite, min_size=rows * columns, max_size=rows * columns))
    root = ET.fromstring(str(svg.heat_map(w, rows, columns)))
    cells = [rect for rect in root.iter("{http://www.w3.org/2000/svg}rect") if rect.get("class") == "cell"]
    assert len(cells) == rows * columns
    scale = max(abs(v) for v in w)
    for index, cell in enumerate(cells):
        i, j = divmod(index, columns)
        size = svg.cell_size(rows, columns)
        assert (int(cell.get("x", "")) // size, (int(cell.get("y", "")) - 10) // size) == (j, i)
        title = cell.find("svg:title", NS)
        assert title is not None and title.text == f"w[{i},{j}] = {w[index]:.4g}"
        red, _, blue = _rgb(cell.get("fill", ""))
        assert red == blue or (red > blue) == (w[index] > 0)
        if scale > 0 and abs(w[index]) == scale:
            assert cell.get("fill") in ("#b2182b", "#2166ac")


@given(st.lists(finite, min_size=1, max_size=30))
def test_bars_are_as_tall_as_their_entries(w: list[float]) -> None:
    root = ET.fromstring(str(svg.bars(w, w_star=[v / 2 for v in w])))
    bars = [rect for rect in root.iter("{http://www.w3.org/2000/svg}rect") if rect.get("class") == "bar"]
    ticks = [line for line in root.iter("{http://www.w3.org/2000/svg}line") if line.get("class") == "w-star"]
    assert len(bars) == len(ticks) == len(w)
    scale = max(abs(v) for v in w) or 1.0
    for value, bar in zip(w, bars, strict=True):
        assert math.isclose(float(bar.get("height", "")), abs(value) / scale * svg.BAR_HEIGHT / 2, abs_tol=0.01)


def test_a_wrong_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="2 x 2"):
        svg.heat_map([1.0, 2.0, 3.0], 2, 2)
