"""Black-box tests of the ephemeral events of GET /sync (issue #8 §3): typing notifications
(PUT /rooms/{roomId}/typing/{userId}), read receipts (POST /rooms/{roomId}/receipt/...) and
the read marker (POST /rooms/{roomId}/read_markers).

Typing reaches the other member through an incremental long-poll that wakes at once, ends when
the user stops or the timeout passes (the long-poll wakes for that too), and an initial sync
shows who is typing. Receipts of both types reach /sync as m.receipt, private ones only their
owner; receipts only move forward; m.fully_read is room account data, not a receipt. Errors are
403/404/400 with their errcodes. Every /sync body is validated against sync.yaml and every
ephemeral event against its event schema (m.typing.yaml, m.receipt.yaml)."""

from __future__ import annotations

import time

import jsonschema
import pytest

import myelin_harness as h
from myelin_harness import assert_matches_spec, assert_matrix_error
from client_helpers import PREFIXES, V3, register_ok, show, unique_name
from room_client import RoomClient, finish, long_poll, next_txn_id, q



def assert_event_matches_schema(event: dict) -> None:
    path = h.spec_dir() / "data" / "event-schemas" / "schema" / f"{event['type']}.yaml"
    validator = jsonschema.Draft202012Validator(h.load_yaml(path), resolver=h._resolver(path))
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(event)]
    assert not errors, (event, errors)


class Client(RoomClient):
    def sync(self, http_timeout=20, **params):
        body = super().sync(http_timeout=http_timeout, **params)
        for room in body["rooms"]["join"].values():
            for event in room["ephemeral"]["events"]:
                assert_event_matches_schema(event)
        return body

    def typing(self, room, typing, timeout=None, prefix=V3):
        body = {"typing": typing}
        if timeout is not None:
            body["timeout"] = timeout
        r = self.req("PUT", f"/rooms/{q(room)}/typing/{q(self.user_id)}", prefix, json=body)
        assert r.status_code == 200, show(r)
        assert_matches_spec(r, "typing.yaml", f"/rooms/{room}/typing/{self.user_id}", "put", 200)

    def receipt(self, room, receipt_type, event_id, body=None, prefix=V3):
        r = self.req("POST", f"/rooms/{q(room)}/receipt/{receipt_type}/{q(event_id)}", prefix,
                     json=body if body is not None else {})
        assert r.status_code == 200, show(r)
        assert_matches_spec(r, "receipts.yaml",
                            f"/rooms/{room}/receipt/{receipt_type}/{event_id}", "post", 200)

    def read_markers(self, room, body):
        r = self.req("POST", f"/rooms/{q(room)}/read_markers", json=body)
        assert r.status_code == 200, show(r)
        assert_matches_spec(r, "read_markers.yaml", f"/rooms/{room}/read_markers", "post", 200)


@pytest.fixture
def room_of_two(shared_server):
    alice = Client(shared_server, register_ok(shared_server, unique_name("ea")))
    bob = Client(shared_server, register_ok(shared_server, unique_name("eb")))
    room = alice.ok("POST", "/createRoom", json={"invite": [bob.user_id]})["room_id"]
    bob.ok("POST", f"/rooms/{q(room)}/join", json={})
    return alice, bob, room


def ephemeral(body: dict, room: str, type_: str) -> list:
    joined = body["rooms"]["join"].get(room)
    if joined is None:
        return []
    return [e for e in joined["ephemeral"]["events"] if e["type"] == type_]


def typing_users(body: dict, room: str):
    """The user_ids of the room's m.typing event, or None when the sync carries none."""
    events = ephemeral(body, room, "m.typing")
    assert len(events) <= 1, events
    return events[0]["content"]["user_ids"] if events else None


def receipts_of(body: dict, room: str) -> dict:
    events = ephemeral(body, room, "m.receipt")
    assert len(events) <= 1, events
    return events[0]["content"] if events else {}




# ---------------------------------------------------------------------------------- typing

@pytest.mark.parametrize("prefix", PREFIXES, ids=["v3", "r0"])
def test_typing_wakes_the_other_member_and_stopping_shows_up(room_of_two, prefix):
    alice, bob, room = room_of_two
    since = bob.sync()["next_batch"]
    thread, result = long_poll(bob, since)
    alice.typing(room, True, 30_000, prefix=prefix)
    body = finish(thread, result)
    assert typing_users(body, room) == [alice.user_id]
    # The typing user sees it too, and renewing it is no change for a later sync.
    assert typing_users(alice.sync(), room) == [alice.user_id]
    alice.typing(room, True, 30_000)
    assert typing_users(bob.sync(since=body["next_batch"]), room) is None

    thread, result = long_poll(bob, body["next_batch"])
    alice.typing(room, False, prefix=prefix)
    stopped = finish(thread, result)
    assert typing_users(stopped, room) == []
    # Told once: the next incremental sync carries no m.typing.
    assert typing_users(bob.sync(since=stopped["next_batch"]), room) is None


def test_typing_ends_by_itself_after_the_timeout_and_wakes_the_members(room_of_two):
    alice, bob, room = room_of_two
    since = bob.sync()["next_batch"]
    alice.typing(room, True, 1500)
    body = bob.sync(since=since)
    assert typing_users(body, room) == [alice.user_id]
    started = time.monotonic()
    thread, result = long_poll(bob, body["next_batch"], timeout_ms=15_000)
    ended = finish(thread, result, limit=8.0)
    assert typing_users(ended, room) == []
    assert time.monotonic() - started >= 0.9  # not before the timeout (1.5 s after the PUT)


def test_initial_sync_shows_who_is_typing_and_several_users_sorted(room_of_two):
    alice, bob, room = room_of_two
    assert typing_users(bob.sync(), room) is None
    bob.typing(room, True)  # the default timeout (30 s)
    alice.typing(room, True, 20_000)
    assert typing_users(bob.sync(), room) == sorted([alice.user_id, bob.user_id])
    bob.typing(room, False)
    alice.typing(room, False)
    assert typing_users(bob.sync(), room) is None


def test_a_token_from_another_process_gets_every_rooms_typing_state(room_of_two):
    alice, bob, room = room_of_two
    alice.typing(room, True, 30_000)
    token = bob.sync()["next_batch"]
    parts = token[1:].split("_")
    assert len(parts) == 6
    # A typing serial below this process's first one (a token from before a restart).
    old = "s" + "_".join(parts[:5] + ["0"])
    body = bob.sync(since=old)
    assert typing_users(body, room) == [alice.user_id]
    assert int(body["next_batch"][1:].split("_")[5]) >= int(parts[5])
    # Then back to normal: no m.typing without a change.
    assert typing_users(bob.sync(since=body["next_batch"]), room) is None
    alice.typing(room, False)


def test_typing_errors(shared_server, room_of_two):
    alice, bob, room = room_of_two
    carol = Client(shared_server, register_ok(shared_server, unique_name("ec")))
    # For another user: 403.
    r = alice.req("PUT", f"/rooms/{q(room)}/typing/{q(bob.user_id)}",
                  json={"typing": True, "timeout": 1000})
    assert_matrix_error(r, 403, "M_FORBIDDEN")
    # In a room one is not joined to (or that does not exist): 403.
    r = carol.req("PUT", f"/rooms/{q(room)}/typing/{q(carol.user_id)}", json={"typing": True})
    assert_matrix_error(r, 403, "M_FORBIDDEN")
    r = carol.req("PUT", f"/rooms/{q('!nope:localhost')}/typing/{q(carol.user_id)}",
                  json={"typing": True})
    assert_matrix_error(r, 403, "M_FORBIDDEN")
    # Bad bodies: 400.
    path = f"/rooms/{q(room)}/typing/{q(alice.user_id)}"
    for body in [{}, {"typing": "yes"}, {"typing": True, "timeout": "soon"},
                 {"typing": True, "timeout": 1.5}]:
        assert_matrix_error(alice.req("PUT", path, json=body), 400, "M_BAD_JSON")
    assert_matrix_error(alice.req("PUT", path, data="not json"), 400, "M_NOT_JSON")
    # Unauthenticated: 401.
    r = shared_server.request("PUT", V3 + path, json={"typing": True})
    assert_matrix_error(r, 401, "M_MISSING_TOKEN")
    # None of this made anyone typing.
    assert typing_users(bob.sync(), room) is None


# -------------------------------------------------------------------------------- receipts

def test_read_receipts_reach_the_other_member_by_long_poll(room_of_two):
    alice, bob, room = room_of_two
    first = alice.send(room, "one")
    since = alice.sync()["next_batch"]
    thread, result = long_poll(alice, since)
    before = int(time.time() * 1000)
    bob.receipt(room, "m.read", first)
    body = finish(thread, result)
    content = receipts_of(body, room)
    assert list(content) == [first]
    receipt = content[first]["m.read"][bob.user_id]
    assert set(receipt) == {"ts"}  # unthreaded: no thread_id
    assert before - 5000 <= receipt["ts"] <= int(time.time() * 1000) + 5000

    # A threaded receipt is a receipt of its own and carries its thread_id; the unthreaded one
    # is not sent again.
    second = alice.send(room, "two")
    bob.receipt(room, "m.read", second, {"thread_id": "main"})
    later = alice.sync(since=body["next_batch"])
    assert receipts_of(later, room) == {
        second: {"m.read": {bob.user_id: {"ts": receipts_of(later, room)[second]["m.read"]
                                          [bob.user_id]["ts"], "thread_id": "main"}}}}
    # Both are in an initial sync (the unthreaded one moved on), and the r0 prefix answers too.
    third = alice.send(room, "three")
    bob.receipt(room, "m.read", third, prefix="/_matrix/client/r0")
    initial = receipts_of(alice.sync(), room)
    assert initial[second]["m.read"][bob.user_id]["thread_id"] == "main"
    assert "thread_id" not in initial[third]["m.read"][bob.user_id]
    assert first not in initial


def test_receipts_only_move_forward(room_of_two):
    alice, bob, room = room_of_two
    old = alice.send(room, "old")
    new = alice.send(room, "new")
    since = alice.sync()["next_batch"]
    bob.receipt(room, "m.read", new)
    bob.receipt(room, "m.read", old)  # accepted (200) but ignored
    body = alice.sync(since=since)
    assert list(receipts_of(body, room)) == [new]
    assert receipts_of(alice.sync(since=body["next_batch"]), room) == {}
    assert old not in receipts_of(alice.sync(), room)


def test_private_receipts_reach_only_their_owner(room_of_two):
    alice, bob, room = room_of_two
    event = alice.send(room, "secret")
    alice_since = alice.sync()["next_batch"]
    bob_since = bob.sync()["next_batch"]
    bob.receipt(room, "m.read.private", event)
    mine = bob.sync(since=bob_since)
    assert receipts_of(mine, room) == {
        event: {"m.read.private": {bob.user_id: receipts_of(mine, room)[event]["m.read.private"]
                                   [bob.user_id]}}}
    # Alice sees nothing of it, incremental or initial; and her long-poll is not woken for it.
    assert receipts_of(alice.sync(since=alice_since), room) == {}
    assert "m.read.private" not in str(alice.sync()["rooms"]["join"][room]["ephemeral"])
    started = time.monotonic()
    quiet = alice.sync(since=alice_since, timeout="1200")
    assert time.monotonic() - started >= 1.0
    assert receipts_of(quiet, room) == {}
    assert receipts_of(bob.sync(), room)[event]["m.read.private"][bob.user_id]["ts"] > 0


def test_read_markers_set_the_marker_and_both_receipts(room_of_two):
    alice, bob, room = room_of_two
    first = alice.send(room, "a")
    second = alice.send(room, "b")
    bob_since = bob.sync()["next_batch"]
    alice_since = alice.sync()["next_batch"]
    bob.read_markers(room, {"m.fully_read": first, "m.read": second, "m.read.private": first})
    mine = bob.sync(since=bob_since)
    joined = mine["rooms"]["join"][room]
    assert {"type": "m.fully_read", "content": {"event_id": first}} in \
        joined["account_data"]["events"]
    content = receipts_of(mine, room)
    assert bob.user_id in content[second]["m.read"]
    assert bob.user_id in content[first]["m.read.private"]
    assert all("m.fully_read" not in by_type for by_type in content.values())
    theirs = receipts_of(alice.sync(since=alice_since), room)
    assert list(theirs) == [second] and list(theirs[second]) == ["m.read"]
    stored = bob.ok("GET", f"/user/{q(bob.user_id)}/rooms/{q(room)}/account_data/m.fully_read")
    assert stored == {"event_id": first}

    # The receipt endpoint's m.fully_read is the same marker; it only moves forward.
    bob.receipt(room, "m.fully_read", second)
    assert bob.ok("GET", f"/user/{q(bob.user_id)}/rooms/{q(room)}/account_data/m.fully_read") \
        == {"event_id": second}
    bob.read_markers(room, {"m.fully_read": first})
    assert bob.ok("GET", f"/user/{q(bob.user_id)}/rooms/{q(room)}/account_data/m.fully_read") \
        == {"event_id": second}
    # An empty body moves nothing.
    bob.read_markers(room, {})


def test_receipt_and_read_marker_errors(shared_server, room_of_two):
    alice, bob, room = room_of_two
    carol = Client(shared_server, register_ok(shared_server, unique_name("ec")))
    event = alice.send(room, "x")
    other_room = alice.ok("POST", "/createRoom", json={})["room_id"]
    elsewhere = alice.send(other_room, "elsewhere")

    def receipt(client, receipt_type, event_id, body=None, room_id=room):
        return client.req("POST", f"/rooms/{q(room_id)}/receipt/{receipt_type}/{q(event_id)}",
                          json=body if body is not None else {})

    # Not joined (or no such room): 403.
    assert_matrix_error(receipt(carol, "m.read", event), 403, "M_FORBIDDEN")
    assert_matrix_error(receipt(carol, "m.read", event, room_id="!nope:localhost"), 403,
                        "M_FORBIDDEN")
    assert_matrix_error(carol.req("POST", f"/rooms/{q(room)}/read_markers",
                                  json={"m.fully_read": event}), 403, "M_FORBIDDEN")
    # An event that is not in the room: 404.
    assert_matrix_error(receipt(bob, "m.read", "$unknown:localhost"), 404, "M_NOT_FOUND")
    assert_matrix_error(receipt(bob, "m.read", elsewhere), 404, "M_NOT_FOUND")
    assert_matrix_error(bob.req("POST", f"/rooms/{q(room)}/read_markers",
                                json={"m.fully_read": elsewhere}), 404, "M_NOT_FOUND")
    # Bad receipt type or thread_id: 400 M_INVALID_PARAM.
    assert_matrix_error(receipt(bob, "m.unread", event), 400, "M_INVALID_PARAM")
    for body in [{"thread_id": ""}, {"thread_id": 5}, {"thread_id": "thread"}]:
        assert_matrix_error(receipt(bob, "m.read", event, body), 400, "M_INVALID_PARAM")
    assert_matrix_error(receipt(bob, "m.fully_read", event, {"thread_id": "main"}), 400,
                        "M_INVALID_PARAM")
    # An event that is neither the thread's root nor in the thread.
    assert_matrix_error(receipt(bob, "m.read", event, {"thread_id": "$root:localhost"}), 400,
                        "M_INVALID_PARAM")
    # read_markers values must be strings.
    r = bob.req("POST", f"/rooms/{q(room)}/read_markers", json={"m.read": 5})
    assert_matrix_error(r, 400, "M_BAD_JSON")
    # Nothing of it was stored.
    assert receipts_of(alice.sync(), room) == {}


def test_a_thread_receipt_on_an_event_in_that_thread(room_of_two):
    alice, bob, room = room_of_two
    root = alice.send(room, "root")
    reply = alice.ok("PUT", f"/rooms/{q(room)}/send/m.room.message/{next_txn_id()}",
                     json={"msgtype": "m.text", "body": "in thread",
                           "m.relates_to": {"rel_type": "m.thread", "event_id": root}})["event_id"]
    bob.receipt(room, "m.read", reply, {"thread_id": root})
    bob.receipt(room, "m.read", root, {"thread_id": root})
    content = receipts_of(alice.sync(), room)
    assert content[reply]["m.read"][bob.user_id]["thread_id"] == root
