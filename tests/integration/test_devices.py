"""Black-box tests of device management (device_management.yaml; spec digest §13.5): GET /devices,
GET/PUT/DELETE /devices/{deviceId}, POST /delete_devices (UIA with m.login.password, one
transaction for thousands of devices), and last_seen_ts / last_seen_ip, which the server keeps
in memory per device and writes in batches ([devices] last_seen_flush) and on shutdown.

The 2,000-device bulk delete inserts most of its devices (and a session for each) straight into
the SQLite file while the server is stopped; a few real logins among them prove tokens die."""

from __future__ import annotations

import time

import pytest

import myelin_harness as h
from myelin_harness import assert_matches_spec, assert_matrix_error
from client_helpers import (PREFIXES, R0, V3, bearer, login_ok, register_guest, register_ok,
                            show, token_works, unique_name)

prefixes = pytest.mark.parametrize("prefix", PREFIXES, ids=["v3", "r0"])
PASSWORD_FLOWS = [{"stages": ["m.login.password"]}]
SPEC = "device_management.yaml"


# ------------------------------------------------------------------------------ helpers

def get_devices(server, token: str, prefix: str = V3) -> list[dict]:
    r = server.get(prefix + "/devices", headers=bearer(token))
    assert r.status_code == 200, show(r)
    return r.json()["devices"]


def device_ids(server, token: str) -> set[str]:
    return {d["device_id"] for d in get_devices(server, token)}


def password_auth(session: str | None, user: str, password: str) -> dict:
    auth = {"type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password}
    if session is not None:
        auth["session"] = session
    return auth


def uia_start(server, method: str, path: str, token: str, body: dict) -> dict:
    """Sends the request without auth; asserts the first UIA 401 and returns its body."""
    r = server.request(method, V3 + path, json=body, headers=bearer(token))
    assert r.status_code == 401, f"{method} {path} without auth: expected UIA 401, got {show(r)}"
    out = r.json()
    assert "errcode" not in out, out
    assert out.get("flows") == PASSWORD_FLOWS, out
    assert isinstance(out.get("session"), str) and out["session"], out
    return out


def uia_call(server, method: str, path: str, token: str, body: dict, user: str, password: str):
    """The full two-step UIA with m.login.password; returns the final response."""
    session = uia_start(server, method, path, token, body)["session"]
    return server.request(method, V3 + path, headers=bearer(token),
                          json={**body, "auth": password_auth(session, user, password)})


def wait_for_last_seen(server, token: str, device_id: str, timeout: float = 8.0) -> dict:
    deadline = time.time() + timeout
    while True:
        found = [d for d in get_devices(server, token) if d["device_id"] == device_id]
        assert found, f"{device_id} not listed"
        if "last_seen_ts" in found[0]:
            return found[0]
        assert time.time() < deadline, f"last_seen never appeared for {device_id}: {found[0]}"
        time.sleep(0.1)


# ------------------------------------------------------------------------------ list/get/put

@prefixes
def test_list_get_and_rename_devices(server, prefix):
    alice = register_ok(server, unique_name("alice"), device_id="PHONE")
    laptop = login_ok(server, alice.user_id, alice.password, device_id="LAPTOP",
                      extra={"initial_device_display_name": "Work laptop"})

    r = server.get(prefix + "/devices", headers=bearer(alice.access_token))
    assert r.status_code == 200, show(r)
    assert_matches_spec(r.json(), SPEC, V3 + "/devices", "get", 200)
    listed = {d["device_id"]: d for d in r.json()["devices"]}
    assert set(listed) == {"PHONE", "LAPTOP"}
    assert listed["LAPTOP"]["display_name"] == "Work laptop"
    assert "display_name" not in listed["PHONE"], "a name never set is absent, not null"

    r = server.get(prefix + "/devices/LAPTOP", headers=bearer(alice.access_token))
    assert r.status_code == 200, show(r)
    assert_matches_spec(r.json(), SPEC, V3 + "/devices/LAPTOP", "get", 200)
    assert r.json()["device_id"] == "LAPTOP"
    assert r.json()["display_name"] == "Work laptop"

    r = server.put(prefix + "/devices/PHONE", headers=bearer(laptop.access_token),
                   json={"display_name": "Pocket"})
    assert r.status_code == 200, show(r)
    assert r.json() == {}
    r = server.get(prefix + "/devices/PHONE", headers=bearer(alice.access_token))
    assert r.json()["display_name"] == "Pocket"

    # Over 100 characters: refused, and the name stays.
    r = server.put(prefix + "/devices/PHONE", headers=bearer(alice.access_token),
                   json={"display_name": "\u00e9" * 101})
    assert r.status_code == 400, show(r)
    assert r.json()["errcode"] == "M_TOO_LARGE", show(r)
    r = server.put(prefix + "/devices/PHONE", headers=bearer(alice.access_token),
                   json={"display_name": "\u00e9" * 100})
    assert r.status_code == 200, show(r)
    r = server.put(prefix + "/devices/PHONE", headers=bearer(alice.access_token),
                   json={"display_name": "Pocket"})
    assert r.status_code == 200, show(r)

    # Absent display_name: unchanged.
    r = server.put(prefix + "/devices/PHONE", headers=bearer(alice.access_token), json={})
    assert r.status_code == 200, show(r)
    assert server.get(prefix + "/devices/PHONE",
                      headers=bearer(alice.access_token)).json()["display_name"] == "Pocket"


def test_device_ids_with_reserved_characters_round_trip(server):
    alice = register_ok(server, unique_name("alice"), device_id="a b%c:d")
    r = server.get(V3 + "/devices/a%20b%25c%3Ad", headers=bearer(alice.access_token))
    assert r.status_code == 200, show(r)
    assert r.json()["device_id"] == "a b%c:d"


def test_unknown_devices_are_404_and_put_does_not_create(server):
    alice = register_ok(server, unique_name("alice"), device_id="PHONE")
    bob = register_ok(server, unique_name("bob"), device_id="BOBPHONE")
    for path in ("/devices/NOPE", "/devices/BOBPHONE"):  # another user's device is not ours
        r = server.get(V3 + path, headers=bearer(alice.access_token))
        assert_matrix_error(r, 404, "M_NOT_FOUND")
        r = server.put(V3 + path, headers=bearer(alice.access_token),
                       json={"display_name": "mine now"})
        assert_matrix_error(r, 404, "M_NOT_FOUND")
    r = server.put(V3 + "/devices/NOPE", headers=bearer(alice.access_token), json={})
    assert_matrix_error(r, 404, "M_NOT_FOUND")
    assert device_ids(server, alice.access_token) == {"PHONE"}
    bob_device = server.get(V3 + "/devices/BOBPHONE", headers=bearer(bob.access_token)).json()
    assert "display_name" not in bob_device, bob_device


def test_device_endpoints_need_a_token_and_a_well_formed_body(server):
    alice = register_ok(server, unique_name("alice"), device_id="PHONE")
    assert_matrix_error(server.get(V3 + "/devices"), 401, "M_MISSING_TOKEN")
    r = server.put(V3 + "/devices/PHONE", headers=bearer(alice.access_token),
                   json={"display_name": 7})
    assert_matrix_error(r, 400, "M_BAD_JSON")
    r = server.put(V3 + "/devices/PHONE", headers=bearer(alice.access_token), data="nope")
    assert_matrix_error(r, 400, "M_NOT_JSON")


# ------------------------------------------------------------------------------ DELETE

def test_delete_device_needs_uia_and_kills_only_that_devices_tokens(server):
    alice = register_ok(server, unique_name("alice"), device_id="PHONE")
    laptop = login_ok(server, alice.user_id, alice.password, device_id="LAPTOP")
    # Two sign-ins on one device: both tokens belong to it.
    tablet = login_ok(server, alice.user_id, alice.password, device_id="TABLET",
                      refresh_token=True)

    # No auth: the UIA 401 (validated against the spec), and nothing happens.
    r = server.delete(V3 + "/devices/LAPTOP", headers=bearer(alice.access_token), json={})
    assert r.status_code == 401, show(r)
    assert_matches_spec(r.json(), SPEC, V3 + "/devices/LAPTOP", "delete", 401)
    session = uia_start(server, "DELETE", "/devices/LAPTOP", alice.access_token, {})["session"]
    assert token_works(server, laptop.access_token)

    # Wrong password: 401 with the flows again plus M_FORBIDDEN; still nothing happens.
    r = server.delete(V3 + "/devices/LAPTOP", headers=bearer(alice.access_token),
                      json={"auth": password_auth(session, alice.user_id, "wrong-password")})
    assert r.status_code == 401, show(r)
    assert r.json().get("errcode") == "M_FORBIDDEN", r.json()
    assert r.json().get("flows") == PASSWORD_FLOWS, r.json()
    assert token_works(server, laptop.access_token)
    assert "LAPTOP" in device_ids(server, alice.access_token)

    # The right password in the same session: deleted.
    r = server.delete(V3 + "/devices/LAPTOP", headers=bearer(alice.access_token),
                      json={"auth": password_auth(session, alice.user_id, alice.password)})
    assert r.status_code == 200, show(r)
    assert r.json() == {}
    assert not token_works(server, laptop.access_token)
    assert token_works(server, alice.access_token)
    assert token_works(server, tablet.access_token)
    assert device_ids(server, alice.access_token) == {"PHONE", "TABLET"}
    r = server.get(V3 + "/devices/LAPTOP", headers=bearer(alice.access_token))
    assert_matrix_error(r, 404, "M_NOT_FOUND")

    # A refresh token of a deleted device is dead too.
    r = uia_call(server, "DELETE", "/devices/TABLET", alice.access_token, {}, alice.user_id,
                 alice.password)
    assert r.status_code == 200, show(r)
    r = server.post(V3 + "/refresh", json={"refresh_token": tablet.refresh_token})
    assert_matrix_error(r, 401, "M_UNKNOWN_TOKEN")
    assert not token_works(server, tablet.access_token)

    # Already gone: still UIA, then 200.
    r = uia_call(server, "DELETE", "/devices/LAPTOP", alice.access_token, {}, alice.user_id,
                 alice.password)
    assert r.status_code == 200, show(r)
    assert r.json() == {}

    # The security log names the deletion.
    kinds = [row[0] for row in h.db_query(
        server,
        "SELECT device_id FROM security_events WHERE user_id = ? AND kind = 'device_deleted'",
        (alice.user_id,))]
    assert sorted(kinds) == ["LAPTOP", "TABLET"]


def test_deleting_own_current_device_logs_it_out(server):
    alice = register_ok(server, unique_name("alice"), device_id="PHONE")
    r = uia_call(server, "DELETE", "/devices/PHONE", alice.access_token, {}, alice.user_id,
                 alice.password)
    assert r.status_code == 200, show(r)
    assert not token_works(server, alice.access_token)


def test_delete_uia_session_is_bound_to_the_device(server):
    alice = register_ok(server, unique_name("alice"), device_id="PHONE")
    login_ok(server, alice.user_id, alice.password, device_id="A")
    b = login_ok(server, alice.user_id, alice.password, device_id="B")
    session = uia_start(server, "DELETE", "/devices/A", alice.access_token, {})["session"]
    # Replaying the session meant for A against B must not delete B.
    r = server.delete(V3 + "/devices/B", headers=bearer(alice.access_token),
                      json={"auth": password_auth(session, alice.user_id, alice.password)})
    assert_matrix_error(r, 403, "M_FORBIDDEN")
    assert token_works(server, b.access_token)
    assert {"A", "B"} <= device_ids(server, alice.access_token)


def test_another_users_password_does_not_delete(server):
    alice = register_ok(server, unique_name("alice"), device_id="PHONE")
    laptop = login_ok(server, alice.user_id, alice.password, device_id="LAPTOP")
    mallory = register_ok(server, unique_name("mallory"))
    session = uia_start(server, "DELETE", "/devices/LAPTOP", alice.access_token, {})["session"]
    r = server.delete(V3 + "/devices/LAPTOP", headers=bearer(alice.access_token),
                      json={"auth": password_auth(session, mallory.user_id, mallory.password)})
    assert r.status_code in (401, 403), show(r)
    assert r.json().get("errcode") == "M_FORBIDDEN", r.json()
    assert token_works(server, laptop.access_token)


def test_guests_cannot_delete_devices(server):
    r = register_guest(server)
    assert r.status_code == 200, show(r)
    guest = r.json()
    token = guest["access_token"]
    assert get_devices(server, token)[0]["device_id"] == guest["device_id"]
    r = server.delete(V3 + "/devices/" + guest["device_id"], headers=bearer(token), json={})
    assert_matrix_error(r, 403, "M_GUEST_ACCESS_FORBIDDEN")
    r = server.post(V3 + "/delete_devices", headers=bearer(token),
                    json={"devices": [guest["device_id"]]})
    assert_matrix_error(r, 403, "M_GUEST_ACCESS_FORBIDDEN")
    assert token_works(server, token)


# ------------------------------------------------------------------------- POST /delete_devices

def test_delete_devices_checks_the_body_before_uia(server):
    alice = register_ok(server, unique_name("alice"))
    h = bearer(alice.access_token)
    assert_matrix_error(server.post(V3 + "/delete_devices", headers=h, json={}), 400,
                        "M_MISSING_PARAM")
    assert_matrix_error(server.post(V3 + "/delete_devices", headers=h, json={"devices": "A"}),
                        400, "M_BAD_JSON")
    assert_matrix_error(server.post(V3 + "/delete_devices", headers=h,
                                    json={"devices": ["A", 1]}), 400, "M_BAD_JSON")
    assert_matrix_error(server.post(V3 + "/delete_devices", headers=h, data="{"), 400,
                        "M_NOT_JSON")


@prefixes
def test_delete_devices_needs_uia_and_deletes_the_listed_devices(server, prefix):
    alice = register_ok(server, unique_name("alice"), device_id="KEEP")
    a = login_ok(server, alice.user_id, alice.password, device_id="A")
    b = login_ok(server, alice.user_id, alice.password, device_id="B")
    body = {"devices": ["A", "B", "NEVER_EXISTED"]}
    r = server.post(prefix + "/delete_devices", headers=bearer(alice.access_token), json=body)
    assert r.status_code == 401, show(r)
    assert_matches_spec(r.json(), SPEC, V3 + "/delete_devices", "post", 401)
    session = r.json()["session"]
    r = server.post(prefix + "/delete_devices", headers=bearer(alice.access_token),
                    json={**body, "auth": password_auth(session, alice.user_id, "nope")})
    assert r.status_code == 401 and r.json().get("errcode") == "M_FORBIDDEN", show(r)
    assert token_works(server, a.access_token)
    r = server.post(prefix + "/delete_devices", headers=bearer(alice.access_token),
                    json={**body, "auth": password_auth(session, alice.user_id, alice.password)})
    assert r.status_code == 200, show(r)
    assert r.json() == {}
    assert not token_works(server, a.access_token)
    assert not token_works(server, b.access_token)
    assert token_works(server, alice.access_token)
    assert device_ids(server, alice.access_token) == {"KEEP"}


def test_bulk_delete_of_2000_devices_in_one_call(server):
    alice = register_ok(server, unique_name("alice"), device_id="KEEP")
    real = [login_ok(server, alice.user_id, alice.password, device_id=f"REAL{i}")
            for i in range(3)]
    bob = register_ok(server, unique_name("bob"), device_id="BULK00001")  # same id, other user

    # Most devices (each with a live session) go straight into the database while it is stopped.
    server.stop()
    now = int(time.time() * 1000)
    bulk = [f"BULK{i:05d}" for i in range(1997)]
    h.db_execute(server, "INSERT INTO devices (user_id, device_id, display_name, created_ts) "
                 "VALUES (?, ?, ?, ?)", [(alice.user_id, d, f"device {d}", now) for d in bulk])
    h.db_execute(server, "INSERT INTO sessions (user_id, device_id, created_ts) VALUES (?, ?, ?)",
                 [(alice.user_id, d, now) for d in bulk])
    server.start()

    victims = bulk + [s.device_id for s in real]
    assert len(victims) == 2000
    assert len(get_devices(server, alice.access_token)) == 2001
    body = {"devices": victims + ["GONE_ALREADY"]}
    session = uia_start(server, "POST", "/delete_devices", alice.access_token, body)["session"]
    started = time.monotonic()
    r = server.post(V3 + "/delete_devices", headers=bearer(alice.access_token),
                    json={**body, "auth": password_auth(session, alice.user_id, alice.password)})
    elapsed = time.monotonic() - started
    assert r.status_code == 200, show(r)
    assert elapsed < 10, f"bulk delete of 2,000 devices took {elapsed:.1f}s"

    assert device_ids(server, alice.access_token) == {"KEEP"}
    for s in real:
        assert not token_works(server, s.access_token)
    assert token_works(server, alice.access_token)
    assert token_works(server, bob.access_token), "another user's same device id is untouched"
    assert device_ids(server, bob.access_token) == {"BULK00001"}

    live = h.db_query(server, "SELECT count(*) FROM sessions WHERE user_id = ? AND revoked_ts = 0",
                      (alice.user_id,))[0][0]
    events = h.db_query(server, "SELECT count(*) FROM security_events WHERE user_id = ? AND "
                        "kind = 'device_deleted'", (alice.user_id,))[0][0]
    assert live == 1, "only the KEEP session is left"
    assert events == 2000


# ------------------------------------------------------------------------------ last seen

def test_last_seen_appears_per_device_after_the_batch_write(server_factory):
    server = server_factory(devices={"last_seen_flush": "200ms"})
    alice = register_ok(server, unique_name("alice"), device_id="PHONE")
    laptop = login_ok(server, alice.user_id, alice.password, device_id="LAPTOP")
    before = int(time.time() * 1000)

    # GET /devices is itself an authenticated request of PHONE.
    phone = wait_for_last_seen(server, alice.access_token, "PHONE")
    assert phone["last_seen_ip"] == "127.0.0.1"
    assert before - 1000 <= phone["last_seen_ts"] <= int(time.time() * 1000) + 1000
    r = server.get(V3 + "/devices", headers=bearer(alice.access_token))
    assert_matches_spec(r.json(), SPEC, V3 + "/devices", "get", 200)
    # LAPTOP signed in but never made an authenticated request: not seen yet.
    listed = {d["device_id"]: d for d in r.json()["devices"]}
    assert "last_seen_ts" not in listed["LAPTOP"] and "last_seen_ip" not in listed["LAPTOP"]

    assert token_works(server, laptop.access_token)
    seen = wait_for_last_seen(server, alice.access_token, "LAPTOP")
    assert seen["last_seen_ip"] == "127.0.0.1"

    # It moves forward with later use (once the tracker's resolution, min(flush interval, 1 s)
    # = 200 ms here, has passed: sightings of a session closer together than that coalesce).
    first = seen["last_seen_ts"]
    time.sleep(0.25)
    assert token_works(server, laptop.access_token)
    deadline = time.time() + 8
    while True:
        d = server.get(V3 + "/devices/LAPTOP", headers=bearer(alice.access_token)).json()
        if d["last_seen_ts"] > first:
            break
        assert time.time() < deadline, d
        time.sleep(0.1)


def test_last_seen_is_written_at_shutdown(server_factory):
    # The interval is far away: only the final flush on SIGTERM can write it.
    server = server_factory(devices={"last_seen_flush": "1h"})
    alice = register_ok(server, unique_name("alice"), device_id="PHONE")
    laptop = login_ok(server, alice.user_id, alice.password, device_id="LAPTOP")
    assert token_works(server, laptop.access_token)
    time.sleep(0.3)
    listed = {d["device_id"]: d for d in get_devices(server, alice.access_token)}
    assert "last_seen_ts" not in listed["LAPTOP"], "written before the interval: not batched"
    server.restart()
    listed = {d["device_id"]: d for d in get_devices(server, alice.access_token)}
    assert "last_seen_ts" in listed["LAPTOP"], listed
    assert listed["LAPTOP"]["last_seen_ip"] == "127.0.0.1"


def test_last_seen_ip_honours_x_forwarded_for_only_from_trusted_proxies(server_factory):
    trusting = server_factory(devices={"last_seen_flush": "200ms"},
                              rate_limits={"trusted_proxies": ["127.0.0.1"]})
    alice = register_ok(trusting, unique_name("alice"), device_id="PHONE")
    r = trusting.get(V3 + "/account/whoami",
                     headers={**bearer(alice.access_token), "X-Forwarded-For": "203.0.113.9"})
    assert r.status_code == 200, show(r)
    deadline = time.time() + 8
    while True:
        r = trusting.get(V3 + "/devices/PHONE", headers={**bearer(alice.access_token),
                                                         "X-Forwarded-For": "203.0.113.9"})
        if r.json().get("last_seen_ip"):
            break
        assert time.time() < deadline, r.json()
        time.sleep(0.1)
    assert r.json()["last_seen_ip"] == "203.0.113.9"

    untrusting = server_factory(devices={"last_seen_flush": "200ms"},
                                rate_limits={"trusted_proxies": []})
    bob = register_ok(untrusting, unique_name("bob"), device_id="PHONE")
    h = {**bearer(bob.access_token), "X-Forwarded-For": "203.0.113.9"}
    assert untrusting.get(R0 + "/account/whoami", headers=h).status_code == 200
    deadline = time.time() + 8
    while True:
        d = untrusting.get(V3 + "/devices/PHONE", headers=h).json()
        if d.get("last_seen_ip"):
            break
        assert time.time() < deadline, d
        time.sleep(0.1)
    assert d["last_seen_ip"] == "127.0.0.1", "X-Forwarded-For from an untrusted peer is ignored"

