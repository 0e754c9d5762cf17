"""One user's session as the room, /sync and ephemeral tests drive it: requests with the user's
access token, a 200 asserted where a helper expects one, and the bodies of /sync and room sends
checked against the spec. Test modules subclass RoomClient for their own endpoints."""
from __future__ import annotations

import itertools
import threading
import time
import urllib.parse

from myelin_harness import assert_matches_spec
from client_helpers import V3, bearer, show

_txn_ids = itertools.count()


def q(s: str) -> str:
    """`s` as one path segment (every reserved character percent-encoded)."""
    return urllib.parse.quote(s, safe="")


def next_txn_id() -> str:
    """A transaction ID not used before in this test process."""
    return f"txn{next(_txn_ids)}"


class RoomClient:
    def __init__(self, server, session):
        self.server = server
        self.s = session
        self.user_id = session.user_id
        self.h = bearer(session.access_token)

    def req(self, method, path, prefix=V3, **kw):
        return self.server.request(method, prefix + path, headers=self.h, **kw)

    def ok(self, method, path, prefix=V3, **kw):
        r = self.req(method, path, prefix, **kw)
        assert r.status_code == 200, f"{method} {path}: {show(r)}"
        return r.json()

    def sync(self, prefix=V3, http_timeout=20, **params):
        """GET /sync with these query parameters; the 200 body, checked against sync.yaml."""
        r = self.server.get(prefix + "/sync", headers=self.h, params=params,
                            timeout=http_timeout)
        assert r.status_code == 200, show(r)
        body = r.json()
        assert_matches_spec(body, "sync.yaml", "/sync", "get", 200)
        return body

    def send(self, room, body, txn=None, type_="m.room.message"):
        """Sends a text message (or an event of `type_` with that content); its event ID."""
        txn = txn or next_txn_id()
        r = self.req("PUT", f"/rooms/{q(room)}/send/{q(type_)}/{q(txn)}",
                     json={"msgtype": "m.text", "body": body})
        assert r.status_code == 200, show(r)
        assert_matches_spec(r, "room_send.yaml", f"/rooms/{room}/send/{type_}/{txn}", "put", 200)
        return r.json()["event_id"]


def long_poll(client: RoomClient, since: str, timeout_ms: int = 10_000):
    """Starts client.sync(since, timeout) in a thread and checks it is still waiting 0.5 s
    later; returns (thread, result), where result gets "body" and "seconds" once it answers."""
    result = {}

    def poll():
        started = time.monotonic()
        result["body"] = client.sync(since=since, timeout=str(timeout_ms))
        result["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(0.5)
    assert thread.is_alive(), "the long-poll answered before anything happened"
    return thread, result


def finish(thread, result, limit: float = 9.0) -> dict:
    """Waits for a long_poll() to answer, well before its timeout (< `limit` s); its body."""
    thread.join(timeout=15)
    assert not thread.is_alive()
    assert result["seconds"] < limit, result["seconds"]
    return result["body"]
