"""The console in the browser: server-rendered pages of the service's jobs, datasets and results (see routes)."""

from .routes import install_console

__all__ = ["install_console"]
