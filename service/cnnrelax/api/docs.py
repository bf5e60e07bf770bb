"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), served with no internet access.

FastAPI's own pages load their JavaScript and CSS from a CDN, so with no network they are blank. These
pages load pinned copies vendored in ``api/static/`` (see its README for the versions and licences),
served by the service itself under ``/static/docs/``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_PREFIX = "/static/docs"
SWAGGER_JS = f"{STATIC_PREFIX}/swagger-ui/swagger-ui-bundle.js"
SWAGGER_CSS = f"{STATIC_PREFIX}/swagger-ui/swagger-ui.css"
FAVICON = f"{STATIC_PREFIX}/swagger-ui/favicon-32x32.png"
REDOC_JS = f"{STATIC_PREFIX}/redoc/redoc.standalone.js"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"


def install_docs(app: FastAPI) -> None:
    """Add ``/docs``, ``/docs/oauth2-redirect``, ``/redoc`` and the static assets they load to ``app``.

    Parameters
    ----------
    app
        An app created with ``docs_url=None`` and ``redoc_url=None`` (FastAPI's CDN pages off).
    """
    app.mount(STATIC_PREFIX, StaticFiles(directory=STATIC_DIR), name="docs-static")

    def prefixed(request: Request, path: str) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/") + path

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=prefixed(request, app.openapi_url or "/openapi.json"), title=f"{app.title} - Swagger UI",
            swagger_js_url=prefixed(request, SWAGGER_JS), swagger_css_url=prefixed(request, SWAGGER_CSS),
            swagger_favicon_url=prefixed(request, FAVICON), oauth2_redirect_url=prefixed(request, OAUTH2_REDIRECT))

    @app.get(OAUTH2_REDIRECT, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        return get_redoc_html(
            openapi_url=prefixed(request, app.openapi_url or "/openapi.json"), title=f"{app.title} - ReDoc",
            redoc_js_url=prefixed(request, REDOC_JS), redoc_favicon_url=prefixed(request, FAVICON),
            with_google_fonts=False)
