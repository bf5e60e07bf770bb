"""Dependencies shared by the routes: the service of the app, and the API key that names the tenant."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from ..store import ANONYMOUS, owner_id
from .problems import ApiError
from .service import Service

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="Required when the server is configured with CNNRELAX_API_KEYS.")


@dataclass(frozen=True)
class Tenant:
    """Who is asking: ``owner`` is stored on what they make; ``sees`` filters what they may read (``None``: all)."""

    owner: str
    admin: bool

    @property
    def sees(self) -> str | None:
        return None if self.admin else self.owner


def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def _known(key: str, keys: list[str]) -> bool:
    return any(hmac.compare_digest(key.encode(), known.encode()) for known in keys)


def require_api_key(service: Service = Depends(get_service), key: str | None = Depends(api_key_header)) -> Tenant:
    """The caller's tenant: anonymous (seeing everything) when authentication is off; else the key's, or 401.

    Keys of ``CNNRELAX_ADMIN_API_KEYS`` are accepted too and see every tenant's jobs and datasets.
    """
    settings = service.settings
    keys, admin_keys = settings.api_keys, settings.admin_api_keys
    if not keys and not admin_keys:
        return Tenant(ANONYMOUS, admin=True)
    if key is None:
        raise ApiError(401, "This server requires an API key: send it in the X-API-Key header.",
                       title="Unauthorized", headers={"WWW-Authenticate": "APIKey"})
    admin = _known(key, admin_keys)
    if not admin and not _known(key, keys):
        raise ApiError(401, "The X-API-Key header does not hold a valid key.", title="Unauthorized",
                       headers={"WWW-Authenticate": "APIKey"})
    return Tenant(owner_id(key), admin=admin)


#: The tenant of a request (the same dependency as the routers' guard, so evaluated once).
get_tenant = require_api_key

#: A route's parameter for the app's service.
ServiceDep = Annotated[Service, Depends(get_service)]
#: A route's parameter for the caller's tenant.
TenantDep = Annotated[Tenant, Depends(get_tenant)]
