"""User-Interactive Authentication across server instances: two myelin processes on one database
(the same PostgreSQL database, or the same SQLite file) with the same key file, as behind a
round-robin load balancer. The requests of one UIA flow reach different instances: the session
lives in the database, a completed session is used up on every instance, and a password UIA
(DELETE /devices/{id}) works the same way."""

from __future__ import annotations

import concurrent.futures
import time

import myelin_harness as h
from client_helpers import (V3, bearer, login_ok, register, register_ok, show, unique_name,
                            unique_password)
from test_devices import device_ids, password_auth, uia_start


def two_instances(server_factory, tmp_path, **overrides):
    """Instance A on a fresh database and instance B on the same one, sharing one key file."""
    key_file = str(tmp_path / "shared-myelin.key")
    a = server_factory({"secrets": {"key_file": key_file}, **overrides})
    url = a.config["database"]["url"]
    if h.backend() == "sqlite":
        url = "sqlite:" + str(a.data_dir / "homeserver.db")
    b = server_factory({"secrets": {"key_file": key_file}, "database": {"url": url},
                        **overrides})
    return a, b


def test_registration_started_on_one_instance_completes_on_the_other(server_factory, tmp_path):
    a, b = two_instances(server_factory, tmp_path)
    name = unique_name("lb")
    body = {"username": name, "password": unique_password()}

    r = register(a, body)
    assert r.status_code == 401, show(r)
    session = r.json()["session"]
    assert r.json()["flows"] == [{"stages": ["m.login.dummy"]}], r.json()

    r = register(b, {**body, "auth": {"type": "m.login.dummy", "session": session}})
    assert r.status_code == 200, show(r)
    assert r.json()["user_id"] == f"@{name}:localhost"
    token = r.json()["access_token"]
    # The account and its token are the same on both instances.
    for server in (a, b):
        who = server.get(V3 + "/account/whoami", headers=bearer(token))
        assert who.status_code == 200, show(who)

    # The completed session is used up on either instance.
    for server in (a, b):
        again = register(server, {"username": unique_name("lb"), "password": unique_password(),
                                  "auth": {"type": "m.login.dummy", "session": session}})
        h.assert_matrix_error(again, 400, "M_UNKNOWN")
    # And it was never known as anything but this one row.
    rows = h.db_query(a, "SELECT endpoint, finished FROM uia_sessions WHERE session_id = ?",
                      [session])
    assert len(rows) == 1 and rows[0][0] == "POST /register" and rows[0][1] in (1, True), rows


def test_password_uia_for_device_deletion_spans_instances(server_factory, tmp_path):
    a, b = two_instances(server_factory, tmp_path)
    alice = register_ok(a, unique_name("alice"), device_id="PHONE")
    laptop = login_ok(b, alice.user_id, alice.password, device_id="LAPTOP")
    path = "/devices/LAPTOP"

    session = uia_start(a, "DELETE", path, alice.access_token, {})["session"]
    # A wrong password on B: the same session again, with M_FORBIDDEN; nothing deleted.
    r = b.delete(V3 + path, headers=bearer(alice.access_token),
                 json={"auth": password_auth(session, alice.user_id, "wrong-password")})
    assert r.status_code == 401, show(r)
    assert r.json().get("errcode") == "M_FORBIDDEN", r.json()
    assert r.json().get("session") == session, r.json()
    # The session is bound to its device on every instance.
    r = b.delete(V3 + "/devices/PHONE", headers=bearer(alice.access_token),
                 json={"auth": password_auth(session, alice.user_id, alice.password)})
    h.assert_matrix_error(r, 403, "M_FORBIDDEN")
    # The right password, back on A.
    r = a.delete(V3 + path, headers=bearer(alice.access_token),
                 json={"auth": password_auth(session, alice.user_id, alice.password)})
    assert r.status_code == 200, show(r)
    assert device_ids(b, alice.access_token) == {"PHONE"}
    # B signed the laptop in and caches its token; it learns of the deletion from the
    # revocation log it follows (every 200 ms).
    deadline = time.monotonic() + 5
    while b.get(V3 + "/account/whoami", headers=bearer(laptop.access_token)).status_code == 200:
        assert time.monotonic() < deadline, "B still accepts the deleted device's token"
        time.sleep(0.1)
    h.assert_matrix_error(b.get(V3 + "/account/whoami", headers=bearer(laptop.access_token)),
                          401, "M_UNKNOWN_TOKEN")

    # Replaying the used-up session fails on both instances.
    for server in (a, b):
        r = server.delete(V3 + path, headers=bearer(alice.access_token),
                          json={"auth": password_auth(session, alice.user_id, alice.password)})
        h.assert_matrix_error(r, 400, "M_UNKNOWN")


def test_a_completed_session_authorizes_one_request_of_many_racing_ones(server_factory, tmp_path):
    a, b = two_instances(server_factory, tmp_path)
    # The same last stage sent to both instances at once, four times over: exactly one
    # registration per session gets through.
    for _ in range(5):
        r = register(a, {"password": unique_password()})
        assert r.status_code == 401, show(r)
        session = r.json()["session"]
        bodies = [{"username": unique_name("race"), "password": unique_password(),
                   "auth": {"type": "m.login.dummy", "session": session}} for _ in range(4)]
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(lambda i: register((a, b)[i % 2], bodies[i]), range(4)))
        statuses = sorted(r.status_code for r in results)
        assert statuses == [200, 400, 400, 400], [show(r) for r in results]
        for r in results:
            if r.status_code == 400:
                h.assert_matrix_error(r, 400, "M_UNKNOWN")
