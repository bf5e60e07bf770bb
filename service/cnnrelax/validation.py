"""Checks of single values that several layers make (the API's boundary, the job specs, the CLI).

Each raises :class:`~cnnrelax.core.problem.InvalidParameterError` naming the parameter, the value and what is
accepted, in the core's message style.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import InvalidParameterError

#: The largest integer every JSON parser reads exactly (an IEEE double holds it), and SQLite's integers too.
MAX_EXACT_INTEGER = 2**53 - 1
#: The largest seed.
MAX_SEED = MAX_EXACT_INTEGER


def is_integer(value: Any) -> bool:
    """True for a Python or numpy integer (``bool`` is not one)."""
    return not isinstance(value, bool) and isinstance(value, (int, np.integer))


def positive_integer(name: str, value: Any, *, label: str | None = None) -> int:
    """``value`` as an ``int`` when it is an integer >= 1.

    Parameters
    ----------
    name : str
        The parameter named by the error.
    value : Any
        The value to check.
    label : str, optional
        How the message names it (e.g. ``planted.n``); default ``name``.

    Returns
    -------
    int
        The value.
    """
    if not is_integer(value) or value < 1:
        raise InvalidParameterError(name, f"{label or name} must be a positive integer, got {value!r}.")
    return int(value)


def non_negative_integer(name: str, value: Any, *, label: str | None = None) -> int:
    """``value`` as an ``int`` when it is an integer >= 0 (see :func:`positive_integer`)."""
    if not is_integer(value) or value < 0:
        raise InvalidParameterError(name, f"{label or name} must be a non-negative integer, got {value!r}.")
    return int(value)


def positive_number(name: str, value: Any, *, label: str | None = None) -> float:
    """``value`` as a ``float`` when it is a finite number > 0 (see :func:`positive_integer`)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or value <= 0:
        raise InvalidParameterError(name, f"{label or name} must be a positive number, got {value!r}.")
    return float(value)
