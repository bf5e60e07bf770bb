"""Console sessions: an opaque id in an ``HttpOnly; SameSite=Strict`` cookie, the session itself on the server.

A session holds who is logged in (the tenant of the API key given at login, never the key) and the token that
every form of the console carries (CSRF: a form is accepted only with its session's token, and the cookie is
never sent with a request started by another site). Sessions live in this process's memory: a restart logs
everyone out. They expire after ``ttl_s`` without use, and at most :data:`MAX_SESSIONS` are kept (the least
recently used go first), so visitors who never log in cannot fill the memory. Sessions not logged in (a login
form's, or every session when keys are off) are kept apart from logged-in ones, so that a flood of visitors
evicts only the former.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from ..dependencies import Tenant

COOKIE = "cnnrelax_console"
COOKIE_PATH = "/console"
MAX_SESSIONS = 10_000
#: Bytes of randomness in a session id and in a form token.
TOKEN_BYTES = 32


@dataclass
class Session:
    """One browser's session: its id (the cookie's value), its form token, and the tenant once logged in."""

    id: str
    form_token: str
    tenant: Tenant | None = None
    last_used: float = field(default_factory=time.monotonic)

    def accepts(self, token: str | None) -> bool:
        """Is ``token`` this session's form token (compared in constant time)?"""
        return token is not None and hmac.compare_digest(token.encode(), self.form_token.encode())


class Sessions:
    """The sessions of one app (thread-safe): logged-in ones, and the others, each pool capped."""

    def __init__(self, ttl_s: float, max_sessions: int = MAX_SESSIONS) -> None:
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self._pools: dict[bool, OrderedDict[str, Session]] = {True: OrderedDict(), False: OrderedDict()}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return sum(len(pool) for pool in self._pools.values())

    def get(self, session_id: str | None) -> Session | None:
        """The live session of ``session_id`` (its use recorded), or ``None``."""
        if not session_id:
            return None
        now = time.monotonic()
        with self._lock:
            for pool in self._pools.values():
                session = pool.get(session_id)
                if session is None:
                    continue
                if now - session.last_used > self.ttl_s:
                    del pool[session_id]
                    return None
                session.last_used = now
                pool.move_to_end(session_id)
                return session
        return None

    def create(self, tenant: Tenant | None = None) -> Session:
        """A new session (a fresh id and form token), evicting its pool's least recently used past the cap."""
        session = Session(secrets.token_urlsafe(TOKEN_BYTES), secrets.token_urlsafe(TOKEN_BYTES), tenant)
        with self._lock:
            pool = self._pools[tenant is not None]
            pool[session.id] = session
            while len(pool) > self.max_sessions:
                pool.popitem(last=False)
        return session

    def drop(self, session_id: str) -> None:
        with self._lock:
            for pool in self._pools.values():
                pool.pop(session_id, None)
