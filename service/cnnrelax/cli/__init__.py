"""The ``cnnrelax`` command line (console script ``cnnrelax = cnnrelax.cli:main``, or ``python -m cnnrelax.cli``).

- :mod:`.commands`: the typer app and its commands (serve, solve, jobs, experiment); in-process solves run
  the job function the service's workers run.
- :mod:`.render`: tables, JSON, progress bars, errors.
- Data files are read by :mod:`cnnrelax.datafiles`, shared with the API's dataset uploads.
"""

from __future__ import annotations

from .commands import app, default_data_dir, main, parse_planted

__all__ = ["app", "default_data_dir", "main", "parse_planted"]
