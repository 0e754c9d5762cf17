"""Black-box tests of the 2015 refresh API, POST /_matrix/client/r0/tokenrefresh and
/_matrix/client/api/v1/tokenrefresh (r0.0.0 - r0.2.0): strict rotation, 403 M_FORBIDDEN on
failure, and one engine shared with the modern /refresh."""

import pytest

from myelin_harness import assert_matches_historical, assert_matrix_error
from client_helpers import (API_V1, R0, V3, forge_token, legacy_refresh, login_ok, refresh,
                            register_ok, show, unique_name, whoami)

LEGACY_PREFIXES = pytest.mark.parametrize("prefix", [R0, API_V1], ids=["r0", "api_v1"])


def fresh_session(server):
    reg = register_ok(server, unique_name("legacy"))
    s = login_ok(server, reg.localpart, reg.password, refresh_token=True, device_id="LEGACY")
    assert s.refresh_token, f"login with refresh_token: true gave no refresh_token: {s.body}"
    return s


def legacy_ok(server, token, prefix=R0) -> dict:
    r = legacy_refresh(server, token, prefix=prefix)
    assert r.status_code == 200, f"{prefix}/tokenrefresh: {show(r)}"
    return r.json()


def assert_historical(body, status):
    for version in ("r0.0.0", "r0.2.0"):
        assert_matches_historical(body, version, "/tokenrefresh", "post", status,
                                  file="login.yaml")


@LEGACY_PREFIXES
def test_tokenrefresh_returns_a_new_pair(shared_server, prefix):
    s = fresh_session(shared_server)
    body = legacy_ok(shared_server, s.refresh_token, prefix)
    assert_historical(body, 200)
    assert isinstance(body.get("access_token"), str), body
    assert isinstance(body.get("refresh_token"), str), body
    assert body["access_token"] != s.access_token and body["refresh_token"] != s.refresh_token
    r = whoami(shared_server, body["access_token"])
    assert r.status_code == 200, f"the access token from /tokenrefresh: {show(r)}"
    assert r.json()["user_id"] == s.user_id and r.json()["device_id"] == "LEGACY", r.json()
    # The new refresh token rotates again.
    again = legacy_ok(shared_server, body["refresh_token"], prefix)
    assert whoami(shared_server, again["access_token"]).status_code == 200


@LEGACY_PREFIXES
def test_tokenrefresh_kills_the_old_access_token_at_once(shared_server, prefix):
    s = fresh_session(shared_server)
    legacy_ok(shared_server, s.refresh_token, prefix)
    r = whoami(shared_server, s.access_token)
    assert_matrix_error(r, 401, "M_UNKNOWN_TOKEN")


@LEGACY_PREFIXES
def test_tokenrefresh_reuse_is_403_and_revokes_the_session(shared_server, prefix):
    s = fresh_session(shared_server)
    new = legacy_ok(shared_server, s.refresh_token, prefix)
    # Presented again at once, before the new tokens were used: already invalid.
    r = legacy_refresh(shared_server, s.refresh_token, prefix=prefix)
    body = assert_matrix_error(r, 403, "M_FORBIDDEN")
    assert_historical(body, 403)
    # The reuse revoked the session: the new tokens are dead too.
    assert_matrix_error(whoami(shared_server, new["access_token"]), 401, "M_UNKNOWN_TOKEN")
    assert_matrix_error(legacy_refresh(shared_server, new["refresh_token"], prefix=prefix),
                        403, "M_FORBIDDEN")
    assert_matrix_error(refresh(shared_server, new["refresh_token"]), 401, "M_UNKNOWN_TOKEN")


@LEGACY_PREFIXES
def test_tokenrefresh_unknown_or_malformed_is_403(shared_server, prefix):
    s = fresh_session(shared_server)
    for bad in ("xyz", forge_token("myrt_"), s.access_token, s.refresh_token[:-1] + "!"):
        r = legacy_refresh(shared_server, bad, prefix=prefix)
        body = assert_matrix_error(r, 403, "M_FORBIDDEN")
        assert_historical(body, 403)
    # None of that touched the real session.
    assert whoami(shared_server, s.access_token).status_code == 200
    legacy_ok(shared_server, s.refresh_token, prefix)


def test_legacy_then_modern_refresh(shared_server):
    s = fresh_session(shared_server)
    legacy = legacy_ok(shared_server, s.refresh_token)
    assert whoami(shared_server, legacy["access_token"]).status_code == 200
    r = refresh(shared_server, legacy["refresh_token"], prefix=V3)
    assert r.status_code == 200, f"/v3/refresh with a token from /tokenrefresh: {show(r)}"
    me = whoami(shared_server, r.json()["access_token"])
    assert me.status_code == 200 and me.json()["device_id"] == "LEGACY", show(me)


def test_modern_then_legacy_refresh(shared_server):
    s = fresh_session(shared_server)
    r = refresh(shared_server, s.refresh_token, prefix=V3)
    assert r.status_code == 200, show(r)
    modern = r.json()
    assert whoami(shared_server, modern["access_token"]).status_code == 200
    legacy = legacy_ok(shared_server, modern["refresh_token"])
    me = whoami(shared_server, legacy["access_token"])
    assert me.status_code == 200 and me.json()["device_id"] == "LEGACY", show(me)
    # And back to the modern endpoint once more.
    r = refresh(shared_server, legacy["refresh_token"], prefix=V3)
    assert r.status_code == 200, show(r)
    assert whoami(shared_server, r.json()["access_token"]).status_code == 200
