"""ASGI middleware: a request-body size limit (413), encoded bodies refused (415), one log line per request."""

from __future__ import annotations

import logging
import time
from typing import Any, Awaitable, Callable

from starlette.exceptions import HTTPException

from .problems import PROBLEM_MEDIA_TYPE, problem_bytes

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

access_log = logging.getLogger("cnnrelax.access")


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a streamed body passes the limit (FastAPI lets HTTPException through)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, too_large_sentence(max_bytes))


def too_large_sentence(max_bytes: int) -> str:
    return (f"The request body is larger than this server accepts ({max_bytes} bytes); upload large data as a "
            ".npz dataset, or raise CNNRELAX_MAX_BODY_BYTES")


class BodySizeLimit:
    """Answer 413 (problem+json) to a body over ``max_bytes``: by Content-Length, or while it streams in.

    A body with a ``Content-Encoding`` other than ``identity`` (gzip, deflate, br, ...) gets 415: the server
    decodes no compressed bodies (a small gzip body could inflate past every limit).
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _too_large(self, scope: Scope, send: Send) -> None:
        await self._refuse(scope, send, 413, too_large_sentence(self.max_bytes) + ".", "Request body too large")

    async def _refuse(self, scope: Scope, send: Send, status: int, detail: str, title: str,
                      **members: Any) -> None:
        body = problem_bytes(status, detail, title=title, instance=scope.get("path"), **members)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                                (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-encoding" and value.strip().lower() not in (b"", b"identity"):
                encoding = value.decode("latin-1")[:40]
                await self._refuse(scope, send, 415, f"The request body is encoded ({encoding}); this server takes "
                                                     "only unencoded bodies: send it without Content-Encoding.",
                                   "Unsupported Content-Encoding", parameter="Content-Encoding")
                return
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await self._too_large(scope, send)
                    return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._too_large(scope, send)


class AccessLog:
    """Log method, path, status and duration of every request as one structured line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            if access_log.isEnabledFor(logging.INFO):
                access_log.info("request", extra={
                    "method": scope.get("method"), "path": scope.get("path"), "status": status,
                    "duration_ms": round((time.perf_counter() - start) * 1000, 3),
                })
