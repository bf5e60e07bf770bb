"""The paper's experiments as resumable, cancellable sweeps of independent cells.

Contract (the service's job runner relies on it):

- ``validate_experiment(spec) -> dict``: a normalised spec with defaults, or ``InvalidParameterError``.
- ``list_cells(spec) -> list[dict]`` and ``run_cell(spec, cell) -> dict``: top-level, picklable; a cell's
  result carries the cell's own keys, so results may arrive in any order (e.g. from Dask tasks).
- ``run_experiment(spec, *, progress, should_stop, resume=None, map_cells=None) -> dict``: runs the cells
  not already in ``resume["cells"]``, calls ``progress(done, total, partial_state)`` after each one
  (``partial_state = {"kind", "cells"}`` is what to pass back as ``resume`` after a restart), and raises
  :class:`ExperimentCancelled` soon after ``should_stop()`` turns true. ``map_cells(run, cells)`` may run
  ``run(cell)`` elsewhere (a process pool, Dask) and yield results as they finish; without it cells run
  here, one after the other, and a cell stops mid-way when asked.
- ``render_figure(result) -> bytes``: a PNG (matplotlib is imported only then).
"""

from __future__ import annotations

import functools
import time
from typing import Any, Iterable, Protocol

from ..problem import InvalidParameterError
from . import phase_transition, rotated_digits
from .common import ExperimentCancelled, MapCells, Progress, ShouldStop, check_stop


class ExperimentKind(Protocol):
    """What each experiment module provides (:mod:`.phase_transition`, :mod:`.rotated_digits`)."""

    def validate(self, spec: dict[str, Any]) -> dict[str, Any]: ...

    def list_cells(self, spec: dict[str, Any]) -> list[dict[str, Any]]: ...

    def cell_key(self, cell: dict[str, Any]) -> tuple[Any, ...]: ...

    def run_cell(self, spec: dict[str, Any], cell: dict[str, Any],
                 should_stop: ShouldStop | None = None) -> dict[str, Any]: ...

    def assemble(self, spec: dict[str, Any], cells: list[dict[str, Any]], elapsed: float) -> dict[str, Any]: ...


KINDS: dict[str, ExperimentKind] = {"phase_transition": phase_transition, "rotated_digits": rotated_digits}

__all__ = [
    "ExperimentCancelled", "KINDS", "figure_size_px", "list_cells", "public_spec", "render_figure", "run_cell",
    "run_experiment", "validate_experiment",
]


def render_figure(result: dict[str, Any]) -> bytes:
    """PNG bytes of the result's figure (matplotlib is imported on the first call)."""
    from .figures import render_figure as render

    return render(result)


def figure_size_px(result: dict[str, Any]) -> tuple[int, int]:
    """Width and height in pixels of :func:`render_figure`'s PNG."""
    from .figures import figure_size_px as size

    return size(result)


def public_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A normalised spec as the API shows it: inline image arrays replaced by their shape."""
    if isinstance(spec, dict) and spec.get("kind") == "rotated_digits":
        return rotated_digits.public_spec(spec)
    return dict(spec)


def _module(spec: Any) -> ExperimentKind:
    if not isinstance(spec, dict):
        raise InvalidParameterError("kind", f"An experiment spec must be a JSON object, got {type(spec).__name__}.")
    kind = spec.get("kind")
    if kind not in KINDS:
        raise InvalidParameterError("kind", f"kind must be one of {', '.join(KINDS)}, got {kind!r}.")
    return KINDS[kind]


def validate_experiment(spec: dict[str, Any]) -> dict[str, Any]:
    """Check ``spec`` and return it normalised with every default filled in."""
    return _module(spec).validate(spec)


def list_cells(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The independent cells of a normalised spec."""
    return _module(spec).list_cells(spec)


def run_cell(spec: dict[str, Any], cell: dict[str, Any], should_stop: ShouldStop | None = None) -> dict[str, Any]:
    """Run one cell of a normalised spec (picklable: a Dask task or a pool worker can call it)."""
    return _module(spec).run_cell(spec, cell, should_stop)


def run_experiment(
    spec: dict[str, Any],
    *,
    progress: Progress,
    should_stop: ShouldStop,
    resume: dict[str, Any] | None = None,
    map_cells: MapCells | None = None,
) -> dict[str, Any]:
    """Validate, run every cell not yet done (reporting progress), and assemble the result."""
    spec = validate_experiment(spec)
    module = _module(spec)
    cells = module.list_cells(spec)
    wanted = {module.cell_key(c) for c in cells}
    done: dict[Any, dict[str, Any]] = {}
    if resume:
        if resume.get("kind") not in (None, spec["kind"]):
            raise InvalidParameterError("resume", f"resume state of kind {resume.get('kind')!r} does not fit a "
                f"{spec['kind']} spec.")
        for result in resume.get("cells", []):
            key = module.cell_key(result)
            if key in wanted:
                done[key] = result
    total = len(cells)
    todo = [c for c in cells if module.cell_key(c) not in done]
    start = time.monotonic()

    def state() -> dict[str, Any]:
        return {"kind": spec["kind"], "cells": list(done.values())}

    progress(len(done), total, state())
    if todo:
        check_stop(should_stop)
    if map_cells is None:
        for cell in todo:
            result = module.run_cell(spec, cell, should_stop)
            done[module.cell_key(result)] = result
            progress(len(done), total, state())
            check_stop(should_stop)
    elif todo:
        results: Iterable[dict[str, Any]] = map_cells(functools.partial(run_cell, spec), todo)
        try:
            for result in results:
                done[module.cell_key(result)] = result
                progress(len(done), total, state())
                check_stop(should_stop)
        finally:
            close = getattr(results, "close", None)
            if close is not None:
                close()
    return module.assemble(spec, list(done.values()), time.monotonic() - start)
