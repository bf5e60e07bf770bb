"""Dependencies shared by the routes: the service of the app, and the optional API-key check."""

from __future__ import annotations

import hmac

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from .problems import ApiError
from .service import Service

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="Required when the server is configured with CNNRELAX_API_KEYS.")


def get_service(request: Request) -> Service:
    return request.app.state.service  # type: ignore[no-any-return]


def require_api_key(service: Service = Depends(get_service), key: str | None = Depends(api_key_header)) -> None:
    """Pass when authentication is off, or ``X-API-Key`` is one of the configured keys; else 401."""
    keys = service.settings.api_keys
    if not keys:
        return
    if key is None:
        raise ApiError(401, "This server requires an API key: send it in the X-API-Key header.",
                       title="Unauthorized", headers={"WWW-Authenticate": "APIKey"})
    if not any(hmac.compare_digest(key.encode(), known.encode()) for known in keys):
        raise ApiError(401, "The X-API-Key header does not hold a valid key.", title="Unauthorized",
                       headers={"WWW-Authenticate": "APIKey"})
