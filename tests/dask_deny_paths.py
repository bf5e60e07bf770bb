"""A ``dask worker --preload`` script for the tests: the worker may open nothing under the API's data dir.

The paths come from ``CNNRELAX_TEST_DENIED_PATHS`` (``os.pathsep``-separated). An audit hook in the
worker process refuses (``PermissionError``) every ``open`` and ``sqlite3.connect`` of a path under them,
so a job that still needed the API's filesystem (its SQLite store or a dataset file) would fail.
"""

from __future__ import annotations

import os
import sys
from typing import Any

DENIED_PATHS_VARIABLE = "CNNRELAX_TEST_DENIED_PATHS"


def _denied_prefixes() -> tuple[str, ...]:
    paths = os.environ.get(DENIED_PATHS_VARIABLE, "").split(os.pathsep)
    return tuple(os.path.join(os.path.abspath(path), "") for path in paths if path)


def _install(prefixes: tuple[str, ...]) -> None:
    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event not in ("open", "sqlite3.connect") or not args:
            return
        path = args[0]
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if isinstance(path, (str, os.PathLike)):
            full = os.path.join(os.path.abspath(os.fspath(path)), "")
            if full.startswith(prefixes):
                raise PermissionError(f"this Dask worker may not see {os.fspath(path)}")

    sys.addaudithook(hook)


_PREFIXES = _denied_prefixes()
if _PREFIXES:
    _install(_PREFIXES)


def dask_setup(worker: Any) -> None:  # noqa: ARG001 - the preload hook's signature
    """Nothing more to do: the hook was installed when this script was imported in the worker process."""
