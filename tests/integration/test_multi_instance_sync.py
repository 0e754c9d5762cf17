"""/sync long-polls across two instances on one PostgreSQL database (docs/sync.md, "Wake-ups";
docs/deploy.md, "Propagation between instances"): a write committed through instance A wakes the
long-poll waiting on instance B within milliseconds, through the wake channel (LISTEN/NOTIFY on
`myelin_wake`), instead of at the long-poll's timeout.

Runs in the PostgreSQL tier (ctest integration_postgres); skipped on SQLite, where instances cannot
share a database. The clients talk to each instance directly (no nginx: the test must choose which
instance a request reaches).

What is checked, each with bob's long-poll (timeout 20 s) waiting on B:
(a) alice sends a message to their shared room through A: bob's long-poll answers with it;
(b) alice sends bob a to-device message through A: it answers with it;
(c) bob's other device changes his account data through A: it answers with it;
(d) the wake channel's listening connections are killed: B wakes every long-poll (a gap: each
    reads storage again) and counts the gap; wake-ups flow again afterwards;
and the metrics: A counts what it published, B what it received.

Latency is measured from just before the write request is sent on A until B's answer arrives (an
upper bound: it includes the write's own request), printed, and asserted only against the generous
WAKE_BOUND_S (a timed-out long-poll would take 20 s).
"""

from __future__ import annotations

import itertools
import threading
import time

import pytest

import myelin_harness as h
import multi_instance as mi
from client_helpers import V3, bearer, login_ok, register_ok, show, unique_name
from test_rate_limits import metric, scrape
from room_client import q

pytestmark = pytest.mark.skipif(
    h.backend() != "postgres",
    reason="several instances share one PostgreSQL database (ctest integration_postgres)")

# How long a wake-up may take to cross instances before a test fails. It is measured in
# milliseconds; the bound is generous because a test on a shared 2-core machine must not be a
# benchmark. A long-poll that is not woken answers at its 20 s timeout.
WAKE_BOUND_S = 2.0
LONG_POLL_MS = 20000

_txn = itertools.count()


def report(capsys, line: str) -> None:
    """Prints a measured figure even though pytest captures output (it shows in ctest logs)."""
    with capsys.disabled():
        print(f"\n[multi-instance sync] {line}", flush=True)


class Client:
    """One user's session, used on either instance (they share the database)."""

    def __init__(self, session):
        self.s = session
        self.user_id = session.user_id
        self.h = bearer(session.access_token)

    def ok(self, server, method, path, **kw):
        r = server.request(method, V3 + path, headers=self.h, **kw)
        assert r.status_code == 200, f"{method} {path} on {server.port}: {show(r)}"
        return r.json()

    def sync(self, server, **params):
        return self.ok(server, "GET", "/sync", params=params, timeout=LONG_POLL_MS / 1000 + 15)


@pytest.fixture(scope="module")
def instances(tmp_path_factory):
    servers = mi.start_instances(tmp_path_factory.mktemp("wake"), 2, scope="module")
    yield servers
    problems = h.stop_servers(servers, check=True)
    if problems:
        pytest.fail("instance shutdown problems:\n" + "\n".join(problems), pytrace=False)


class LongPoll:
    """bob's /sync long-poll on `server` in a thread; records when it answered."""

    def __init__(self, client: Client, server, since: str):
        self.result: dict = {}
        self.thread = threading.Thread(target=self._poll, args=(client, server, since))
        self.thread.start()

    def _poll(self, client, server, since):
        try:
            self.result["body"] = client.sync(server, since=since, timeout=str(LONG_POLL_MS))
        except BaseException as e:  # noqa: BLE001 -- reported by answer()
            self.result["error"] = e
        self.result["at"] = time.perf_counter()

    def answer(self) -> tuple[dict, float]:
        self.thread.join(timeout=LONG_POLL_MS / 1000 + 20)
        assert not self.thread.is_alive(), "the long-poll never answered"
        if "error" in self.result:
            raise self.result["error"]
        return self.result["body"], self.result["at"]


# The seconds each write request took by itself (its answer on A), for the report.
write_seconds: list[float] = []


def long_poll_woken_by(client: Client, server, since: str, write) -> tuple[dict, float]:
    """Starts a long-poll on `server`, checks that it waits, runs `write` (a request to the other
    instance); returns the long-poll's answer and the seconds from just before the write."""
    poll = LongPoll(client, server, since)
    time.sleep(0.5)
    assert poll.thread.is_alive(), "the long-poll answered before anything happened"
    started = time.perf_counter()
    write()
    write_seconds.append(time.perf_counter() - started)
    body, at = poll.answer()
    return body, at - started


@pytest.fixture(scope="module")
def pair(instances):
    """alice and bob (registered on A), joined to one room; bob also signed in on a second
    device (for his own account-data change)."""
    a, _ = instances
    alice = Client(register_ok(a, unique_name("wa")))
    bob_session = register_ok(a, unique_name("wb"))
    bob = Client(bob_session)
    bob_other = Client(login_ok(a, bob_session.user_id, bob_session.password))
    room = alice.ok(a, "POST", "/createRoom", json={"invite": [bob.user_id]})["room_id"]
    bob.ok(a, "POST", f"/rooms/{q(room)}/join", json={})
    return alice, bob, bob_other, room


def test_a_message_sent_through_a_wakes_a_long_poll_on_b(instances, pair, capsys):
    a, b = instances
    alice, bob, _, room = pair
    published = metric(scrape(a.config["metrics"]["port"]), "myelin_wake_feed_published_total")
    received = metric(scrape(b.config["metrics"]["port"]), "myelin_wake_feed_received_total")
    latencies = []
    write_seconds.clear()
    for i in range(5):
        since = bob.sync(b)["next_batch"]
        body, seconds = long_poll_woken_by(
            bob, b, since,
            lambda: alice.ok(a, "PUT", f"/rooms/{q(room)}/send/m.room.message/t{next(_txn)}",
                             json={"msgtype": "m.text", "body": f"across {i}"}))
        events = body["rooms"]["join"][room]["timeline"]["events"]
        assert [e["content"].get("body") for e in events] == [f"across {i}"]
        assert seconds < WAKE_BOUND_S, f"woken after {seconds * 1000:.0f} ms"
        latencies.append(seconds)
    report(capsys, "message A -> long-poll on B answered in "
           + ", ".join(f"{s * 1000:.1f}" for s in latencies) + " ms from the send request; "
           + "the send itself took " + ", ".join(f"{s * 1000:.1f}" for s in write_seconds)
           + " ms")
    # A published (at least alice and bob for each message); B received them.
    assert metric(scrape(a.config["metrics"]["port"]),
                  "myelin_wake_feed_published_total") >= published + 10
    assert metric(scrape(b.config["metrics"]["port"]),
                  "myelin_wake_feed_received_total") >= received + 10


def test_a_to_device_message_sent_through_a_wakes_a_long_poll_on_b(instances, pair, capsys):
    a, b = instances
    alice, bob, _, _ = pair
    since = bob.sync(b)["next_batch"]
    body, seconds = long_poll_woken_by(
        bob, b, since,
        lambda: alice.ok(a, "PUT", f"/sendToDevice/m.test/t{next(_txn)}",
                         json={"messages": {bob.user_id: {bob.s.device_id: {"n": 1}}}}))
    assert body["to_device"]["events"] == [
        {"type": "m.test", "sender": alice.user_id, "content": {"n": 1}}]
    report(capsys, f"to-device A -> long-poll on B answered in {seconds * 1000:.1f} ms")
    assert seconds < WAKE_BOUND_S, f"woken after {seconds * 1000:.0f} ms"


def test_an_account_data_change_through_a_wakes_a_long_poll_on_b(instances, pair, capsys):
    a, b = instances
    _, bob, bob_other, _ = pair
    since = bob.sync(b)["next_batch"]
    body, seconds = long_poll_woken_by(
        bob, b, since,
        lambda: bob_other.ok(a, "PUT", f"/user/{q(bob.user_id)}/account_data/org.example.w",
                             json={"w": 1}))
    assert {"type": "org.example.w", "content": {"w": 1}} in body["account_data"]["events"]
    report(capsys, f"account data A -> long-poll on B answered in {seconds * 1000:.1f} ms")
    assert seconds < WAKE_BOUND_S, f"woken after {seconds * 1000:.0f} ms"


def test_a_lost_wake_channel_wakes_every_long_poll_and_then_recovers(instances, pair, capsys):
    a, b = instances
    alice, bob, _, room = pair
    gaps = metric(scrape(b.config["metrics"]["port"]), "myelin_wake_feed_gaps_total")
    since = bob.sync(b)["next_batch"]

    def kill_listeners():
        killed = h.db_query(b, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                               "WHERE datname = current_database() "
                               "AND application_name LIKE '%-wake-listen'")
        assert killed == [(2,)], killed  # one per instance

    # Nothing was written: the long-poll answers early and empty, having read storage again.
    body, seconds = long_poll_woken_by(bob, b, since, kill_listeners)
    assert body["rooms"]["join"] == {} and body["next_batch"] == since
    assert seconds < LONG_POLL_MS / 1000 / 2, f"answered after {seconds:.1f} s"
    report(capsys, f"listener killed -> long-poll on B answered (gap) in {seconds * 1000:.1f} ms")
    assert metric(scrape(b.config["metrics"]["port"]), "myelin_wake_feed_gaps_total") == gaps + 1

    # Reconnected (the gap was reported once listening again): wake-ups cross again.
    body, seconds = long_poll_woken_by(
        bob, b, since,
        lambda: alice.ok(a, "PUT", f"/rooms/{q(room)}/send/m.room.message/t{next(_txn)}",
                         json={"msgtype": "m.text", "body": "after the gap"}))
    events = body["rooms"]["join"][room]["timeline"]["events"]
    assert [e["content"].get("body") for e in events] == ["after the gap"]
    assert seconds < WAKE_BOUND_S, f"woken after {seconds * 1000:.0f} ms"
