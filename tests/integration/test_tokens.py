"""Black-box tests of access tokens: format, transport (header and query), whoami, expiry
with soft logout, /logout and /logout/all."""

import time

import pytest

import myelin_harness as h
from myelin_harness import assert_matches_spec, assert_matrix_error
from client_helpers import (ACCESS_TOKEN_RE, PREFIXES, REFRESH_TOKEN_RE, assert_no_soft_logout,
                            bearer, change_body_keep_checksum, change_char, checksum_ok, crc_base62,
                            forge_token, login_ok, logout, refresh, refresh_ok, register_ok,
                            show, unique_name, whoami)

prefixes = pytest.mark.parametrize("prefix", PREFIXES, ids=["v3", "r0"])
EXPIRY_WAIT = 2.5  # seconds; the short-lived server's access tokens live 2 s


@pytest.fixture(scope="module")
def short_lived_server(tmp_path_factory, myelin_binary):
    """A server whose refreshable access tokens live 2 s."""
    s = h.start_server(tmp_path_factory.mktemp("short"), scope="module",
                       tokens={"access_token_lifetime": "2s", "session_idle_timeout": "1h"})
    yield s
    s.stop(expect_exit=0)


def sleep_until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        time.sleep(delay)


# ============================================================================ format

def test_token_format(shared_server):
    name = unique_name("format")
    reg = register_ok(shared_server, name, refresh_token=True)
    log = login_ok(shared_server, name, reg.password, refresh_token=True)
    ref = refresh_ok(shared_server, log.refresh_token)
    access = [reg.access_token, log.access_token, ref["access_token"]]
    refresh_tokens = [reg.refresh_token, log.refresh_token, ref["refresh_token"]]
    for t in access:
        assert ACCESS_TOKEN_RE.match(t or ""), f"access token {t!r} does not match the format"
    for t in refresh_tokens:
        assert REFRESH_TOKEN_RE.match(t or ""), f"refresh token {t!r} does not match the format"
    for t in access + refresh_tokens:
        assert checksum_ok(t), f"{t!r}: checksum is not base62 CRC-32 of prefix+body"
        assert name not in t.lower(), f"token {t!r} contains the username {name!r}"
    assert len(set(access + refresh_tokens)) == 6, "tokens repeat"


@pytest.mark.parametrize("index", [0, 4, 5, 27, 47, 48, 49, 54],
                         ids=lambda i: f"char{i}")
def test_access_token_with_one_char_changed_is_unknown(shared_server, index):
    s = register_ok(shared_server, unique_name("tamper"))
    bad = change_char(s.access_token, index)
    if index == 48:  # the '_' separator
        bad = s.access_token[:48] + "x" + s.access_token[49:]
    assert bad != s.access_token
    body = assert_matrix_error(whoami(shared_server, bad), 401, "M_UNKNOWN_TOKEN")
    assert_no_soft_logout(body)
    assert whoami(shared_server, s.access_token).status_code == 200, "the real token must work"


def test_well_formed_but_unknown_access_token_is_unknown(shared_server):
    s = register_ok(shared_server, unique_name("forged"))
    for bad in (change_body_keep_checksum(s.access_token), forge_token("myat_")):
        assert checksum_ok(bad)
        body = assert_matrix_error(whoami(shared_server, bad), 401, "M_UNKNOWN_TOKEN")
        assert_no_soft_logout(body)
    assert whoami(shared_server, s.access_token).status_code == 200


# ============================================================================ transport

@prefixes
def test_header_and_query_token_both_work(shared_server, prefix):
    s = register_ok(shared_server, unique_name("transport"), device_id="TRANSPORT")
    for via in ("header", "query"):
        r = whoami(shared_server, s.access_token, prefix=prefix, via=via)
        assert r.status_code == 200, f"token via {via}: {show(r)}"
        assert r.json()["user_id"] == s.user_id and r.json()["device_id"] == "TRANSPORT"


@prefixes
def test_missing_token_is_401_missing_token(shared_server, prefix):
    assert_matrix_error(whoami(shared_server, None, prefix=prefix), 401, "M_MISSING_TOKEN")


@prefixes
@pytest.mark.parametrize("via", ["header", "query"])
def test_unknown_token_is_401_unknown_token(shared_server, prefix, via):
    for bad in ("xyz", forge_token("myat_"), "myat_" + "A" * 50):
        body = assert_matrix_error(whoami(shared_server, bad, prefix=prefix, via=via),
                                   401, "M_UNKNOWN_TOKEN")
        assert_no_soft_logout(body)


def test_refresh_token_is_not_an_access_token(shared_server):
    s = register_ok(shared_server, unique_name("rtasat"), refresh_token=True)
    for via in ("header", "query"):
        body = assert_matrix_error(whoami(shared_server, s.refresh_token, via=via),
                                   401, "M_UNKNOWN_TOKEN")
        assert body.get("soft_logout") is not True, body
    # The same string with the access prefix (and a recomputed checksum) is no token either.
    as_access = "myat_" + s.refresh_token[5:48]
    as_access = f"{as_access}_{crc_base62(as_access)}"
    assert_matrix_error(whoami(shared_server, as_access), 401, "M_UNKNOWN_TOKEN")


# ============================================================================ whoami

@prefixes
def test_whoami(shared_server, prefix):
    s = register_ok(shared_server, unique_name("who"), device_id="WHODEV")
    r = whoami(shared_server, s.access_token, prefix=prefix)
    assert r.status_code == 200, show(r)
    body = r.json()
    assert_matches_spec(body, "whoami.yaml", prefix + "/account/whoami", "get", 200)
    assert body["user_id"] == s.user_id
    assert body["device_id"] == "WHODEV"
    assert body.get("is_guest") is False, f"is_guest must be false for a user: {body}"


# ============================================================================ expiry

def test_refreshable_token_expires_with_soft_logout(short_lived_server):
    hs = short_lived_server
    reg = register_ok(hs, unique_name("expiry"))
    t0 = time.monotonic()
    s = login_ok(hs, reg.localpart, reg.password, refresh_token=True, device_id="EXPDEV")
    assert isinstance(s.expires_in_ms, int) and 1500 <= s.expires_in_ms <= 2000, \
        f"expires_in_ms {s.expires_in_ms!r}, expected about 2000: {s.body}"
    assert whoami(hs, s.access_token).status_code == 200, "a fresh token must work"

    sleep_until(t0 + EXPIRY_WAIT)
    r = whoami(hs, s.access_token)
    body = assert_matrix_error(r, 401, "M_UNKNOWN_TOKEN")
    assert body.get("soft_logout") is True, f"an expired token must answer soft_logout: {body}"

    # js-sdk sends the stale token along with /refresh: it must not matter.
    r = refresh(hs, s.refresh_token, headers=bearer(s.access_token))
    assert r.status_code == 200, f"refresh after expiry: {show(r)}"
    new = r.json()
    assert 1500 <= new.get("expires_in_ms", -1) <= 2000, new
    me = whoami(hs, new["access_token"])
    assert me.status_code == 200, show(me)
    assert me.json()["device_id"] == "EXPDEV" and me.json()["user_id"] == reg.user_id


def test_token_without_opt_in_does_not_expire(short_lived_server):
    hs = short_lived_server
    reg = register_ok(hs, unique_name("noexpiry"))
    t0 = time.monotonic()
    s = login_ok(hs, reg.localpart, reg.password)
    assert "expires_in_ms" not in s.body and "refresh_token" not in s.body, s.body
    assert "expires_in_ms" not in reg.body, f"register without opt-in: {reg.body}"
    sleep_until(t0 + EXPIRY_WAIT)
    for token in (s.access_token, reg.access_token):
        r = whoami(hs, token)
        assert r.status_code == 200, f"a token of a client that did not opt in expired: {show(r)}"


def test_expired_token_can_still_log_out(short_lived_server):
    hs = short_lived_server
    reg = register_ok(hs, unique_name("expiredlogout"))
    t0 = time.monotonic()
    s = login_ok(hs, reg.localpart, reg.password, refresh_token=True)
    sleep_until(t0 + EXPIRY_WAIT)
    assert whoami(hs, s.access_token).status_code == 401, "the token should have expired"
    r = logout(hs, s.access_token)
    assert r.status_code == 200, f"logout with an expired access token: {show(r)}"
    assert r.json() == {}
    assert_matrix_error(refresh(hs, s.refresh_token), 401, "M_UNKNOWN_TOKEN")
    body = assert_matrix_error(whoami(hs, s.access_token), 401, "M_UNKNOWN_TOKEN")
    assert_no_soft_logout(body)
    assert whoami(hs, reg.access_token).status_code == 200, "the other device must survive"


# ============================================================================ logout

@prefixes
@pytest.mark.parametrize("json_body", [False, True], ids=["empty_body", "json_object"])
def test_logout(shared_server, prefix, json_body):
    reg = register_ok(shared_server, unique_name("logout"), refresh_token=True)
    other = login_ok(shared_server, reg.localpart, reg.password, refresh_token=True)
    r = logout(shared_server, reg.access_token, prefix=prefix, json_body=json_body)
    assert r.status_code == 200, f"logout: {show(r)}"
    assert r.json() == {}, r.text
    assert_matches_spec(r.json(), "logout.yaml", prefix + "/logout", "post", 200)

    body = assert_matrix_error(whoami(shared_server, reg.access_token), 401, "M_UNKNOWN_TOKEN")
    assert_no_soft_logout(body)
    assert_matrix_error(refresh(shared_server, reg.refresh_token), 401, "M_UNKNOWN_TOKEN")
    r = whoami(shared_server, other.access_token)
    assert r.status_code == 200, f"another device's token must survive: {show(r)}"
    assert refresh(shared_server, other.refresh_token).status_code == 200


@prefixes
def test_logout_all(shared_server, prefix):
    reg = register_ok(shared_server, unique_name("logoutall"), refresh_token=True)
    second = login_ok(shared_server, reg.localpart, reg.password, refresh_token=True)
    third = login_ok(shared_server, reg.localpart, reg.password)
    bystander = register_ok(shared_server, unique_name("bystander"), refresh_token=True)

    r = logout(shared_server, second.access_token, prefix=prefix, all_devices=True)
    assert r.status_code == 200, f"logout/all: {show(r)}"
    assert r.json() == {}, r.text
    assert_matches_spec(r.json(), "logout.yaml", prefix + "/logout/all", "post", 200)

    for s in (reg, second, third):
        body = assert_matrix_error(whoami(shared_server, s.access_token), 401, "M_UNKNOWN_TOKEN")
        assert_no_soft_logout(body)
    for s in (reg, second):
        assert_matrix_error(refresh(shared_server, s.refresh_token), 401, "M_UNKNOWN_TOKEN")
    assert whoami(shared_server, bystander.access_token).status_code == 200, \
        "another user's token must survive /logout/all"
    assert refresh(shared_server, bystander.refresh_token).status_code == 200


@prefixes
def test_logout_needs_a_valid_token(shared_server, prefix):
    assert_matrix_error(shared_server.post(prefix + "/logout"), 401, "M_MISSING_TOKEN")
    assert_matrix_error(logout(shared_server, forge_token("myat_"), prefix=prefix),
                        401, "M_UNKNOWN_TOKEN")
