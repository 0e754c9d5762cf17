"""Black-box tests of the small endpoints Element Web and matrix-js-sdk call at start-up, which
this server answers honestly for features it does not have (docs/client_extras.md):
third-party identifiers (administrative_contact.yaml), pushers (pusher.yaml), server-side key
backup (key_backup.yaml) and the media configuration (no media repository: unrouted)."""

from __future__ import annotations

import pytest

from myelin_harness import assert_error_schema, assert_matches_spec, assert_matrix_error
from client_helpers import PREFIXES, V3, bearer, register_ok, show, unique_name

prefixes = pytest.mark.parametrize("prefix", PREFIXES, ids=["v3", "r0"])


@pytest.fixture(scope="module")
def user(shared_server):
    return register_ok(shared_server, unique_name("ex"))


@prefixes
def test_threepids(shared_server, user, prefix):
    hdr = bearer(user.access_token)
    r = shared_server.get(f"{prefix}/account/3pid", headers=hdr)
    assert r.status_code == 200, show(r)
    assert_matches_spec(r, "administrative_contact.yaml", f"{V3}/account/3pid", "get", 200)
    assert r.json() == {"threepids": []}

    token_body = {"client_secret": "secret", "email": "a@example.org", "send_attempt": 1}
    r = shared_server.post(f"{prefix}/account/3pid/email/requestToken", headers=hdr,
                           json=token_body)
    assert_matrix_error(r, 400, "M_THREEPID_MEDIUM_NOT_SUPPORTED")
    assert_matches_spec(r, "administrative_contact.yaml",
                        f"{V3}/account/3pid/email/requestToken", "post", 400)
    r = shared_server.post(f"{prefix}/account/3pid/msisdn/requestToken", headers=hdr,
                           json={"client_secret": "s", "country": "GB",
                                 "phone_number": "07700900001", "send_attempt": 1})
    assert_matrix_error(r, 400, "M_THREEPID_MEDIUM_NOT_SUPPORTED")
    assert_matches_spec(r, "administrative_contact.yaml",
                        f"{V3}/account/3pid/msisdn/requestToken", "post", 400)
    for path, body in (("/account/3pid/add", {"client_secret": "s", "sid": "x"}),
                       ("/account/3pid/delete", {"medium": "email", "address": "a@example.org"}),
                       ("/account/3pid", {"three_pid_creds": {"client_secret": "s", "sid": "x"}})):
        r = shared_server.post(prefix + path, headers=hdr, json=body)
        assert_matrix_error(r, 400, "M_FORBIDDEN")
        assert_error_schema(r)
    # Identity-server bindings are not implemented.
    for path in ("/account/3pid/bind", "/account/3pid/unbind"):
        assert_matrix_error(shared_server.post(prefix + path, headers=hdr, json={}), 404,
                            "M_UNRECOGNIZED")
    assert_matrix_error(shared_server.get(f"{prefix}/account/3pid"), 401, "M_MISSING_TOKEN")
    # The capability says so.
    caps = shared_server.get(f"{prefix}/capabilities", headers=hdr).json()["capabilities"]
    assert caps["m.3pid_changes"] == {"enabled": False}


@prefixes
def test_pushers(shared_server, user, prefix):
    hdr = bearer(user.access_token)
    r = shared_server.get(f"{prefix}/pushers", headers=hdr)
    assert r.status_code == 200, show(r)
    assert_matches_spec(r, "pusher.yaml", f"{V3}/pushers", "get", 200)
    assert r.json() == {"pushers": []}

    pusher = {"kind": "http", "app_id": "im.vector.app", "pushkey": "abc",
              "app_display_name": "Element", "device_display_name": "Phone", "lang": "en",
              "data": {"url": "https://push.example.org/_matrix/push/v1/notify"}}
    r = shared_server.post(f"{prefix}/pushers/set", headers=hdr, json=pusher)
    assert_matrix_error(r, 400, "M_UNRECOGNIZED")
    assert_matches_spec(r, "pusher.yaml", f"{V3}/pushers/set", "post", 400)
    # Deleting a pusher: there is none, so that is done.
    r = shared_server.post(f"{prefix}/pushers/set", headers=hdr,
                           json={"kind": None, "app_id": "im.vector.app", "pushkey": "abc"})
    assert r.status_code == 200, show(r)
    assert_matches_spec(r, "pusher.yaml", f"{V3}/pushers/set", "post", 200)
    assert r.json() == {}
    assert shared_server.get(f"{prefix}/pushers", headers=hdr).json() == {"pushers": []}

    for body, code in (({"app_id": "a", "pushkey": "k"}, "M_MISSING_PARAM"),
                       ({"kind": None, "pushkey": "k"}, "M_MISSING_PARAM"),
                       ({"kind": None, "app_id": "a"}, "M_MISSING_PARAM"),
                       ({"kind": 3, "app_id": "a", "pushkey": "k"}, "M_BAD_JSON"),
                       ({"kind": None, "app_id": 1, "pushkey": "k"}, "M_BAD_JSON")):
        r = shared_server.post(f"{prefix}/pushers/set", headers=hdr, json=body)
        assert_matrix_error(r, 400, code)
        assert_matches_spec(r, "pusher.yaml", f"{V3}/pushers/set", "post", 400)
    assert_matrix_error(shared_server.post(f"{prefix}/pushers/set", headers=hdr, data="{"), 400,
                        "M_NOT_JSON")
    assert_matrix_error(shared_server.get(f"{prefix}/pushers"), 401, "M_MISSING_TOKEN")


@prefixes
def test_key_backup_is_absent(shared_server, user, prefix):
    hdr = bearer(user.access_token)
    r = shared_server.get(f"{prefix}/room_keys/version", headers=hdr)
    assert_matrix_error(r, 404, "M_NOT_FOUND")
    assert_matches_spec(r, "key_backup.yaml", f"{V3}/room_keys/version", "get", 404)
    r = shared_server.get(f"{prefix}/room_keys/version/1", headers=hdr)
    assert_matrix_error(r, 404, "M_NOT_FOUND")
    assert_matches_spec(r, "key_backup.yaml", f"{V3}/room_keys/version/1", "get", 404)
    # Creating one: not implemented.
    r = shared_server.post(f"{prefix}/room_keys/version", headers=hdr,
                           json={"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2",
                                 "auth_data": {"public_key": "abc"}})
    assert_matrix_error(r, 404, "M_UNRECOGNIZED")
    assert_error_schema(r)
    assert_matrix_error(shared_server.get(f"{prefix}/room_keys/keys", headers=hdr), 404,
                        "M_UNRECOGNIZED")
    assert_matrix_error(shared_server.get(f"{prefix}/room_keys/version"), 401, "M_MISSING_TOKEN")


def test_no_media_repository(shared_server, user):
    hdr = bearer(user.access_token)
    for path in ("/_matrix/client/v1/media/config", "/_matrix/media/v3/config",
                 "/_matrix/media/r0/config"):
        assert_matrix_error(shared_server.get(path, headers=hdr), 404, "M_UNRECOGNIZED")
