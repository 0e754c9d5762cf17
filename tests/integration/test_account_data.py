"""Black-box tests of account data (account-data.yaml): global and per-room entries round trip,
an absent entry is 404 M_NOT_FOUND (js-sdk's "none"), another user's data is 403 M_FORBIDDEN,
the body must be a JSON object within the size limit, room IDs are checked, and the
server-controlled types m.fully_read and m.push_rules are 405 M_BAD_JSON."""

from __future__ import annotations

import pytest

from myelin_harness import assert_matches_spec, assert_matrix_error
from client_helpers import PREFIXES, V3, bearer, register_ok, show, unique_name

prefixes = pytest.mark.parametrize("prefix", PREFIXES, ids=["v3", "r0"])
SPEC = "account-data.yaml"
ROOM = "!someroom:localhost"


@prefixes
def test_round_trip_global_and_room(shared_server, prefix):
    s = register_ok(shared_server, unique_name("ad"))
    h = bearer(s.access_token)
    path = f"{prefix}/user/{s.user_id}/account_data/m.direct"
    r = shared_server.get(path, headers=h)
    assert_matrix_error(r, 404, "M_NOT_FOUND")
    assert_matches_spec(r.json(), SPEC, path, "get", 404)

    content = {"@bob:localhost": ["!a:localhost"], "nested": {"x": [1, 2.5, None, True]}}
    r = shared_server.put(path, headers=h, json=content)
    assert r.status_code == 200, show(r)
    assert_matches_spec(r.json(), SPEC, path, "put", 200)
    r = shared_server.get(path, headers=h)
    assert r.status_code == 200, show(r)
    assert_matches_spec(r.json(), SPEC, path, "get", 200)
    assert r.json() == content
    assert shared_server.put(path, headers=h, json={"replaced": True}).status_code == 200
    assert shared_server.get(path, headers=h).json() == {"replaced": True}

    room_path = f"{prefix}/user/{s.user_id}/rooms/{ROOM}/account_data/m.tag"
    assert_matrix_error(shared_server.get(room_path, headers=h), 404, "M_NOT_FOUND")
    r = shared_server.put(room_path, headers=h, json={"tags": {"u.work": {"order": 0.5}}})
    assert r.status_code == 200, show(r)
    assert_matches_spec(r.json(), SPEC, room_path, "put", 200)
    r = shared_server.get(room_path, headers=h)
    assert_matches_spec(r.json(), SPEC, room_path, "get", 200)
    assert r.json() == {"tags": {"u.work": {"order": 0.5}}}
    # Global and room data of the same type are separate.
    assert_matrix_error(shared_server.get(f"{prefix}/user/{s.user_id}/account_data/m.tag",
                                          headers=h), 404, "M_NOT_FOUND")


def test_errors(shared_server):
    s = register_ok(shared_server, unique_name("ad"))
    other = register_ok(shared_server, unique_name("ad"))
    h = bearer(s.access_token)
    path = f"{V3}/user/{s.user_id}/account_data/org.example.x"
    assert shared_server.put(path, headers=h, json={"secret": 1}).status_code == 200

    r = shared_server.get(path, headers=bearer(other.access_token))
    assert_matrix_error(r, 403, "M_FORBIDDEN")
    assert_matches_spec(r.json(), SPEC, path, "get", 403)
    r = shared_server.put(path, headers=bearer(other.access_token), json={})
    assert_matrix_error(r, 403, "M_FORBIDDEN")
    assert_matches_spec(r.json(), SPEC, path, "put", 403)

    for bad in ("[]", "1", '"x"', "null"):
        assert_matrix_error(shared_server.put(path, headers=h, data=bad), 400)
    assert_matrix_error(shared_server.put(path, headers=h, data="{"), 400, "M_NOT_JSON")
    assert shared_server.get(path, headers=h).json() == {"secret": 1}

    for server_type in ("m.fully_read", "m.push_rules"):
        p = f"{V3}/user/{s.user_id}/account_data/{server_type}"
        r = shared_server.put(p, headers=h, json={"event_id": "$x"})
        assert_matrix_error(r, 405, "M_BAD_JSON")
        assert_matches_spec(r.json(), SPEC, p, "put", 405)
        p = f"{V3}/user/{s.user_id}/rooms/{ROOM}/account_data/{server_type}"
        assert_matrix_error(shared_server.put(p, headers=h, json={}), 405, "M_BAD_JSON")

    bad_room = f"{V3}/user/{s.user_id}/rooms/not-a-room/account_data/m.tag"
    r = shared_server.put(bad_room, headers=h, json={})
    assert_matrix_error(r, 400, "M_INVALID_PARAM")
    assert_matches_spec(r.json(), SPEC, bad_room, "put", 400)
    assert_matrix_error(shared_server.get(bad_room, headers=h), 400, "M_INVALID_PARAM")

    too_long = f"{V3}/user/{s.user_id}/account_data/{'t' * 256}"
    assert_matrix_error(shared_server.put(too_long, headers=h, json={}), 400, "M_INVALID_PARAM")
    # The server's body limit (64 KiB by default) applies.
    r = shared_server.put(path, headers=h, json={"big": "x" * 70000})
    assert_matrix_error(r, 413, "M_TOO_LARGE")
    assert_matrix_error(shared_server.get(path), 401, "M_MISSING_TOKEN")
