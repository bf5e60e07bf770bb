"""Shared pieces of the experiments: cancellation, parameter checks and seeds derived from a spec."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..problem import InvalidParameterError

ShouldStop = Callable[[], bool]
Progress = Callable[[int, int, dict[str, Any]], None]
CellRunner = Callable[[dict[str, Any]], dict[str, Any]]
MapCells = Callable[[CellRunner, list[dict[str, Any]]], Iterable[dict[str, Any]]]


class ExperimentCancelled(Exception):
    """Raised inside an experiment when ``should_stop()`` turned true; the partial state stays valid."""


def check_stop(should_stop: ShouldStop | None) -> None:
    """Raise :class:`ExperimentCancelled` when the caller asked to stop."""
    if should_stop is not None and should_stop():
        raise ExperimentCancelled("The experiment was cancelled.")


def positive_int(spec: dict[str, Any], name: str, default: Any, *, maximum: int | None = None) -> int:
    """``spec[name]`` (or the default) as an integer in ``[1, maximum]``."""
    value = spec.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidParameterError(name, f"{name} must be a positive integer, got {value!r}.")
    if maximum is not None and value > maximum:
        raise InvalidParameterError(name, f"{name} must be at most {maximum}, got {value!r}.")
    return int(value)


def non_negative_int(spec: dict[str, Any], name: str, default: int) -> int:
    value = spec.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InvalidParameterError(name, f"{name} must be a non-negative integer, got {value!r}.")
    return int(value)


def positive_float(spec: dict[str, Any], name: str, default: Any, *, allow_none: bool = False) -> float | None:
    value = spec.get(name, default)
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value) or value <= 0:
        raise InvalidParameterError(name, f"{name} must be a positive finite number, got {value!r}.")
    return float(value)


def int_list(spec: dict[str, Any], name: str, default: Sequence[int], *, maximum: int,
             max_length: int = 64) -> list[int]:
    """``spec[name]`` as a sorted list of distinct positive integers no larger than ``maximum``."""
    value = spec.get(name, default)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise InvalidParameterError(name, f"{name} must be a non-empty list of positive integers, got {value!r}.")
    out: list[int] = []
    for entry in value:
        if isinstance(entry, bool) or not isinstance(entry, (int, np.integer)) or entry < 1:
            raise InvalidParameterError(name, f"{name} must contain positive integers only, got {entry!r}.")
        if entry > maximum:
            raise InvalidParameterError(name, f"{name} entries must be at most {maximum}, got {entry!r}.")
        out.append(int(entry))
    out = sorted(set(out))
    if len(out) > max_length:
        raise InvalidParameterError(name, f"{name} may have at most {max_length} entries, got {len(out)}.")
    return out


def derived_seed(*parts: int) -> int:
    """A 31-bit seed derived from integer parts (``numpy.random.SeedSequence``), stable across processes."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint32)[0] >> 1)
