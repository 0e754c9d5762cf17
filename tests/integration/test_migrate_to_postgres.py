"""Moving a server from SQLite to PostgreSQL (issue #5 §3): a server runs on SQLite and hands out
tokens, stops; `myelin admin migrate-sqlite-to-postgres` copies its database into an empty
PostgreSQL database; a server on PostgreSQL with the same key file then accepts the old tokens,
including the retry of a refresh whose successor was sealed on SQLite. Needs the PostgreSQL
cluster, so it runs in integration_postgres only."""

from __future__ import annotations

import json

import myelin_harness as h
from client_helpers import (login_ok, logout, refresh, refresh_ok, register_ok, show,
                            unique_name, whoami)

pytestmark = h.only_on_postgres("copies a SQLite server's database into PostgreSQL")

SQLITE = {"url": "sqlite:data/homeserver.db", "pool_size": None}


def migrate(sqlite_file, url: str, *extra: str):
    return h.run_cli("admin", "migrate-sqlite-to-postgres", "--from", str(sqlite_file), "--to",
                     url, *extra, timeout=120)


def test_tokens_minted_on_sqlite_work_on_postgres_after_the_copy(tmp_path):
    old = h.start_server(tmp_path, database=SQLITE)
    user = register_ok(old, unique_name("mig"))
    # A: a fresh pair, never refreshed.
    a = login_ok(old, user.localpart, user.password, refresh_token=True, device_id="DEVA")
    # B: refreshed once, the new pair not used yet: a retry of the old refresh token must get
    # the identical pair (from the sealed successor on the old token's row).
    b = login_ok(old, user.localpart, user.password, refresh_token=True, device_id="DEVB")
    b1 = refresh_ok(old, b.refresh_token)
    # C: logged out, so its token stays dead.
    c = login_ok(old, user.localpart, user.password, device_id="DEVC")
    assert logout(old, c.access_token).status_code == 200
    key_file = old.data_dir / "myelin.key"
    assert key_file.exists()
    old.stop()

    target = h.fresh_postgres_url()
    p = migrate(old.data_dir / "homeserver.db", target, "--json")
    assert p.returncode == 0, f"exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    report = json.loads(p.stdout)
    assert report["verified"] is True
    tables = {t["name"]: t for t in report["tables"]}
    assert tables["users"]["rows"] == 1
    assert tables["sessions"]["rows"] == 4  # registration, A, B, C (revoked)
    assert tables["refresh_tokens"]["rows"] == 3  # A's, B's and B's successor
    assert tables["schema_version"]["copied"] is False
    assert "key file" in report["key_file_reminder"]
    assert ":***@" in report["to"] and target.split("@")[0].split(":")[-1] not in p.stdout

    new = h.start_server(tmp_path, database={"url": target},
                         secrets={"key_file": str(key_file)})
    try:
        r = whoami(new, a.access_token)
        assert r.status_code == 200, f"A's access token after the copy: {show(r)}"
        assert r.json()["device_id"] == "DEVA"
        retry = refresh(new, b.refresh_token)
        assert retry.status_code == 200, f"retry of B's used refresh token: {show(retry)}"
        assert (retry.json()["access_token"], retry.json()["refresh_token"]) == (
            b1["access_token"], b1["refresh_token"]), "the retry must return the identical pair"
        assert whoami(new, b1["access_token"]).status_code == 200
        b2 = refresh_ok(new, b1["refresh_token"])
        assert whoami(new, b2["access_token"]).status_code == 200
        a1 = refresh_ok(new, a.refresh_token)
        assert whoami(new, a1["access_token"]).status_code == 200
        assert whoami(new, c.access_token).status_code == 401, "a logged-out token stays dead"

        # The target now has rows: a second copy is refused and changes nothing.
        again = migrate(old.data_dir / "homeserver.db", target)
        assert again.returncode == 1, f"{again.stdout}\n{again.stderr}"
        assert "not empty" in again.stderr, again.stderr
        assert whoami(new, a1["access_token"]).status_code == 200
    finally:
        new.stop()


def test_a_missing_file_and_a_bad_url_are_refused(tmp_path):
    target = h.fresh_postgres_url()
    p = migrate(tmp_path / "nothing.db", target)
    assert p.returncode == 1 and "no SQLite database file" in p.stderr, p.stderr
    p = migrate(tmp_path / "nothing.db", "sqlite:elsewhere.db")
    assert p.returncode == 2 and "--to" in p.stderr, p.stderr
