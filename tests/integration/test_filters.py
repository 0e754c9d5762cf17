"""Black-box tests of sync filters (filter.yaml): POST /user/{userId}/filter returns a filter_id
that GET /user/{userId}/filter/{filterId} answers with the stored definition; unknown IDs are 404
M_NOT_FOUND (what js-sdk expects before it uploads a new filter), another user's path is 403
M_FORBIDDEN, and definitions of the wrong shape are 400 M_BAD_JSON."""

from __future__ import annotations

import pytest

from myelin_harness import assert_matches_spec, assert_matrix_error
from client_helpers import PREFIXES, V3, bearer, register_ok, show, unique_name

prefixes = pytest.mark.parametrize("prefix", PREFIXES, ids=["v3", "r0"])
SPEC = "filter.yaml"

# What js-sdk (37.x) uploads at start-up, and Element's lazy-loading variant.
JS_SDK_FILTER = {"room": {"timeline": {"limit": 20, "unread_thread_notifications": True},
                          "state": {"lazy_load_members": True}}}


@prefixes
def test_create_and_get(shared_server, prefix):
    s = register_ok(shared_server, unique_name("filter"))
    h = bearer(s.access_token)
    path = f"{prefix}/user/{s.user_id}/filter"
    r = shared_server.post(path, headers=h, json=JS_SDK_FILTER)
    assert r.status_code == 200, show(r)
    assert_matches_spec(r.json(), SPEC, path, "post", 200)
    first = r.json()["filter_id"]
    r = shared_server.post(path, headers=h, json={"event_fields": ["type", "content.body"],
                                                  "event_format": "client",
                                                  "presence": {"not_types": ["*"]},
                                                  "x.custom": 1})
    assert r.status_code == 200, show(r)
    second = r.json()["filter_id"]
    assert first != second

    r = shared_server.get(f"{path}/{first}", headers=h)
    assert r.status_code == 200, show(r)
    assert_matches_spec(r.json(), SPEC, f"{path}/{first}", "get", 200)
    assert r.json() == JS_SDK_FILTER
    assert shared_server.get(f"{path}/{second}", headers=h).json()["x.custom"] == 1


def test_errors(shared_server):
    s = register_ok(shared_server, unique_name("filter"))
    other = register_ok(shared_server, unique_name("filter"))
    h = bearer(s.access_token)
    path = f"{V3}/user/{s.user_id}/filter"
    fid = shared_server.post(path, headers=h, json={}).json()["filter_id"]

    for missing in ("999999", "abc", "-1", "1.5"):
        r = shared_server.get(f"{path}/{missing}", headers=h)
        assert_matrix_error(r, 404, "M_NOT_FOUND")
        assert_matches_spec(r.json(), SPEC, f"{path}/{missing}", "get", 404)
    # Filters belong to their user: another user's ID in the path is refused either way.
    assert_matrix_error(shared_server.get(f"{path}/{fid}", headers=bearer(other.access_token)),
                        403, "M_FORBIDDEN")
    assert_matrix_error(shared_server.post(path, headers=bearer(other.access_token), json={}),
                        403, "M_FORBIDDEN")
    other_path = f"{V3}/user/{other.user_id}/filter"
    assert_matrix_error(shared_server.get(f"{other_path}/{fid}", headers=bearer(other.access_token)),
                        404, "M_NOT_FOUND")

    for bad in ({"room": []}, {"event_fields": "type"}, {"event_format": "xml"},
                {"room": {"timeline": {"limit": "ten"}}}, {"room": {"rooms": [1]}},
                {"presence": {"types": "m.presence"}}, {"room": {"state": {"lazy_load_members": 1}}},
                {"room": {"timeline": {"limit": -1}}}):
        assert_matrix_error(shared_server.post(path, headers=h, json=bad), 400, "M_BAD_JSON")
    assert_matrix_error(shared_server.post(path, headers=h, data="[]"), 400)
    assert_matrix_error(shared_server.post(path, headers=h, data="{"), 400, "M_NOT_JSON")
    assert_matrix_error(shared_server.post(path, json={}), 401, "M_MISSING_TOKEN")
