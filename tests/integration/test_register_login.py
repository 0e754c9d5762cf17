"""Black-box tests of POST /register (UIA with m.login.dummy, username rules, guests),
GET /register/available and GET/POST /login, under both /_matrix/client/v3 and /r0."""

import re

import pytest

from myelin_harness import assert_matches_spec, assert_matrix_error
from client_helpers import (PREFIXES, V3, login, login_ok, median_seconds, mxid, refresh,
                            register, register_guest, register_ok, show, unique_name,
                            unique_password, whoami)

prefixes = pytest.mark.parametrize("prefix", PREFIXES, ids=["v3", "r0"])
USER_ID_RE = re.compile(r"^@[a-z0-9._=\-/+]+:localhost$")


# ============================================================================ registration: UIA

@prefixes
def test_register_without_auth_returns_uia_401_with_dummy_flow(shared_server, prefix):
    r = register(shared_server, {"username": unique_name("uia"), "password": unique_password()},
                 prefix=prefix)
    assert r.status_code == 401, f"expected the UIA 401, got {show(r)}"
    body = r.json()
    assert "errcode" not in body, f"the first UIA 401 must not carry an errcode: {body}"
    assert isinstance(body.get("flows"), list) and body["flows"], f"no flows: {body}"
    stages = [f.get("stages") for f in body["flows"]]
    assert ["m.login.dummy"] in stages, f"no flow with stages ['m.login.dummy']: {body}"
    assert isinstance(body.get("params"), dict), f"params must be an object: {body}"
    assert isinstance(body.get("session"), str) and body["session"], f"no session: {body}"
    assert_matches_spec(body, "registration.yaml", prefix + "/register", "post", 401)


@prefixes
def test_register_completes_dummy_stage_with_session(shared_server, prefix):
    name = unique_name("twostep")
    password = unique_password()
    r1 = register(shared_server, {"username": name, "password": password}, prefix=prefix)
    assert r1.status_code == 401, show(r1)
    session = r1.json()["session"]
    r2 = register(shared_server, {"username": name, "password": password,
                                  "auth": {"type": "m.login.dummy", "session": session}},
                  prefix=prefix)
    assert r2.status_code == 200, f"completing m.login.dummy with the session: {show(r2)}"
    body = r2.json()
    assert_matches_spec(body, "registration.yaml", prefix + "/register", "post", 200)
    assert body["user_id"] == mxid(name), body
    assert isinstance(body.get("access_token"), str) and isinstance(body.get("device_id"), str)
    me = whoami(shared_server, body["access_token"])
    assert me.status_code == 200 and me.json()["user_id"] == mxid(name), show(me)


@prefixes
def test_register_dummy_auth_without_session_succeeds(shared_server, prefix):
    name = unique_name("nosession")
    r = register(shared_server, {"username": name, "password": unique_password(),
                                 "auth": {"type": "m.login.dummy"}}, prefix=prefix)
    assert r.status_code == 200, f"dummy auth without a session (matrix-nio style): {show(r)}"
    assert r.json()["user_id"] == mxid(name)


# ============================================================================ registration: names

@prefixes
def test_taken_username_is_400_user_in_use_before_uia(shared_server, prefix):
    s = register_ok(shared_server, unique_name("taken"))
    r = register(shared_server, {"username": s.localpart, "password": unique_password()},
                 prefix=prefix)
    body = assert_matrix_error(r, 400, "M_USER_IN_USE")
    assert "flows" not in body, f"M_USER_IN_USE must come before UIA: {body}"
    # And with auth, too.
    r = register(shared_server, {"username": s.localpart, "password": unique_password(),
                                 "auth": {"type": "m.login.dummy"}}, prefix=prefix)
    assert_matrix_error(r, 400, "M_USER_IN_USE")


@prefixes
@pytest.mark.parametrize("username", ["bad name!", "é", "a:b"])
def test_invalid_username_is_400_invalid_username(shared_server, prefix, username):
    r = register(shared_server, {"username": username, "password": unique_password()},
                 prefix=prefix)
    assert_matrix_error(r, 400, "M_INVALID_USERNAME")
    r = register(shared_server, {"username": username, "password": unique_password(),
                                 "auth": {"type": "m.login.dummy"}}, prefix=prefix)
    assert_matrix_error(r, 400, "M_INVALID_USERNAME")


def test_upper_case_username_is_downcased(shared_server):
    name = unique_name("Alice2").replace("alice2", "Alice2")
    assert name != name.lower()
    s = register_ok(shared_server, name)
    assert s.user_id == mxid(name.lower()), f"expected {mxid(name.lower())}, got {s.user_id}"
    # The downcased name is now taken.
    r = register(shared_server, {"username": name.lower(), "password": unique_password()})
    assert_matrix_error(r, 400, "M_USER_IN_USE")


def test_user_id_longer_than_255_bytes_is_invalid_username(shared_server):
    # "@" + localpart + ":localhost" is 11 bytes of overhead: 244 is the longest localpart.
    stem = unique_name("long")
    longest = (stem + "x" * 300)[:244]
    too_long = (stem + "y" * 300)[:245]
    for auth in ({}, {"auth": {"type": "m.login.dummy"}}):
        r = register(shared_server, {"username": too_long, "password": unique_password(), **auth})
        assert_matrix_error(r, 400, "M_INVALID_USERNAME")
    s = register_ok(shared_server, longest)
    assert len(s.user_id.encode()) == 255, s.user_id


def test_register_without_username_generates_valid_localpart(shared_server):
    s1 = register_ok(shared_server, None)
    s2 = register_ok(shared_server, None)
    for s in (s1, s2):
        assert USER_ID_RE.match(s.user_id), f"generated user_id {s.user_id!r} breaks the grammar"
        assert len(s.user_id.encode()) <= 255
    assert s1.user_id != s2.user_id


# ============================================================================ registration: response

@prefixes
def test_register_echoes_device_id_and_has_no_refresh_token_by_default(shared_server, prefix):
    name = unique_name("dev")
    s = register_ok(shared_server, name, prefix=prefix, device_id="MYDEVICE1")
    assert_matches_spec(s.body, "registration.yaml", prefix + "/register", "post", 200)
    assert s.user_id == mxid(name)
    assert s.device_id == "MYDEVICE1", s.body
    assert isinstance(s.access_token, str) and s.access_token, s.body
    assert "refresh_token" not in s.body, f"no refresh_token without opting in: {s.body}"
    assert "expires_in_ms" not in s.body, f"no expires_in_ms without opting in: {s.body}"
    me = whoami(shared_server, s.access_token, prefix=prefix)
    assert me.status_code == 200, show(me)
    assert me.json()["device_id"] == "MYDEVICE1"


@prefixes
def test_register_with_refresh_token_true(shared_server, prefix):
    s = register_ok(shared_server, unique_name("reg_rt"), prefix=prefix, refresh_token=True)
    assert_matches_spec(s.body, "registration.yaml", prefix + "/register", "post", 200)
    assert isinstance(s.refresh_token, str) and s.refresh_token, s.body
    assert isinstance(s.expires_in_ms, int), s.body
    assert 290_000 <= s.expires_in_ms <= 300_000, \
        f"expires_in_ms {s.expires_in_ms}, expected about 300000 (5m)"
    r = refresh(shared_server, s.refresh_token)
    assert r.status_code == 200, f"a refresh token from /register must refresh: {show(r)}"


@prefixes
def test_register_inhibit_login_returns_only_user_id(shared_server, prefix):
    name = unique_name("inhibit")
    password = unique_password()
    s = register_ok(shared_server, name, password, prefix=prefix, inhibit_login=True,
                    refresh_token=True, device_id="INHIBITED")
    assert set(s.body) == {"user_id"}, f"inhibit_login: expected only user_id, got {s.body}"
    assert s.user_id == mxid(name)
    assert_matches_spec(s.body, "registration.yaml", prefix + "/register", "post", 200)
    login_ok(shared_server, name, password)  # the account exists and the password was stored


@pytest.mark.parametrize("length,ok", [(1024, True), (1025, False)])
def test_register_password_length_limit(shared_server, length, ok):
    password = ("P" * length)
    r = register(shared_server, {"username": unique_name("pwlen"), "password": password,
                                 "auth": {"type": "m.login.dummy"}})
    if ok:
        assert r.status_code == 200, f"a {length}-byte password must be accepted: {show(r)}"
    else:
        assert_matrix_error(r, 400, "M_INVALID_PARAM")


def test_register_password_limit_counts_bytes_not_characters(shared_server):
    password = "é" * 513  # 513 characters, 1026 bytes in UTF-8
    r = register(shared_server, {"username": unique_name("pwbytes"), "password": password,
                                 "auth": {"type": "m.login.dummy"}})
    assert_matrix_error(r, 400, "M_INVALID_PARAM")


# ============================================================================ registration: guests

@prefixes
def test_guest_registration_needs_no_uia(shared_server, prefix):
    r = register_guest(shared_server, {}, prefix=prefix)
    assert r.status_code == 200, f"guest registration with an empty body: {show(r)}"
    body = r.json()
    assert_matches_spec(body, "registration.yaml", prefix + "/register", "post", 200)
    assert USER_ID_RE.match(body["user_id"]), body
    assert isinstance(body.get("access_token"), str) and isinstance(body.get("device_id"), str)
    me = whoami(shared_server, body["access_token"], prefix=prefix)
    assert me.status_code == 200, show(me)
    assert me.json().get("is_guest") is True, f"whoami for a guest: {me.json()}"
    assert me.json()["user_id"] == body["user_id"]


def test_guest_registration_ignores_body_fields(shared_server):
    name = unique_name("notaguestname")
    r = register_guest(shared_server, {"username": name, "password": unique_password(),
                                       "refresh_token": True, "device_id": "GUESTDEV",
                                       "inhibit_login": True,
                                       "initial_device_display_name": "Guest phone"})
    assert r.status_code == 200, show(r)
    body = r.json()
    assert body["user_id"] != mxid(name), f"the guest got the requested username: {body}"
    assert "refresh_token" not in body, f"refresh_token: true must be ignored for guests: {body}"
    assert "expires_in_ms" not in body, f"refresh_token: true must be ignored for guests: {body}"
    assert isinstance(body.get("access_token"), str), f"inhibit_login must be ignored: {body}"
    assert body.get("device_id") != "GUESTDEV", f"the server must pick the device_id: {body}"
    # The username stays free.
    avail = shared_server.get(V3 + "/register/available", params={"username": name})
    assert avail.status_code == 200 and avail.json() == {"available": True}, show(avail)


@prefixes
def test_register_bogus_kind_is_400_invalid_param(shared_server, prefix):
    r = register(shared_server, {"username": unique_name("bogus"), "password": unique_password(),
                                 "auth": {"type": "m.login.dummy"}}, prefix=prefix, kind="bogus")
    assert_matrix_error(r, 400, "M_INVALID_PARAM")


def test_registration_disabled_is_403(server_factory):
    hs = server_factory(registration={"enabled": False})
    for prefix in PREFIXES:
        r = register(hs, {"username": unique_name("closed"), "password": unique_password()},
                     prefix=prefix)
        assert_matrix_error(r, 403, "M_FORBIDDEN")
        r = register(hs, {"username": unique_name("closed"), "password": unique_password(),
                          "auth": {"type": "m.login.dummy"}}, prefix=prefix)
        assert_matrix_error(r, 403, "M_FORBIDDEN")


def test_guests_disallowed_is_403(server_factory):
    hs = server_factory(registration={"allow_guests": False})
    for prefix in PREFIXES:
        assert_matrix_error(register_guest(hs, {}, prefix=prefix), 403, "M_FORBIDDEN")
    register_ok(hs, unique_name("stillopen"))  # normal registration is unaffected


# ============================================================================ /register/available

@prefixes
def test_register_available(shared_server, prefix):
    path = prefix + "/register/available"
    r = shared_server.get(path, params={"username": unique_name("free")})
    assert r.status_code == 200, show(r)
    assert r.json() == {"available": True}
    assert_matches_spec(r.json(), "registration.yaml", path, "get", 200)

    s = register_ok(shared_server, unique_name("gone"))
    assert_matrix_error(shared_server.get(path, params={"username": s.localpart}),
                        400, "M_USER_IN_USE")
    assert_matrix_error(shared_server.get(path, params={"username": "bad name!"}),
                        400, "M_INVALID_USERNAME")


# ============================================================================ login

@prefixes
def test_login_flows_include_password(shared_server, prefix):
    r = shared_server.get(prefix + "/login")
    assert r.status_code == 200, show(r)
    assert "m.login.password" in [f.get("type") for f in r.json()["flows"]], r.json()
    assert_matches_spec(r.json(), "login.yaml", prefix + "/login", "get", 200)


@pytest.fixture(scope="module")
def alice(shared_server):
    """One registered user for the read-mostly login tests."""
    return register_ok(shared_server, unique_name("alice"))


@prefixes
@pytest.mark.parametrize("form", ["localpart", "mxid", "upper_case", "legacy_user_field"])
def test_login_identifier_forms(shared_server, alice, prefix, form):
    user = {"localpart": alice.localpart, "mxid": alice.user_id,
            "upper_case": alice.localpart.upper(),
            "legacy_user_field": alice.localpart}[form]
    r = login(shared_server, user, alice.password, prefix=prefix,
              legacy_user_field=(form == "legacy_user_field"))
    assert r.status_code == 200, f"login with {form} {user!r}: {show(r)}"
    body = r.json()
    assert_matches_spec(body, "login.yaml", prefix + "/login", "post", 200)
    assert body["user_id"] == alice.user_id
    assert isinstance(body["access_token"], str) and isinstance(body["device_id"], str)
    base_url = body.get("well_known", {}).get("m.homeserver", {}).get("base_url")
    assert isinstance(base_url, str), f"no well_known.m.homeserver.base_url: {body}"
    assert base_url.rstrip("/") == shared_server.config["public_baseurl"].rstrip("/"), body
    assert "refresh_token" not in body and "expires_in_ms" not in body, \
        f"no refresh_token/expires_in_ms without opting in: {body}"
    me = whoami(shared_server, body["access_token"], prefix=prefix)
    assert me.status_code == 200 and me.json()["device_id"] == body["device_id"], show(me)


@prefixes
def test_login_with_refresh_token_true(shared_server, alice, prefix):
    r = login(shared_server, alice.localpart, alice.password, prefix=prefix, refresh_token=True)
    assert r.status_code == 200, show(r)
    body = r.json()
    assert_matches_spec(body, "login.yaml", prefix + "/login", "post", 200)
    assert isinstance(body.get("refresh_token"), str) and body["refresh_token"], body
    assert isinstance(body.get("expires_in_ms"), int), body
    assert 290_000 <= body["expires_in_ms"] <= 300_000, body


@prefixes
def test_login_wrong_password_and_unknown_user_are_403(shared_server, alice, prefix):
    r = login(shared_server, alice.localpart, alice.password + "x", prefix=prefix)
    assert_matrix_error(r, 403, "M_FORBIDDEN")
    r = login(shared_server, unique_name("nobody"), alice.password, prefix=prefix)
    assert_matrix_error(r, 403, "M_FORBIDDEN")


def test_login_unknown_user_costs_as_much_as_wrong_password(shared_server, alice):
    def wrong_password():
        r = login(shared_server, alice.localpart, "definitely-wrong-password")
        assert r.status_code == 403, show(r)

    def unknown_user():
        r = login(shared_server, unique_name("ghost"), "definitely-wrong-password")
        assert r.status_code == 403, show(r)

    wrong_password()  # warm up
    unknown_user()
    t_wrong = median_seconds(wrong_password, 7)
    t_unknown = median_seconds(unknown_user, 7)
    msg = f"median wrong password {t_wrong * 1000:.2f} ms, unknown user {t_unknown * 1000:.2f} ms"
    assert t_wrong > 0.001 and t_unknown > 0.001, f"both must run argon2 (> 1 ms): {msg}"
    assert 0.5 <= t_unknown / t_wrong <= 2.0, f"unknown user is distinguishable by time: {msg}"


def test_login_password_over_1024_bytes_is_400_invalid_param(shared_server, alice):
    for password in ("P" * 1025, "é" * 513):
        r = login(shared_server, alice.localpart, password)
        assert_matrix_error(r, 400, "M_INVALID_PARAM")


@prefixes
def test_login_again_with_device_id_replaces_that_devices_tokens(shared_server, prefix):
    s = register_ok(shared_server, unique_name("redevice"), device_id="PHONE")
    first = login_ok(shared_server, s.localpart, s.password, prefix=prefix, device_id="KEEPME",
                     refresh_token=True)
    assert first.device_id == "KEEPME", first.body
    second = login_ok(shared_server, s.localpart, s.password, prefix=prefix, device_id="KEEPME",
                      refresh_token=True)
    assert second.device_id == "KEEPME", second.body
    assert second.access_token != first.access_token

    old = whoami(shared_server, first.access_token, prefix=prefix)
    assert_matrix_error(old, 401, "M_UNKNOWN_TOKEN")
    assert_matrix_error(refresh(shared_server, first.refresh_token), 401, "M_UNKNOWN_TOKEN")

    new = whoami(shared_server, second.access_token, prefix=prefix)
    assert new.status_code == 200, show(new)
    assert new.json()["device_id"] == "KEEPME" and new.json()["user_id"] == s.user_id
    # The registration device is another device: untouched.
    assert whoami(shared_server, s.access_token).status_code == 200


@prefixes
def test_login_bad_type_is_400_unknown(shared_server, alice, prefix):
    r = shared_server.post(prefix + "/login", json={
        "type": "m.login.bogus", "identifier": {"type": "m.id.user", "user": alice.localpart},
        "password": alice.password})
    assert_matrix_error(r, 400, "M_UNKNOWN")


@prefixes
def test_login_missing_password_is_400_missing_param(shared_server, alice, prefix):
    r = login(shared_server, alice.localpart, None, prefix=prefix)
    assert_matrix_error(r, 400, "M_MISSING_PARAM")


@prefixes
def test_login_non_json_is_400_not_json(shared_server, prefix):
    r = shared_server.post(prefix + "/login", data=b"{not json",
                           headers={"Content-Type": "application/json"})
    assert_matrix_error(r, 400, "M_NOT_JSON")
