"""``X-Request-ID``: every answer carries one, and every log line written while a request runs names it.

A request's own ``X-Request-ID`` is kept when it is a bounded token (1 to :data:`MAX_LENGTH` characters of
letters, digits and ``._:-``, the characters of UUIDs, ULIDs and trace ids); any other value, or none, is
replaced by a fresh random id (32 hex digits), so a client cannot put line breaks, markup or megabytes into
the logs through it. The id is echoed in the answer's ``X-Request-ID`` header, and held in a context variable
that a filter on the root logger's handlers copies into every record as ``request_id`` (the JSON log lines
show it as a member; threads started with the request's context, as ``run_in_threadpool`` does, see it too).
"""

from __future__ import annotations

import contextvars
import logging
import re
import uuid
from typing import Any, Awaitable, Callable

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HEADER = "X-Request-ID"
#: The longest request id kept as sent.
MAX_LENGTH = 128
TOKEN = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_LENGTH}}}")
#: The id of the request being answered (``None`` outside a request).
current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("cnnrelax_request_id", default=None)


def request_id_of(value: bytes | None) -> str:
    """The id to use for a request whose ``X-Request-ID`` header is ``value``: it, if a bounded token, else new."""
    if value is not None:
        text = value.decode("latin-1")
        if TOKEN.fullmatch(text):
            return text
    return uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    """Give a record the current request's id as ``request_id`` (unless the call set one in ``extra``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = current_request_id.get()
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        return True


def install_log_field(logger: logging.Logger | None = None) -> None:
    """Put a :class:`RequestIdFilter` on each handler of ``logger`` (default: the root logger, where every
    record of the service and of uvicorn ends up); idempotent.

    A handler's filter, not a log-record factory: a factory's attribute would make ``extra={"request_id": ...}``
    raise ``KeyError`` in ``Logger.makeRecord``.
    """
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(existing, RequestIdFilter) for existing in handler.filters):
            handler.addFilter(RequestIdFilter())


class RequestId:
    """ASGI middleware: choose the request's id, expose it to the logs, echo it in ``X-Request-ID``.

    Built with the app's middleware stack (at its first request, after the server configured logging).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        install_log_field()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = next((value for name, value in scope.get("headers", []) if name == HEADER.lower().encode()), None)
        request_id = request_id_of(sent)
        scope.setdefault("state", {})["request_id"] = request_id
        encoded = request_id.encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(name, value) for name, value in message.get("headers", [])
                           if name.lower() != HEADER.lower().encode()]
                message = {**message, "headers": [*headers, (HEADER.lower().encode(), encoded)]}
            await send(message)

        token = current_request_id.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            current_request_id.reset(token)
