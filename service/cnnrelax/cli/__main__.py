"""``python -m cnnrelax.cli``: the command line."""

from __future__ import annotations

from . import main

main()
