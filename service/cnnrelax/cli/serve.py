"""``cnnrelax serve``: start the HTTP service, with its data in a per-user directory unless told otherwise."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Optional

import typer


def default_data_dir() -> Path:
    """The per-user data directory: ``$XDG_DATA_HOME/cnnrelax`` (``~/.local/share/cnnrelax``) on Linux,
    ``~/Library/Application Support/cnnrelax`` on macOS, ``%LOCALAPPDATA%\\cnnrelax`` on Windows."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "cnnrelax"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "cnnrelax"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "cnnrelax"


def serve(
    host: str = typer.Option("127.0.0.1", envvar="CNNRELAX_HOST",
                             help="Interface to bind (0.0.0.0 for every interface)."),
    port: int = typer.Option(8000, envvar="CNNRELAX_PORT", help="TCP port."),
    data_dir: Optional[Path] = typer.Option(
        None, "--data-dir", envvar="CNNRELAX_DATA_DIR", file_okay=False,
        help="Directory of the SQLite store and datasets (default: a per-user data dir, e.g. "
             "~/.local/share/cnnrelax)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, envvar="CNNRELAX_WORKERS",
                                          help="Local solver processes (default: 2)."),
    dask_scheduler: Optional[str] = typer.Option(
        None, "--dask-scheduler", envvar="CNNRELAX_DASK_SCHEDULER",
        help="Run jobs on the Dask cluster of this scheduler address (tcp://host:8786)."),
) -> None:
    """Start the HTTP service (one uvicorn process; jobs on local worker processes or a Dask cluster).

    Every other setting comes from its CNNRELAX_ environment variable (see the README)."""
    from cnnrelax.server import serve as run_server

    directory = (data_dir or default_data_dir()).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    overrides: dict[str, Any] = {}
    if workers is not None:
        overrides["workers"] = workers
    if dask_scheduler:
        overrides["dask_scheduler"] = dask_scheduler
    run_server(host=host, port=port, data_dir=directory, **overrides)
