"""RFC 9457 problem details: one response builder and the exception handlers that use it.

No traceback ever reaches a client: anything unexpected becomes a 500 problem with a reference to the log.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import uuid
from http import HTTPStatus
from typing import Any, Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import InvalidParameterError
from ..store import store_fault

PROBLEM_MEDIA_TYPE = "application/problem+json"
log = logging.getLogger("cnnrelax.api")


class ApiError(Exception):
    """An answer other than success, raised by a route: status, a sentence, optional headers/members."""

    def __init__(self, status: int, detail: str, *, title: str | None = None, headers: Mapping[str, str] | None = None,
                 **members: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title
        self.headers = dict(headers or {})
        self.members = members


def status_title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_body(status: int, detail: str, *, title: str | None = None, instance: str | None = None,
                 **members: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "about:blank", "title": title or status_title(status), "status": status,
                            "detail": detail}
    if instance is not None:
        body["instance"] = instance
    body.update({key: value for key, value in members.items() if value is not None})
    return body


def problem_response(status: int, detail: str, *, title: str | None = None, instance: str | None = None,
                     headers: Mapping[str, str] | None = None, **members: Any) -> JSONResponse:
    """A problem+json response."""
    return JSONResponse(problem_body(status, detail, title=title, instance=instance, **members), status_code=status,
                        headers=dict(headers or {}), media_type=PROBLEM_MEDIA_TYPE)


def problem_bytes(status: int, detail: str, **members: Any) -> bytes:
    """The encoded body of a problem, for raw ASGI answers (middleware)."""
    return json.dumps(problem_body(status, detail, **members)).encode()


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def _message(error: Mapping[str, Any]) -> str:
    message = str(error.get("msg", "is invalid"))
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix):]
    return message


def _untagged(error: Mapping[str, Any], body: Any) -> tuple[Any, ...]:
    """An error's location without the tag of a discriminated union (``body.rotated_digits.seeds`` names
    ``body.seeds``); a missing or unknown tag is located at the discriminator itself (``body.kind``)."""
    loc = tuple(error.get("loc", ()))
    if error.get("type") in ("union_tag_invalid", "union_tag_not_found"):
        return loc + (str(error.get("ctx", {}).get("discriminator", "")).strip("'"),)
    if len(loc) >= 2 and loc[0] == "body" and isinstance(body, dict) and loc[1] == body.get("kind"):
        return (loc[0],) + loc[2:]
    return loc


def validation_problem(request: Request, exc: RequestValidationError) -> JSONResponse:
    """Pydantic's errors translated: a sentence naming the first bad member, then every one listed."""
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        reason = next(str(e.get("ctx", {}).get("error", "")) for e in errors if e.get("type") == "json_invalid")
        return problem_response(400, f"The request body is not valid JSON ({reason or 'it could not be parsed'}).",
                                title="Malformed JSON", instance=request.url.path)
    listed = [{"location": _location(_untagged(e, exc.body)), "message": _message(e)} for e in errors]
    if not listed:
        return problem_response(422, "The request is not valid.", instance=request.url.path)
    first = listed[0]
    where = first["location"].removeprefix("body.").removeprefix("body")
    subject = f"Invalid {where}" if where else "Invalid request body"
    more = (f" ({len(listed) - 1} more problem{'s' if len(listed) > 2 else ''} listed in errors)"
            if len(listed) > 1 else "")
    detail = f"{subject}: {first['message']}{more}."
    parameter = first["location"].split(".", 1)[1] if "." in first["location"] else None
    return problem_response(422, detail, title="Invalid request", instance=request.url.path, errors=listed,
                            parameter=parameter)


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error answer a problem+json document."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return problem_response(exc.status, exc.detail, title=exc.title, instance=request.url.path,
                                headers=exc.headers, **exc.members)

    @app.exception_handler(InvalidParameterError)
    async def invalid_parameter(request: Request, exc: InvalidParameterError) -> JSONResponse:
        return problem_response(422, exc.message, title="Invalid parameter", instance=request.url.path,
                                parameter=exc.parameter, limit=getattr(exc, "limit", None),
                                setting=getattr(exc, "setting", None))

    async def storage_error(request: Request, exc: Exception) -> JSONResponse:
        """507 for a full disk (``ENOSPC``, ``SQLITE_FULL``), 503 for a store that refuses writes (read-only,
        immutable, an I/O error: :func:`cnnrelax.store.store_fault`); anything else is a 500 like any other."""
        fault = store_fault(exc)
        if fault is not None and fault.full:
            log.warning("write failed: disk full", extra={"path": request.url.path})
            return problem_response(507, "The server's data volume is full; nothing was stored. Retry once space "
                                         "has been freed.", title="Insufficient storage", instance=request.url.path,
                                    headers={"Retry-After": "30"})
        if fault is not None:
            log.warning("write failed: the store refuses writes", extra={"path": request.url.path,
                                                                         "error": fault.reason})
            return problem_response(503, f"The server's store cannot take writes now: {fault.reason}; nothing was "
                                         "stored. Retry shortly (it recovers by itself once the store is writable "
                                         "again).", title="Store unavailable", instance=request.url.path,
                                    headers={"Retry-After": "5"})
        return await unexpected(request, exc)

    app.add_exception_handler(OSError, storage_error)
    app.add_exception_handler(sqlite3.Error, storage_error)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_problem(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        status = exc.status_code
        headers = dict(exc.headers or {})
        if status == 404:
            detail = f"Nothing is found at {request.url.path}."
        elif status == 405:
            allowed = headers.get("Allow") or headers.get("allow") or ""
            detail = f"The method {request.method} is not allowed on {request.url.path}" + (
                f"; allowed: {allowed}." if allowed else ".")
        elif isinstance(exc.detail, str) and exc.detail and exc.detail != status_title(status):
            detail = exc.detail if exc.detail.endswith(".") else exc.detail + "."
        else:
            detail = f"{status_title(status)}."
        return problem_response(status, detail, instance=request.url.path, headers=headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        reference = uuid.uuid4().hex[:12]
        log.error("unhandled error", exc_info=exc, extra={"reference": reference, "path": request.url.path})
        return problem_response(500, f"An internal error occurred; it was logged with reference {reference}.",
                                instance=request.url.path, reference=reference)
