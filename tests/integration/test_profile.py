"""Black-box tests of profiles (profile.yaml): registration sets the display name to the
localpart (as Synapse does), GET /profile/{userId} and /profile/{userId}/{displayname|avatar_url},
PUT for one's own profile only (403 M_FORBIDDEN), length limits, mxc:// avatars, clearing with an
empty string, and 404 M_NOT_FOUND for unknown users and unset fields."""

from __future__ import annotations

import pytest

from myelin_harness import assert_matches_spec, assert_matrix_error
from client_helpers import PREFIXES, V3, bearer, register_ok, show, unique_name

prefixes = pytest.mark.parametrize("prefix", PREFIXES, ids=["v3", "r0"])
SPEC = "profile.yaml"


@prefixes
def test_registration_sets_the_localpart_and_put_changes_it(shared_server, prefix):
    s = register_ok(shared_server, unique_name("prof"))
    h = bearer(s.access_token)
    base = f"{prefix}/profile/{s.user_id}"
    r = shared_server.get(base, headers=h)
    assert r.status_code == 200, show(r)
    assert_matches_spec(r.json(), SPEC, base, "get", 200)
    assert r.json() == {"displayname": s.localpart}

    r = shared_server.put(base + "/displayname", headers=h, json={"displayname": "Alice ✨"})
    assert r.status_code == 200, show(r)
    assert_matches_spec(r.json(), SPEC, base + "/displayname", "put", 200)
    r = shared_server.put(base + "/avatar_url", headers=h,
                          json={"avatar_url": "mxc://localhost/abc"})
    assert r.status_code == 200, show(r)
    r = shared_server.get(base + "/displayname", headers=h)
    assert r.status_code == 200, show(r)
    assert_matches_spec(r.json(), SPEC, base + "/displayname", "get", 200)
    assert r.json() == {"displayname": "Alice ✨"}
    assert shared_server.get(base + "/avatar_url", headers=h).json() == {
        "avatar_url": "mxc://localhost/abc"}
    assert shared_server.get(base, headers=h).json() == {"displayname": "Alice ✨",
                                                         "avatar_url": "mxc://localhost/abc"}

    # Another user reads it; clearing with "" leaves the field unset.
    other = register_ok(shared_server, unique_name("prof"))
    assert shared_server.get(base, headers=bearer(other.access_token)).json()["displayname"] == \
        "Alice ✨"
    assert shared_server.put(base + "/avatar_url", headers=h,
                             json={"avatar_url": ""}).status_code == 200
    r = shared_server.get(base + "/avatar_url", headers=h)
    assert_matrix_error(r, 404, "M_NOT_FOUND")
    assert shared_server.get(base, headers=h).json() == {"displayname": "Alice ✨"}


def test_errors(shared_server):
    s = register_ok(shared_server, unique_name("prof"))
    other = register_ok(shared_server, unique_name("prof"))
    h = bearer(s.access_token)
    base = f"{V3}/profile/{s.user_id}"
    r = shared_server.put(f"{V3}/profile/{other.user_id}/displayname", headers=h,
                          json={"displayname": "mallory"})
    assert_matrix_error(r, 403, "M_FORBIDDEN")
    assert_matches_spec(r.json(), SPEC, f"{V3}/profile/{other.user_id}/displayname", "put", 403)
    assert shared_server.get(f"{V3}/profile/{other.user_id}", headers=h).json() == {
        "displayname": other.localpart}

    r = shared_server.get(f"{V3}/profile/@nosuch:localhost", headers=h)
    assert_matrix_error(r, 404, "M_NOT_FOUND")
    assert_matches_spec(r.json(), SPEC, f"{V3}/profile/@nosuch:localhost", "get", 404)
    assert_matrix_error(shared_server.get(f"{V3}/profile/@nosuch:localhost/displayname",
                                          headers=h), 404, "M_NOT_FOUND")

    assert_matrix_error(shared_server.put(base + "/displayname", headers=h,
                                          json={"displayname": "x" * 257}), 400, "M_TOO_LARGE")
    assert shared_server.put(base + "/displayname", headers=h,
                             json={"displayname": "x" * 256}).status_code == 200
    assert_matrix_error(shared_server.put(base + "/avatar_url", headers=h,
                                          json={"avatar_url": "https://example.org/a.png"}),
                        400, "M_INVALID_PARAM")
    assert_matrix_error(shared_server.put(base + "/avatar_url", headers=h,
                                          json={"avatar_url": "mxc://" + "a" * 1000}),
                        400, "M_TOO_LARGE")
    assert_matrix_error(shared_server.put(base + "/displayname", headers=h, json={}), 400,
                        "M_MISSING_PARAM")
    assert_matrix_error(shared_server.put(base + "/displayname", headers=h,
                                          json={"displayname": 5}), 400, "M_BAD_JSON")
    assert_matrix_error(shared_server.put(base + "/displayname", headers=h, data="{"), 400,
                        "M_NOT_JSON")
    assert_matrix_error(shared_server.put(base + "/Not-A-Key", headers=h, json={"x": 1}), 400,
                        "M_INVALID_PARAM")
    assert_matrix_error(shared_server.put(base + "/org.example.custom", headers=h,
                                          json={"org.example.custom": 1}), 403, "M_FORBIDDEN")
    assert_matrix_error(shared_server.get(base + "/org.example.custom", headers=h), 404,
                        "M_NOT_FOUND")
    assert shared_server.get(base + "/displayname", headers=h).json() == {"displayname": "x" * 256}
    assert_matrix_error(shared_server.get(base), 401, "M_MISSING_TOKEN")
