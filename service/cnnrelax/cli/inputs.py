"""What the commands read: ``key=value`` and number lists from options, the data, labels, filter and image
files (read by :mod:`cnnrelax.datafiles`, shared with the API's dataset uploads); bad input ends the command
with a sentence naming it (exit 2 for a usage error)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, cast

import numpy as np
import typer

from ..datafiles import checked_dataset, read_file, split_labels
from ..errors import InvalidParameterError
from .render import fail

PLANTED_FIELDS: dict[str, Callable[[str], Any]] = {
    "n": int, "d": int, "k": int, "seed": int, "noise_std": float, "distribution": str,
}


def parse_key_values(text: str, what: str) -> dict[str, str]:
    """``"a=1,b=2"`` -> ``{"a": "1", "b": "2"}``."""
    out: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise typer.BadParameter(f"{what}: expected key=value pairs separated by commas, got {item!r}.")
        out[key.strip()] = value.strip()
    return out


def parse_planted(text: str) -> dict[str, Any]:
    """``"n=2000,d=20,k=1,seed=0"`` -> a planted spec dict (``noise_std`` defaults to 0)."""
    raw = parse_key_values(text, "--planted")
    unknown = sorted(set(raw) - set(PLANTED_FIELDS))
    if unknown:
        raise typer.BadParameter(f"--planted: unknown field(s) {', '.join(unknown)}; "
                                 f"known: {', '.join(PLANTED_FIELDS)}.")
    missing = [name for name in ("n", "d") if name not in raw]
    if missing:
        raise typer.BadParameter(f"--planted needs {' and '.join(missing)} (e.g. n=2000,d=20,k=1,seed=0).")
    spec: dict[str, Any] = {"k": 1, "seed": 0, "noise_std": 0.0}
    for key, value in raw.items():
        try:
            spec[key] = PLANTED_FIELDS[key](value)
        except ValueError:
            raise typer.BadParameter(f"--planted: {key}={value!r} is not a valid "
                                     f"{PLANTED_FIELDS[key].__name__}.") from None
    return spec


def parse_number_list(text: str, what: str, kind: Callable[[str], Any] = float) -> list[Any]:
    """``"1,2,3"`` -> ``[1, 2, 3]`` (``kind`` converts each item)."""
    try:
        return [kind(part) for part in (p.strip() for p in text.split(",")) if part]
    except ValueError:
        raise typer.BadParameter(f"{what}: expected numbers separated by commas, got {text!r}.") from None


def parse_settings(settings: list[str]) -> dict[str, Any]:
    """``--set key=value`` pairs; values are parsed as JSON when they can be (numbers, lists, ...)."""
    out: dict[str, Any] = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--set expects key=value, got {item!r}.")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def check_problem_source(data: Path | None, planted: str | None) -> None:
    """Exit 2 unless exactly one of a DATA file and ``--planted`` is given."""
    if (data is None) == (planted is None):
        fail("give exactly one problem source: a DATA file or --planted n=...,d=...", code=2)


def parse_output_weights(text: str | None) -> list[float] | None:
    """``--output-weights``: ``c_j`` per patch, comma-separated (``None`` when not given)."""
    return parse_number_list(text, "--output-weights") if text else None


def load_array(path: Path) -> np.ndarray | dict[str, np.ndarray]:
    """An ``.npy`` array, the arrays of an ``.npz`` archive, or a numeric CSV (:func:`cnnrelax.datafiles.read_file`)."""
    try:
        return read_file(path)
    except InvalidParameterError as error:
        fail(error.message)


def load_problem_data(data_path: Path, labels_path: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` from a data file and an optional labels file, checked as the API checks uploads.

    ``.npz``: arrays ``X`` and ``y``. ``.npy`` / ``.csv``: a matrix whose last column is ``y``, unless
    ``labels_path`` gives the labels separately (then the whole matrix is ``X``).
    """
    loaded = load_array(data_path)
    y: np.ndarray | None = None
    if isinstance(loaded, dict):
        X = loaded.get("X", loaded.get("x"))
        y = loaded.get("y", loaded.get("Y"))
        if X is None:
            fail(f"{data_path} has no array named X (it has: {', '.join(loaded) or 'none'}).")
    else:
        X = loaded
    try:
        if labels_path is not None:
            labels = load_array(labels_path)
            if isinstance(labels, dict):
                labels = labels.get("y", next(iter(labels.values()), np.empty(0)))
            y = np.ravel(labels)
        elif y is None:
            X, y = split_labels(X, f"{data_path} (without --labels)")
        return checked_dataset(X, y)
    except InvalidParameterError as error:
        fail(error.message)


def read_filter(text: str) -> list[float]:
    """``--w``: comma-separated numbers, or a ``.npy`` / ``.npz`` (array ``w``) / ``.csv`` file holding them."""
    path = Path(text)
    if path.suffix.lower() in (".npy", ".npz", ".csv") and path.exists():
        loaded = load_array(path)
        array = loaded["w"] if isinstance(loaded, dict) and "w" in loaded else loaded
        if isinstance(array, dict):
            fail(f"--w {path}: expected an .npz archive with an array named 'w'.", code=2)
        return [float(value) for value in np.asarray(array, dtype=np.float64).reshape(-1)]
    return parse_number_list(text, "--w")


def check_images_archive(path: Path) -> None:
    """Exit 2 unless ``path`` is an ``.npz`` archive naming an array ``images`` (read lazily: nothing is inflated;
    the service, or the in-process spec, checks the arrays themselves)."""
    names: list[str] = []
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError):  # not a file numpy reads
        loaded = None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        names = list(loaded.files)
        loaded.close()
    if "images" not in names:
        fail(f"--images {path}: expected an .npz archive with an array named 'images' (N x H x W) and optional "
             "'angles'; save one with numpy.savez('images.npz', images=...).", code=2)


def read_images_archive(path: Path) -> dict[str, Any]:
    """The spec fields of an ``.npz`` of ``images`` and optional ``angles`` (checked by
    :func:`check_images_archive`), inline as lists: what an in-process experiment reads."""
    archive = cast(dict[str, np.ndarray], load_array(path))
    fields: dict[str, Any] = {"images": archive["images"].tolist()}
    if "angles" in archive:
        fields["angles"] = archive["angles"].tolist()
    return fields
