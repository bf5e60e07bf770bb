"""Run the service: one uvicorn process (job state and metrics live in it), jobs on worker processes.

``python -m cnnrelax.server --host 127.0.0.1 --port 8000 --data-dir DIR`` (or ``cnnrelax serve``).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import resource
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
    from .edge import EdgeLimits, edge_protocol
    from .log_format import configure_logging

    settings = build_settings(host, port, data_dir, **overrides)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    configure_logging(settings.log_level)
    raise_descriptor_limit()
    return_freed_memory()
    app = create_app(settings)
    # The protocol enforces the edge's limits (headers, timeouts, connections, requests in flight): edge.py.
    uvicorn.run(app, host=settings.host, port=settings.port, workers=1, log_config=None,
                log_level=settings.log_level, access_log=False, timeout_graceful_shutdown=10,
                http=edge_protocol(EdgeLimits.from_settings(settings)),
                backlog=min(4096, settings.max_connections + 1024))


def raise_descriptor_limit() -> int:
    """Raise the soft limit of open files to the hard limit (the connection cap, not the descriptors, binds)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


#: glibc's ``mallopt`` parameter for the size above which blocks are memory-mapped (and unmapped when freed).
M_MMAP_THRESHOLD = -3
#: Blocks of this size or more are mapped: a freed request body goes back to the system at once.
MMAP_THRESHOLD_BYTES = 1024 * 1024


def return_freed_memory() -> None:
    """Fix glibc's mmap threshold, so that freed large buffers (bodies, decoded arrays) leave the process.

    glibc raises the threshold dynamically up to 32 MiB after a mapped block is freed; 20 MB bodies then land
    in the heap arenas of the threads that decoded them and stay there (issue 16: 581 MiB held after 12
    uploads). Setting it fixes it at :data:`MMAP_THRESHOLD_BYTES`. Nothing happens off glibc.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


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
