"""Talking to a running service through the thin client ``cnnrelax_client`` (imported only when a command
needs it): a client, and a client error turned into the command's end with its problem details."""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator, TypeVar

from .render import fail, fail_from_client_error

if TYPE_CHECKING:
    from cnnrelax_client import Client

#: What a call to the service answers (:func:`from_service`).
Answer = TypeVar("Answer")


def service_client(url: str, api_key: str | None, timeout: float = 30.0) -> Client:
    """A :class:`cnnrelax_client.Client`, or a clear error when the thin client is not installed."""
    try:
        from cnnrelax_client import Client
    except ImportError:
        fail("talking to a service needs the thin client: pip install -e clients/python")
    return Client(url, api_key=api_key, timeout=timeout)


def _client_error_types() -> tuple[type[BaseException], ...]:
    try:
        from cnnrelax_client import CnnrelaxError
    except ImportError:
        return ()
    return (CnnrelaxError,)


@contextmanager
def client_errors_end_command() -> Iterator[None]:
    """Within the block, a client error ends the command with its problem (:func:`fail_from_client_error`)."""
    try:
        yield
    except _client_error_types() as error:
        fail_from_client_error(error)


def from_service(url: str, api_key: str | None, call: Callable[[Client], Answer]) -> Answer:
    """``call(client)`` with a client of the service at ``url``; a client error ends the command with its problem."""
    with client_errors_end_command(), service_client(url, api_key) as client:
        return call(client)
