"""Cross-origin requests (CORS): off unless ``CNNRELAX_CORS_ORIGINS`` lists the origins a browser may call from.

With no origin listed (the default) no CORS header is ever sent, so a page on another origin cannot read any
answer. Listed origins may send the API's methods and headers (``X-API-Key`` among them: keys travel in a
header, never in cookies, so credentials stay off) and read the headers a client needs (``Location``,
``Retry-After``, ``X-Request-ID``, ...). ``*`` allows every origin.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

ALLOWED_METHODS = ("GET", "POST", "DELETE")
ALLOWED_HEADERS = ("Content-Type", "X-API-Key", "Idempotency-Key", "X-Request-ID", "Last-Event-ID", "Accept")
EXPOSED_HEADERS = ("Location", "Retry-After", "X-Request-ID", "Idempotent-Replayed", "Allow", "WWW-Authenticate")
#: How long a browser may cache a preflight answer (seconds).
PREFLIGHT_MAX_AGE_S = 600


def install_cors(app: FastAPI, origins: list[str]) -> None:
    """Answer CORS for ``origins`` (nothing when the list is empty)."""
    if not origins:
        return
    app.add_middleware(CORSMiddleware, allow_origins=list(origins), allow_methods=list(ALLOWED_METHODS),
                       allow_headers=list(ALLOWED_HEADERS), expose_headers=list(EXPOSED_HEADERS),
                       allow_credentials=False, max_age=PREFLIGHT_MAX_AGE_S)
