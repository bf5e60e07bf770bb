"""The ``cnnrelax`` command line (console script ``cnnrelax = cnnrelax.cli:main``, or ``python -m cnnrelax.cli``).

Modules, each importing only those listed before it:

- :mod:`.render`: what it prints (tables, JSON, progress bars, errors) and the figure files it writes.
- :mod:`.options`: the options several commands share (one definition each) and their environment variables.
- :mod:`.inputs`: parsing of option values and reading of data, labels, filter and image files (by
  :mod:`cnnrelax.datafiles`, shared with the API's dataset uploads).
- :mod:`.remote`: a client of a running service (the thin client ``cnnrelax_client``) and its errors.
- :mod:`.local`: in-process solves, certificates and experiments through the job functions the service's
  workers run.
- One module per command or group: :mod:`.serve`, :mod:`.solve`, :mod:`.resources` (``jobs``, ``datasets``,
  ``experiments`` of a service), :mod:`.experiment`, :mod:`.certify`.
- :mod:`.commands`: the command tree: the root app (``--version``) and its groups, with every command
  registered in ``--help`` order; :func:`main`.
"""

from __future__ import annotations

from .commands import app, default_data_dir, main, parse_planted

__all__ = ["app", "default_data_dir", "main", "parse_planted"]
