"""Black-box tests of GET /sync (sync.yaml; issue #8 §3, first cut): two users; an initial sync
shows a created room with its state and timeline, an invite shows in `invite` with stripped
state, an incremental sync after the join shows the other user's message, a long-poll wakes
as soon as the other user sends, to-device messages are delivered once and deleted after the
next `since`, account data changes show up, device_lists follows who shares a room (changed
and left), timeline filters (limit, types) apply with
`limited`/`prev_batch` usable with /messages, and malformed `since` / unknown filter IDs are
400 M_INVALID_PARAM. Every 200 body is validated against the spec's schema."""

from __future__ import annotations

import time

import pytest

from myelin_harness import assert_matrix_error
from client_helpers import PREFIXES, V3, register_ok, unique_name
from room_client import RoomClient as Client, finish, long_poll, next_txn_id, q


@pytest.fixture
def two(shared_server):
    alice = Client(shared_server, register_ok(shared_server, unique_name("sa")))
    bob = Client(shared_server, register_ok(shared_server, unique_name("sb")))
    return alice, bob


def timeline_bodies(room: dict) -> list:
    return [e["content"].get("body") for e in room["timeline"]["events"]
            if e["type"] == "m.room.message"]


@pytest.mark.parametrize("prefix", PREFIXES, ids=["v3", "r0"])
def test_initial_sync_shows_created_room_with_state_and_timeline(two, prefix):
    alice, _ = two
    room = alice.ok("POST", "/createRoom", json={"name": "Sync room"})["room_id"]
    alice.send(room, "hello")
    body = alice.sync(prefix)
    assert body["next_batch"].startswith("s")
    joined = body["rooms"]["join"][room]
    timeline = joined["timeline"]["events"]
    assert [e["type"] for e in timeline][-1] == "m.room.message"
    assert timeline_bodies(joined) == ["hello"]
    assert all("room_id" not in e for e in timeline)
    # State and timeline together give the whole current state; nothing twice.
    state_keys = {(e["type"], e["state_key"]) for e in joined["state"]["events"]}
    timeline_state = {(e["type"], e["state_key"]) for e in timeline if "state_key" in e}
    assert not state_keys & timeline_state
    everything = state_keys | timeline_state
    for key in [("m.room.create", ""), ("m.room.member", alice.user_id),
                ("m.room.power_levels", ""), ("m.room.name", "")]:
        assert key in everything, key
    # The default limit is 10; createRoom wrote more than that with the message.
    assert len(timeline) == 10 or not joined["timeline"]["limited"]
    # Server-default push rules are part of the initial account data.
    types = [e["type"] for e in body["account_data"]["events"]]
    assert "m.push_rules" in types
    rules = next(e for e in body["account_data"]["events"] if e["type"] == "m.push_rules")
    assert "override" in rules["content"]["global"]


def test_timeline_limit_types_and_prev_batch(two):
    alice, _ = two
    room = alice.ok("POST", "/createRoom", json={})["room_id"]
    for i in range(5):
        alice.send(room, f"m{i}")
    alice.ok("PUT", f"/rooms/{q(room)}/state/org.example.s/", json={"x": 1})
    f = '{"room": {"timeline": {"limit": 2, "types": ["m.room.message"]}}}'
    joined = alice.sync(filter=f)["rooms"]["join"][room]
    assert timeline_bodies(joined) == ["m3", "m4"]
    assert [e["type"] for e in joined["timeline"]["events"]] == ["m.room.message"] * 2
    assert joined["timeline"]["limited"] is True
    # The custom state event is not in the (filtered) timeline, so it is in the state.
    assert any(e["type"] == "org.example.s" for e in joined["state"]["events"])
    # prev_batch continues backwards with /messages.
    page = alice.ok("GET", f"/rooms/{q(room)}/messages",
                    params={"dir": "b", "from": joined["timeline"]["prev_batch"], "limit": 3})
    assert [e["content"]["body"] for e in page["chunk"]] == ["m2", "m1", "m0"]

    # limit 0: no events, limited, and prev_batch still reaches the newest event.
    joined = alice.sync(filter='{"room": {"timeline": {"limit": 0}}}')["rooms"]["join"][room]
    assert joined["timeline"]["events"] == [] and joined["timeline"]["limited"] is True
    page = alice.ok("GET", f"/rooms/{q(room)}/messages",
                    params={"dir": "b", "from": joined["timeline"]["prev_batch"], "limit": 1})
    assert [e["type"] for e in page["chunk"]] == ["org.example.s"]

    # A stored filter by ID applies the same way; an unknown one is 400 M_INVALID_PARAM.
    filter_id = alice.ok("POST", f"/user/{q(alice.user_id)}/filter",
                         json={"room": {"timeline": {"limit": 1}}})["filter_id"]
    joined = alice.sync(filter=filter_id)["rooms"]["join"][room]
    assert len(joined["timeline"]["events"]) == 1
    assert joined["timeline"]["events"][0]["type"] == "org.example.s"
    r = alice.server.get(V3 + "/sync", headers=alice.h, params={"filter": "987654"})
    assert_matrix_error(r, 400, "M_INVALID_PARAM")


def test_invite_join_and_incremental_sync(two):
    alice, bob = two
    room = alice.ok("POST", "/createRoom", json={"name": "Invite me"})["room_id"]
    since = bob.sync()["next_batch"]
    alice.ok("POST", f"/rooms/{q(room)}/invite", json={"user_id": bob.user_id})

    body = bob.sync(since=since)
    invite = body["rooms"]["invite"][room]["invite_state"]["events"]
    types = {e["type"] for e in invite}
    assert {"m.room.create", "m.room.name", "m.room.join_rules", "m.room.member"} <= types
    member = next(e for e in invite if e["type"] == "m.room.member")
    assert member["state_key"] == bob.user_id and member["content"]["membership"] == "invite"
    assert room not in body["rooms"]["join"]
    # Nothing new: the invite is not repeated.
    again = bob.sync(since=body["next_batch"])
    assert room not in again["rooms"]["invite"]
    assert again["next_batch"] == body["next_batch"]

    bob.ok("POST", f"/rooms/{q(room)}/join", json={})
    joined_sync = bob.sync(since=again["next_batch"])
    joined = joined_sync["rooms"]["join"][room]
    # Joined after `since`: the room's whole state comes with it.
    everything = {(e["type"], e["state_key"]) for e in joined["state"]["events"]} | {
        (e["type"], e["state_key"]) for e in joined["timeline"]["events"] if "state_key" in e}
    assert ("m.room.create", "") in everything and ("m.room.member", bob.user_id) in everything

    alice.send(room, "welcome bob")
    body = bob.sync(since=joined_sync["next_batch"])
    joined = body["rooms"]["join"][room]
    assert timeline_bodies(joined) == ["welcome bob"]
    assert joined["timeline"]["events"][0]["sender"] == alice.user_id
    assert joined["timeline"]["limited"] is False
    assert joined["state"]["events"] == []

    # Leaving shows the room under `leave` on the next incremental sync.
    bob.ok("POST", f"/rooms/{q(room)}/leave", json={})
    body = bob.sync(since=body["next_batch"])
    assert room in body["rooms"]["leave"]
    assert room not in body["rooms"]["join"]
    leave_events = body["rooms"]["leave"][room]["timeline"]["events"]
    assert leave_events[-1]["type"] == "m.room.member"
    assert leave_events[-1]["content"]["membership"] == "leave"


def test_long_poll_wakes_when_the_other_user_sends(two):
    alice, bob = two
    room = alice.ok("POST", "/createRoom", json={"invite": [bob.user_id]})["room_id"]
    bob.ok("POST", f"/rooms/{q(room)}/join", json={})
    since = bob.sync()["next_batch"]

    # Nothing happens: the long-poll would wait its 10 s. The message must end it early.
    thread, result = long_poll(bob, since)
    alice.send(room, "wake up")
    body = finish(thread, result)
    assert timeline_bodies(body["rooms"]["join"][room]) == ["wake up"]


def test_long_poll_times_out_with_an_empty_answer(two):
    alice, _ = two
    since = alice.sync()["next_batch"]
    started = time.monotonic()
    body = alice.sync(since=since, timeout="300")
    assert time.monotonic() - started >= 0.25
    assert body["next_batch"] == since
    assert body["rooms"]["join"] == {} and body["to_device"]["events"] == []


def test_to_device_delivered_once_and_deleted_after_next_since(two):
    alice, bob = two
    since = bob.sync()["next_batch"]
    alice.ok("PUT", f"/sendToDevice/m.test/{next_txn_id()}",
             json={"messages": {bob.user_id: {bob.s.device_id: {"n": 1}}}})
    first = bob.sync(since=since)
    events = first["to_device"]["events"]
    assert events == [{"type": "m.test", "sender": alice.user_id, "content": {"n": 1}}]
    # Not acknowledged yet: a retry with the old `since` gets it again.
    assert bob.sync(since=since)["to_device"]["events"] == events
    # Acknowledged by the next since: gone, also for a client that retries the older token.
    second = bob.sync(since=first["next_batch"])
    assert second["to_device"]["events"] == []
    assert bob.sync(since=since)["to_device"]["events"] == []


def test_account_data_changes_show_up(two):
    alice, _ = two
    room = alice.ok("POST", "/createRoom", json={})["room_id"]
    since = alice.sync()["next_batch"]
    alice.ok("PUT", f"/user/{q(alice.user_id)}/account_data/org.example.a", json={"v": 1})
    alice.ok("PUT", f"/user/{q(alice.user_id)}/rooms/{q(room)}/account_data/m.tag",
             json={"tags": {"u.x": {}}})
    body = alice.sync(since=since)
    assert {"type": "org.example.a", "content": {"v": 1}} in body["account_data"]["events"]
    room_data = body["rooms"]["join"][room]["account_data"]["events"]
    assert room_data == [{"type": "m.tag", "content": {"tags": {"u.x": {}}}}]
    later = alice.sync(since=body["next_batch"])
    assert later["account_data"]["events"] == []
    assert room not in later["rooms"]["join"]


def test_incremental_sync_lists_only_the_rooms_with_new_events(two):
    # The incremental path asks storage which rooms have events after `since` and skips the
    # other joined rooms (bench/README.md "/sync"): same answer as reading every room.
    alice, bob = two
    rooms = [alice.ok("POST", "/createRoom", json={})["room_id"] for _ in range(3)]
    elsewhere = bob.ok("POST", "/createRoom", json={})["room_id"]
    since = alice.sync()["next_batch"]
    bob.send(elsewhere, "not for alice")
    body = alice.sync(since=since)
    assert body["rooms"]["join"] == {}
    event_id = alice.send(rooms[1], "only here")
    body = alice.sync(since=since)
    assert list(body["rooms"]["join"]) == [rooms[1]]
    timeline = body["rooms"]["join"][rooms[1]]["timeline"]
    assert [e["event_id"] for e in timeline["events"]] == [event_id]
    assert timeline["limited"] is False
    # A room joined after `since` comes whole, next to the room with a new event.
    bob.ok("POST", f"/rooms/{q(elsewhere)}/invite", json={"user_id": alice.user_id})
    alice.ok("POST", f"/rooms/{q(elsewhere)}/join", json={})
    body = alice.sync(since=since)
    assert sorted(body["rooms"]["join"]) == sorted([rooms[1], elsewhere])
    assert "not for alice" in timeline_bodies(body["rooms"]["join"][elsewhere])
    assert alice.sync(since=body["next_batch"])["rooms"]["join"] == {}


def test_full_state_resends_the_state(two):
    alice, _ = two
    room = alice.ok("POST", "/createRoom", json={})["room_id"]
    since = alice.sync()["next_batch"]
    assert room not in alice.sync(since=since)["rooms"]["join"]
    joined = alice.sync(since=since, full_state="true")["rooms"]["join"][room]
    assert any(e["type"] == "m.room.create" for e in joined["state"]["events"])


@pytest.mark.parametrize("bad", ["x", "s1", "s1_2_3", "s1_2_3_-4", "s1_2_3_4_5", "s_1_2_3"])
def test_malformed_since_is_400(two, bad):
    alice, _ = two
    r = alice.server.get(V3 + "/sync", headers=alice.h, params={"since": bad})
    assert_matrix_error(r, 400, "M_INVALID_PARAM")


def test_bad_timeout_and_requires_auth(shared_server, two):
    alice, _ = two
    r = alice.server.get(V3 + "/sync", headers=alice.h, params={"timeout": "soon"})
    assert_matrix_error(r, 400, "M_INVALID_PARAM")
    r = shared_server.get(V3 + "/sync")
    assert_matrix_error(r, 401, "M_MISSING_TOKEN")
    # set_presence is accepted and ignored.
    alice.sync(set_presence="offline")


def _device_keys(s) -> dict:
    return {"user_id": s.user_id, "device_id": s.device_id,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {f"curve25519:{s.device_id}": "curve" + s.device_id,
                     f"ed25519:{s.device_id}": "ed" + s.device_id},
            "signatures": {s.user_id: {f"ed25519:{s.device_id}": "sig"}}}


def _shared_room(alice, bob) -> str:
    room = alice.ok("POST", "/createRoom", json={"invite": [bob.user_id]})["room_id"]
    bob.ok("POST", f"/rooms/{q(room)}/join", json={})
    return room


# What the other user (or the user) does, and how the woken sync shows it.
def _to_device(alice, bob, room):
    alice.ok("PUT", f"/sendToDevice/m.test/{next_txn_id()}",
             json={"messages": {bob.user_id: {"*": {"hi": True}}}})
    return lambda body: body["to_device"]["events"][0]["content"] == {"hi": True}


def _account_data(alice, bob, room):
    bob.ok("PUT", f"/user/{q(bob.user_id)}/account_data/org.example.w", json={"w": 1})
    return lambda body: {"type": "org.example.w", "content": {"w": 1}} in \
        body["account_data"]["events"]


def _push_rule(alice, bob, room):
    bob.ok("PUT", "/pushrules/global/override/.m.rule.master/enabled", json={"enabled": True})
    return lambda body: any(e["type"] == "m.push_rules" for e in body["account_data"]["events"])


def _invite(alice, bob, room):
    other = alice.ok("POST", "/createRoom", json={})["room_id"]
    alice.ok("POST", f"/rooms/{q(other)}/invite", json={"user_id": bob.user_id})
    return lambda body: other in body["rooms"]["invite"]


def _device_keys_upload(alice, bob, room):
    alice.ok("POST", "/keys/upload", json={"device_keys": _device_keys(alice.s)})
    return lambda body: alice.user_id in body["device_lists"]["changed"]


@pytest.mark.parametrize("action", [_to_device, _account_data, _push_rule, _invite,
                                    _device_keys_upload],
                         ids=["to_device", "account_data", "push_rules", "invite",
                              "device_keys"])
def test_long_poll_wakes_for_every_stream(two, action):
    alice, bob = two
    room = _shared_room(alice, bob)
    since = bob.sync()["next_batch"]
    thread, result = long_poll(bob, since)
    shows = action(alice, bob, room)
    body = finish(thread, result)
    assert shows(body), body


def test_device_lists_changed_only_for_users_sharing_a_room(shared_server, two):
    alice, bob = two
    stranger = Client(shared_server, register_ok(shared_server, unique_name("sc")))
    _shared_room(alice, bob)
    since = bob.sync()["next_batch"]
    alice.ok("POST", "/keys/upload", json={"device_keys": _device_keys(alice.s)})
    stranger.ok("POST", "/keys/upload", json={"device_keys": _device_keys(stranger.s)})
    bob.ok("POST", "/keys/upload", json={"device_keys": _device_keys(bob.s),
                                          "one_time_keys": {"signed_curve25519:A": {
                                              "key": "k", "signatures": {}}}})
    body = bob.sync(since=since)
    assert sorted(body["device_lists"]["changed"]) == sorted([alice.user_id, bob.user_id])
    assert body["device_one_time_keys_count"] == {"signed_curve25519": 1}


def _device_lists(client, since):
    lists = client.sync(since=since)["device_lists"]
    return sorted(lists["changed"]), sorted(lists["left"])


def test_device_lists_follow_who_shares_a_room(shared_server, two):
    """`changed` gains the users who newly share a room with the syncing user, `left` the users
    who share none any more (they left, were kicked or banned, or the user left their room);
    someone still sharing another room is not `left`."""
    alice, bob = two
    carol = Client(shared_server, register_ok(shared_server, unique_name("sd")))
    dave = Client(shared_server, register_ok(shared_server, unique_name("se")))
    room = alice.ok("POST", "/createRoom",
                    json={"invite": [bob.user_id, carol.user_id]})["room_id"]
    since = alice.sync()["next_batch"]
    # Bob and Carol join: both newly share a room with Alice.
    bob.ok("POST", f"/rooms/{q(room)}/join", json={})
    carol.ok("POST", f"/rooms/{q(room)}/join", json={})
    since2 = alice.sync(since=since)["next_batch"]
    assert _device_lists(alice, since) == (sorted([bob.user_id, carol.user_id]), [])
    # Carol also shares a second room with Alice; then both leave the first.
    other = alice.ok("POST", "/createRoom", json={"invite": [carol.user_id]})["room_id"]
    carol.ok("POST", f"/rooms/{q(other)}/join", json={})
    since3 = alice.sync(since=since2)["next_batch"]
    bob.ok("POST", f"/rooms/{q(room)}/leave", json={})
    carol.ok("POST", f"/rooms/{q(room)}/leave", json={})
    assert _device_lists(alice, since3) == ([], [bob.user_id])
    # Bob comes back and leaves again within one gap: left, not changed.
    alice.ok("POST", f"/rooms/{q(room)}/invite", json={"user_id": bob.user_id})
    since4 = alice.sync(since=since3)["next_batch"]
    bob.ok("POST", f"/rooms/{q(room)}/join", json={})
    bob.ok("POST", f"/rooms/{q(room)}/leave", json={})
    assert _device_lists(alice, since4) == ([], [bob.user_id])
    # A kick, then a ban, count as leaving.
    alice.ok("POST", f"/rooms/{q(room)}/invite", json={"user_id": bob.user_id})
    bob.ok("POST", f"/rooms/{q(room)}/join", json={})
    since5 = alice.sync(since=since4)["next_batch"]
    alice.ok("POST", f"/rooms/{q(room)}/ban", json={"user_id": bob.user_id})
    assert _device_lists(alice, since5) == ([], [bob.user_id])
    # Alice leaves Carol's last shared room: Carol is left from Alice's side...
    since6 = alice.sync(since=since5)["next_batch"]
    alice.ok("POST", f"/rooms/{q(other)}/leave", json={})
    assert _device_lists(alice, since6) == ([], [carol.user_id])
    # ...and Alice joining a room of Dave's makes Dave (and only him) newly shared.
    theirs = dave.ok("POST", "/createRoom", json={"invite": [alice.user_id]})["room_id"]
    since7 = alice.sync(since=since6)["next_batch"]
    alice.ok("POST", f"/rooms/{q(theirs)}/join", json={})
    assert _device_lists(alice, since7) == ([dave.user_id], [])


def test_a_long_poll_wakes_when_a_room_mate_leaves_and_reports_them_left(two):
    alice, bob = two
    room = _shared_room(alice, bob)
    since = alice.sync()["next_batch"]
    thread, result = long_poll(alice, since)
    bob.ok("POST", f"/rooms/{q(room)}/leave", json={})
    body = finish(thread, result)
    assert body["device_lists"]["left"] == [bob.user_id]


def test_limited_incremental_sync_carries_the_state_changed_in_the_gap(two):
    alice, bob = two
    room = _shared_room(alice, bob)
    since = bob.sync()["next_batch"]
    alice.ok("PUT", f"/rooms/{q(room)}/state/m.room.name/", json={"name": "Renamed"})
    for i in range(12):
        alice.send(room, f"g{i}")
    joined = bob.sync(since=since)["rooms"]["join"][room]
    assert joined["timeline"]["limited"] is True
    assert timeline_bodies(joined) == [f"g{i}" for i in range(2, 12)]
    names = [e for e in joined["state"]["events"] if e["type"] == "m.room.name"]
    assert [e["content"] for e in names] == [{"name": "Renamed"}]
    # Only what changed after `since`: the create event is not sent again.
    assert not any(e["type"] == "m.room.create" for e in joined["state"]["events"])
