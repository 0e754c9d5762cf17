"""Black-box tests of presence (presence.yaml): PUT /presence/{userId}/status for oneself only,
GET for oneself or a user sharing a joined room (403 M_FORBIDDEN otherwise, 404 M_NOT_FOUND for
an unknown user). Presence is kept in the process's memory. Answers are checked against
presence.yaml (errors it does not list against definitions/errors/error.yaml)."""

from __future__ import annotations


import pytest

from myelin_harness import assert_error_schema, assert_matches_spec, assert_matrix_error
from client_helpers import PREFIXES, V3, bearer, register_ok, show, unique_name
from room_client import q

prefixes = pytest.mark.parametrize("prefix", PREFIXES, ids=["v3", "r0"])
SPEC = "presence.yaml"


def status(prefix, user_id):
    return f"{prefix}/presence/{q(user_id)}/status"


def spec_status(user_id):
    return f"{V3}/presence/{user_id}/status"


@prefixes
def test_set_and_read_own_presence(shared_server, prefix):
    s = register_ok(shared_server, unique_name("pr"))
    hdr = bearer(s.access_token)
    # Never set: offline, nothing known about activity.
    r = shared_server.get(status(prefix, s.user_id), headers=hdr)
    assert r.status_code == 200, show(r)
    assert_matches_spec(r, SPEC, spec_status(s.user_id), "get", 200)
    assert r.json() == {"presence": "offline", "currently_active": False}

    r = shared_server.put(status(prefix, s.user_id), headers=hdr,
                          json={"presence": "online", "status_msg": "Busy ☕"})
    assert r.status_code == 200, show(r)
    assert_matches_spec(r, SPEC, spec_status(s.user_id), "put", 200)
    assert r.json() == {}
    r = shared_server.get(status(prefix, s.user_id), headers=hdr)
    assert_matches_spec(r, SPEC, spec_status(s.user_id), "get", 200)
    body = r.json()
    assert body["presence"] == "online"
    assert body["status_msg"] == "Busy ☕"
    assert body["currently_active"] is True
    assert 0 <= body["last_active_ago"] < 10_000

    # A new state replaces the message (absent: none) and keeps the last activity.
    r = shared_server.put(status(prefix, s.user_id), headers=hdr, json={"presence": "unavailable"})
    assert r.status_code == 200, show(r)
    body = shared_server.get(status(prefix, s.user_id), headers=hdr).json()
    assert body["presence"] == "unavailable"
    assert "status_msg" not in body
    assert body["currently_active"] is False
    assert 0 <= body["last_active_ago"] < 10_000
    r = shared_server.put(status(prefix, s.user_id), headers=hdr,
                          json={"presence": "offline", "status_msg": None})
    assert r.status_code == 200, show(r)
    assert shared_server.get(status(prefix, s.user_id), headers=hdr).json()["presence"] == "offline"


def test_room_mates_see_each_other_and_others_do_not(shared_server):
    alice = register_ok(shared_server, unique_name("pr"))
    bob = register_ok(shared_server, unique_name("pr"))
    carol = register_ok(shared_server, unique_name("pr"))
    ah, bh, ch = (bearer(x.access_token) for x in (alice, bob, carol))
    r = shared_server.post(f"{V3}/createRoom", headers=ah, json={"invite": [bob.user_id]})
    assert r.status_code == 200, show(r)
    room = r.json()["room_id"]
    assert shared_server.put(status(V3, alice.user_id), headers=ah,
                             json={"presence": "online", "status_msg": "hi"}).status_code == 200

    # Bob is only invited: no shared joined room yet.
    r = shared_server.get(status(V3, alice.user_id), headers=bh)
    assert_matrix_error(r, 403, "M_FORBIDDEN")
    assert_matches_spec(r, SPEC, spec_status(alice.user_id), "get", 403)
    assert shared_server.post(f"{V3}/rooms/{q(room)}/join", headers=bh, json={}).status_code == 200
    r = shared_server.get(status(V3, alice.user_id), headers=bh)
    assert r.status_code == 200, show(r)
    assert_matches_spec(r, SPEC, spec_status(alice.user_id), "get", 200)
    assert r.json()["presence"] == "online" and r.json()["status_msg"] == "hi"
    # Alice sees Bob, who never set a state.
    r = shared_server.get(status(V3, bob.user_id), headers=ah)
    assert r.status_code == 200, show(r)
    assert r.json() == {"presence": "offline", "currently_active": False}

    # Carol shares no room with Alice.
    r = shared_server.get(status(V3, alice.user_id), headers=ch)
    assert_matrix_error(r, 403, "M_FORBIDDEN")
    # After Bob leaves, neither does he.
    assert shared_server.post(f"{V3}/rooms/{q(room)}/leave", headers=bh, json={}).status_code == 200
    assert_matrix_error(shared_server.get(status(V3, alice.user_id), headers=bh), 403,
                        "M_FORBIDDEN")

    # Unknown users: 404.
    for unknown in (f"@nobody_{unique_name('x')}:localhost", "@someone:elsewhere.example"):
        r = shared_server.get(status(V3, unknown), headers=ah)
        assert_matrix_error(r, 404, "M_NOT_FOUND")
        assert_matches_spec(r, SPEC, spec_status(unknown), "get", 404)


def test_presence_errors(shared_server):
    s = register_ok(shared_server, unique_name("pr"))
    other = register_ok(shared_server, unique_name("pr"))
    hdr = bearer(s.access_token)
    path = status(V3, s.user_id)
    r = shared_server.put(path, headers=bearer(other.access_token), json={"presence": "online"})
    assert_matrix_error(r, 403, "M_FORBIDDEN")
    assert_error_schema(r)
    for bad in ("busy", "ONLINE", ""):
        r = shared_server.put(path, headers=hdr, json={"presence": bad})
        assert_matrix_error(r, 400, "M_INVALID_PARAM")
        assert_error_schema(r)
    assert_matrix_error(shared_server.put(path, headers=hdr, json={}), 400, "M_MISSING_PARAM")
    assert_matrix_error(shared_server.put(path, headers=hdr, json={"presence": 1}), 400,
                        "M_BAD_JSON")
    assert_matrix_error(shared_server.put(path, headers=hdr,
                                          json={"presence": "online", "status_msg": 5}),
                        400, "M_BAD_JSON")
    r = shared_server.put(path, headers=hdr, json={"presence": "online", "status_msg": "x" * 1025})
    assert_matrix_error(r, 400, "M_INVALID_PARAM")
    assert_matrix_error(shared_server.put(path, headers=hdr, data="{"), 400, "M_NOT_JSON")
    # None of that set anything.
    assert shared_server.get(path, headers=hdr).json()["presence"] == "offline"
    assert_matrix_error(shared_server.get(path), 401, "M_MISSING_TOKEN")
