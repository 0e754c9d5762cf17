"""Secrets at rest: after a realistic auth flow, no access token, refresh token or password
appears (as raw bytes, or hex-encoded as PostgreSQL dumps bytea) in any file of the data directory,
in the PostgreSQL database when that is the backend (through pg_dump), or in the server's log
output."""

import subprocess
from pathlib import Path

import pytest

import myelin_harness as h
from client_helpers import (R0, bearer, forge_token, legacy_refresh, login, login_ok, logout,
                            refresh, refresh_ok, register_guest, register_ok, show, unique_name,
                            unique_password, whoami)


class Secrets:
    def __init__(self):
        self.items: dict[str, str] = {}  # secret -> description

    def add(self, what: str, value):
        if value:
            self.items.setdefault(value, what)

    def add_pair(self, what: str, body: dict):
        self.add(f"{what} access_token", body.get("access_token"))
        self.add(f"{what} refresh_token", body.get("refresh_token"))


def is_key_file(path: Path) -> bool:
    return path.suffix == ".key"


# The name under which a dump of the server's PostgreSQL database joins the data files.
PG_DUMP = "pg_dump of the database"


def read_data_files(hs: h.MyelinServer) -> dict[str, bytes]:
    data_dir = hs.data_dir
    out = {}
    if h.backend() == "postgres":
        dump = subprocess.run(["pg_dump", "--no-owner", hs.config["database"]["url"]],
                              capture_output=True, timeout=120)
        assert dump.returncode == 0, dump.stderr.decode(errors="replace")
        out[PG_DUMP] = dump.stdout
    for p in sorted(data_dir.rglob("*")):
        if p.is_file() and not is_key_file(p):
            try:
                out[str(p.relative_to(data_dir))] = p.read_bytes()
            except FileNotFoundError:  # a -journal or -shm file that went away meanwhile
                pass
    return out


def find_secrets(files: dict[str, bytes], secrets: Secrets) -> list[str]:
    found = []
    for name, data in files.items():
        for secret, what in secrets.items.items():
            raw = secret.encode("utf-8")
            if raw in data or raw.hex().encode() in data:
                found.append(f"{what} ({secret[:12]}...) in {name}")
    return found


@pytest.fixture(scope="module")
def flow(tmp_path_factory, myelin_binary):
    """Runs the flow on its own server; returns (server, secrets, files while running,
    files after stop, a localpart that must be in the database)."""
    hs = h.start_server(tmp_path_factory.mktemp("secrets"), scope="module",
                        logging={"level": "debug", "access_log": True})
    secrets = Secrets()
    try:
        alice_pw, bob_pw = unique_password(), unique_password()
        wrong_pw, ghost_pw = unique_password(), unique_password()
        for what, pw in (("alice's password", alice_pw), ("bob's password", bob_pw),
                         ("a wrong password", wrong_pw), ("an unknown user's password", ghost_pw)):
            secrets.add(what, pw)

        alice = register_ok(hs, unique_name("alice"), alice_pw, refresh_token=True)
        secrets.add_pair("alice register", alice.body)
        bob = register_ok(hs, unique_name("bob"), bob_pw, two_step=True)
        secrets.add_pair("bob register", bob.body)
        guest = register_guest(hs, {})
        assert guest.status_code == 200, show(guest)
        secrets.add_pair("guest register", guest.json())

        login1 = login_ok(hs, alice.localpart, alice_pw, refresh_token=True)
        secrets.add_pair("alice login", login1.body)
        login2 = login_ok(hs, alice.user_id, alice_pw, prefix=R0)
        secrets.add_pair("alice login 2", login2.body)
        assert login(hs, alice.localpart, wrong_pw).status_code == 403
        assert login(hs, unique_name("ghost"), ghost_pw).status_code == 403

        # Tokens in the query string end up in request lines: they must be redacted.
        for s in (alice, login1, login2, bob):
            assert whoami(hs, s.access_token, via="query").status_code == 200
            assert whoami(hs, s.access_token).status_code == 200

        p1 = refresh_ok(hs, login1.refresh_token)
        secrets.add_pair("refresh 1", p1)
        p1_retry = refresh_ok(hs, login1.refresh_token)
        assert p1_retry["access_token"] == p1["access_token"]
        assert whoami(hs, p1["access_token"]).status_code == 200
        p2 = refresh_ok(hs, p1["refresh_token"], headers=bearer(login1.access_token))
        secrets.add_pair("refresh 2", p2)
        r = legacy_refresh(hs, p2["refresh_token"])
        assert r.status_code == 200, show(r)
        p3 = r.json()
        secrets.add_pair("legacy refresh", p3)
        p4 = refresh_ok(hs, alice.refresh_token)
        secrets.add_pair("refresh of the register token", p4)

        assert logout(hs, p3["access_token"]).status_code == 200
        assert logout(hs, bob.access_token, all_devices=True).status_code == 200
        assert logout(hs, login2.access_token, prefix=R0).status_code == 200

        # Failures that carry real tokens: a rotated-out refresh token, logged-out tokens.
        assert refresh(hs, login1.refresh_token).status_code == 401
        assert whoami(hs, bob.access_token, via="query").status_code == 401
        assert whoami(hs, forge_token("myat_"), via="query").status_code == 401

        running = read_data_files(hs)
        hs.stop(expect_exit=0)
        stopped = read_data_files(hs)
    finally:
        hs.kill()
    return hs, secrets, running, stopped, alice.localpart


def test_flow_collected_secrets(flow):
    _hs, secrets, _running, stopped, localpart = flow
    assert len(secrets.items) >= 19, sorted(secrets.items.values())
    database = PG_DUMP if h.backend() == "postgres" else "homeserver.db"
    assert any(name.startswith(database) for name in stopped), \
        f"no database files in the data dir: {sorted(stopped)}"
    # The scan must be able to see plain strings: the user ID is stored in the clear.
    assert any(localpart.encode() in data for data in stopped.values()), \
        f"the localpart {localpart!r} is in no data file: is the scan looking in the right place?"


def test_no_secret_in_data_files_after_stop(flow):
    _hs, secrets, _running, stopped, _ = flow
    found = find_secrets(stopped, secrets)
    assert not found, "secrets stored in the clear:\n" + "\n".join(found)


def test_no_secret_in_data_files_while_running(flow):
    _hs, secrets, running, _stopped, _ = flow
    found = find_secrets(running, secrets)
    assert not found, "secrets in the clear (database files of the running server, WAL " \
                      "included):\n" + "\n".join(found)


def test_no_secret_in_server_logs(flow):
    hs, secrets, _running, _stopped, _ = flow
    logs = {"stderr log": hs.log_text().encode(), "stdout": hs.stdout_text().encode()}
    assert "whoami" in hs.log_text(), "the access log should list the requests"
    found = find_secrets(logs, secrets)
    assert not found, "secrets in the server's log output:\n" + "\n".join(found)
