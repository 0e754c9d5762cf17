"""Black-box tests of room tags (tags.yaml): GET /user/{userId}/rooms/{roomId}/tags and PUT /
DELETE …/tags/{tag}. Tags are the room account data m.tag, so they round trip through the
account-data API and reach /sync in rooms.join.<room>.account_data, waking a long-poll.
Concurrent PUTs of different tags all stay (one read-modify-write job each). Only the caller's
own tags (403 M_FORBIDDEN); bad room IDs, tag names and orders are 400. Every answer is checked
against tags.yaml (errors, which tags.yaml does not list, against definitions/errors/error.yaml)."""

from __future__ import annotations

import threading
import time

import pytest

from myelin_harness import assert_error_schema, assert_matches_spec, assert_matrix_error
from client_helpers import PREFIXES, V3, bearer, register_ok, show, unique_name
from room_client import q

prefixes = pytest.mark.parametrize("prefix", PREFIXES, ids=["v3", "r0"])
SPEC = "tags.yaml"
ROOM = "!someroom:localhost"


def tags_path(prefix, user_id, room, tag=None):
    p = f"{prefix}/user/{q(user_id)}/rooms/{q(room)}/tags"
    return p if tag is None else f"{p}/{q(tag)}"


def spec_path(user_id, room, tag=None):
    p = f"{V3}/user/{user_id}/rooms/{room}/tags"
    return p if tag is None else f"{p}/{tag}"


@prefixes
def test_tags_round_trip(shared_server, prefix):
    s = register_ok(shared_server, unique_name("tag"))
    hdr = bearer(s.access_token)
    r = shared_server.get(tags_path(prefix, s.user_id, ROOM), headers=hdr)
    assert r.status_code == 200, show(r)
    assert_matches_spec(r, SPEC, spec_path(s.user_id, ROOM), "get", 200)
    assert r.json() == {"tags": {}}

    r = shared_server.put(tags_path(prefix, s.user_id, ROOM, "m.favourite"), headers=hdr,
                          json={"order": 0.25})
    assert r.status_code == 200, show(r)
    assert_matches_spec(r, SPEC, spec_path(s.user_id, ROOM, "m.favourite"), "put", 200)
    assert r.json() == {}
    r = shared_server.put(tags_path(prefix, s.user_id, ROOM, "u.Work ü"), headers=hdr, json={})
    assert r.status_code == 200, show(r)
    # Setting a tag again replaces its content.
    r = shared_server.put(tags_path(prefix, s.user_id, ROOM, "m.favourite"), headers=hdr,
                          json={"order": 1})
    assert r.status_code == 200, show(r)

    r = shared_server.get(tags_path(prefix, s.user_id, ROOM), headers=hdr)
    assert_matches_spec(r, SPEC, spec_path(s.user_id, ROOM), "get", 200)
    assert r.json() == {"tags": {"m.favourite": {"order": 1}, "u.Work ü": {}}}
    # They are the room account data m.tag.
    r = shared_server.get(f"{prefix}/user/{q(s.user_id)}/rooms/{q(ROOM)}/account_data/m.tag",
                          headers=hdr)
    assert r.status_code == 200, show(r)
    assert r.json() == {"tags": {"m.favourite": {"order": 1}, "u.Work ü": {}}}

    r = shared_server.delete(tags_path(prefix, s.user_id, ROOM, "m.favourite"), headers=hdr)
    assert r.status_code == 200, show(r)
    assert_matches_spec(r, SPEC, spec_path(s.user_id, ROOM, "m.favourite"), "delete", 200)
    assert r.json() == {}
    # Removing a tag that is not there is fine too.
    r = shared_server.delete(tags_path(prefix, s.user_id, ROOM, "m.lowpriority"), headers=hdr)
    assert r.status_code == 200, show(r)
    r = shared_server.get(tags_path(prefix, s.user_id, ROOM), headers=hdr)
    assert r.json() == {"tags": {"u.Work ü": {}}}
    # Another room has its own tags.
    r = shared_server.get(tags_path(prefix, s.user_id, "!other:localhost"), headers=hdr)
    assert r.json() == {"tags": {}}


def test_concurrent_puts_of_different_tags_all_stay(shared_server):
    s = register_ok(shared_server, unique_name("tag"))
    hdr = bearer(s.access_token)
    names = [f"u.t{i}" for i in range(16)]
    failures = []

    def put(name):
        r = shared_server.put(tags_path(V3, s.user_id, ROOM, name), headers=hdr,
                              json={"order": 0.5})
        if r.status_code != 200:
            failures.append(show(r))

    threads = [threading.Thread(target=put, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not failures, failures
    r = shared_server.get(tags_path(V3, s.user_id, ROOM), headers=hdr)
    assert sorted(r.json()["tags"]) == sorted(names)


def test_tags_reach_sync_and_wake_a_long_poll(shared_server):
    s = register_ok(shared_server, unique_name("tag"))
    hdr = bearer(s.access_token)
    r = shared_server.post(f"{V3}/createRoom", headers=hdr, json={})
    assert r.status_code == 200, show(r)
    room = r.json()["room_id"]
    assert shared_server.put(tags_path(V3, s.user_id, room, "m.favourite"), headers=hdr,
                             json={"order": 0.5}).status_code == 200

    r = shared_server.get(f"{V3}/sync", headers=hdr)
    assert r.status_code == 200, show(r)
    body = r.json()
    assert_matches_spec(body, "sync.yaml", "/sync", "get", 200)
    events = body["rooms"]["join"][room]["account_data"]["events"]
    assert {"type": "m.tag", "content": {"tags": {"m.favourite": {"order": 0.5}}}} in events

    result = {}

    def poll():
        started = time.monotonic()
        result["r"] = shared_server.get(f"{V3}/sync", headers=hdr,
                                        params={"since": body["next_batch"], "timeout": "10000"},
                                        timeout=20)
        result["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(0.5)
    assert thread.is_alive(), "the long-poll answered before anything happened"
    r = shared_server.put(tags_path(V3, s.user_id, room, "u.work"), headers=hdr, json={})
    assert r.status_code == 200, show(r)
    thread.join(timeout=15)
    assert not thread.is_alive()
    assert result["seconds"] < 9, result["seconds"]
    r = result["r"]
    assert r.status_code == 200, show(r)
    assert_matches_spec(r, "sync.yaml", "/sync", "get", 200)
    events = r.json()["rooms"]["join"][room]["account_data"]["events"]
    assert events == [{"type": "m.tag",
                       "content": {"tags": {"m.favourite": {"order": 0.5}, "u.work": {}}}}]


def test_tag_errors(shared_server):
    s = register_ok(shared_server, unique_name("tag"))
    other = register_ok(shared_server, unique_name("tag"))
    hdr = bearer(s.access_token)
    good = tags_path(V3, s.user_id, ROOM, "u.x")
    assert shared_server.put(good, headers=hdr, json={"order": 0}).status_code == 200

    # Only one's own tags.
    oh = bearer(other.access_token)
    for r in (shared_server.get(tags_path(V3, s.user_id, ROOM), headers=oh),
              shared_server.put(good, headers=oh, json={}),
              shared_server.delete(good, headers=oh)):
        assert_matrix_error(r, 403, "M_FORBIDDEN")
        assert_error_schema(r)

    # Bad room IDs, tag names, bodies and orders.
    bad_room = tags_path(V3, s.user_id, "not-a-room")
    for r in (shared_server.get(bad_room, headers=hdr),
              shared_server.put(bad_room + "/u.x", headers=hdr, json={}),
              shared_server.delete(bad_room + "/u.x", headers=hdr)):
        assert_matrix_error(r, 400, "M_INVALID_PARAM")
        assert_error_schema(r)
    long_tag = tags_path(V3, s.user_id, ROOM, "t" * 256)
    r = shared_server.put(long_tag, headers=hdr, json={})
    assert_matrix_error(r, 400, "M_INVALID_PARAM")
    assert_error_schema(r)
    assert_matrix_error(shared_server.delete(long_tag, headers=hdr), 400, "M_INVALID_PARAM")
    assert shared_server.put(tags_path(V3, s.user_id, ROOM, "t" * 255), headers=hdr,
                             json={}).status_code == 200
    for order in (-0.1, 1.5):
        r = shared_server.put(good, headers=hdr, json={"order": order})
        assert_matrix_error(r, 400, "M_INVALID_PARAM")
        assert_error_schema(r)
    for order in ("0.5", None, [0.5]):
        assert_matrix_error(shared_server.put(good, headers=hdr, json={"order": order}), 400,
                            "M_BAD_JSON")
    for bad in ("[]", "1", "null"):
        assert_matrix_error(shared_server.put(good, headers=hdr, data=bad), 400)
    assert_matrix_error(shared_server.put(good, headers=hdr, data="{"), 400, "M_NOT_JSON")
    r = shared_server.put(good, headers=hdr, json={"order": 0.5, "note": "x" * 2000})
    assert_matrix_error(r, 400, "M_INVALID_PARAM")
    # None of that changed the tag.
    r = shared_server.get(tags_path(V3, s.user_id, ROOM), headers=hdr)
    assert r.json()["tags"]["u.x"] == {"order": 0}
    assert_matrix_error(shared_server.get(tags_path(V3, s.user_id, ROOM)), 401, "M_MISSING_TOKEN")


def test_at_most_100_tags_a_room(shared_server):
    s = register_ok(shared_server, unique_name("tag"))
    hdr = bearer(s.access_token)
    for i in range(100):
        r = shared_server.put(tags_path(V3, s.user_id, ROOM, f"u.{i}"), headers=hdr, json={})
        assert r.status_code == 200, show(r)
    r = shared_server.put(tags_path(V3, s.user_id, ROOM, "u.one-more"), headers=hdr, json={})
    assert_matrix_error(r, 400, "M_INVALID_PARAM")
    # Changing an existing tag is still fine.
    r = shared_server.put(tags_path(V3, s.user_id, ROOM, "u.7"), headers=hdr, json={"order": 1})
    assert r.status_code == 200, show(r)
    assert len(shared_server.get(tags_path(V3, s.user_id, ROOM), headers=hdr).json()["tags"]) == 100
