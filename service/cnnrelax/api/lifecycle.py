"""Why the API process stops, said in its log: signals, uncaught exceptions, the event loop's errors, fatal faults.

:func:`install` (called by the app's lifespan at start-up) sets up:

- ``faulthandler``: a fatal signal (SIGSEGV, SIGBUS, SIGFPE, SIGABRT, SIGILL) writes "Fatal Python error" and
  every thread's traceback to stderr, the log's stream, before the process dies;
- SIGTERM, SIGINT and SIGHUP: logged ("stopping: received SIGTERM"), then handed to the server's own handler
  (uvicorn's graceful shutdown). SIGHUP, whose default would end the process without a word, stops it
  gracefully too;
- ``sys.excepthook`` and ``threading.excepthook``: an exception nothing caught is logged (critical) with its
  traceback;
- the event loop's exception handler: an error nothing awaited (a task's, a callback's) is logged and
  remembered as the loop's last error.

:func:`last_words` is the sentence the lifespan logs as the process stops: the signal, the last uncaught
exception and the loop's last error, if any.
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import signal
import sys
import threading
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any, Callable

log = logging.getLogger("cnnrelax.lifecycle")

#: Signals that stop the server gracefully, each logged first.
STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP")


@dataclass
class _Record:
    """What the process saw that may explain its end."""

    signal: str | None = None
    exception: str | None = None
    loop_error: str | None = None


_record = _Record()
_installed_hooks = False


def last_words() -> str:
    """Why the process is stopping, as far as it knows (the lifespan logs it at shutdown)."""
    parts = []
    if _record.signal:
        parts.append(f"received {_record.signal}")
    if _record.exception:
        parts.append(f"last uncaught exception: {_record.exception}")
    if _record.loop_error:
        parts.append(f"the event loop's last error: {_record.loop_error}")
    return "; ".join(parts) or "asked to stop (no signal, no uncaught error)"


def install(loop: asyncio.AbstractEventLoop) -> None:
    """Set up the hooks above for this process and ``loop`` (signals only from the main thread)."""
    global _installed_hooks
    _record.signal = _record.exception = _record.loop_error = None
    try:
        faulthandler.enable(file=sys.stderr, all_threads=True)
    except (AttributeError, ValueError, OSError):  # a stderr without a file descriptor (e.g. captured in tests)
        log.debug("faulthandler not enabled: stderr has no file descriptor")
    loop.set_exception_handler(_loop_error)
    if not _installed_hooks:
        _installed_hooks = True
        previous_thread_hook = threading.excepthook

        def excepthook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
            _uncaught(value, "the main thread")

        def thread_excepthook(args: threading.ExceptHookArgs) -> None:
            if args.exc_value is not None and not isinstance(args.exc_value, SystemExit):
                _uncaught(args.exc_value, f"thread {args.thread.name if args.thread else '?'}")
            else:
                previous_thread_hook(args)

        sys.excepthook = excepthook
        threading.excepthook = thread_excepthook
    if threading.current_thread() is threading.main_thread():
        _log_stop_signals()


def _uncaught(exc: BaseException, where: str) -> None:
    _record.exception = f"{type(exc).__name__}: {exc}"
    log.critical("uncaught exception in %s", where, exc_info=(type(exc), exc, exc.__traceback__))


def _loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    exc = context.get("exception")
    message = str(context.get("message") or "error in the event loop")
    _record.loop_error = f"{message} ({type(exc).__name__}: {exc})" if exc is not None else message
    log.error("event loop error: %s", message, exc_info=exc if isinstance(exc, BaseException) else None)


Handler = Callable[[int, "FrameType | None"], Any]


def _log_stop_signals() -> None:
    """Wrap the current handlers of :data:`STOP_SIGNALS` (uvicorn's): log, then stop as they would."""
    graceful = signal.getsignal(signal.SIGTERM)
    for name in STOP_SIGNALS:
        number = getattr(signal, name, None)
        if number is None:
            continue
        previous = signal.getsignal(number)
        chained = previous if callable(previous) else graceful if callable(graceful) else None
        signal.signal(number, _logging_handler(name, chained))


def _logging_handler(name: str, chained: Handler | None) -> Handler:
    def handle(number: int, frame: FrameType | None) -> None:
        _record.signal = name
        log.warning("stopping: received %s", name)
        if chained is not None:
            chained(number, frame)
        else:
            raise SystemExit(128 + number)

    return handle
