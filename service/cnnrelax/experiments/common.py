"""Shared pieces of the experiments: cancellation and seeds derived from a spec (the checks live in :mod:`.specs`)."""

from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np

ShouldStop = Callable[[], bool]
Progress = Callable[[int, int, dict[str, Any]], None]
CellRunner = Callable[[dict[str, Any]], dict[str, Any]]
MapCells = Callable[[CellRunner, list[dict[str, Any]]], Iterable[dict[str, Any]]]


class ExperimentCancelled(Exception):
    """Raised inside an experiment when ``should_stop()`` turned true; the partial state stays valid.

    :func:`cnnrelax.experiments.run_experiment` sets ``partial`` to the result assembled from the cells finished
    so far (marked ``partial: true``) before the exception leaves it.
    """

    partial: dict[str, Any] | None = None


def check_stop(should_stop: ShouldStop | None) -> None:
    """Raise :class:`ExperimentCancelled` when the caller asked to stop."""
    if should_stop is not None and should_stop():
        raise ExperimentCancelled("The experiment was cancelled.")


def derived_seed(*parts: int) -> int:
    """A 31-bit seed derived from integer parts (``numpy.random.SeedSequence``), stable across processes."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint32)[0] >> 1)

#: The formats an experiment's figure is written in, with their media types.
FIGURE_MEDIA_TYPES = {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf"}
#: The resolutions a figure may be asked for (dots per inch): a PNG's pixel count grows with the square.
MIN_DPI, MAX_DPI = 36, 300
