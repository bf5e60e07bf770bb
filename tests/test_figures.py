"""Figures a reader accepts: labelled colour bars, n's spacing stated, a title with repetitions, trials and seed,
the success within T trials beside the per-trial rate (checked against 1 - (1 - p)^T from the cells), every text
at least 10 pt, the learned filters on a labelled colour scale."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pytest

from cnnrelax.experiments import run_experiment
from cnnrelax.experiments.figures import FONT_PT, SMALL_PT, figure, spacing_note

PHASE = {"kind": "phase_transition", "k": 1, "d": [4, 8], "n": [10, 20, 40], "repetitions": 2, "trials": 2,
         "seed": 7, "methods": ["relaxation", "pseudo_inverse"]}
DIGITS = {"kind": "rotated_digits", "seeds": 2, "filters": 2, "max_images": 200, "filter_shapes": [[3, 3], [4, 4]]}


def run(spec: dict[str, Any]) -> dict[str, Any]:
    return run_experiment(spec, progress=lambda *args: None, should_stop=lambda: False)


@pytest.fixture(scope="module")
def phase() -> dict[str, Any]:
    return run(PHASE)


@pytest.fixture(scope="module")
def digits() -> dict[str, Any]:
    return run(DIGITS)


def texts(fig: Any) -> list[Any]:
    """Every visible text of a figure, tick labels and colour-bar labels included."""
    return [t for t in fig.findobj(match=lambda artist: hasattr(artist, "get_fontsize") and hasattr(artist, "get_text"))
            if t.get_text().strip() and t.get_visible()]


def colour_bars(fig: Any) -> list[Any]:
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def test_every_text_is_readable_and_every_colour_bar_says_what_it_shows(phase: dict[str, Any],
                                                                       digits: dict[str, Any]) -> None:
    for result, bars in ((phase, 3), (digits, 1)):
        fig = figure(result)
        try:
            sizes = [t.get_fontsize() for t in texts(fig)]
            assert sizes and min(sizes) >= SMALL_PT >= 10
            found = colour_bars(fig)
            assert len(found) == bars
            for bar in found:
                assert (bar.get_ylabel() or bar.get_xlabel()).strip(), "an unlabelled colour bar"
        finally:
            plt.close(fig)


def test_the_phase_title_names_repetitions_trials_and_seed_and_n_is_labelled_with_its_spacing(
        phase: dict[str, Any]) -> None:
    fig = figure(phase)
    try:
        title = fig.get_suptitle()
        assert "2 repetitions" in title and "2 trials" in title and "seed 7" in title and "k = 1" in title
        assert fig._suptitle.get_fontsize() > FONT_PT  # noqa: SLF001 - matplotlib keeps the suptitle there
        labels = {ax.get_ylabel() for ax in fig.axes if ax.get_label() != "<colorbar>"}
        assert labels == {"n, samples (doubles from row to row)"}
    finally:
        plt.close(fig)


def test_the_success_within_t_trials_is_one_minus_one_minus_p_to_the_t(phase: dict[str, Any]) -> None:
    fig = figure(phase)
    try:
        panels = [ax for ax in fig.axes if "success within T = 8" in ax.get_title()]
        assert len(panels) == len(PHASE["methods"])
        for ax, method in zip(panels, PHASE["methods"], strict=True):
            shown = np.ma.filled(ax.get_images()[0].get_array(), np.nan)
            expected = np.full((len(PHASE["n"]), len(PHASE["d"])), np.nan)
            for cell in phase["cells"]:
                if cell["method"] == method:
                    i, j = PHASE["n"].index(cell["n"]), PHASE["d"].index(cell["d"])
                    expected[i, j] = 1 - (1 - cell["success_rate"]) ** 8
            np.testing.assert_allclose(shown, expected, rtol=1e-12)
        per_trial = [ax for ax in fig.axes if "per-trial success rate p" in ax.get_title()]
        assert len(per_trial) == 1  # the relaxation's; the pseudo-inverse's is per solve
    finally:
        plt.close(fig)


def test_the_filters_share_one_symmetric_colour_scale(digits: dict[str, Any]) -> None:
    fig = figure(digits)
    try:
        images = [ax.get_images()[0] for ax in fig.axes if ax.get_images()]
        assert len(images) == 4  # two filters of each of the two shapes
        limits = {image.get_clim() for image in images}
        assert len(limits) == 1
        low, high = limits.pop()
        largest = max(float(np.max(np.abs(f))) for v in digits["variants"] for f in v["filters"])
        assert low == -high and high == pytest.approx(largest)
        assert "filter weight" in colour_bars(fig)[0].get_ylabel()
        assert "2 seed" in fig.get_suptitle()
    finally:
        plt.close(fig)


@pytest.mark.parametrize(("values", "note"), [([40, 80, 160, 320], "doubles from row to row"),
                                              ([10, 30, 90], "x3 from row to row"),
                                              ([10, 20, 30], "+10 from row to row"),
                                              ([10, 20, 50], "rows not evenly spaced"), ([5], "one value")])
def test_the_spacing_note_says_how_n_grows(values: list[int], note: str) -> None:
    assert spacing_note(values) == note
