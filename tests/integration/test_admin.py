"""The operator's side (issue #4 §7): `myelin admin ...` against the configured database while
the server runs, and the same operations over HTTP under /_myelin/admin/v1/, allowed only to
accounts with the admin flag. A revocation made by the CLI (another process) must reach the
running server's token cache within a second, through the revocation log."""

from __future__ import annotations

import json
import time
from urllib.parse import quote

import pytest

import myelin_harness as h
from client_helpers import (V1, V3, bearer, login, login_ok, mxid, register, register_ok, show,
                            unique_name, unique_password, whoami)

ADMIN = "/_myelin/admin/v1"
VALIDITY = V1 + "/register/m.login.registration_token/validity"


def admin_cli(server, *args, input: str | None = None, json_out: bool = False):
    """Runs `myelin admin <args> --config <server's config>`."""
    extra = ["--json"] if json_out else []
    return h.run_cli("admin", *args, "--config", str(server.config_path), *extra, input=input)


def admin_cli_ok(server, *args, input: str | None = None) -> dict:
    """Runs an admin command with --json, asserts exit 0 and returns the parsed output."""
    p = admin_cli(server, *args, input=input, json_out=True)
    assert p.returncode == 0, f"admin {args}: exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    return json.loads(p.stdout)


def dies_within(server, token: str, seconds: float) -> float | None:
    """Polls whoami until the token answers 401; the time it took, or None if it never did."""
    start = time.monotonic()
    while True:
        r = whoami(server, token)
        if r.status_code == 401:
            return time.monotonic() - start
        assert r.status_code == 200, show(r)
        if time.monotonic() - start > seconds:
            return None
        time.sleep(0.02)


def make_admin(server) -> tuple[str, str, str]:
    """Creates an admin with the CLI and signs in: (user_id, password, access_token)."""
    name, password = unique_name("admin"), unique_password()
    out = admin_cli_ok(server, "create-user", name, "--password", password, "--admin")
    s = login_ok(server, out["user_id"], password)
    return out["user_id"], password, s.access_token


def admin_url(path: str) -> str:
    return ADMIN + path


def user_path(user_id: str, rest: str = "") -> str:
    return admin_url("/users/" + quote(user_id, safe="") + rest)


# ------------------------------------------------------------------------------ CLI


def test_cli_create_user_then_login(server):
    name, password = unique_name("ops"), unique_password()
    p = admin_cli(server, "create-user", name, "--password", password, "--admin")
    assert p.returncode == 0, p.stderr
    assert mxid(name) in p.stdout
    assert password not in p.stdout + p.stderr
    s = login_ok(server, name, password)
    assert s.user_id == mxid(name)
    # The admin flag is stored: the admin API answers this user.
    r = server.get(user_path(s.user_id), headers=bearer(s.access_token))
    assert r.status_code == 200, show(r)
    assert r.json()["admin"] is True
    # The same name again: exit 1, the user exists.
    again = admin_cli(server, "create-user", name, "--password", password)
    assert again.returncode == 1
    assert "M_USER_IN_USE" in again.stderr


def test_cli_create_user_without_admin_and_password_from_stdin(server):
    name, password = unique_name("plain"), unique_password()
    out = admin_cli_ok(server, "create-user", mxid(name), "--password-stdin",
                       input=password + "\n")
    assert out == {"user_id": mxid(name), "admin": False}
    s = login_ok(server, name, password)
    r = server.get(user_path(s.user_id), headers=bearer(s.access_token))
    assert r.status_code == 403
    assert r.json()["errcode"] == "M_FORBIDDEN"
    # A name the grammar refuses.
    bad = admin_cli(server, "create-user", "Not Valid!", "--password", password)
    assert bad.returncode == 1
    assert "M_INVALID_USERNAME" in bad.stderr


def test_cli_reset_password_ends_sessions_and_changes_the_password(server):
    alice = register_ok(server, unique_name("alice"))
    assert whoami(server, alice.access_token).status_code == 200  # cached in the server
    new_password = unique_password()
    out = admin_cli_ok(server, "reset-password", alice.localpart, "--password-stdin",
                       input=new_password + "\n")
    assert out["user_id"] == alice.user_id
    assert dies_within(server, alice.access_token, 1.0) is not None
    assert login(server, alice.user_id, alice.password).status_code == 403
    login_ok(server, alice.user_id, new_password)
    # Without a password: usage error; unknown user: failure.
    assert admin_cli(server, "reset-password", alice.localpart).returncode == 2
    assert admin_cli(server, "reset-password", unique_name("ghost"), "--password",
                     "x").returncode == 1


def test_cli_deactivate(server):
    bob = register_ok(server, unique_name("bob"))
    assert whoami(server, bob.access_token).status_code == 200
    p = admin_cli(server, "deactivate", bob.user_id)
    assert p.returncode == 0, p.stderr
    assert dies_within(server, bob.access_token, 1.0) is not None
    r = login(server, bob.user_id, bob.password)
    h.assert_matrix_error(r, 403, "M_USER_DEACTIVATED")
    r = register(server, {"username": bob.localpart, "password": unique_password(),
                          "auth": {"type": "m.login.dummy"}})
    h.assert_matrix_error(r, 400, "M_USER_IN_USE")
    assert admin_cli(server, "deactivate", unique_name("ghost")).returncode == 1


def test_cli_list_devices(server):
    carol = register_ok(server, unique_name("carol"), device_id="PHONE")
    login_ok(server, carol.user_id, carol.password, device_id="LAPTOP")
    out = admin_cli_ok(server, "list-devices", carol.localpart)
    assert out["user_id"] == carol.user_id
    assert sorted(d["device_id"] for d in out["devices"]) == ["LAPTOP", "PHONE"]
    text = admin_cli(server, "list-devices", carol.user_id)
    assert text.returncode == 0
    assert "LAPTOP" in text.stdout and "PHONE" in text.stdout
    assert admin_cli(server, "list-devices", unique_name("ghost")).returncode == 1


def test_cli_revoke_one_device_reaches_the_running_server_within_a_second(server):
    dave = register_ok(server, unique_name("dave"), device_id="KEEP")
    other = login_ok(server, dave.user_id, dave.password, device_id="GONE")
    # Both tokens are in the server's cache: only the revocation log can tell it.
    assert whoami(server, dave.access_token).status_code == 200
    assert whoami(server, other.access_token).status_code == 200
    out = admin_cli_ok(server, "revoke", dave.localpart, "GONE")
    assert out["sessions_revoked"] == 1
    took = dies_within(server, other.access_token, 1.0)
    assert took is not None, "the revoked device's token still works after 1 s"
    assert whoami(server, dave.access_token).status_code == 200
    # The device stays listed; its owner may sign in to it again.
    devices = admin_cli_ok(server, "list-devices", dave.localpart)["devices"]
    assert "GONE" in [d["device_id"] for d in devices]
    # Unknown device: failure.
    assert admin_cli(server, "revoke", dave.localpart, "NOPE").returncode == 1


def test_cli_revoke_all_devices(server):
    erin = register_ok(server, unique_name("erin"), device_id="A")
    second = login_ok(server, erin.user_id, erin.password, device_id="B")
    for t in (erin.access_token, second.access_token):
        assert whoami(server, t).status_code == 200
    p = admin_cli(server, "revoke", erin.user_id)
    assert p.returncode == 0, p.stderr
    assert "2 session" in p.stdout
    assert dies_within(server, erin.access_token, 1.0) is not None
    assert dies_within(server, second.access_token, 1.0) is not None


def test_cli_revocation_survives_server_restart_position(server):
    """The server starts following the log at its newest entry: revocations made while it was
    down are already in storage, and new ones after the restart still arrive."""
    frank = register_ok(server, unique_name("frank"), device_id="D1")
    server.stop()
    admin_cli_ok(server, "revoke", frank.localpart, "D1")
    server.start()
    assert whoami(server, frank.access_token).status_code == 401
    again = login_ok(server, frank.user_id, frank.password, device_id="D1")
    assert whoami(server, again.access_token).status_code == 200
    admin_cli_ok(server, "revoke", frank.localpart)
    assert dies_within(server, again.access_token, 1.0) is not None


def test_cli_registration_tokens(server_factory):
    server = server_factory(registration={"enabled": True, "requires_token": True})
    created = admin_cli_ok(server, "registration-token", "create", "--token", "ops-token",
                           "--uses", "1")
    assert created == {"token": "ops-token", "uses_allowed": 1, "pending": 0, "completed": 0,
                       "expiry_time": None}
    generated = admin_cli_ok(server, "registration-token", "create", "--expires", "7d")
    assert len(generated["token"]) == 16
    expected = time.time() * 1000 + 7 * 86_400_000
    assert abs(generated["expiry_time"] - expected) < 120_000
    assert generated["uses_allowed"] is None

    listed = admin_cli_ok(server, "registration-token", "list")["registration_tokens"]
    assert {"ops-token", generated["token"]} <= {t["token"] for t in listed}
    text = admin_cli(server, "registration-token", "list")
    assert "ops-token" in text.stdout and "uses_allowed=1" in text.stdout
    # The running server sees tokens the CLI created.
    assert server.get(VALIDITY, params={"token": "ops-token"}).json() == {"valid": True}

    assert admin_cli(server, "registration-token", "delete", "ops-token").returncode == 0
    assert server.get(VALIDITY, params={"token": "ops-token"}).json() == {"valid": False}
    listed = admin_cli_ok(server, "registration-token", "list")["registration_tokens"]
    assert "ops-token" not in {t["token"] for t in listed}
    assert admin_cli(server, "registration-token", "delete", "ops-token").returncode == 1
    # Bad arguments: usage errors.
    assert admin_cli(server, "registration-token", "create", "--expires", "soon").returncode == 2
    assert admin_cli(server, "registration-token", "create", "--uses", "-1").returncode == 2
    assert admin_cli(server, "registration-token", "create", "--token",
                     "bad token!").returncode == 1


def test_cli_security_events_show_login_and_revocation(server):
    gina = register_ok(server, unique_name("gina"))
    login_ok(server, gina.user_id, gina.password, device_id="TABLET")
    admin_cli_ok(server, "revoke", gina.localpart, "TABLET")
    events = admin_cli_ok(server, "security-events", gina.localpart)["events"]
    kinds = [e["kind"] for e in events]
    assert any(k.startswith("login") for k in kinds), kinds
    assert "sessions_revoked" in kinds, kinds
    revoked = next(e for e in events if e["kind"] == "sessions_revoked")
    assert revoked["device_id"] == "TABLET"
    assert "admin" in revoked["detail"]
    # Newest first; --limit caps the answer.
    assert [e["id"] for e in events] == sorted((e["id"] for e in events), reverse=True)
    assert len(admin_cli_ok(server, "security-events", gina.localpart, "--limit", "1")
               ["events"]) == 1
    text = admin_cli(server, "security-events", gina.user_id)
    assert "sessions_revoked" in text.stdout
    # Admin actions are recorded too.
    admin_cli_ok(server, "reset-password", gina.localpart, "--password", unique_password())
    admin_cli_ok(server, "deactivate", gina.localpart)
    kinds = [e["kind"] for e in admin_cli_ok(server, "security-events", gina.localpart)["events"]]
    assert "password_reset" in kinds and "deactivated" in kinds, kinds


def test_cli_usage_and_config_errors(server, tmp_path):
    assert h.run_cli("admin", "list-devices", "someone").returncode == 2  # no config
    assert h.run_cli("admin", "list-devices", "someone", "--config",
                     str(tmp_path / "missing.toml")).returncode == 2
    assert admin_cli(server, "no-such-command").returncode == 2
    assert admin_cli(server, "list-devices").returncode == 2
    assert admin_cli(server, "list-devices", "@someone:elsewhere.org").returncode == 2
    # MYELIN_CONFIG works instead of --config.
    name = unique_name("env")
    p = h.run_cli("admin", "create-user", name, "--password", unique_password(),
                  env={"MYELIN_CONFIG": str(server.config_path)})
    assert p.returncode == 0, p.stderr


# ------------------------------------------------------------------------------ HTTP


ADMIN_ROUTES = [
    ("GET", "/users/{u}"),
    ("PUT", "/users/{u}"),
    ("POST", "/users/{u}/reset_password"),
    ("POST", "/users/{u}/deactivate"),
    ("GET", "/users/{u}/devices"),
    ("POST", "/users/{u}/revoke"),
    ("GET", "/users/{u}/security_events"),
    ("GET", "/registration_tokens"),
    ("POST", "/registration_tokens"),
    ("DELETE", "/registration_tokens/sometoken"),
]


def test_http_admin_routes_refuse_non_admins(server):
    user = register_ok(server, unique_name("nobody"))
    victim = register_ok(server, unique_name("victim"))
    for method, path in ADMIN_ROUTES:
        url = admin_url(path.replace("{u}", quote(victim.user_id, safe="")))
        body = {"new_password": "x", "password": "x"} if method in ("PUT", "POST") else None
        r = server.request(method, url, json=body, headers=bearer(user.access_token))
        h.assert_matrix_error(r, 403, "M_FORBIDDEN")
        r = server.request(method, url, json=body)
        h.assert_matrix_error(r, 401, "M_MISSING_TOKEN")
    # Nothing happened to the victim.
    assert whoami(server, victim.access_token).status_code == 200
    login_ok(server, victim.user_id, victim.password)


def test_http_admin_user_operations(server):
    _, _, admin_token = make_admin(server)
    auth = bearer(admin_token)

    # PUT creates, GET reads (never the hash).
    name, password = unique_name("made"), unique_password()
    r = server.put(user_path(mxid(name)), json={"password": password, "admin": False},
                   headers=auth)
    assert r.status_code == 201, show(r)
    assert r.json()["user_id"] == mxid(name)
    r = server.put(user_path(mxid(name)), json={"password": password}, headers=auth)
    h.assert_matrix_error(r, 400, "M_USER_IN_USE")
    r = server.get(user_path(mxid(name)), headers=auth)
    assert r.status_code == 200
    info = r.json()
    assert info["admin"] is False and info["deactivated"] is False
    assert info["has_password"] is True
    assert password not in r.text and "argon2" not in r.text
    h.assert_matrix_error(server.get(user_path(mxid(unique_name("ghost"))), headers=auth), 404,
                          "M_NOT_FOUND")

    made = login_ok(server, mxid(name), password, device_id="ONE")
    login_ok(server, mxid(name), password, device_id="TWO")

    # Devices.
    r = server.get(user_path(made.user_id, "/devices"), headers=auth)
    assert r.status_code == 200, show(r)
    assert sorted(d["device_id"] for d in r.json()["devices"]) == ["ONE", "TWO"]

    # Revoke one device: its token dies at once (same process), the other lives.
    r = server.post(user_path(made.user_id, "/revoke"), json={"device_id": "ONE"}, headers=auth)
    assert r.status_code == 200, show(r)
    assert r.json() == {"sessions_revoked": 1}
    assert whoami(server, made.access_token).status_code == 401
    h.assert_matrix_error(
        server.post(user_path(made.user_id, "/revoke"), json={"device_id": "NOPE"}, headers=auth),
        404, "M_NOT_FOUND")

    # Reset the password: every session ends, the old password stops working.
    two = login_ok(server, made.user_id, password, device_id="TWO")
    new_password = unique_password()
    r = server.post(user_path(made.user_id, "/reset_password"),
                    json={"new_password": new_password}, headers=auth)
    assert r.status_code == 200, show(r)
    assert whoami(server, two.access_token).status_code == 401
    assert login(server, made.user_id, password).status_code == 403
    three = login_ok(server, made.user_id, new_password)

    # Security events, newest first, with the admin's actions in them.
    r = server.get(user_path(made.user_id, "/security_events"), headers=auth,
                   params={"limit": "100"})
    assert r.status_code == 200, show(r)
    kinds = [e["kind"] for e in r.json()["events"]]
    assert "password_reset" in kinds and "sessions_revoked" in kinds, kinds
    assert any(k.startswith("login") for k in kinds)
    h.assert_matrix_error(server.get(user_path(made.user_id, "/security_events"), headers=auth,
                                     params={"limit": "zero"}), 400, "M_INVALID_PARAM")

    # Deactivate: the token dies, login is refused for good.
    r = server.post(user_path(made.user_id, "/deactivate"), json={}, headers=auth)
    assert r.status_code == 200, show(r)
    assert whoami(server, three.access_token).status_code == 401
    h.assert_matrix_error(login(server, made.user_id, new_password), 403, "M_USER_DEACTIVATED")
    assert server.get(user_path(made.user_id), headers=auth).json()["deactivated"] is True


def test_http_admin_registration_tokens(server):
    _, _, admin_token = make_admin(server)
    auth = bearer(admin_token)
    r = server.post(admin_url("/registration_tokens"), json={"token": "http-token",
                                                               "uses_allowed": 3}, headers=auth)
    assert r.status_code == 200, show(r)
    assert r.json() == {"token": "http-token", "uses_allowed": 3, "pending": 0, "completed": 0,
                        "expiry_time": None}
    r = server.post(admin_url("/registration_tokens"), json={}, headers=auth)
    assert r.status_code == 200, show(r)
    generated = r.json()["token"]
    h.assert_matrix_error(server.post(admin_url("/registration_tokens"),
                                      json={"uses_allowed": "many"}, headers=auth),
                          400, "M_BAD_JSON")
    h.assert_matrix_error(server.post(admin_url("/registration_tokens"),
                                      json={"expiry_time": 1000}, headers=auth),
                          400, "M_INVALID_PARAM")
    r = server.get(admin_url("/registration_tokens"), headers=auth)
    assert r.status_code == 200
    assert {"http-token", generated} <= {t["token"] for t in r.json()["registration_tokens"]}
    # The CLI sees the same tokens.
    listed = admin_cli_ok(server, "registration-token", "list")["registration_tokens"]
    assert "http-token" in {t["token"] for t in listed}
    r = server.delete(admin_url("/registration_tokens/http-token"), headers=auth)
    assert r.status_code == 200, show(r)
    h.assert_matrix_error(server.delete(admin_url("/registration_tokens/http-token"),
                                        headers=auth), 404, "M_NOT_FOUND")


def test_http_admin_flag_is_checked_on_every_request(server):
    """A deactivated admin's new token cannot exist, and a demoted one is refused: the flag is
    read from storage, not from the token."""
    admin_id, admin_password, admin_token = make_admin(server)
    assert server.get(admin_url("/registration_tokens"),
                      headers=bearer(admin_token)).status_code == 200
    # A second admin deactivates the first: its token dies, and it cannot sign in again.
    _, _, other_token = make_admin(server)
    r = server.post(user_path(admin_id, "/deactivate"), json={}, headers=bearer(other_token))
    assert r.status_code == 200, show(r)
    h.assert_matrix_error(server.get(admin_url("/registration_tokens"),
                                     headers=bearer(admin_token)), 401, "M_UNKNOWN_TOKEN")
    assert login(server, admin_id, admin_password).status_code == 403


def test_logins_racing_a_deactivation_never_outlive_it(server_factory):
    """Logins that read the account before it was deactivated and hash while it happens must not
    leave a working session behind: the login's write looks at the account again."""
    from concurrent.futures import ThreadPoolExecutor
    # One hashing thread and a slow hash, so the logins are still queued when the admin acts.
    server = server_factory(passwords={"argon2_memory_kib": 32768, "argon2_iterations": 3,
                                       "hashing_threads": 1, "hashing_queue": 64})
    _, _, admin_token = make_admin(server)
    victim = register_ok(server, unique_name("racer"))
    with ThreadPoolExecutor(max_workers=24) as pool:
        # 24 logins queue behind each other in the hashing pool...
        logins = [pool.submit(login, server, victim.user_id, victim.password)
                  for _ in range(24)]
        time.sleep(0.05)
        # ...while the admin deactivates the account.
        r = server.post(user_path(victim.user_id, "/deactivate"), json={},
                        headers=bearer(admin_token))
        assert r.status_code == 200, show(r)
        answers = [f.result() for f in logins]
    statuses = sorted({a.status_code for a in answers})
    assert set(statuses) <= {200, 403}, statuses
    for a in answers:
        if a.status_code == 403:
            assert a.json()["errcode"] in ("M_USER_DEACTIVATED", "M_FORBIDDEN"), a.json()
        else:
            assert whoami(server, a.json()["access_token"]).status_code == 401, \
                "a login that raced the deactivation kept a working token"
    assert 403 in statuses, "no login overlapped the deactivation; the test proved nothing"
