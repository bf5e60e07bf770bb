"""The HTTP edge: uvicorn's httptools protocol with limits, so that the process holds on its own without a proxy.

uvicorn with httptools has no header-size limit, no header-read timeout, no body timeout and no cap on open
connections (issue 16 measured 100 MiB headers accepted and slowloris connections held for minutes). This
protocol, a subclass passed to uvicorn as ``http=``, adds them per connection and per request:

- **Headers**: the request line and headers of one request at most ``max_header_bytes`` in all, one header
  line at most ``max_header_line_bytes``, at most ``max_header_lines`` lines: 431 (a URL longer than a header
  line: 414). Counted as the bytes arrive, before httptools accumulates them.
- **Header timeout**: a connection that has not finished a request's headers ``header_timeout_s`` after it
  opened (or after the request's first byte) is answered 408 and closed.
- **Body timeout**: a body that pauses for ``body_timeout_s``, or whose average rate after that grace falls
  below ``body_min_rate_bytes_s`` (the deadline moves by one second per that many bytes received, as
  Apache's ``mod_reqtimeout``), is answered 408 (if nothing was answered yet) and closed. Time during which
  the server itself is not reading (flow control) is not counted against the client.
- **Keep-alive**: an idle connection between requests is closed after ``keepalive_timeout_s``.
- **Connections**: at ``max_connections`` open, a new connection closes the longest-waiting idle one (no
  request in flight: not yet a full header, or kept alive); when none is idle, the new one is answered only
  for ``/healthz`` and ``/readyz`` (503 for anything else), up to :data:`OVERFLOW_RESERVE` more; past that it
  is closed at once. A held connection never blocks the probes, and descriptors stay bounded.
- **Requests in flight**: past ``max_requests_in_flight`` requests being served, others are answered 503 with
  ``Retry-After``; ``/healthz`` and ``/readyz`` are always served.

Every refusal is an RFC 9457 problem naming the setting (``CNNRELAX_...``) that sets the limit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .api.problems import PROBLEM_MEDIA_TYPE, problem_bytes, status_title
from .settings import Settings

log = logging.getLogger("cnnrelax.edge")

#: Paths answered whatever the load (liveness and readiness probes).
PROBE_PATHS = frozenset({"/healthz", "/readyz"})
#: Connections past ``max_connections`` (when none is idle) read only to answer the probes.
OVERFLOW_RESERVE = 64
#: Seconds a client is asked to wait before retrying a 503.
RETRY_AFTER_S = 1
#: After a refusal, the server reads and discards at most this much (and this long) before closing, so that
#: the client reads the answer rather than a connection reset.
LINGER_BYTES = 1024 * 1024
LINGER_S = 2.0


@dataclass(frozen=True)
class EdgeLimits:
    """The limits of :class:`EdgeProtocol` (see the settings of the same names)."""

    max_header_bytes: int = 32 * 1024
    max_header_line_bytes: int = 8 * 1024
    max_header_lines: int = 100
    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    body_min_rate_bytes_s: float = 1024.0
    keepalive_timeout_s: float = 5.0
    max_connections: int = 1000
    max_requests_in_flight: int = 256

    @classmethod
    def from_settings(cls, settings: Settings) -> "EdgeLimits":
        return cls(**{name: getattr(settings, name) for name in cls.__dataclass_fields__})


class EdgeRefusal(Exception):
    """Raised inside an httptools callback to stop parsing; the protocol answers it."""

    def __init__(self, status: int, detail: str, setting: str, limit: float) -> None:
        super().__init__(detail)
        self.status, self.detail, self.setting, self.limit = status, detail, setting, limit


def refusal_bytes(status: int, detail: str, setting: str | None = None, limit: float | None = None,
                  instance: str | None = None) -> bytes:
    """A whole HTTP/1.1 answer (problem+json, ``Connection: close``; ``Retry-After`` on a 503)."""
    body = problem_bytes(status, detail, title=status_title(status), instance=instance, setting=setting, limit=limit)
    head = [f"HTTP/1.1 {status} {status_title(status)}", f"content-type: {PROBLEM_MEDIA_TYPE}",
            f"content-length: {len(body)}", "connection: close"]
    if status == 503:
        head.append(f"retry-after: {RETRY_AFTER_S}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class RefusalCounter:
    """Logs edge refusals at info, at most one line per reason every 10 s (a flood must not flood the log)."""

    INTERVAL_S = 10.0

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._since: dict[str, int] = {}

    def record(self, reason: str, status: int, client: Any) -> None:
        self._since[reason] = self._since.get(reason, 0) + 1
        now = time.monotonic()
        if now - self._last.get(reason, -self.INTERVAL_S) >= self.INTERVAL_S:
            log.info("edge refusal", extra={"reason": reason, "status": status, "client": str(client),
                                            "count_since_last_line": self._since[reason]})
            self._last[reason], self._since[reason] = now, 0


class EdgeState:
    """What the connections of one server share: the limits, the open connections, the idle ones (oldest first)."""

    def __init__(self, limits: EdgeLimits) -> None:
        self.limits = limits
        self.open: set[EdgeProtocol] = set()
        self.idle: OrderedDict[EdgeProtocol, None] = OrderedDict()
        self.refusals = RefusalCounter()

    def admit(self, connection: "EdgeProtocol") -> str:
        """``"ok"``, ``"overflow"`` (answer only the probes) or ``"refuse"`` (close now) for a new connection."""
        if len(self.open) >= self.limits.max_connections and self.idle:
            victim, _ = self.idle.popitem(last=False)
            self.open.discard(victim)
            victim.evict()
        if len(self.open) < self.limits.max_connections:
            verdict = "ok"
        elif len(self.open) < self.limits.max_connections + OVERFLOW_RESERVE:
            verdict = "overflow"
        else:
            return "refuse"
        self.open.add(connection)
        return verdict


def _service_unavailable(detail: str, setting: str, limit: int) -> Any:
    """An ASGI app answering 503 (problem+json, ``Retry-After``) without reading the body."""
    body = problem_bytes(503, detail, title="Service Unavailable", setting=setting, limit=limit)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 503, "headers": [
            (b"content-type", PROBLEM_MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(RETRY_AFTER_S).encode()), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    return app


class EdgeProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of :class:`EdgeLimits` (bind them with :func:`edge_protocol`)."""

    state: ClassVar[EdgeState]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limits = self.state.limits
        self.timeout_keep_alive = limits.keepalive_timeout_s  # type: ignore[assignment]  # call_later takes a float
        self._overflow = False
        self._reading_headers = True
        self._partial = False  # part of a request (not all its headers) has arrived
        self._header_bytes = 0  # bytes fed while the request's headers are incomplete
        self._header_counted = 0  # request line + header lines, as parsed
        self._header_lines = 0
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_started = 0.0
        self._reading_body = False
        self._body_started = self._body_last = 0.0
        self._body_received = 0
        self._body_timer: asyncio.TimerHandle | None = None
        self._lingering: int | None = None  # bytes discarded after a refusal, while lingering

    # -- connection --------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn's
        verdict = self.state.admit(self)
        if verdict == "refuse":
            self.state.refusals.record("max_connections", 503, transport.get_extra_info("peername"))
            transport.write(refusal_bytes(503, "This server holds its maximum of open connections "
                                               f"({self.state.limits.max_connections}, CNNRELAX_MAX_CONNECTIONS) and "
                                               "none is idle; retry later.", "CNNRELAX_MAX_CONNECTIONS",
                                          self.state.limits.max_connections))
            transport.close()
            self.transport = transport
            self.parser = None  # type: ignore[assignment]  # never parses: connection_lost follows
            return
        self._overflow = verdict == "overflow"
        super().connection_made(transport)
        self.state.idle[self] = None
        self._header_started = self.loop.time()
        self._arm_header_timer()  # a connection that never sends a byte is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.open.discard(self)
        self.state.idle.pop(self, None)
        self._cancel_timers()
        if self.parser is None and self.flow is None:  # refused in connection_made
            return
        super().connection_lost(exc)

    def evict(self) -> None:
        """Close this idle connection to make room for a new one."""
        self._cancel_timers()
        if self._partial and not self.transport.is_closing():
            self.state.refusals.record("evicted", 503, self.client)
            self.transport.write(refusal_bytes(503, "The server needed this idle connection for another client; "
                                                    "retry.", "CNNRELAX_MAX_CONNECTIONS",
                                               self.state.limits.max_connections))
        self.transport.close()

    def _cancel_timers(self) -> None:
        for timer in (self._header_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._body_timer = None

    # -- refusals ----------------------------------------------------------------------------------
    def _refuse(self, status: int, detail: str, setting: str | None, limit: float | None, reason: str,
                linger: bool = True) -> None:
        """Answer ``status`` and close, unless a response is under way on the connection (then only close).

        In the header phase, ``self.cycle`` is the previous request's (or ``None``); in the body phase it is this
        request's, which may have been answered already (e.g. 401 before its body was read).
        """
        in_body = self._reading_body
        self._cancel_timers()
        self._reading_headers = self._reading_body = False
        if self.transport.is_closing():
            return
        self.state.refusals.record(reason, status, self.client)
        cycle = self.cycle
        if in_body:
            free = cycle is None or not cycle.response_started
        else:
            free = cycle is None or cycle.response_complete
        if free:
            self.transport.write(refusal_bytes(status, detail, setting, limit))
        if cycle is not None and not cycle.response_complete:  # the application gets http.disconnect
            cycle.disconnected = True
            cycle.message_event.set()
        if linger:  # half-close, then read and discard what the client is still sending, so that it reads the answer
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self._lingering = 0
            self.flow.resume_reading()
            self.loop.call_later(LINGER_S, self.transport.close)
        else:
            self.transport.close()

    # -- data --------------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self._lingering is not None:
            self._lingering += len(data)
            if self._lingering > LINGER_BYTES:
                self.transport.close()
            return
        limits = self.state.limits
        if self._reading_headers:
            self._header_bytes += len(data)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            refusal = exc.__context__ if isinstance(exc.__context__, EdgeRefusal) else None
            if refusal is not None:
                self._refuse(refusal.status, refusal.detail, refusal.setting, refusal.limit,
                             refusal.setting.removeprefix("CNNRELAX_").lower())
                return
            self._refuse(400, f"The request is not valid HTTP/1.1 ({str(exc)[:100] or type(exc).__name__}).", None,
                         None, "invalid_request", linger=False)  # a counted info line, not a warning per request
            return
        if self._reading_headers and self._header_bytes > limits.max_header_bytes:
            self._refuse(431, self._too_many_header_bytes(self._header_bytes), "CNNRELAX_MAX_HEADER_BYTES",
                         limits.max_header_bytes, "max_header_bytes")
            return
        # Timers only for a phase that spans reads (most requests arrive whole in one read: no timer at all).
        if self._reading_headers and self._header_timer is None:
            self._arm_header_timer()
        if self._reading_body and self._body_timer is None:
            self._arm_body_timer()

    def _too_many_header_bytes(self, count: int) -> str:
        return (f"The request's headers exceed {self.state.limits.max_header_bytes} bytes (at least {count} "
                "bytes sent); send fewer or shorter headers, or raise CNNRELAX_MAX_HEADER_BYTES.")

    # -- parser callbacks --------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_headers = self._partial = True
        self._header_counted = self._header_lines = 0
        if self._header_timer is None:  # a kept-alive connection's next request: its headers' clock starts now
            self._header_started = self.loop.time()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        limits = self.state.limits
        if len(self.url) > limits.max_header_line_bytes:
            raise EdgeRefusal(414, f"The request's URL is longer than {limits.max_header_line_bytes} bytes; send a "
                                   "shorter one, or raise CNNRELAX_MAX_HEADER_LINE_BYTES.",
                              "CNNRELAX_MAX_HEADER_LINE_BYTES", limits.max_header_line_bytes)

    def on_header(self, name: bytes, value: bytes) -> None:
        limits = self.state.limits
        line = len(name) + len(value) + 4
        self._header_lines += 1
        self._header_counted += line
        if line > limits.max_header_line_bytes:
            shown = name[:40].decode("latin-1")
            raise EdgeRefusal(431, f"The header {shown} is {line} bytes long, more than this server takes in one "
                                   f"header line ({limits.max_header_line_bytes}); shorten it, or raise "
                                   "CNNRELAX_MAX_HEADER_LINE_BYTES.", "CNNRELAX_MAX_HEADER_LINE_BYTES",
                              limits.max_header_line_bytes)
        if self._header_lines > limits.max_header_lines:
            raise EdgeRefusal(431, f"The request has more than {limits.max_header_lines} header lines; send fewer, "
                                   "or raise CNNRELAX_MAX_HEADER_LINES.", "CNNRELAX_MAX_HEADER_LINES",
                              limits.max_header_lines)
        if self._header_counted + len(self.url) > limits.max_header_bytes:
            raise EdgeRefusal(431, self._too_many_header_bytes(self._header_counted + len(self.url)),
                              "CNNRELAX_MAX_HEADER_BYTES", limits.max_header_bytes)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_headers = self._partial = False
        self._header_bytes = 0
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        self.state.idle.pop(self, None)
        self._reading_body = True
        self._body_started = self._body_last = self.loop.time()
        self._body_received = 0
        refusal = self._admission()
        if refusal is None:
            super().on_headers_complete()
            return
        app, self.app = self.app, refusal
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def _admission(self) -> Any:
        """An app answering 503 when this request may not be served now, else ``None``."""
        limits = self.state.limits
        if not self._overflow and len(self.tasks) < limits.max_requests_in_flight:
            return None
        if httptools.parse_url(self.url).path.decode("latin-1") in PROBE_PATHS:
            return None
        if self._overflow:
            self.state.refusals.record("max_connections", 503, self.client)
            return _service_unavailable(f"This server holds its maximum of open connections ({limits.max_connections}"
                                        ", CNNRELAX_MAX_CONNECTIONS) and none is idle; retry after Retry-After "
                                        "seconds.", "CNNRELAX_MAX_CONNECTIONS", limits.max_connections)
        if len(self.tasks) >= limits.max_requests_in_flight:
            self.state.refusals.record("max_requests_in_flight", 503, self.client)
            return _service_unavailable(f"This server is serving its maximum of {limits.max_requests_in_flight} "
                                        "requests at once (CNNRELAX_MAX_REQUESTS_IN_FLIGHT); retry after "
                                        "Retry-After seconds.", "CNNRELAX_MAX_REQUESTS_IN_FLIGHT",
                                        limits.max_requests_in_flight)
        return None

    def on_body(self, body: bytes) -> None:
        self._body_received += len(body)
        self._body_last = self.loop.time()
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._reading_body = False
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self._reading_body:
            self.state.idle[self] = None  # kept alive, idle: the first to close when room is needed
            self.state.idle.move_to_end(self)

    # -- timers ------------------------------------------------------------------------------------
    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_at(self._header_started + self.state.limits.header_timeout_s,
                                               self._header_timeout)

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self._reading_headers and not self.transport.is_closing():
            limits = self.state.limits
            if not self._partial:
                self.state.refusals.record("header_timeout_s", 408, self.client)
                self._cancel_timers()
                self.transport.close()  # nothing was sent: nothing to answer
                return
            self._refuse(408, f"The request's headers did not arrive within {limits.header_timeout_s:g} s "
                              "(CNNRELAX_HEADER_TIMEOUT_S).", "CNNRELAX_HEADER_TIMEOUT_S", limits.header_timeout_s,
                         "header_timeout_s", linger=False)

    def _body_deadline(self) -> float:
        limits = self.state.limits
        deadline = self._body_last + limits.body_timeout_s
        if limits.body_min_rate_bytes_s > 0:
            deadline = min(deadline, self._body_started + limits.body_timeout_s
                           + self._body_received / limits.body_min_rate_bytes_s)
        return deadline

    def _arm_body_timer(self) -> None:
        self._body_timer = self.loop.call_at(self._body_deadline(), self._body_timeout)

    def _body_timeout(self) -> None:
        self._body_timer = None
        if not self._reading_body or self.transport.is_closing():
            return
        now = self.loop.time()
        limits = self.state.limits
        if self.flow.read_paused:  # the server is not reading: the client is not to blame for the wait
            self._body_last = now
            if limits.body_min_rate_bytes_s > 0:
                self._body_started = now - self._body_received / limits.body_min_rate_bytes_s
        if now < self._body_deadline():
            self._arm_body_timer()
            return
        if now - self._body_last >= limits.body_timeout_s:
            detail, setting, limit = (f"The request body paused for more than {limits.body_timeout_s:g} s "
                                      "(CNNRELAX_BODY_TIMEOUT_S).", "CNNRELAX_BODY_TIMEOUT_S", limits.body_timeout_s)
        else:
            rate = self._body_received / max(now - self._body_started, 1e-9)
            detail, setting, limit = (f"The request body arrived at {rate:.0f} bytes/s, slower than this server "
                                      f"accepts ({limits.body_min_rate_bytes_s:g}, CNNRELAX_BODY_MIN_RATE_BYTES_S).",
                                      "CNNRELAX_BODY_MIN_RATE_BYTES_S", limits.body_min_rate_bytes_s)
        self._refuse(408, detail, setting, limit, setting.removeprefix("CNNRELAX_").lower(), linger=False)


def edge_protocol(limits: EdgeLimits) -> type[EdgeProtocol]:
    """A protocol class for ``uvicorn.run(http=...)`` whose connections share ``limits`` and one state."""
    return type("BoundEdgeProtocol", (EdgeProtocol,), {"state": EdgeState(limits)})
