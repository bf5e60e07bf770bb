"""The paper's experiments as resumable, cancellable sweeps of independent cells.

Contract (the service's job runner relies on it):

- A job's spec is typed per kind (:mod:`.specs`: :class:`~.specs.PhaseTransitionSpec`,
  :class:`~.specs.RotatedDigitsSpec`, discriminated by ``kind``): its parameters, defaults and checks are
  defined there once. :func:`parse_experiment_spec` builds one from a request (a mapping), naming the
  parameter of any error.
- ``list_cells(spec) -> list[dict]`` and ``run_cell(spec, cell) -> dict``: top-level, picklable (the spec is
  a pydantic model, a cell a plain dict); a cell's result carries the cell's own keys, so results may arrive
  in any order (e.g. from Dask tasks).
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
from typing import Any, Iterable, Mapping, Protocol

from ..core.problem import InvalidParameterError
from . import phase_transition, rotated_digits
from .common import ExperimentCancelled, MapCells, Progress, ShouldStop, check_stop
from .specs import ExperimentSpec, PhaseTransitionSpec, RotatedDigitsSpec, parse_experiment_spec


class ExperimentKind(Protocol):
    """What each experiment module provides (:mod:`.phase_transition`, :mod:`.rotated_digits`) for its spec."""

    def list_cells(self, spec: Any) -> list[dict[str, Any]]: ...

    def cell_key(self, cell: dict[str, Any]) -> tuple[Any, ...]: ...

    def run_cell(self, spec: Any, cell: dict[str, Any], should_stop: ShouldStop | None = None) -> dict[str, Any]: ...

    def assemble(self, spec: Any, cells: list[dict[str, Any]], elapsed: float) -> dict[str, Any]: ...


KINDS: dict[str, ExperimentKind] = {"phase_transition": phase_transition, "rotated_digits": rotated_digits}
#: What :func:`run_experiment` takes: a typed spec, or a mapping parsed into one (in-process callers).
SpecLike = PhaseTransitionSpec | RotatedDigitsSpec | Mapping[str, Any]

__all__ = [
    "ExperimentCancelled", "ExperimentSpec", "KINDS", "PhaseTransitionSpec", "RotatedDigitsSpec", "figure_size_px",
    "list_cells", "parse_experiment_spec", "render_figure", "run_cell", "run_experiment",
]


def render_figure(result: dict[str, Any]) -> bytes:
    """PNG bytes of the result's figure (matplotlib is imported on the first call)."""
    from .figures import render_figure as render

    return render(result)


def figure_size_px(result: dict[str, Any]) -> tuple[int, int]:
    """Width and height in pixels of :func:`render_figure`'s PNG."""
    from .figures import figure_size_px as size

    return size(result)


def _module(spec: PhaseTransitionSpec | RotatedDigitsSpec) -> ExperimentKind:
    return KINDS[spec.kind]


def list_cells(spec: SpecLike) -> list[dict[str, Any]]:
    """The independent cells of a spec."""
    typed = parse_experiment_spec(spec)
    return _module(typed).list_cells(typed)


def run_cell(spec: PhaseTransitionSpec | RotatedDigitsSpec, cell: dict[str, Any],
             should_stop: ShouldStop | None = None) -> dict[str, Any]:
    """Run one cell of a typed spec (picklable: a Dask task or a pool worker can call it)."""
    return _module(spec).run_cell(spec, cell, should_stop)


def run_experiment(
    spec: SpecLike,
    *,
    progress: Progress,
    should_stop: ShouldStop,
    resume: dict[str, Any] | None = None,
    map_cells: MapCells | None = None,
) -> dict[str, Any]:
    """Run every cell of ``spec`` not yet done (reporting progress), and assemble the result.

    Parameters
    ----------
    spec : PhaseTransitionSpec, RotatedDigitsSpec or mapping
        The typed spec (as the worker hands it); a mapping is parsed first (:func:`parse_experiment_spec`).
    progress : callable
        ``progress(done, total, partial_state)``.
    should_stop : callable
        Polled between cells (and inside a cell run here).
    resume : dict, optional
        A partial state reported earlier: its cells are not run again.
    map_cells : callable, optional
        Runs cells elsewhere (see the module's contract).

    Returns
    -------
    dict
        The result (``kind``, ``spec``, ``cells``, ...).
    """
    typed = parse_experiment_spec(spec)
    module = _module(typed)
    cells = module.list_cells(typed)
    wanted = {module.cell_key(c) for c in cells}
    done: dict[Any, dict[str, Any]] = {}
    if resume:
        if resume.get("kind") not in (None, typed.kind):
            raise InvalidParameterError("resume", f"resume state of kind {resume.get('kind')!r} does not fit a "
                f"{typed.kind} spec.")
        for result in resume.get("cells", []):
            key = module.cell_key(result)
            if key in wanted:
                done[key] = result
    total = len(cells)
    todo = [c for c in cells if module.cell_key(c) not in done]
    start = time.monotonic()

    def state() -> dict[str, Any]:
        return {"kind": typed.kind, "cells": list(done.values())}

    progress(len(done), total, state())
    if todo:
        check_stop(should_stop)
    if map_cells is None:
        for cell in todo:
            result = module.run_cell(typed, cell, should_stop)
            done[module.cell_key(result)] = result
            progress(len(done), total, state())
            check_stop(should_stop)
    elif todo:
        results: Iterable[dict[str, Any]] = map_cells(functools.partial(run_cell, typed), todo)
        try:
            for result in results:
                done[module.cell_key(result)] = result
                progress(len(done), total, state())
                check_stop(should_stop)
        finally:
            close = getattr(results, "close", None)
            if close is not None:
                close()
    return module.assemble(typed, list(done.values()), time.monotonic() - start)
