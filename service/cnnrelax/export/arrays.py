"""A solve's result as numpy files: ``filter.npy`` (the selected filter) and ``result.npz`` (every array of it).

``result.npz`` holds, all float64:

- ``w`` ``(m,)``: the selected filter (absent when no trial produced one);
- ``w_star`` ``(m,)``: the planted filter (planted problems only);
- ``r`` ``(T, m)``: each trial's direction;
- ``trial_w`` and ``trial_w_polished`` ``(T, m)``: each trial's filter before selection, and after polishing
  (a row of NaN where the trial has none, as ``null`` in the JSON);
- ``trial_loss``, ``trial_raw_loss``, ``trial_objective`` ``(T,)``: the same per-trial numbers as the JSON
  (NaN for ``null``);
- ``loss`` ``()``: the selected filter's loss (NaN for ``null``).

Every array equals the JSON member it mirrors (``tests/test_downloads.py``).
"""

from __future__ import annotations

import io
from typing import Any, Mapping

import numpy as np

from ..core.problem import FloatArray
from ..errors import InvalidParameterError


def _rows(trials: list[Mapping[str, Any]], key: str, m: int) -> FloatArray:
    out = np.full((len(trials), m), np.nan)
    for i, trial in enumerate(trials):
        if trial.get(key) is not None:
            out[i] = trial[key]
    return out


def _numbers(trials: list[Mapping[str, Any]], key: str) -> FloatArray:
    return np.array([np.nan if trial.get(key) is None else trial[key] for trial in trials], dtype=np.float64)


def result_arrays(result: Mapping[str, Any]) -> dict[str, FloatArray]:
    """The arrays of ``result.npz`` (module docstring) from a result's JSON."""
    m = int(result["shape"]["m"])
    trials = list(result.get("trials") or [])
    arrays: dict[str, FloatArray] = {
        "r": _rows(trials, "r", m), "trial_w": _rows(trials, "w", m),
        "trial_w_polished": _rows(trials, "w_polished", m), "trial_loss": _numbers(trials, "loss"),
        "trial_raw_loss": _numbers(trials, "raw_loss"), "trial_objective": _numbers(trials, "objective"),
        "loss": np.array(np.nan if result.get("loss") is None else result["loss"], dtype=np.float64),
    }
    for key in ("w", "w_star"):
        if result.get(key) is not None:
            arrays[key] = np.asarray(result[key], dtype=np.float64)
    return arrays


def result_npz(result: Mapping[str, Any]) -> bytes:
    """``result.npz`` (uncompressed: a filter's numbers do not compress)."""
    buffer = io.BytesIO()
    np.savez(buffer, **result_arrays(result))  # type: ignore[arg-type]  # numpy's stub types **kwds loosely
    return buffer.getvalue()


def filter_npy(result: Mapping[str, Any]) -> bytes:
    """``filter.npy``: the selected filter ``w`` as a float64 vector of length ``m``.

    Raises
    ------
    InvalidParameterError
        When the result has no filter (no trial produced one).
    """
    if result.get("w") is None:
        raise InvalidParameterError("job_id", f"This solve produced no filter (status {result.get('status')}): "
                                              "there is nothing to download.")
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(result["w"], dtype=np.float64), allow_pickle=False)
    return buffer.getvalue()
