"""Housekeeping ([housekeeping]): a background pass every `interval` deletes revocation log
entries older than `revocation_log_retention` and security events older than
`security_event_retention`, counts them in myelin_housekeeping_deleted_rows_total{table}, and keeps
everything younger. Checked through the admin CLI, the metrics listener and the database (either
backend)."""

from __future__ import annotations

import time

import requests

import myelin_harness as h
from client_helpers import register_ok, unique_name
from test_admin import admin_cli_ok


def deleted_rows(metrics_port: int, table: str) -> int:
    text = requests.get(f"http://{h.LOCAL}:{metrics_port}/metrics", timeout=5).text
    prefix = f'myelin_housekeeping_deleted_rows_total{{table="{table}"}} '
    lines = [line for line in text.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, text
    return int(lines[0][len(prefix):])


def wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_old_security_events_and_revocation_log_entries_are_deleted(server_factory):
    metrics_port = h.free_port()
    server = server_factory({
        "metrics": {"enabled": True, "port": metrics_port},
        "housekeeping": {"interval": "1s", "revocation_log_retention": "1m",
                         "security_event_retention": "4s"},
    })
    # Present at zero before anything was deleted.
    assert deleted_rows(metrics_port, "security_events") == 0
    assert deleted_rows(metrics_port, "revocation_log") == 0

    old = register_ok(server, unique_name("old"))
    assert admin_cli_ok(server, "security-events", old.localpart)["events"], "no event logged"
    # A revocation log entry two hours old (as a CLI revocation long ago would have left it)
    # next to a fresh one: only the old one may go.
    now_ms = int(time.time() * 1000)
    h.db_execute(server, "INSERT INTO revocation_log (session_id, reason, ts) VALUES (?, 4, ?)",
                 [(987654321, now_ms - 2 * 3600 * 1000), (987654322, now_ms)])

    def log_sessions() -> list[int]:
        return [row[0] for row in h.db_query(
            server,
            "SELECT session_id FROM revocation_log WHERE session_id >= 987654321 ORDER BY id")]

    assert wait_until(lambda: log_sessions() == [987654322]), log_sessions()
    assert deleted_rows(metrics_port, "revocation_log") >= 1

    # The user's events outlive the 4 s retention and vanish; a newer user's events stay.
    time.sleep(3)
    fresh = register_ok(server, unique_name("fresh"))
    assert wait_until(
        lambda: not admin_cli_ok(server, "security-events", old.localpart)["events"]), \
        server.log_tail()
    assert admin_cli_ok(server, "security-events", fresh.localpart)["events"]
    assert deleted_rows(metrics_port, "security_events") >= 1
    server.wait_for_log(r"housekeeping: deleted \d+ revocation log entries and \d+ security events")


def test_zero_security_event_retention_keeps_events(server_factory):
    server = server_factory({
        "housekeeping": {"interval": "1s", "security_event_retention": "0"},
    })
    user = register_ok(server, unique_name("kept"))
    before = admin_cli_ok(server, "security-events", user.localpart)["events"]
    assert before
    # Several passes run meanwhile (the first at start, then one per second).
    time.sleep(2.5)
    assert admin_cli_ok(server, "security-events", user.localpart)["events"] == before
