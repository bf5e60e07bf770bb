"""Console sessions: expiry without use, caps per pool (visitors never evict a logged-in session), form tokens."""

from __future__ import annotations

import time

from cnnrelax.api.console.sessions import Sessions
from cnnrelax.api.dependencies import Tenant


def test_a_session_expires_after_its_time_without_use() -> None:
    sessions = Sessions(ttl_s=0.2)
    session = sessions.create(Tenant("key-a", admin=False))
    assert sessions.get(session.id) is session
    time.sleep(0.3)
    assert sessions.get(session.id) is None
    assert sessions.get(None) is None and sessions.get("") is None and sessions.get("unknown") is None


def test_visitors_evict_only_sessions_not_logged_in() -> None:
    sessions = Sessions(ttl_s=60, max_sessions=3)
    logged_in = sessions.create(Tenant("key-a", admin=False))
    visitors = [sessions.create() for _ in range(10)]
    assert sessions.get(logged_in.id) is logged_in
    assert [sessions.get(v.id) is not None for v in visitors] == [False] * 7 + [True] * 3
    assert len(sessions) == 4


def test_ids_and_tokens_are_fresh_and_tokens_are_checked() -> None:
    sessions = Sessions(ttl_s=60)
    made = [sessions.create() for _ in range(50)]
    assert len({s.id for s in made} | {s.form_token for s in made}) == 100
    first = made[0]
    assert first.accepts(first.form_token)
    assert not first.accepts(made[1].form_token) and not first.accepts(None) and not first.accepts("")
    sessions.drop(first.id)
    assert sessions.get(first.id) is None
