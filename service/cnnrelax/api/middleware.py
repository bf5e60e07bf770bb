"""ASGI middleware: request bodies bounded one by one (413) and all together (503), encoded bodies refused (415),
one log line per request (a client that drops mid-body is one info line, not an error).

The memory budget: a request with a body reserves :data:`BODY_MEMORY_FACTOR` times its length
(:data:`JSON_BODY_MEMORY_FACTOR` for a JSON body; the length is its ``Content-Length``, or what has arrived of a
chunked body) from one budget shared by all requests
(``CNNRELAX_MAX_BODY_MEMORY_BYTES``), and gives it back when its answer is sent. The factor is what the API
holds per body byte while it reads, decodes and stores an upload (measured, see the constant). A request that
does not fit is answered 503 with ``Retry-After`` before its body is read; a request is always admitted when no
other holds the budget, so the largest body the server accepts is never refused for good. A body the route streams
to disk as it arrives (a part of an upload in parts) costs a bounded buffer whatever its length: ``streamed_cost``
says which bodies those are and what each is charged.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Awaitable, Callable

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from .problems import PROBLEM_MEDIA_TYPE, problem_bytes

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

access_log = logging.getLogger("cnnrelax.access")

#: Bytes of API memory reserved per body byte: a 20 MB .npy upload raised the API's peak RSS by 4.4 times its
#: length (the streamed chunks, their join, the float64 arrays, the stored copy).
BODY_MEMORY_FACTOR = 5
#: The same for a JSON body (decoded in the parser process: the API holds the body and the arrays that come back):
#: a 40 MB JSON solve raised it by 2.0 times.
JSON_BODY_MEMORY_FACTOR = 3
#: Seconds a client is asked to wait when the body budget is spent.
BUDGET_RETRY_AFTER_S = 1
#: The status logged for a request whose client went away before its answer (nginx's convention).
CLIENT_CLOSED = 499


class BodyBudget:
    """The memory all requests together may hold for bodies being read and decoded (bytes); event-loop only."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.in_use = 0

    def reserve(self, amount: int) -> bool:
        """Take ``amount`` if it fits (or if nothing is held); ``False`` leaves the budget as it was."""
        if self.in_use and self.in_use + amount > self.capacity:
            return False
        self.in_use += amount
        return True

    def release(self, amount: int) -> None:
        self.in_use -= amount


class OverBudget(HTTPException):
    """Raised from ``receive`` when a chunked body's growth does not fit the budget."""

    def __init__(self, sentence: str) -> None:
        super().__init__(503, sentence, headers={"Retry-After": str(BUDGET_RETRY_AFTER_S)})


def over_budget_sentence(budget: BodyBudget, amount: int) -> str:
    return (f"The server is reading and decoding other request bodies now ({budget.in_use} of "
            f"{budget.capacity} bytes of memory, CNNRELAX_MAX_BODY_MEMORY_BYTES; this body needs {amount}); retry "
            "after Retry-After seconds.")


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

    def __init__(self, app: ASGIApp, max_bytes: int, memory_budget: int | None = None,
                 streamed_cost: Callable[[Scope], int | None] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.budget = BodyBudget(memory_budget) if memory_budget is not None else None
        self.streamed_cost = streamed_cost

    async def _too_large(self, scope: Scope, send: Send) -> None:
        await self._refuse(scope, send, 413, too_large_sentence(self.max_bytes) + ".", "Request body too large")

    async def _over_budget(self, scope: Scope, send: Send, sentence: str) -> None:
        assert self.budget is not None
        await self._refuse(scope, send, 503, sentence, "Service Unavailable", setting="CNNRELAX_MAX_BODY_MEMORY_BYTES",
                           limit=self.budget.capacity, retry_after=BUDGET_RETRY_AFTER_S)

    async def _refuse(self, scope: Scope, send: Send, status: int, detail: str, title: str,
                      retry_after: int | None = None, **members: Any) -> None:
        body = problem_bytes(status, detail, title=title, instance=scope.get("path"), **members)
        headers = [(b"content-type", PROBLEM_MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]
        if retry_after is not None:
            headers.append((b"retry-after", str(retry_after).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared: int | None = None
        factor = BODY_MEMORY_FACTOR
        for name, value in scope.get("headers", []):
            if name == b"content-type" and value.split(b";")[0].strip().lower().endswith(b"json"):
                factor = JSON_BODY_MEMORY_FACTOR  # parsed as JSON, in the parser process
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
        reserved = 0
        budget = self.budget
        streamed = None if self.streamed_cost is None else self.streamed_cost(scope)
        if budget is not None and streamed is not None:  # written to disk as it arrives: a fixed buffer's cost
            if not budget.reserve(streamed):
                await self._over_budget(scope, send, over_budget_sentence(budget, streamed))
                return
            reserved = streamed
        elif budget is not None and declared:
            if not budget.reserve(factor * declared):
                await self._over_budget(scope, send, over_budget_sentence(budget, factor * declared))
                return
            reserved = factor * declared
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received, reserved
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
                wanted = factor * received
                # a chunked body, or more than it declared (a streamed body's charge does not grow)
                if budget is not None and streamed is None and wanted > reserved:
                    if not budget.reserve(wanted - reserved):
                        raise OverBudget(over_budget_sentence(budget, wanted))
                    reserved = wanted
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
        except OverBudget as exc:
            if not started:
                await self._over_budget(scope, send, exc.detail)
        finally:
            if budget is not None:
                budget.release(reserved)


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

        disconnected = False
        try:
            await self.app(scope, receive, recording_send)
        except ClientDisconnect:
            # The client went away mid-body: nothing to answer, nothing went wrong here (one info line below).
            disconnected, status = True, CLIENT_CLOSED
        finally:
            if access_log.isEnabledFor(logging.INFO):
                extra = {"method": scope.get("method"), "path": scope.get("path"), "status": status,
                         "duration_ms": round((time.perf_counter() - start) * 1000, 3)}
                if disconnected:
                    extra["client_disconnected"] = True
                access_log.info("request", extra=extra)
