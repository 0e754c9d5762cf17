"""A real client against the server: two users on matrix-js-sdk 37.5.0 (tests/clients/js).

tests/clients/js/scenario.mjs runs the whole scenario once per module with the SDK's own API
(register through the UIA dummy stage, login with refresh_token, startClient with long-polling
/sync, createRoom, invite, join, messages both ways, typing, read receipts) against a server whose
access tokens live 4 s, so that they expire in the middle and the SDK refreshes them itself
(tokenRefreshFunction) and retries. It writes one JSON line per step and per HTTP exchange (the
SDK's fetch, wrapped); the tests below assert each step and validate every response body against
the spec's schemas. Crypto is off.

Needs node >= 20 and npm at /usr/bin (scripts/install-deps.sh; CI installs them): their absence
is a failure, never a skip. `npm ci` runs in tests/clients/js when node_modules is missing or
holds another matrix-js-sdk (offline from npm's cache when it can).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import myelin_harness as h
from spec_traffic import check_exchanges

JS_DIR = h.REPO_ROOT / "tests" / "clients" / "js"
SDK_VERSION = "37.5.0"
TOKEN_LIFETIME_MS = 4000
SCENARIO_TIMEOUT = 180  # seconds for the whole node run (it takes about 10 s)
NPM_TIMEOUT = 600


def _tool(name: str) -> str:
    path = Path("/usr/bin") / name
    found = str(path) if path.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found (expected at /usr/bin/{name}): the matrix-js-sdk tests "
                    f"need Node.js >= 20 and npm (scripts/install-deps.sh installs them)",
                    pytrace=False)
    return found


def _node() -> str:
    node = _tool("node")
    version = subprocess.run([node, "--version"], capture_output=True, text=True,
                             timeout=30).stdout.strip()
    m = re.match(r"v(\d+)\.", version)
    if not m or int(m.group(1)) < 20:
        pytest.fail(f"{node} is {version or 'unusable'}; matrix-js-sdk {SDK_VERSION} needs "
                    f"Node.js >= 20 (Debian 12's nodejs package is 18: install Node 20, e.g. "
                    f"from NodeSource, as /usr/bin/node)", pytrace=False)
    return node


def _installed_sdk_version() -> str | None:
    manifest = JS_DIR / "node_modules" / "matrix-js-sdk" / "package.json"
    try:
        return json.loads(manifest.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def _ensure_node_modules() -> None:
    if _installed_sdk_version() == SDK_VERSION:
        return
    npm = _tool("npm")
    r = subprocess.run([npm, "ci", "--prefer-offline", "--no-audit", "--no-fund"], cwd=JS_DIR,
                       capture_output=True, text=True, timeout=NPM_TIMEOUT)
    assert r.returncode == 0, f"npm ci in {JS_DIR} failed ({r.returncode}):\n" \
                              f"{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    assert _installed_sdk_version() == SDK_VERSION, \
        f"npm ci installed matrix-js-sdk {_installed_sdk_version()}, not {SDK_VERSION}"


class Run:
    """The outcome of one scenario run: steps by name, HTTP exchanges in order, node's output."""

    def __init__(self, records: list[dict], output: str, server: h.MyelinServer):
        self.steps = {r["name"]: r for r in records if r["kind"] == "step"}
        self.http = [r for r in records if r["kind"] == "http"]
        self.done = any(r["kind"] == "done" for r in records)
        self.output = output
        self.server = server

    def assert_step(self, name: str) -> dict:
        assert self.done, f"the node scenario did not finish:\n{self.output[-4000:]}"
        step = self.steps.get(name)
        assert step is not None, f"step {name} did not run; steps: {sorted(self.steps)}"
        assert step["ok"], f"step {name} failed: {step.get('error')}"
        return step.get("detail") or {}

    def exchanges(self, who: str | None = None, method: str | None = None,
                  path_re: str | None = None) -> list[dict]:
        return [x for x in self.http
                if (who is None or x["who"] == who) and (method is None or x["method"] == method)
                and (path_re is None or re.search(path_re, x["path"]))]


@pytest.fixture(scope="module")
def js_run(tmp_path_factory) -> Run:
    node = _node()
    _ensure_node_modules()
    workdir = tmp_path_factory.mktemp("js_sdk")
    server = h.start_server(workdir, scope="module", tokens={
        "access_token_lifetime": f"{TOKEN_LIFETIME_MS // 1000}s", "session_idle_timeout": "1h"})
    out = workdir / "results.jsonl"
    try:
        proc = subprocess.run(
            [node, "scenario.mjs", "--base", server.base, "--out", str(out),
             "--token-lifetime-ms", str(TOKEN_LIFETIME_MS)],
            cwd=JS_DIR, capture_output=True, text=True, timeout=SCENARIO_TIMEOUT,
            env={**os.environ, "NODE_NO_WARNINGS": "1"})
        output = f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        records = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
        yield Run(records, output, server)
    finally:
        problems = h.stop_servers([server], check=True)
    assert not problems, f"server shutdown: {problems}"


# ------------------------------------------------------------------------------ account


def test_js_sdk_registers_both_users_through_the_dummy_stage(js_run):
    for who in ("alice", "bob"):
        detail = js_run.assert_step(f"register_{who}")
        assert re.fullmatch(r"@js_%s_[a-z0-9]+:localhost" % who, detail["user_id"]), detail
        first, second = js_run.exchanges(who, "POST", r"/register$")[:2]
        assert first["status"] == 401 and first["body"]["session"], first
        assert second["status"] == 200 and second["body"]["user_id"] == detail["user_id"]


def test_js_sdk_logs_in_with_a_refresh_token(js_run):
    for who in ("alice", "bob"):
        detail = js_run.assert_step(f"login_{who}_with_refresh_token")
        assert detail["expires_in_ms"] == TOKEN_LIFETIME_MS, detail
        login = js_run.exchanges(who, "POST", r"/login$")[0]
        assert login["status"] == 200 and login["body"]["refresh_token"].startswith("myrt_")


def test_js_sdk_initial_sync_prepares_both_clients(js_run):
    for who in ("alice", "bob"):
        js_run.assert_step(f"initial_sync_{who}")


# ------------------------------------------------------------------------------ rooms


def test_js_sdk_creates_a_room_and_invites(js_run):
    room_id = js_run.assert_step("create_room")["room_id"]
    assert room_id.startswith("!") and room_id.endswith(":localhost")
    js_run.assert_step("invite_seen_by_bob")


def test_js_sdk_join_is_seen_by_the_inviter(js_run):
    js_run.assert_step("join_seen_by_alice")


def test_js_sdk_messages_arrive_through_long_polls(js_run):
    for step, receiver in (("message_alice_to_bob", "bob"), ("message_bob_to_alice", "alice")):
        event_id = js_run.assert_step(step)["event_id"]
        # The sync answer that carried the event was a long-poll (since + the SDK's timeout).
        carriers = [x for x in js_run.exchanges(receiver, "GET", r"/sync$")
                    if x["status"] == 200 and event_id in json.dumps(x["body"])]
        assert carriers, f"no /sync answer of {receiver} carried {event_id}"
        query = carriers[0]["query"]
        assert query.get("since") and int(query.get("timeout", "0")) > 0, query


def test_js_sdk_refreshes_an_expired_access_token_and_retries(js_run):
    detail = js_run.assert_step("token_expiry_refreshed_by_sdk")
    assert detail["refreshes"]["alice"] >= 1 and detail["refreshes"]["bob"] >= 1, detail
    for who in ("alice", "bob"):
        xs = js_run.exchanges(who)
        expired = [i for i, x in enumerate(xs)
                   if x["status"] == 401 and x["body"].get("errcode") == "M_UNKNOWN_TOKEN"]
        assert expired, f"{who} never met an expired access token"
        i = expired[0]
        assert xs[i]["body"].get("soft_logout") is True, xs[i]
        # Then: POST /refresh (200), and the same request again, now accepted.
        later = xs[i + 1:]
        refresh = next((j for j, x in enumerate(later) if x["path"].endswith("/refresh")), None)
        assert refresh is not None and later[refresh]["status"] == 200, later[:3]
        retried = [x for x in later[refresh + 1:]
                   if x["method"] == xs[i]["method"] and x["path"] == xs[i]["path"]]
        assert retried and retried[0]["status"] == 200, \
            f"{who}: {xs[i]['method']} {xs[i]['path']} not retried after the refresh"
        # Every refresh of the run succeeded (rotation, never a reuse).
        for x in js_run.exchanges(who, "POST", r"/refresh$"):
            assert x["status"] == 200, x


# ------------------------------------------------------------------------------ ephemeral
# Typing and receipts come from wip/ephemeral (PUT /rooms/{id}/typing/{user},
# POST /rooms/{id}/receipt/..., m.typing / m.receipt in /sync's ephemeral events).


def test_js_sdk_typing_notifications_reach_the_other_user(js_run):
    js_run.assert_step("typing_seen_by_bob")


def test_js_sdk_read_receipts_reach_the_sender(js_run):
    js_run.assert_step("read_receipt_seen_by_alice")


# ------------------------------------------------------------------------------ bodies


def test_js_sdk_every_response_matches_the_spec(js_run):
    assert js_run.done, f"the node scenario did not finish:\n{js_run.output[-4000:]}"
    assert len(js_run.http) >= 30, f"only {len(js_run.http)} exchanges recorded"
    server_errors = [f"{x['method']} {x['path']} {x['status']}" for x in js_run.http
                     if x["status"] >= 500]
    assert not server_errors, server_errors
    report = check_exchanges(js_run.http)
    assert not report.failures, "\n\n".join(report.failures)
    assert not report.unknown, f"exchanges on paths the spec does not have: {report.unknown}"
    assert not report.undocumented, report.undocumented
    assert any("/sync 200" in c for c in report.checked)
