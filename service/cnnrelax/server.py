"""Run the service: one uvicorn process (job state and metrics live in it), jobs on worker processes.

``python -m cnnrelax.server --host 127.0.0.1 --port 8000 --data-dir DIR`` (or ``cnnrelax serve``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

from .settings import Settings


def build_settings(host: str | None = None, port: int | None = None, data_dir: Path | str | None = None,
                   **overrides: Any) -> Settings:
    """Settings from the environment, with the given values taking precedence."""
    values: dict[str, Any] = {key: value for key, value in overrides.items() if value is not None}
    if host is not None:
        values["host"] = host
    if port is not None:
        values["port"] = port
    if data_dir is not None:
        values["data_dir"] = Path(data_dir).expanduser()
    return Settings(**values)


def serve(host: str | None = None, port: int | None = None, data_dir: Path | str | None = None,
          **overrides: Any) -> None:
    """Start the HTTP service and block until it is stopped (SIGINT/SIGTERM)."""
    import uvicorn

    from .api import create_app
    from .log_format import configure_logging

    settings = build_settings(host, port, data_dir, **overrides)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    configure_logging(settings.log_level)
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, workers=1, log_config=None,
                log_level=settings.log_level, access_log=False, timeout_graceful_shutdown=10)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cnnrelax.server", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=None, help="Interface to bind (default: CNNRELAX_HOST or 127.0.0.1).")
    parser.add_argument("--port", type=int, default=None, help="TCP port (default: CNNRELAX_PORT or 8000).")
    parser.add_argument("--data-dir", default=None, help="Directory of the store (default: CNNRELAX_DATA_DIR).")
    parser.add_argument("--workers", type=int, default=None, help="Local solver processes.")
    parser.add_argument("--dask-scheduler", default=None, help="Run jobs on this Dask scheduler.")
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.data_dir, workers=args.workers, dask_scheduler=args.dask_scheduler)


if __name__ == "__main__":
    main()
