"""Black-box tests of User-Interactive Auth on the account endpoints (POST /account/password,
POST /account/deactivate), GET /capabilities, and registration tokens
(m.login.registration_token, GET /v1/register/m.login.registration_token/validity).

Registration tokens are created by writing the running server's SQLite file directly (the admin
CLI arrives separately); the server reads them from storage on every check."""

from __future__ import annotations

import time

import pytest
import requests

import myelin_harness as h
from myelin_harness import assert_matches_spec, assert_matrix_error, free_port
from client_helpers import (PREFIXES, V1, V3, bearer, login, login_ok, mxid, refresh, register,
                            register_ok, show, token_works, unique_name, unique_password,
                            whoami)

prefixes = pytest.mark.parametrize("prefix", PREFIXES, ids=["v3", "r0"])
PASSWORD_FLOWS = [{"stages": ["m.login.password"]}]
VALIDITY = V1 + "/register/m.login.registration_token/validity"


# ------------------------------------------------------------------------------ helpers

def password_auth(session: str | None, user: str, password: str) -> dict:
    auth = {"type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password}
    if session is not None:
        auth["session"] = session
    return auth


def start_uia(server, path: str, token: str, body: dict, prefix: str = V3) -> dict:
    """Sends `body` without auth and returns the UIA 401 body (asserting its shape)."""
    r = server.post(prefix + path, json=body, headers=bearer(token))
    assert r.status_code == 401, f"{path} without auth: expected the UIA 401, got {show(r)}"
    out = r.json()
    assert "errcode" not in out, f"the first UIA 401 carries no errcode: {out}"
    assert out.get("flows") == PASSWORD_FLOWS, out
    assert isinstance(out.get("params"), dict), out
    assert isinstance(out.get("session"), str) and out["session"], out
    return out


def with_password(server, path: str, token: str, body: dict, user: str, password: str,
                  prefix: str = V3):
    """The full two-step UIA with m.login.password; returns the final response."""
    session = start_uia(server, path, token, body, prefix)["session"]
    return server.post(prefix + path, headers=bearer(token),
                       json={**body, "auth": password_auth(session, user, password)})


def add_token(server, token: str, uses_allowed: int | None = None, expiry_ts: int = 0) -> None:
    h.db_execute(server, "INSERT INTO registration_tokens (token, uses_allowed, pending, "
                 "completed, expiry_ts, created_ts) VALUES (?, ?, 0, 0, ?, ?)",
                 [(token, uses_allowed, expiry_ts, int(time.time() * 1000))])


def token_row(server, token: str) -> dict:
    """The token's pending and completed counts, as {"pending": n, "completed": m}."""
    rows = h.db_query(server,
                      "SELECT pending, completed FROM registration_tokens WHERE token = ?",
                      (token,))
    assert len(rows) == 1, rows
    return {"pending": rows[0][0], "completed": rows[0][1]}


def devices_of(server, user_id: str) -> set[str]:
    rows = h.db_query(server, "SELECT device_id FROM devices WHERE user_id = ?", (user_id,))
    return {r[0] for r in rows}


def event_kinds(server, user_id: str) -> list[str]:
    rows = h.db_query(server, "SELECT kind FROM security_events WHERE user_id = ? ORDER BY id",
                      (user_id,))
    return [r[0] for r in rows]


def validity(server, token: str | None):
    params = {"token": token} if token is not None else None
    return server.get(VALIDITY, params=params)


def register_with_token(server, token: str, username: str | None = None):
    """Two-step registration through m.login.registration_token; returns the final response."""
    body = {"username": username or unique_name("tok"), "password": unique_password()}
    r = register(server, body)
    assert r.status_code == 401, f"register without auth: {show(r)}"
    session = r.json()["session"]
    body["auth"] = {"type": "m.login.registration_token", "token": token, "session": session}
    return register(server, body)


# ------------------------------------------------------------------------------ UIA: password

@prefixes
def test_wrong_password_in_uia_is_401_with_flows_and_forbidden(shared_server, prefix):
    s = register_ok(shared_server, unique_name("wrongpw"))
    body = {"new_password": unique_password()}
    first = start_uia(shared_server, "/account/password", s.access_token, body, prefix)
    assert_matches_spec(first, "password_management.yaml", prefix + "/account/password", "post",
                        401)
    r = shared_server.post(prefix + "/account/password", headers=bearer(s.access_token),
                           json={**body, "auth": password_auth(first["session"], s.user_id,
                                                               "not-the-password")})
    assert r.status_code == 401, f"wrong password in UIA must be 401: {show(r)}"
    out = r.json()
    assert out.get("errcode") == "M_FORBIDDEN", out
    assert isinstance(out.get("error"), str), out
    assert out.get("flows") == PASSWORD_FLOWS, out
    assert out.get("session") == first["session"], out
    assert out.get("completed") == [], out
    assert isinstance(out.get("params"), dict), out
    assert_matches_spec(out, "password_management.yaml", prefix + "/account/password", "post",
                        401)
    # Nothing changed: the old password still signs in.
    login_ok(shared_server, s.user_id, s.password)
    # The same session may retry with the right password.
    r = shared_server.post(prefix + "/account/password", headers=bearer(s.access_token),
                           json={**body, "auth": password_auth(first["session"], s.localpart,
                                                               s.password)})
    assert r.status_code == 200, show(r)
    assert r.json() == {}, r.text


def test_uia_never_succeeds_without_auth(shared_server):
    s = register_ok(shared_server, unique_name("noauth"))
    for _ in range(2):
        r = shared_server.post(V3 + "/account/deactivate", json={},
                               headers=bearer(s.access_token))
        assert r.status_code == 401, show(r)
    assert token_works(shared_server, s.access_token)


def test_uia_session_is_bound_to_its_endpoint(shared_server):
    s = register_ok(shared_server, unique_name("bound"))
    session = start_uia(shared_server, "/account/password", s.access_token,
                        {"new_password": unique_password()})["session"]
    # Replayed on another endpoint, even with the right password: 403, nothing happens.
    r = shared_server.post(V3 + "/account/deactivate", headers=bearer(s.access_token),
                           json={"auth": password_auth(session, s.user_id, s.password)})
    assert_matrix_error(r, 403, "M_FORBIDDEN")
    assert token_works(shared_server, s.access_token)
    login_ok(shared_server, s.user_id, s.password)


def test_uia_session_is_bound_to_its_user(shared_server):
    alice = register_ok(shared_server, unique_name("alice"))
    bob = register_ok(shared_server, unique_name("bob"))
    new_password = unique_password()
    body = {"new_password": new_password}
    alice_session = start_uia(shared_server, "/account/password", alice.access_token,
                              body)["session"]
    # Bob presents Alice's session (with his own, correct password): 403.
    r = shared_server.post(V3 + "/account/password", headers=bearer(bob.access_token),
                           json={**body, "auth": password_auth(alice_session, bob.user_id,
                                                               bob.password)})
    assert_matrix_error(r, 403, "M_FORBIDDEN")
    # Bob's own session with Alice's credentials: the identifier must be Bob himself.
    bob_session = start_uia(shared_server, "/account/password", bob.access_token,
                            body)["session"]
    r = shared_server.post(V3 + "/account/password", headers=bearer(bob.access_token),
                           json={**body, "auth": password_auth(bob_session, alice.user_id,
                                                               alice.password)})
    assert r.status_code == 401 and r.json().get("errcode") == "M_FORBIDDEN", show(r)
    # Neither password changed.
    login_ok(shared_server, alice.user_id, alice.password)
    login_ok(shared_server, bob.user_id, bob.password)
    assert login(shared_server, bob.user_id, new_password).status_code == 403


def test_completed_uia_session_cannot_be_replayed(shared_server):
    s = register_ok(shared_server, unique_name("replay"))
    first_password = unique_password()
    session = start_uia(shared_server, "/account/password", s.access_token,
                        {"new_password": first_password})["session"]
    auth = password_auth(session, s.user_id, s.password)
    r = shared_server.post(V3 + "/account/password", headers=bearer(s.access_token),
                           json={"new_password": first_password, "auth": auth})
    assert r.status_code == 200, show(r)
    r = shared_server.post(V3 + "/account/password", headers=bearer(s.access_token),
                           json={"new_password": unique_password(), "auth": auth})
    assert_matrix_error(r, 400, "M_UNKNOWN")
    login_ok(shared_server, s.user_id, first_password)


# ------------------------------------------------------------------------------ /account/password

def test_password_change_logs_out_other_devices_but_not_the_current_one(server):
    name = unique_name("pwchange")
    a = register_ok(server, name, device_id="DEVA")
    b = login_ok(server, name, a.password, device_id="DEVB", refresh_token=True)
    c = login_ok(server, name, a.password, device_id="DEVC")
    assert devices_of(server, a.user_id) == {"DEVA", "DEVB", "DEVC"}
    new_password = unique_password()
    r = with_password(server, "/account/password", a.access_token,
                      {"new_password": new_password}, a.user_id, a.password)
    assert r.status_code == 200, show(r)
    assert r.json() == {}
    assert token_works(server, a.access_token), "the token used for the change must stay valid"
    for other in (b, c):
        w = whoami(server, other.access_token)
        assert_matrix_error(w, 401, "M_UNKNOWN_TOKEN")
    assert refresh(server, b.refresh_token).status_code == 401
    assert devices_of(server, a.user_id) == {"DEVA"}, "the other devices must be deleted"
    assert login(server, name, a.password).status_code == 403, "old password must stop working"
    login_ok(server, name, new_password)
    assert "password_change" in event_kinds(server, a.user_id)


def test_password_change_without_logout_keeps_other_devices(server):
    name = unique_name("pwkeep")
    a = register_ok(server, name, device_id="DEVA")
    b = login_ok(server, name, a.password, device_id="DEVB")
    new_password = unique_password()
    r = with_password(server, "/account/password", a.access_token,
                      {"new_password": new_password, "logout_devices": False}, a.user_id,
                      a.password)
    assert r.status_code == 200, show(r)
    assert token_works(server, a.access_token)
    assert token_works(server, b.access_token)
    assert devices_of(server, a.user_id) == {"DEVA", "DEVB"}
    login_ok(server, name, new_password)


def test_password_change_checks_its_body_before_uia(server_factory):
    server = server_factory(passwords={"max_length": 64})
    s = register_ok(server, unique_name("pwbody"))
    r = server.post(V3 + "/account/password", json={}, headers=bearer(s.access_token))
    body = assert_matrix_error(r, 400, "M_MISSING_PARAM")
    assert "flows" not in body
    r = server.post(V3 + "/account/password", json={"new_password": "x" * 65},
                    headers=bearer(s.access_token))
    body = assert_matrix_error(r, 400, "M_INVALID_PARAM")
    assert "flows" not in body
    r = server.post(V3 + "/account/password", json={"new_password": "x" * 10})
    assert_matrix_error(r, 401, "M_MISSING_TOKEN")


# ------------------------------------------------------------------------------ /account/deactivate

@prefixes
def test_deactivation_ends_everything_for_good(server, prefix):
    name = unique_name("deact")
    a = register_ok(server, name, device_id="DEVA", refresh_token=True)
    b = login_ok(server, name, a.password, device_id="DEVB")
    r = with_password(server, "/account/deactivate", a.access_token, {}, a.user_id, a.password,
                      prefix)
    assert r.status_code == 200, show(r)
    assert r.json() == {"id_server_unbind_result": "success"}
    assert_matches_spec(r.json(), "account_deactivation.yaml", prefix + "/account/deactivate",
                        "post", 200)
    # Every token is dead, the calling one included, and the devices are gone.
    for s in (a, b):
        assert_matrix_error(whoami(server, s.access_token), 401, "M_UNKNOWN_TOKEN")
    assert refresh(server, a.refresh_token).status_code == 401
    assert devices_of(server, a.user_id) == set()
    # It can never sign in again, with the right password either.
    assert_matrix_error(login(server, name, a.password), 403, "M_USER_DEACTIVATED")
    # The user ID cannot be registered again.
    r = register(server, {"username": name, "password": unique_password(),
                          "auth": {"type": "m.login.dummy"}})
    assert_matrix_error(r, 400, "M_USER_IN_USE")
    r = server.get(V3 + "/register/available", params={"username": name})
    assert_matrix_error(r, 400, "M_USER_IN_USE")
    assert "deactivated" in event_kinds(server, a.user_id)
    # It stays so across a restart (nothing was only in memory).
    server.restart()
    assert_matrix_error(login(server, name, a.password), 403, "M_USER_DEACTIVATED")
    assert_matrix_error(whoami(server, b.access_token), 401, "M_UNKNOWN_TOKEN")


def test_deactivation_with_wrong_password_changes_nothing(shared_server):
    s = register_ok(shared_server, unique_name("deactno"))
    r = with_password(shared_server, "/account/deactivate", s.access_token, {}, s.user_id,
                      "wrong-password")
    assert r.status_code == 401 and r.json().get("errcode") == "M_FORBIDDEN", show(r)
    assert token_works(shared_server, s.access_token)
    login_ok(shared_server, s.user_id, s.password)


# ------------------------------------------------------------------------------ /capabilities

@prefixes
def test_capabilities(shared_server, prefix):
    s = register_ok(shared_server, unique_name("caps"))
    r = shared_server.get(prefix + "/capabilities", headers=bearer(s.access_token))
    assert r.status_code == 200, show(r)
    body = r.json()
    assert_matches_spec(body, "capabilities.yaml", prefix + "/capabilities", "get", 200)
    caps = body["capabilities"]
    assert caps["m.change_password"] == {"enabled": True}
    assert caps["m.room_versions"]["default"] == "10"
    assert caps["m.room_versions"]["available"] == {"10": "stable", "11": "stable"}
    # Offered because they work (test_profile.py checks them in full).
    assert caps["m.set_displayname"] == {"enabled": True}
    assert caps["m.set_avatar_url"] == {"enabled": True}
    assert shared_server.put(prefix + "/profile/" + s.user_id + "/displayname",
                             json={"displayname": "x"},
                             headers=bearer(s.access_token)).status_code == 200
    assert caps["m.3pid_changes"] == {"enabled": False}
    assert caps["m.get_login_token"] == {"enabled": False}
    assert_matrix_error(shared_server.get(prefix + "/capabilities"), 401, "M_MISSING_TOKEN")


# ------------------------------------------------------------------------------ registration tokens

@pytest.fixture
def token_server(server_factory):
    return server_factory(registration={"enabled": True, "requires_token": True})


def test_requires_token_offers_the_token_stage_only(token_server):
    r = register(token_server, {"username": unique_name("flows"), "password": unique_password()})
    assert r.status_code == 401, show(r)
    body = r.json()
    assert body["flows"] == [{"stages": ["m.login.registration_token"]}], body
    assert_matches_spec(body, "registration.yaml", V3 + "/register", "post", 401)
    # The dummy stage is not a way around the token.
    name = unique_name("dummy")
    r = register(token_server, {"username": name, "password": unique_password(),
                                "auth": {"type": "m.login.dummy", "session": body["session"]}})
    assert r.status_code == 401, show(r)
    assert token_server.get(V3 + "/register/available",
                            params={"username": name}).status_code == 200


def test_registration_token_with_one_use_works_once(token_server):
    add_token(token_server, "single-use", uses_allowed=1)
    r = validity(token_server, "single-use")
    assert r.status_code == 200 and r.json() == {"valid": True}, show(r)
    assert_matches_spec(r.json(), "registration_tokens.yaml", VALIDITY, "get", 200)

    name = unique_name("first")
    r = register_with_token(token_server, "single-use", name)
    assert r.status_code == 200, show(r)
    assert r.json()["user_id"] == mxid(name)
    assert token_works(token_server, r.json()["access_token"])
    row = token_row(token_server, "single-use")
    assert (row["pending"], row["completed"]) == (0, 1), dict(row)

    assert validity(token_server, "single-use").json() == {"valid": False}
    second = unique_name("second")
    r = register_with_token(token_server, "single-use", second)
    assert r.status_code == 401, show(r)
    assert r.json().get("errcode") == "M_FORBIDDEN", r.json()
    assert token_server.get(V3 + "/register/available",
                            params={"username": second}).status_code == 200
    row = token_row(token_server, "single-use")
    assert (row["pending"], row["completed"]) == (0, 1), dict(row)


def test_unlimited_registration_token_counts_uses(token_server):
    add_token(token_server, "many")
    for _ in range(3):
        r = register_with_token(token_server, "many")
        assert r.status_code == 200, show(r)
    row = token_row(token_server, "many")
    assert (row["pending"], row["completed"]) == (0, 3), dict(row)
    assert validity(token_server, "many").json() == {"valid": True}


def test_expired_registration_token_is_invalid(token_server):
    add_token(token_server, "stale", uses_allowed=5, expiry_ts=int(time.time() * 1000) - 1000)
    assert validity(token_server, "stale").json() == {"valid": False}
    r = register_with_token(token_server, "stale")
    assert r.status_code == 401 and r.json().get("errcode") == "M_FORBIDDEN", show(r)
    assert token_row(token_server, "stale")["pending"] == 0


def test_validity_endpoint(token_server):
    assert validity(token_server, "no-such-token").json() == {"valid": False}
    assert validity(token_server, "not a valid token!").json() == {"valid": False}
    assert_matrix_error(validity(token_server, None), 400, "M_MISSING_PARAM")


def test_validity_is_forbidden_when_registration_is_disabled(server_factory):
    server = server_factory(registration={"enabled": False})
    r = validity(server, "anything")
    assert_matrix_error(r, 403, "M_FORBIDDEN")
    assert_matches_spec(r.json(), "registration_tokens.yaml", VALIDITY, "get", 403)


def test_registration_token_stage_is_not_accepted_elsewhere(token_server):
    add_token(token_server, "elsewhere")
    r = register_with_token(token_server, "elsewhere")
    assert r.status_code == 200, show(r)
    token = r.json()["access_token"]
    session = start_uia(token_server, "/account/deactivate", token, {})["session"]
    r = token_server.post(V3 + "/account/deactivate", headers=bearer(token),
                          json={"auth": {"type": "m.login.registration_token",
                                         "token": "elsewhere", "session": session}})
    assert r.status_code == 401, show(r)
    assert r.json().get("errcode") == "M_UNRECOGNIZED", r.json()
    assert token_works(token_server, token)


# ------------------------------------------------------------------------------ limits and metrics

def _limits(**buckets) -> dict:
    """[rate_limits] enabled, every bucket generous except those given as (per_second, burst)."""
    out: dict = {"enabled": True}
    for name in ("client_ip", "login", "failed_login", "registration", "refresh",
                 "token_validity"):
        per_second, burst = buckets.get(name, (1000, 1000))
        out[f"{name}_per_second"] = per_second
        out[f"{name}_burst"] = burst
    return out


def test_wrong_uia_passwords_spend_the_failed_login_budget(server_factory):
    server = server_factory(rate_limits=_limits(failed_login=(0.001, 2)))
    s = register_ok(server, unique_name("uiaguess"))
    body = {"new_password": unique_password()}
    session = start_uia(server, "/account/password", s.access_token, body)["session"]
    for _ in range(2):
        r = server.post(V3 + "/account/password", headers=bearer(s.access_token),
                        json={**body, "auth": password_auth(session, s.user_id, "guess")})
        assert r.status_code == 401, show(r)
    # A stolen access token gives no unlimited password guesses: UIA shares /login's budget.
    r = server.post(V3 + "/account/password", headers=bearer(s.access_token),
                    json={**body, "auth": password_auth(session, s.user_id, s.password)})
    assert_matrix_error(r, 429, "M_LIMIT_EXCEEDED")
    assert_matrix_error(login(server, s.user_id, s.password), 429, "M_LIMIT_EXCEEDED")


def test_validity_checks_are_rate_limited(server_factory):
    server = server_factory(rate_limits=_limits(token_validity=(0.001, 3)))
    statuses = [validity(server, f"guess{i}").status_code for i in range(5)]
    assert statuses[:3] == [200, 200, 200], statuses
    assert statuses[-1] == 429, statuses


def _scrape(port: int) -> str:
    r = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert r.status_code == 200, r.text[:300]
    return r.text


def _value(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


def test_registrations_are_counted_by_kind(server_factory):
    metrics_port = free_port()
    server = server_factory(metrics={"enabled": True, "port": metrics_port})
    before = _scrape(metrics_port)
    register_ok(server, unique_name("counted"))
    register_ok(server, unique_name("counted"))
    r = register(server, {}, kind="guest")
    assert r.status_code == 200, show(r)
    # A registration that fails UIA is not counted.
    assert register(server, {"username": unique_name("nope")}).status_code == 401
    after = _scrape(metrics_port)
    user = 'myelin_registrations_total{kind="user"}'
    guest = 'myelin_registrations_total{kind="guest"}'
    assert _value(after, user) - _value(before, user) == 2, after
    assert _value(after, guest) - _value(before, guest) == 1, after
