"""Datasets as arrays: the checks and layouts shared by the API's uploads and the CLI's data files.

A dataset is ``X`` (n x d) and ``y`` (n), real and finite. It comes as an ``.npz`` archive with arrays ``X``
and ``y``, or as one matrix whose last column is ``y`` (``.npy``, CSV). The CLI opens ``.npy`` files
memory-mapped, so a file larger than memory is solved out of core (docs/scale.md). The API decodes upload bodies
(priced first, in :mod:`cnnrelax.api.datasets`); the CLI reads files (:func:`read_file`); both end in
:func:`split_labels` / :func:`npz_arrays` and :func:`checked_dataset`, which raise
:class:`~cnnrelax.core.problem.InvalidParameterError` naming ``X``, ``y`` or ``body``.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .core.patches import source_kind
from .core.problem import FloatArray
from .errors import InvalidParameterError


def real_dtype(array: Any, name: str) -> Any:
    """``array`` itself, refused when its dtype is not real numbers (bool, integers, floats)."""
    if array.dtype.kind not in "biuf":
        raise InvalidParameterError(name, f"{name} must hold real numbers, got dtype {array.dtype}.")
    return array


def finite_float(array: Any, name: str) -> FloatArray:
    """``array`` as float64, refused when it is not real numbers or holds NaN or infinities."""
    array = real_dtype(np.asarray(array), name)
    out: FloatArray = np.asarray(array, dtype=np.float64)
    if not np.isfinite(out).all():
        raise InvalidParameterError(name, f"{name} contains NaN or infinite values.")
    return out


def checked_dataset(X: Any, y: Any) -> tuple[FloatArray, FloatArray]:
    """``X`` (a non-empty n x d matrix) and ``y`` (n labels), real and finite; ``X`` is checked as the core's data
    source for its type reads it (:func:`cnnrelax.core.patches.source_kind`): an in-memory ``X`` becomes float64, a
    memory map is checked block by block and stays mapped (no copy).

    Parameters
    ----------
    X, y : array_like
        The data and the labels.

    Returns
    -------
    tuple of ndarray
        ``X`` (float64, or the memory map as given) and ``y`` as float64.
    """
    Xf, yf = source_kind(X).prepare(X), finite_float(y, "y")
    if yf.ndim != 1 or yf.shape[0] != Xf.shape[0]:
        raise InvalidParameterError("y", f"y must be a vector of the n={Xf.shape[0]} labels, got shape {yf.shape}.")
    return Xf, yf


def split_labels(matrix: Any, what: str = "A .npy dataset") -> tuple[Any, Any]:
    """``X`` and ``y`` of one n x (d+1) matrix whose last column is ``y`` (views, no copy; a memory map stays one)."""
    array = np.asanyarray(matrix)
    if array.ndim != 2 or array.shape[1] < 2:
        raise InvalidParameterError("body", f"{what} is one n x (d+1) array with y in the last column; got shape "
                                            f"{array.shape}.")
    return array[:, :-1], array[:, -1]


def npz_arrays(archive: Mapping[str, Any], names: tuple[str, ...]) -> tuple[Any, Any]:
    """``X`` and ``y`` of an ``.npz`` archive's members (``names`` lists what it holds)."""
    missing = [name for name in ("X", "y") if name not in names]
    if missing:
        raise InvalidParameterError("body", f"The .npz archive lacks {' and '.join(missing)}; it holds "
                                            f"{', '.join(names) or 'nothing'}.")
    return archive["X"], archive["y"]


def image_set(images: Any, angles: Any | None) -> tuple[FloatArray, FloatArray, tuple[int, int], bool]:
    """An image set (rotated digits on stored images) as a dataset: one flattened image a row, the angles as labels.

    Parameters
    ----------
    images : array_like
        ``N x H x W``, real and finite.
    angles : array_like, optional
        One angle per image (degrees); without them the labels are zeros (the experiment rotates the images).

    Returns
    -------
    tuple
        ``X`` (N x H W), ``y`` (N), ``(H, W)`` and whether angles were given.
    """
    stack = finite_float(images, "images")
    if stack.ndim != 3 or 0 in stack.shape:
        raise InvalidParameterError("images", f"images must be a non-empty N x H x W array, got shape {stack.shape}.")
    count, height, width = stack.shape
    if angles is None:
        return stack.reshape(count, height * width), np.zeros(count), (int(height), int(width)), False
    labels = finite_float(angles, "angles").reshape(-1)
    if labels.shape[0] != count:
        raise InvalidParameterError("angles", f"angles must hold one angle per image ({count}), got {labels.shape[0]}.")
    return stack.reshape(count, height * width), labels, (int(height), int(width)), True


def read_csv(path: Path) -> FloatArray:
    """A numeric CSV file as a float64 matrix (a header line is skipped)."""
    with path.open(newline="") as handle:
        rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    if not rows:
        raise InvalidParameterError("data", f"{path} holds no rows.")
    try:
        [float(cell) for cell in rows[0]]
    except ValueError:
        rows = rows[1:]  # a header line
    try:
        return np.array([[float(cell) for cell in row] for row in rows], dtype=np.float64)
    except ValueError as error:
        raise InvalidParameterError("data", f"{path} is not a numeric CSV: {error}.") from None


def read_file(path: Path) -> FloatArray | dict[str, FloatArray]:
    """An ``.npy`` array, the arrays of an ``.npz`` archive, or a numeric CSV (header line optional).

    Parameters
    ----------
    path : Path
        The file.

    Returns
    -------
    ndarray or dict of ndarray
        The array (``.npy``, CSV) or the archive's arrays by name (``.npz``), float64.
    """
    if not path.exists():
        raise InvalidParameterError("data", f"{path} does not exist.")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            # Memory-mapped: a dataset larger than memory is read in blocks by the core (cnnrelax.core.patches),
            # and checked the same way (checked_dataset), never copied whole.
            mapped: FloatArray = real_dtype(np.load(path, mmap_mode="r", allow_pickle=False), str(path))
            return mapped
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                return {name: np.asarray(archive[name], dtype=np.float64) for name in archive.files}
    except (ValueError, OSError) as error:
        raise InvalidParameterError("data", f"could not read {path}: {error}") from None
    if suffix in (".csv", ".txt"):
        return read_csv(path)
    raise InvalidParameterError("data", f"{path}: unsupported file type {suffix!r}; use .npy, .npz or .csv.")
