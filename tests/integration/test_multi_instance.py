"""Two myelin instances on one PostgreSQL database behind nginx (round robin, no sticky sessions):
the deployment of docs/deploy.md, end to end (issue #5).

Runs in the PostgreSQL tier (ctest integration_postgres, which starts the cluster); there a
missing cluster or a missing nginx FAILS every test here. In the SQLite tier the module is skipped:
instances cannot share a SQLite database.

Both instances read one key file (token hashes and sealed successor pairs need the same secret),
share one config apart from their ports, and start at the same time (so the migrations run under
concurrent first opens). nginx is Debian's, one worker, `upstream` round robin over both, and adds
X-Myelin-Upstream so that a test sees which instance answered (multi_instance.py).

What is checked:
(a) the client flow through nginx: register with the two-request UIA dummy flow (the two requests
    land on different instances), login, whoami answered by both instances, /v3/refresh and the
    legacy /r0/tokenrefresh, logout; afterwards every instance answers 401 M_UNKNOWN_TOKEN;
(b) a logout on one instance stops the token on the other: latency measured (A->B and B->A);
(c) a refresh on one instance: the old access token stays valid until the new one is used
    (docs/architecture.md, "The token engine"), then dies on the other instance too: latency
    measured; the new pair works on the other instance at once;
(d) racing refreshes of one refresh token on both instances give one lineage: the same pair (or
    one error), never two live pairs; a retry on the other instance gets that same pair;
(e) rate limits are one budget across the instances (registration per IP, failed logins per
    account);
(f) both instances run housekeeping and the last-seen flush on the shared database without
    warnings or errors, and the last-seen times land.

Latency is measured, not asserted against the issue's 100 ms target (tests are not benchmarks:
bench/cross_instance.py measures percentiles). The figures are printed (visible in ctest's
output); the assertion is only the generous PROPAGATION_BOUND_S.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest
import requests

import myelin_harness as h
import multi_instance as mi
from client_helpers import (R0, V3, bearer, legacy_refresh, login, login_ok, logout, refresh_ok,
                            register, register_ok, show, token_works, unique_name,
                            unique_password, whoami)
from test_rate_limits import limits, metric, scrape

pytestmark = pytest.mark.skipif(
    h.backend() != "postgres",
    reason="several instances share one PostgreSQL database (ctest integration_postgres)")

# How long a revocation or refresh made on one instance may take to reach the other before a
# test fails. Issue #5's target is 100 ms; this bound is 20x that, because a test on a shared
# 2-core machine (and under sanitizers) must not be a timing benchmark. The measured figures are
# printed and bench/cross_instance.py measures them properly.
PROPAGATION_BOUND_S = 2.0

# Rate-limit budgets of test (e): small, refilled so slowly (one token per 100 s) that no refill
# happens during the test.
REGISTRATION_BUDGET = 4
FAILED_LOGIN_BUDGET = 3
# How far the number of requests admitted by all instances together may stray from ONE budget.
# The shared rate-limit store planned for issue #5 (docs/operating.md, "Several instances
# (design)") draws every registration and every failed login from one row in PostgreSQL, so 0.
# If the store ends up leasing slices of a bucket to instances or synchronising them within an
# interval, its documented worst case goes here (per class if they differ) -- never N x budget.
SHARED_BUDGET_SLACK = 0


# ============================================================================ the deployment

class Deployment:
    def __init__(self, instances: list[h.MyelinServer], nginx: mi.NginxProxy):
        self.instances = instances
        self.a, self.b = instances
        self.nginx = nginx
        self.database_url = mi.shared_database_url(instances)

    def name_of(self, port: int) -> str:
        return {self.a.port: "A", self.b.port: "B"}[port]


def upstream_port(resp: requests.Response) -> int:
    """The instance nginx passed `resp`'s request to (X-Myelin-Upstream = 127.0.0.1:PORT)."""
    value = resp.headers.get(mi.UPSTREAM_HEADER, "")
    m = re.fullmatch(r"127\.0\.0\.1:(\d+)", value)
    assert m, f"nginx named no single upstream: {mi.UPSTREAM_HEADER}={value!r}"
    return int(m.group(1))


def stop_deployment(instances: list[h.MyelinServer], nginx: mi.NginxProxy | None) -> list[str]:
    """Stops nginx and the instances (SIGTERM, exit 0 expected); returns the problems."""
    problems = []
    if nginx is not None:
        nginx.stop()
        bad = [line for line in nginx.error_log_text().splitlines()
               if re.search(r"\[(emerg|alert|crit)\]", line)]
        if bad:
            problems.append("nginx error log:\n" + "\n".join(bad[-20:]))
    problems += h.stop_servers([s for s in instances if s.proc is not None
                                and s.exit_code is None], check=True)
    return problems


def start_deployment(tmp_path: Path, overrides: dict | None = None,
                     scope: str = "fixture") -> Deployment:
    port = h.free_port()
    instances = mi.start_instances(tmp_path, 2, overrides,
                                   public_baseurl=f"http://{h.LOCAL}:{port}/", scope=scope)
    try:
        nginx = mi.NginxProxy(Path(tmp_path) / "nginx", [s.port for s in instances],
                              port=port).start()
    except BaseException:
        h.stop_servers(instances, check=False)
        raise
    return Deployment(instances, nginx)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """Two instances and nginx with the test defaults (rate limits off), for tests (a)-(d)."""
    d = start_deployment(tmp_path_factory.mktemp("deployment"), scope="module")
    yield d
    problems = stop_deployment(d.instances, d.nginx)
    if problems:
        pytest.fail("deployment shutdown problems:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def deployment_factory(tmp_path):
    """factory(overrides) -> a Deployment of its own (same config on both instances), stopped
    at teardown; every instance must exit 0."""
    started: list[Deployment] = []

    def factory(overrides: dict | None = None) -> Deployment:
        d = start_deployment(tmp_path / f"deployment-{len(started) + 1}", overrides)
        started.append(d)
        return d

    yield factory
    problems = []
    for d in started:
        problems += stop_deployment(d.instances, d.nginx)
    if problems:
        pytest.fail("deployment shutdown problems:\n" + "\n".join(problems), pytrace=False)


def report(capsys, line: str) -> None:
    """Prints a measured figure even though pytest captures output (it shows in ctest logs)."""
    with capsys.disabled():
        print(f"\n[multi-instance] {line}", flush=True)


def kept_alive_session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    return s


def wait_until_rejected(server: h.MyelinServer, token: str, since: float,
                        what: str) -> float:
    """Polls whoami on `server` (one kept-alive connection) until `token` gets 401
    M_UNKNOWN_TOKEN; returns the seconds from `since` (a perf_counter value). Fails if it is
    still accepted PROPAGATION_BOUND_S after `since`."""
    with kept_alive_session() as s:
        while True:
            r = s.get(server.url(V3 + "/account/whoami"), headers=bearer(token), timeout=10)
            elapsed = time.perf_counter() - since
            if r.status_code == 401:
                h.assert_matrix_error(r, 401, "M_UNKNOWN_TOKEN")
                return elapsed
            assert r.status_code == 200, f"{what}: unexpected {show(r)}"
            if elapsed > PROPAGATION_BOUND_S:
                raise AssertionError(
                    f"{what}: still accepted {elapsed * 1000:.0f} ms later (bound "
                    f"{PROPAGATION_BOUND_S * 1000:.0f} ms); the other instance never learnt of it")
            time.sleep(0.002)


def fmt_ms(seconds: list[float]) -> str:
    return ", ".join(f"{s * 1000:.1f}" for s in seconds) + " ms"


# ============================================================================ (a) client flow

def test_client_flow_through_nginx(deployment):
    lb = deployment.nginx
    ports = {deployment.a.port, deployment.b.port}
    name = unique_name("lb")
    password = unique_password()
    body = {"username": name, "password": password, "refresh_token": True,
            "initial_device_display_name": "through nginx"}

    # Register: the UIA dummy flow in two requests, which round robin sends to both instances.
    r = register(lb, body)
    assert r.status_code == 401, f"register without auth: expected the UIA 401, got {show(r)}"
    session = r.json().get("session")
    assert isinstance(session, str) and session, r.text
    first = upstream_port(r)
    body["auth"] = {"type": "m.login.dummy", "session": session}
    r = register(lb, body)
    second = upstream_port(r)
    assert first != second, "round robin should have sent the two UIA requests to both instances"
    assert r.status_code == 200, (
        f"the UIA session opened on instance {deployment.name_of(first)} was not honoured by "
        f"instance {deployment.name_of(second)}: {show(r)}")
    registered = r.json()
    assert registered["user_id"] == f"@{name}:localhost", registered
    assert registered.get("refresh_token"), f"refresh_token: true gave none: {registered}"
    assert token_works(lb, registered["access_token"])

    # Login, then whoami several times: every instance answers, with the same identity.
    s = login_ok(lb, name, password, refresh_token=True)
    assert s.refresh_token, s.body
    answered = set()
    for _ in range(6):
        r = whoami(lb, s.access_token)
        assert r.status_code == 200, show(r)
        assert r.json()["user_id"] == s.user_id and r.json()["device_id"] == s.device_id
        answered.add(upstream_port(r))
    assert answered == ports, f"whoami was not answered by both instances: {answered}"

    # Modern refresh; the new access token works on both instances.
    new = refresh_ok(lb, s.refresh_token)
    answered = set()
    for _ in range(4):
        r = whoami(lb, new["access_token"])
        assert r.status_code == 200, f"the refreshed access token: {show(r)}"
        answered.add(upstream_port(r))
    assert answered == ports

    # The 2015 /r0/tokenrefresh on the new refresh token; its access token works everywhere.
    r = legacy_refresh(lb, new["refresh_token"], prefix=R0)
    assert r.status_code == 200, f"r0/tokenrefresh: {show(r)}"
    legacy = r.json()
    answered = set()
    for _ in range(4):
        r = whoami(lb, legacy["access_token"])
        assert r.status_code == 200, f"the access token from /tokenrefresh: {show(r)}"
        answered.add(upstream_port(r))
    assert answered == ports

    # Logout; afterwards whoami is 401 M_UNKNOWN_TOKEN on every instance (the one that did not
    # serve the logout within the propagation bound).
    r = logout(lb, legacy["access_token"])
    assert r.status_code == 200, f"logout: {show(r)}"
    since = time.perf_counter()
    last = {}
    while True:
        r = whoami(lb, legacy["access_token"])
        last[upstream_port(r)] = r
        if len(last) == 2 and all(x.status_code == 401 for x in last.values()):
            break
        assert r.status_code in (200, 401), show(r)
        assert time.perf_counter() - since < PROPAGATION_BOUND_S, (
            f"after logout, still accepted by: "
            f"{[deployment.name_of(p) for p, x in last.items() if x.status_code == 200]}")
        time.sleep(0.005)
    for x in last.values():
        h.assert_matrix_error(x, 401, "M_UNKNOWN_TOKEN")


# ============================================================================ (b) revocation

def test_logout_on_one_instance_stops_the_token_on_the_other(deployment, capsys):
    a, b = deployment.a, deployment.b
    latencies = []
    for origin, other in ((a, b), (b, a), (a, b), (b, a)):
        s = register_ok(origin, unique_name("rev"))
        # Warm both token caches: the other instance must drop a token it already trusts.
        for server in (origin, other, origin, other):
            assert token_works(server, s.access_token)
        r = logout(origin, s.access_token)
        assert r.status_code == 200, show(r)
        since = time.perf_counter()
        h.assert_matrix_error(whoami(origin, s.access_token), 401, "M_UNKNOWN_TOKEN")
        latencies.append(wait_until_rejected(other, s.access_token, since,
                                             "logout on one instance, token on the other"))
    report(capsys, f"logout -> 401 on the other instance: {fmt_ms(latencies)} "
                   f"(max {max(latencies) * 1000:.1f} ms; issue #5 target 100 ms)")


# ============================================================================ (c) refresh

def test_refresh_on_one_instance_retires_the_old_access_token_on_the_other(deployment, capsys):
    a, b = deployment.a, deployment.b
    latencies = []
    # (instance that refreshes, instance where the new access token is first used, the other)
    for refresher, first_use, other in ((a, a, b), (b, b, a), (a, b, a), (b, a, b)):
        reg = register_ok(refresher, unique_name("rot"))
        s = login_ok(refresher, reg.localpart, reg.password, refresh_token=True)
        for server in (a, b):
            assert token_works(server, s.access_token)
        new = refresh_ok(refresher, s.refresh_token)
        # Until the new access token is used, the old one stays valid everywhere (MSC2918: the
        # client may not have received the answer).
        for server in (a, b):
            assert token_works(server, s.access_token), \
                "the old access token must live until the new one is used"
        # The first use of the new access token ends the old one: at once on the instance that
        # saw that use, and on the other as soon as it learns of it.
        assert token_works(first_use, new["access_token"])
        since = time.perf_counter()
        h.assert_matrix_error(whoami(first_use, s.access_token), 401, "M_UNKNOWN_TOKEN")
        latencies.append(wait_until_rejected(
            other, s.access_token, since,
            "old access token on the other instance after the new one was used"))
        # The new pair is honoured everywhere: its access token, and its refresh token, whose
        # successor then works on the other instance.
        assert token_works(other, new["access_token"])
        newer = refresh_ok(other, new["refresh_token"])
        assert token_works(first_use, newer["access_token"])
    report(capsys, f"first use of the new access token -> old one 401 on the other instance: "
                   f"{fmt_ms(latencies)} (max {max(latencies) * 1000:.1f} ms)")


# ============================================================================ (d) racing refreshes

def refresh_request(refresh_token: str) -> bytes:
    return h.build_request("POST", V3 + "/refresh",
                           {"Content-Type": "application/json", "Connection": "close"},
                           '{"refresh_token": "%s"}' % refresh_token)


def race(servers: list[h.MyelinServer], refresh_token: str) -> list[h.RawResponse]:
    """Sends the same refresh to every server at the same moment (connections opened first)."""
    conns = [h.RawConnection(s.port, timeout=15) for s in servers]
    barrier = threading.Barrier(len(servers))
    answers: list = [None] * len(servers)
    request = refresh_request(refresh_token)

    def go(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            conns[i].send(request)
            answers[i] = conns[i].read_response(timeout=15)
        except Exception as e:  # reported below as the answer
            answers[i] = e

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(servers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    for c in conns:
        c.close()
    for i, answer in enumerate(answers):
        assert isinstance(answer, h.RawResponse), f"refresh on instance {i}: {answer!r}"
    return answers


def test_racing_refreshes_on_two_instances_give_one_lineage(deployment, capsys):
    a, b = deployment.a, deployment.b
    outcomes = []
    for round_no in range(8):
        reg = register_ok(a, unique_name("race"))
        s = login_ok(b, reg.localpart, reg.password, refresh_token=True,
                     device_id=f"RACE{round_no}")
        answers = race([a, b], s.refresh_token)
        ok = [r.json() for r in answers if r.status == 200]
        outcomes.append("/".join(str(r.status) for r in answers))
        assert ok, f"both racing refreshes failed: {[(r.status, r.text) for r in answers]}"
        pairs = {(x["access_token"], x["refresh_token"]) for x in ok}
        assert len(pairs) == 1, f"two different live pairs from one refresh token: {pairs}"
        access, refresh_token = pairs.pop()
        # A client whose answer was lost retries, possibly on the other instance: it gets the
        # same pair on both (the successor has not been used yet).
        for server in (b, a):
            again = refresh_ok(server, s.refresh_token)
            assert (again["access_token"], again["refresh_token"]) == (access, refresh_token), \
                f"a retry on {server!r} got another pair"
        # One lineage in the database: one live session for the device, generation 1, two
        # refresh tokens (the original and its one successor).
        rows = h.db_query(a, "SELECT session_id, current_generation, revoked_ts FROM sessions "
                             "WHERE user_id = ? AND device_id = ?", (s.user_id, s.device_id))
        assert len(rows) == 1 and rows[0][1] == 1 and rows[0][2] == 0, rows
        count = h.db_query(a, "SELECT count(*) FROM refresh_tokens WHERE session_id = ?",
                           (rows[0][0],))
        assert count == [(2,)], f"refresh tokens of the session: {count}"
        # The pair is live on both instances and rotates on.
        assert token_works(a, access) and token_works(b, access)
        assert token_works(a, refresh_ok(b, refresh_token)["access_token"])
    report(capsys, f"racing refreshes, statuses on A/B per round: {' '.join(outcomes)}")


# ============================================================================ (e) rate limits

def test_registration_budget_is_shared_by_the_instances(deployment_factory):
    d = deployment_factory({"rate_limits": limits(registration=(0.01, REGISTRATION_BUDGET))})
    statuses: dict[int, list[int]] = {d.a.port: [], d.b.port: []}
    for _ in range(3 * REGISTRATION_BUDGET):
        r = register(d.nginx, {"username": unique_name("rl"), "password": unique_password()})
        assert r.status_code in (401, 429), show(r)  # 401: the UIA flows, i.e. admitted
        statuses[upstream_port(r)].append(r.status_code)
    admitted = sum(s.count(401) for s in statuses.values())
    assert all(statuses.values()), f"requests did not reach both instances: {statuses}"
    assert REGISTRATION_BUDGET - SHARED_BUDGET_SLACK <= admitted \
        <= REGISTRATION_BUDGET + SHARED_BUDGET_SLACK, (
        f"{admitted} registrations admitted across both instances, one budget is "
        f"{REGISTRATION_BUDGET} (per instance: A {statuses[d.a.port]}, B {statuses[d.b.port]})")
    # Once the budget is spent, every instance refuses.
    for port, got in statuses.items():
        assert got[-1] == 429, f"instance {d.name_of(port)} still admitting: {got}"


def test_failed_login_budget_is_shared_by_the_instances(deployment_factory):
    d = deployment_factory({"rate_limits": limits(failed_login=(0.01, FAILED_LOGIN_BUDGET))})
    victim = register_ok(d.a, unique_name("victim"))
    statuses: dict[int, list[int]] = {d.a.port: [], d.b.port: []}
    for _ in range(3 * FAILED_LOGIN_BUDGET):
        r = login(d.nginx, victim.localpart, "wrong-" + unique_password())
        assert r.status_code in (403, 429), show(r)  # 403: a guess that was checked
        statuses[upstream_port(r)].append(r.status_code)
    checked = sum(s.count(403) for s in statuses.values())
    assert all(statuses.values()), f"requests did not reach both instances: {statuses}"
    assert FAILED_LOGIN_BUDGET - SHARED_BUDGET_SLACK <= checked \
        <= FAILED_LOGIN_BUDGET + SHARED_BUDGET_SLACK, (
        f"{checked} password guesses checked across both instances, one budget is "
        f"{FAILED_LOGIN_BUDGET} (per instance: A {statuses[d.a.port]}, B {statuses[d.b.port]})")
    # The account is locked on every instance, the right password included.
    for server in d.instances:
        h.assert_matrix_error(login(server, victim.localpart, victim.password), 429,
                              "M_LIMIT_EXCEEDED")


# ============================================================================ (f) background work

LOG_PROBLEM = re.compile(r"^\S+Z (warning|error|critical) ", re.MULTILINE)


def test_background_work_on_two_instances(deployment_factory):
    d = deployment_factory({
        "housekeeping": {"interval": "1s", "revocation_log_retention": "1m"},
        "devices": {"last_seen_flush": "100ms"},
        "logging": {"level": "debug"},
    })
    a, b = d.a, d.b
    user = register_ok(a, unique_name("bg"))
    only_a = login_ok(a, user.localpart, user.password, device_id="ONLY_A")
    only_b = login_ok(b, user.localpart, user.password, device_id="ONLY_B")
    both = login_ok(a, user.localpart, user.password, device_id="BOTH")
    # Old revocation log rows (as sessions ended two hours ago would have left): one of the two
    # instances' housekeeping passes deletes each.
    old_ms = int(time.time() * 1000) - 2 * 3600 * 1000
    h.db_execute(a, "INSERT INTO revocation_log (session_id, reason, ts) VALUES (?, 4, ?)",
                 [(900000 + i, old_ms) for i in range(20)])

    # Traffic on both instances for a few flush intervals and housekeeping passes; BOTH is seen
    # by both instances, so their flushes write the same row.
    seen_both: list[int] = []
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:
        assert token_works(a, only_a.access_token)
        assert token_works(b, only_b.access_token)
        assert token_works(a, both.access_token)
        assert token_works(b, both.access_token)
        rows = h.db_query(a, "SELECT last_seen_ts FROM devices WHERE user_id = ? AND "
                             "device_id = 'BOTH'", (user.user_id,))
        seen_both.append(rows[0][0])
        time.sleep(0.1)

    def last_seen() -> dict:
        return dict(h.db_query(a, "SELECT device_id, last_seen_ts FROM devices WHERE "
                                  "user_id = ?", (user.user_id,)))

    deadline = time.monotonic() + 5
    while not all(last_seen().get(dev, 0) > 0 for dev in ("ONLY_A", "ONLY_B", "BOTH")):
        assert time.monotonic() < deadline, f"last-seen times missing: {last_seen()}"
        time.sleep(0.1)
    assert seen_both == sorted(seen_both), f"last_seen_ts of BOTH went backwards: {seen_both}"
    remaining = h.db_query(a, "SELECT count(*) FROM revocation_log WHERE session_id >= 900000")
    assert remaining == [(0,)], f"old revocation log rows left: {remaining}"

    # Each instance flushed its own sightings and ran several passes; between them the passes
    # deleted every old row.
    texts = {name: scrape(s.config["metrics"]["port"]) for name, s in (("A", a), ("B", b))}
    for name, text in texts.items():
        assert metric(text, "myelin_device_activity_rows_written_total") >= 1, \
            f"instance {name} wrote no last-seen rows"
    deleted = sum(metric(t, "myelin_housekeeping_deleted_rows_total", table="revocation_log")
                  for t in texts.values())
    assert deleted >= 20, f"housekeeping counted {deleted} deleted log rows, 20 were old"
    for name, s in (("A", a), ("B", b)):
        log = s.log_text()
        passes = len(re.findall(r"housekeeping: (nothing to delete|deleted \d+)", log))
        assert passes >= 2, f"instance {name} ran {passes} housekeeping passes:\n{s.log_tail()}"
        problems = [m.group(0) for m in re.finditer(r"^.*$", log, re.MULTILINE)
                    if LOG_PROBLEM.match(m.group(0))]
        assert not problems, f"instance {name} logged problems:\n" + "\n".join(problems[-20:])
