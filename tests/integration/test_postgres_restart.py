"""PostgreSQL restarting under load (issue #7, faults): client threads log in, call whoami and
refresh (v3) against one server while the test restarts the PostgreSQL cluster under it three
times: `pg_ctl -m fast restart`, a fast stop with two seconds of outage, and an immediate stop
(PostgreSQL's crash recovery on the next start) with two seconds of outage. The server is never
restarted.

Checked:

- every answer, during the outages too, is the normal success or 503 M_UNKNOWN with a
  Retry-After header: never 401/403/M_UNKNOWN_TOKEN (clients sign their users out on those),
  never another 5xx, never a dropped connection;
- the server's log names the database problem (the lost connection and the refused reconnect)
  and, once PostgreSQL is back, that it reconnected; the database password appears nowhere;
  every line on stderr is a log line (libpq's own prints of server messages are routed there);
- once PostgreSQL is back, every kind of request succeeds again within RECOVERY_DEADLINE
  seconds, and a little later nothing fails any more;
- afterwards every token is in the state its client was told: a refresh that answered 503 and
  is retried with the same refresh token yields a pair (the retry window), every pair answered
  200 works, its refresh token refreshes, superseded access tokens are refused, and in the
  database no session has two live lineages (one refresh and one access token at the current
  generation, nothing newer, no generation twice), no device has two live sessions, and each
  session the clients hold is live at exactly the generation they hold.

Runs in ctest's integration_postgres (scripts/pg-test-cluster.sh provides the cluster and
MYELIN_TEST_POSTGRES_CTL); on SQLite it is skipped (its faults are in the storage tier, through
tests/storage/faulty_vfs.hpp).
"""

from __future__ import annotations

import dataclasses
import os
import random
import re
import threading
import time
from urllib.parse import urlparse

import requests

import myelin_harness as h
from client_helpers import (ACCESS_TOKEN_RE, REFRESH_TOKEN_RE, login, mxid, refresh, register_ok,
                            show, unique_name, whoami)

pytestmark = h.only_on_postgres("restarts the PostgreSQL cluster under a running server")

WORKERS = 4
MAX_LINEAGES_PER_WORKER = 5
WARMUP_SECONDS = 1.0
OUTAGE_SECONDS = 2.0
# From PostgreSQL accepting connections again until every kind of request has succeeded. The
# server reconnects on the next job (after a failed connect it waits up to one second), so this
# is generous for a loaded machine.
RECOVERY_DEADLINE = 10.0
# After recovery: traffic keeps running this long, and past the first second of it every
# request must succeed.
SETTLE_SECONDS = 2.5
SETTLE_GRACE = 1.0
KINDS = ("login", "whoami", "refresh")
LOG_LINE_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z (trace|debug|info|warning|error|"
                         r"critical) ")


@dataclasses.dataclass
class Lineage:
    """One session as its client knows it: every pair received, oldest first."""
    localpart: str
    password: str
    device_id: str
    pairs: list
    pending_refresh: str | None = None  # a refresh token whose refresh got a 503

    @property
    def user_id(self) -> str:
        return mxid(self.localpart)

    @property
    def gen(self) -> int:
        return len(self.pairs) - 1

    @property
    def access(self) -> str:
        return self.pairs[-1][0]

    def __str__(self) -> str:
        return f"{self.user_id}/{self.device_id} at generation {self.gen}"


@dataclasses.dataclass
class Answer:
    kind: str
    started: float
    ended: float
    status: int | None  # None: no answer (connection error)
    detail: str


def classify(kind: str, r: requests.Response) -> str | None:
    """None if `r` is the normal success or a proper 503; otherwise what is wrong with it."""
    if r.status_code == 200:
        return None
    if r.status_code != 503:
        return f"{kind}: {show(r)} (only 200 or 503 + Retry-After may answer)"
    retry_after = r.headers.get("Retry-After", "")
    if not retry_after.isdigit() or int(retry_after) < 1:
        return f"{kind}: 503 without a usable Retry-After ({retry_after!r}): {show(r)}"
    try:
        body = r.json()
    except ValueError:
        return f"{kind}: 503 without a JSON body: {show(r)}"
    if body.get("errcode") != "M_UNKNOWN" or not isinstance(body.get("error"), str):
        return f"{kind}: 503 with errcode {body.get('errcode')!r}: {show(r)}"
    # Where the database lives and what it said belong in the log, not in a client's answer.
    for detail in ("postgresql://", "127.0.0.1", "SQLSTATE", "FATAL"):
        if detail in body["error"]:
            return f"{kind}: 503 naming {detail!r}: {show(r)}"
    return None


class Worker(threading.Thread):
    def __init__(self, index: int, server, rng: random.Random, stop: threading.Event):
        super().__init__(name=f"pg-restart-client-{index}", daemon=True)
        self.index = index
        self.server = server
        self.rng = rng
        self.stop_event = stop
        self.localpart = unique_name(f"pgr{index}")
        s = register_ok(server, self.localpart, device_id=f"PGR{index}D0", refresh_token=True)
        self.password = s.password
        self.lineages = [Lineage(self.localpart, s.password, s.device_id,
                                 [(s.access_token, s.refresh_token)])]
        self.devices = 1
        self.pending_login: str | None = None  # a device whose login got a 503
        self.replaced: list[Lineage] = []  # sessions ended by signing in again on their device
        self.answers: list[Answer] = []
        self.failures: list[str] = []
        self.lock = threading.Lock()

    def run(self) -> None:
        try:
            while not self.stop_event.is_set() and not self.failures:
                self.step()
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.failures.append(f"worker {self.index}: {type(e).__name__}: {e}")

    def call(self, kind: str, fn, *args, **kwargs) -> requests.Response | None:
        started = time.monotonic()
        try:
            r = fn(self.server, *args, **kwargs)
        except requests.RequestException as e:
            ended = time.monotonic()
            self.record(Answer(kind, started, ended, None, f"{type(e).__name__}: {e}"))
            self.failures.append(f"{kind}: no answer ({type(e).__name__}: {e})")
            return None
        ended = time.monotonic()
        self.record(Answer(kind, started, ended, r.status_code, r.text[:200]))
        problem = classify(kind, r)
        if problem:
            self.failures.append(problem)
            return None
        return r

    def record(self, answer: Answer) -> None:
        with self.lock:
            self.answers.append(answer)

    def snapshot(self) -> list[Answer]:
        with self.lock:
            return list(self.answers)

    def step(self) -> None:
        choice = self.rng.random()
        if self.pending_login or choice < 0.1:
            self.login()
            return
        lin = self.rng.choice(self.lineages)
        if lin.pending_refresh or choice < 0.55:
            self.refresh(lin)
        else:
            self.whoami(lin)

    def login(self) -> None:
        # A new device, or (with enough of them) one signed in again, which replaces its
        # session: the client drops that session's tokens first. A login answered 503 may still
        # have committed, so it is retried on the same device, which replaces that session too.
        if self.pending_login is None:
            if len(self.lineages) < MAX_LINEAGES_PER_WORKER:
                self.pending_login = f"PGR{self.index}D{self.devices}"
                self.devices += 1
            else:
                old = self.rng.choice(self.lineages)
                self.lineages.remove(old)
                self.replaced.append(old)
                self.pending_login = old.device_id
        device = self.pending_login
        r = self.call("login", login, self.localpart, self.password,
                      device_id=device, refresh_token=True)
        if r is None or r.status_code != 200:
            return
        body = r.json()
        assert body.get("device_id") == device, f"login on {device}: {show(r)}"
        assert ACCESS_TOKEN_RE.match(body.get("access_token", "")), show(r)
        assert REFRESH_TOKEN_RE.match(body.get("refresh_token", "")), show(r)
        self.lineages.append(Lineage(self.localpart, self.password, device,
                                     [(body["access_token"], body["refresh_token"])]))
        self.pending_login = None

    def refresh(self, lin: Lineage) -> None:
        # A refresh answered 503 is retried with the same refresh token, as clients do: whether
        # or not the first attempt committed, the retry must give a pair.
        token = lin.pending_refresh or lin.pairs[-1][1]
        r = self.call("refresh", refresh, token)
        if r is None:
            return
        if r.status_code == 503:
            lin.pending_refresh = token
            return
        body = r.json()
        assert ACCESS_TOKEN_RE.match(body.get("access_token", "")), show(r)
        assert REFRESH_TOKEN_RE.match(body.get("refresh_token", "")), show(r)
        lin.pairs.append((body["access_token"], body["refresh_token"]))
        lin.pending_refresh = None

    def whoami(self, lin: Lineage) -> None:
        r = self.call("whoami", whoami, lin.access)
        if r is None or r.status_code != 200:
            return
        body = r.json()
        if body.get("user_id") != lin.user_id or body.get("device_id") != lin.device_id:
            self.failures.append(f"whoami for {lin}: {show(r)}")


def all_answers(workers: list[Worker]) -> list[Answer]:
    return sorted((a for w in workers for a in w.snapshot()), key=lambda a: a.started)


def failures_of(workers: list[Worker]) -> list[str]:
    return [f for w in workers for f in w.failures]


def wait_for_recovery(workers: list[Worker], back: float, label: str) -> float:
    """Waits until each kind of request has succeeded after starting at or after `back` (when
    PostgreSQL accepted connections again); returns that moment."""
    deadline = back + RECOVERY_DEADLINE
    while True:
        failures = failures_of(workers)
        assert not failures, f"{label}: " + "\n".join(failures[:20])
        ok_after = {}
        for a in all_answers(workers):
            if a.started >= back and a.status == 200 and a.kind not in ok_after:
                ok_after[a.kind] = a.ended
        if all(k in ok_after for k in KINDS):
            return max(ok_after.values())
        assert time.monotonic() < deadline, (
            f"{label}: {RECOVERY_DEADLINE}s after PostgreSQL came back, still no success for "
            f"{[k for k in KINDS if k not in ok_after]}; last answers: "
            + "; ".join(f"{a.kind} {a.status} {a.detail[:120]}"
                        for a in all_answers(workers)[-6:]))
        time.sleep(0.05)


def check_database(server, lineages: list[Lineage]) -> None:
    """The lineage invariants (as in test_crash_safety) and the clients' view of each session."""
    forks = h.db_query(
        server,
        "SELECT 'refresh', session_id, generation, COUNT(*) FROM refresh_tokens "
        "GROUP BY session_id, generation HAVING COUNT(*) > 1 "
        "UNION ALL SELECT 'access', session_id, generation, COUNT(*) FROM access_tokens "
        "GROUP BY session_id, generation HAVING COUNT(*) > 1")
    assert not forks, f"two tokens of one kind at one generation (kind, session, gen, n): {forks}"
    rows = h.db_query(server, """
        SELECT s.session_id, s.user_id, s.device_id, s.refreshable,
               s.current_generation, s.used_generation,
               (SELECT COUNT(*) FROM refresh_tokens r WHERE r.session_id = s.session_id
                    AND r.generation = s.current_generation),
               (SELECT COUNT(*) FROM access_tokens a WHERE a.session_id = s.session_id
                    AND a.generation = s.current_generation),
               (SELECT COUNT(*) FROM refresh_tokens r WHERE r.session_id = s.session_id
                    AND r.generation > s.current_generation)
             + (SELECT COUNT(*) FROM access_tokens a WHERE a.session_id = s.session_id
                    AND a.generation > s.current_generation)
        FROM sessions s WHERE s.revoked_ts = 0""")
    for sid, user, device, refreshable, cur, used, rt_cur, at_cur, newer in rows:
        where = f"live session {sid} ({user}/{device}, current {cur}, used {used})"
        assert rt_cur == (1 if refreshable else 0), \
            f"{where}: {rt_cur} refresh tokens at the current generation"
        assert at_cur == 1, f"{where}: {at_cur} access tokens at the current generation"
        assert newer == 0, f"{where}: {newer} tokens newer than the current generation"
        assert cur - 1 <= used <= cur, f"{where}: used_generation out of range"
    doubles = h.db_query(
        server,
        "SELECT user_id, device_id, COUNT(*) FROM sessions WHERE revoked_ts = 0 "
        "GROUP BY user_id, device_id HAVING COUNT(*) > 1")
    assert not doubles, f"devices with more than one live session: {doubles}"
    live = {(u, d): (cur, used) for _sid, u, d, _r, cur, used, *_ in rows}
    for lin in lineages:
        assert live.get((lin.user_id, lin.device_id)) == (lin.gen, lin.gen), \
            f"{lin}: the database has (current, used) = " \
            f"{live.get((lin.user_id, lin.device_id))}, the client holds and has used " \
            f"generation {lin.gen}"


def settle_clients(server, workers: list[Worker]) -> list[Lineage]:
    """After the traffic: finishes what the clients left open (a refresh or a login answered
    503 is retried), then uses every newest access token. Returns every lineage."""
    for w in workers:
        if w.pending_login:
            w.login()
            assert w.pending_login is None, f"retried login of {w.pending_login} failed"
        for lin in w.lineages:
            if lin.pending_refresh:
                w.refresh(lin)
                assert lin.pending_refresh is None, f"{lin}: the retried refresh failed"
        assert not w.failures, "\n".join(w.failures)
    lineages = [lin for w in workers for lin in w.lineages]
    for lin in lineages:
        r = whoami(server, lin.access)
        assert r.status_code == 200, f"{lin}: the newest access token: {show(r)}"
        assert r.json().get("device_id") == lin.device_id, show(r)
    return lineages


def test_postgres_restarts_under_load_answer_503_and_recover_without_a_restart(server_factory):
    seed = int(os.environ.get("MYELIN_PG_RESTART_SEED") or random.SystemRandom().randrange(1 << 32))
    print(f"\npostgres restart test seed {seed} (repeat with MYELIN_PG_RESTART_SEED={seed})")
    rng = random.Random(seed)
    hs = server_factory()
    pid = hs.proc.pid
    password = urlparse(hs.config["database"]["url"]).password
    stop = threading.Event()
    workers = [Worker(i, hs, random.Random(rng.getrandbits(64)), stop) for i in range(WORKERS)]
    for w in workers:
        w.start()

    # (label, pg_ctl arguments that take the cluster down, then those that bring it back)
    cycles = [
        ("fast restart", [("-m", "fast", "restart")]),
        ("fast stop, 2 s outage", [("-m", "fast", "stop"), "outage", ("start",)]),
        ("immediate stop, 2 s outage", [("-m", "immediate", "stop"), "outage", ("start",)]),
    ]
    report = []
    try:
        time.sleep(WARMUP_SECONDS)
        for label, steps in cycles:
            assert not failures_of(workers), f"before {label}: " + "\n".join(failures_of(workers))
            down = time.monotonic()
            for step in steps:
                if step == "outage":
                    time.sleep(OUTAGE_SECONDS)
                else:
                    h.postgres_ctl(*step)
            back = time.monotonic()
            recovered = wait_for_recovery(workers, back, label)
            time.sleep(SETTLE_SECONDS)
            failures = failures_of(workers)
            assert not failures, f"{label}: " + "\n".join(failures[:20])
            assert hs.is_running() and hs.proc.pid == pid, f"{label}: the server is gone"
            answers = [a for a in all_answers(workers) if a.ended >= down]
            late = [a for a in answers if a.started >= recovered + SETTLE_GRACE and a.status != 200]
            assert not late, (f"{label}: failures after recovery: "
                              + "; ".join(f"{a.kind} {a.status} {a.detail[:120]}" for a in late))
            unavailable = [a for a in answers if a.status == 503]
            report.append(f"{label}: {len(answers)} answers, {len(unavailable)} x 503 "
                          f"({', '.join(sorted({a.kind for a in unavailable})) or '-'}), "
                          f"outage {back - down:.1f}s, recovered {recovered - back:.2f}s later")
            if "outage" in steps:
                # The test only means something if requests met the outage.
                assert any(a.kind in ("login", "refresh") for a in unavailable), \
                    f"{label}: no login or refresh met the outage: {report[-1]}"
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=30)
        # A failure mid-outage must not leave the cluster down for the tests after this one.
        if h.postgres_ctl("status", check=False).returncode == 3:
            h.postgres_ctl("start")
    print("\n".join(report))
    assert not failures_of(workers), "\n".join(failures_of(workers))

    log = hs.log_text()
    # The log says what is wrong: the pooled connections PostgreSQL closed, and the reconnects
    # it refused while down; and then that the server reconnected.
    assert re.search(r"postgresql: .* failed: .*(terminating connection|server closed the "
                     r"connection|connection to PostgreSQL|SQLSTATE 57P0)", log), log[-4000:]
    assert re.search(r"postgresql: cannot connect to \S+@127\.0\.0\.1:\d+/\S+: .*"
                     r"(Connection refused|starting up|shutting down)", log), log[-4000:]
    assert "postgresql: reconnected" in log, log[-4000:]
    assert password and password not in log, "the database password is in the log"
    # Everything on stderr is a log line (time, level): libpq prints what the server sends
    # unasked (the FATAL before it closes an idle connection, shutdown warnings) to stderr
    # unless told otherwise.
    raw = [line for line in log.splitlines()
           if line and not LOG_LINE_RE.match(line) and not line.startswith("=== start ")]
    assert not raw, "lines on stderr that are not log lines:\n" + "\n".join(raw[:10])

    # Afterwards: every token is where its client was told it is.
    lineages = settle_clients(hs, workers)
    check_database(hs, lineages)
    for lin in lineages:
        for old_access, _ in lin.pairs[-3:-1]:
            r = whoami(hs, old_access)
            assert r.status_code == 401 and r.json().get("errcode") == "M_UNKNOWN_TOKEN", \
                f"{lin}: a superseded access token: {show(r)}"
        r = refresh(hs, lin.pairs[-1][1])
        assert r.status_code == 200, f"{lin}: its newest refresh token: {show(r)}"
        lin.pairs.append((r.json()["access_token"], r.json()["refresh_token"]))
        r = whoami(hs, lin.access)
        assert r.status_code == 200, f"{lin}: the access token of the last refresh: {show(r)}"
    check_database(hs, lineages)
    replaced = [lin for w in workers for lin in w.replaced]
    for lin in replaced:
        r = whoami(hs, lin.access)
        assert r.status_code == 401 and r.json().get("errcode") == "M_UNKNOWN_TOKEN", \
            f"{lin}, replaced by a new login on its device: {show(r)}"
    refreshes = sum(len(lin.pairs) - 1 for lin in lineages)
    print(f"{len(lineages)} sessions held, {len(replaced)} replaced by a new login, "
          f"{refreshes} refreshes answered 200: all consistent")
