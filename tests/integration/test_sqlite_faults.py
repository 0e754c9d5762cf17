"""SQLite faults under a running server (issue #7, faults): the disk full, the file system
read-only, permission lost, a disk I/O error, and the database locked by another process.

The file faults come from tests/integration/fault_shim/fault_shim.c, preloaded into the real
server (LD_PRELOAD): while the control file names a fault, every write, sync, truncate and
write-open of a file under the test's folder fails with ENOSPC, EROFS, EACCES or EIO, the way the
kernel reports those faults to SQLite. The lock is the real thing: another process holds
`BEGIN EXCLUSIVE` on the database (as a VACUUM or a sqlite3 shell would).

Checked for each fault, with client threads logging in, refreshing and calling whoami all along:

- every write (login, refresh, legacy /tokenrefresh, logout, register, the first use of a new
  access token) answers 503 M_UNKNOWN with a Retry-After header: never 401/403/M_UNKNOWN_TOKEN
  (clients sign their users out on those), never another 5xx, never a dropped connection; under
  the lock within about one busy timeout (5 s), not two, and so well within the request timeout;
- what the token cache answers alone (whoami of an access token in use) and what only reads the
  database (GET /devices) keeps answering 200;
- the server's log names the cause ("the disk is full", "the file system is read-only",
  "permission to write the database files is denied", "a disk I/O error occurred", "the database
  is locked by another connection or process");
- once the fault clears, every kind of request succeeds again, without a restart; the
  background flush of device activity carries on too;
- a request answered 503 changed nothing: the refresh token of a refresh answered 503 still
  refreshes, a session whose logout answered 503 is still live, a legacy refresh answered 503
  did not use up its single-use token;
- afterwards (server stopped) `PRAGMA integrity_check` is ok, every session the clients hold is
  live at the generation they hold, and after a restart every token the clients hold works.
- stopped during a file fault, the server exits 0 and leaves an intact database; started during
  one, it refuses with a message that names the problem; started once it has cleared, it serves
  every token as before.

SQLite only: PostgreSQL's faults are tests/integration/test_postgres_restart.py.

Under AddressSanitizer (make test-sanitize) the shim is preloaded ahead of libasan, which needs
ASAN_OPTIONS=verify_asan_link_order=0 (added to the server's environment here; it means nothing
to a build without ASan). The shim itself is built without sanitizers.
"""

from __future__ import annotations

import dataclasses
import os
import random
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

import myelin_harness as h
from client_helpers import (ACCESS_TOKEN_RE, REFRESH_TOKEN_RE, V3, bearer, legacy_refresh, login,
                            logout, refresh, register, register_ok, show, unique_name,
                            unique_password, whoami)

pytestmark = h.skip_on_postgres("injects faults into the SQLite database files of the server")

# From the fault clearing until every kind of request has succeeded again. Recovery needs no
# wait on SQLite's side (the next write job just works); this is room for a loaded machine.
RECOVERY_DEADLINE = 10.0
# The server's SQLite busy timeout (storage::SqliteOptions::busy_timeout) and the harness's
# request timeout ([limits] request_timeout): a write blocked by another process's lock answers
# after about the one, well before the other.
BUSY_TIMEOUT = 5.0
REQUEST_TIMEOUT = 30.0
WORKERS = 2

# (control file content, what the server's log must say)
FILE_FAULTS = [
    ("enospc", r"the disk is full"),
    ("erofs", r"the file system is read-only"),
    ("eacces", r"permission to write the database files is denied"),
    ("eio", r"a disk I/O error occurred: .*Input/output error"),
]


# ------------------------------------------------------------------------------ answers

def unavailable_problem(r: requests.Response) -> str | None:
    """None if `r` is a proper 503 (M_UNKNOWN, JSON, Retry-After >= 1); otherwise what is wrong."""
    if r.status_code != 503:
        return f"expected 503 M_UNKNOWN with Retry-After, got {show(r)}"
    retry_after = r.headers.get("Retry-After", "")
    if not retry_after.isdigit() or int(retry_after) < 1:
        return f"503 without a usable Retry-After ({retry_after!r}): {show(r)}"
    try:
        body = r.json()
    except ValueError:
        return f"503 without a JSON body: {show(r)}"
    if body.get("errcode") != "M_UNKNOWN" or not isinstance(body.get("error"), str):
        return f"503 with errcode {body.get('errcode')!r}: {show(r)}"
    if "soft_logout" in body:
        return f"503 with soft_logout: {show(r)}"
    return None


def assert_unavailable(r: requests.Response, what: str) -> None:
    problem = unavailable_problem(r)
    assert problem is None, f"{what}: {problem}"


def assert_ok(r: requests.Response, what: str) -> dict:
    assert r.status_code == 200, f"{what}: {show(r)}"
    return r.json()


def assert_pair(body: dict) -> tuple[str, str]:
    assert ACCESS_TOKEN_RE.match(body.get("access_token", "")), body
    assert REFRESH_TOKEN_RE.match(body.get("refresh_token", "")), body
    return body["access_token"], body["refresh_token"]


def devices(server, token: str) -> requests.Response:
    return server.get(V3 + "/devices", headers=bearer(token))


# ------------------------------------------------------------------------------ clients

class Patient:
    """`server` for the client helpers, with a request timeout above the server's own: under
    the lock a write may wait for the busy timeout twice (its batch queued behind one that is
    waiting), longer than the harness's default of 10 s."""

    def __init__(self, server):
        self.server = server

    def get(self, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", REQUEST_TIMEOUT - 5)
        return self.server.get(path, **kw)

    def post(self, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", REQUEST_TIMEOUT - 5)
        return self.server.post(path, **kw)


@dataclasses.dataclass
class Held:
    """One session as its client knows it."""
    user_id: str
    device_id: str
    access: str
    refresh: str | None
    gen: int = 0  # the generation of the pair held (sign-in = 0)
    used: bool = True  # the access token has been used since it was received


class Worker(threading.Thread):
    """Background traffic on one account: refresh, whoami and a login on a new device now and
    then. Only 200 and a proper 503 are acceptable answers; a refresh answered 503 is retried
    with the same refresh token, as clients do."""

    def __init__(self, index: int, server, stop: threading.Event, seed: int):
        super().__init__(name=f"sqlite-fault-client-{index}", daemon=True)
        self.server = Patient(server)
        self.stop_event = stop
        self.rng = random.Random(seed)
        self.index = index
        s = register_ok(server, unique_name(f"sqf{index}"), device_id=f"SQF{index}D0",
                        refresh_token=True)
        self.password = s.password
        self.localpart = s.localpart
        self.session = Held(s.user_id, s.device_id, s.access_token, s.refresh_token)
        self.pending_refresh: str | None = None
        self.devices = 1
        self.counts = {"200": 0, "503": 0}
        self.failures: list[str] = []
        self.lock = threading.Lock()

    def run(self) -> None:
        try:
            while not self.stop_event.is_set() and not self.failures:
                choice = self.rng.random()
                if self.pending_refresh or choice < 0.4:
                    self.refresh()
                elif choice < 0.5:
                    self.login()
                else:
                    self.whoami()
                time.sleep(0.01)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.failures.append(f"worker {self.index}: {type(e).__name__}: {e}")

    def call(self, kind: str, fn, *args, **kwargs) -> requests.Response | None:
        try:
            r = fn(self.server, *args, **kwargs)
        except requests.RequestException as e:
            self.failures.append(f"{kind}: no answer ({type(e).__name__}: {e})")
            return None
        if r.status_code == 200:
            with self.lock:
                self.counts["200"] += 1
            return r
        problem = unavailable_problem(r)
        if problem:
            self.failures.append(f"{kind}: {problem}")
            return None
        with self.lock:
            self.counts["503"] += 1
        return r

    def refresh(self) -> None:
        token = self.pending_refresh or self.session.refresh
        r = self.call("refresh", refresh, token)
        if r is None:
            return
        if r.status_code == 503:
            self.pending_refresh = token
            return
        access, refresh_token = assert_pair(r.json())
        self.session = dataclasses.replace(self.session, access=access, refresh=refresh_token,
                                           gen=self.session.gen + 1, used=False)
        self.pending_refresh = None

    def whoami(self) -> None:
        r = self.call("whoami", whoami, self.session.access)
        if r is None or r.status_code != 200:
            return
        if r.json().get("device_id") != self.session.device_id:
            self.failures.append(f"whoami: {show(r)}")
        self.session.used = True

    def login(self) -> None:
        # A login on a new device; one answered 503 is simply not retried (its device, if the
        # login committed after all, would be a second session nobody holds: not checked).
        device = f"SQF{self.index}D{self.devices}"
        self.devices += 1
        r = self.call("login", login, self.localpart, self.password, device_id=device,
                      refresh_token=True)
        if r is not None and r.status_code == 200:
            assert_pair(r.json())

    def counts_now(self) -> dict:
        with self.lock:
            return dict(self.counts)

    def settle(self) -> Held:
        """Finishes a refresh left open by a 503 and uses the newest access token."""
        if self.pending_refresh:
            self.refresh()
            assert self.pending_refresh is None, f"worker {self.index}: the retried refresh " \
                                                 f"failed: {self.failures}"
        r = whoami(self.server, self.session.access)
        assert_ok(r, f"worker {self.index}: the newest access token")
        self.session.used = True
        return self.session


def start_workers(server, n: int = WORKERS) -> tuple[list[Worker], threading.Event]:
    stop = threading.Event()
    seed = random.SystemRandom().randrange(1 << 32)
    workers = [Worker(i, server, stop, seed + i) for i in range(n)]
    for w in workers:
        w.start()
    return workers, stop


def stop_workers(workers: list[Worker], stop: threading.Event) -> None:
    stop.set()
    for w in workers:
        w.join(timeout=REQUEST_TIMEOUT + 5)
        assert not w.is_alive(), f"worker {w.index} did not stop"
    failures = [f for w in workers for f in w.failures]
    assert not failures, "\n".join(failures[:20])


def wait_for_answers(workers: list[Worker], status: str, at_least: int, timeout: float) -> None:
    """Waits until the workers have received `at_least` more answers of `status`."""
    start = sum(w.counts_now()[status] for w in workers)
    deadline = time.monotonic() + timeout
    while sum(w.counts_now()[status] for w in workers) < start + at_least:
        failures = [f for w in workers for f in w.failures]
        assert not failures, "\n".join(failures[:20])
        assert time.monotonic() < deadline, \
            f"the client threads got fewer than {at_least} answers {status} in {timeout}s"
        time.sleep(0.05)


# ------------------------------------------------------------------------------ the scenario

@dataclasses.dataclass
class Fixture:
    """The sessions one scenario works with, on one account."""
    localpart: str
    password: str
    legacy: Held      # refreshed with the legacy /tokenrefresh during the fault
    refreshed: Held   # refreshed with /refresh during the fault
    logged_out: Held  # logged out during the fault
    unused: Held      # refreshed before the fault; its new access token not used yet


def prepare(server) -> Fixture:
    """An account with four sessions whose access tokens are in use (so the token cache answers
    for them), one of them refreshed once more without using the new access token."""
    s0 = register_ok(server, unique_name("sqfault"), device_id="FAULTD0", refresh_token=True)
    held = [Held(s0.user_id, "FAULTD0", s0.access_token, s0.refresh_token)]
    for i in range(1, 4):
        body = assert_ok(login(server, s0.localpart, s0.password, device_id=f"FAULTD{i}",
                               refresh_token=True), f"login on FAULTD{i}")
        access, refresh_token = assert_pair(body)
        held.append(Held(s0.user_id, f"FAULTD{i}", access, refresh_token))
    for s in held:
        assert_ok(whoami(server, s.access), f"first use of {s.device_id}'s access token")
    unused = held[3]
    access, refresh_token = assert_pair(assert_ok(refresh(server, unused.refresh),
                                                  "refresh before the fault"))
    held[3] = Held(unused.user_id, unused.device_id, access, refresh_token, gen=1, used=False)
    return Fixture(s0.localpart, s0.password, *held)


def check_writes_fail(server, fx: Fixture) -> dict:
    """During the fault: every write answers a proper 503, the cache and reads answer 200.
    Returns the answers' times in seconds by request."""
    times = {}
    # What the token cache answers alone, and what only reads the database.
    for s in (fx.legacy, fx.refreshed, fx.logged_out):
        body = assert_ok(whoami(server, s.access), f"whoami of {s.device_id} (token cache)")
        assert body.get("device_id") == s.device_id, body
    listed = assert_ok(devices(server, fx.legacy.access), "GET /devices (a read)")
    assert {d["device_id"] for d in listed["devices"]} >= {"FAULTD0", "FAULTD1", "FAULTD2"}

    def timed(name, fn, *args, **kwargs):
        started = time.monotonic()
        r = fn(server, *args, **kwargs)
        times[name] = time.monotonic() - started
        assert_unavailable(r, name)

    timed("login", login, fx.localpart, fx.password, device_id="FAULTD4", refresh_token=True)
    timed("refresh", refresh, fx.refreshed.refresh)
    timed("legacy tokenrefresh", legacy_refresh, fx.legacy.refresh)
    timed("logout", logout, fx.logged_out.access)
    timed("first use of a new access token", whoami, fx.unused.access)
    timed("register", register, {"username": unique_name("sqfnew"), "password": unique_password(),
                                 "auth": {"type": "m.login.dummy"}})
    # A retry during the fault is refused the same way, and changes nothing either.
    timed("refresh again", refresh, fx.refreshed.refresh)
    # The session whose logout failed is still live.
    assert_ok(whoami(server, fx.logged_out.access), "whoami after the logout answered 503")
    return times


def wait_for_recovery(server, fx: Fixture) -> float:
    """After the fault: polls a login until it succeeds; returns how long that took."""
    started = time.monotonic()
    while True:
        r = login(server, fx.localpart, fx.password, device_id="FAULTD4", refresh_token=True)
        if r.status_code == 200:
            assert_pair(r.json())
            return time.monotonic() - started
        assert_unavailable(r, "login while recovering")
        assert time.monotonic() - started < RECOVERY_DEADLINE, \
            f"no successful login {RECOVERY_DEADLINE}s after the fault cleared: {show(r)}"
        time.sleep(0.1)


def check_recovered(server, fx: Fixture) -> list[Held]:
    """After the fault: the requests refused during it succeed, and found everything as it was.
    Returns the sessions the client holds."""
    # The refresh answered 503 (twice) did not happen: its refresh token rotates now, once.
    access, refresh_token = assert_pair(assert_ok(refresh(server, fx.refreshed.refresh),
                                                  "refresh with the token of the 503 refresh"))
    refreshed = Held(fx.refreshed.user_id, fx.refreshed.device_id, access, refresh_token, gen=1)
    assert_ok(whoami(server, refreshed.access), "the new access token")
    r = whoami(server, fx.refreshed.access)
    assert r.status_code == 401 and r.json().get("errcode") == "M_UNKNOWN_TOKEN", \
        f"the superseded access token: {show(r)}"
    # The legacy refresh answered 503 did not use up its single-use token.
    body = assert_ok(legacy_refresh(server, fx.legacy.refresh),
                     "legacy tokenrefresh with the token of the 503 attempt")
    legacy = Held(fx.legacy.user_id, fx.legacy.device_id, body["access_token"],
                  body["refresh_token"], gen=1)
    assert_ok(whoami(server, legacy.access), "the legacy refresh's access token")
    # The new access token refused during the fault works, and ends its predecessor.
    assert_ok(whoami(server, fx.unused.access), "the access token first used after the fault")
    # The session whose logout answered 503 logs out now.
    assert_ok(logout(server, fx.logged_out.access), "logout after the fault")
    r = whoami(server, fx.logged_out.access)
    assert r.status_code == 401 and r.json().get("errcode") == "M_UNKNOWN_TOKEN", \
        f"after logout: {show(r)}"
    assert_ok(register(server, {"username": unique_name("sqfnew"), "password": unique_password(),
                                "auth": {"type": "m.login.dummy"}}), "register after the fault")
    fx.unused.used = True
    return [legacy, refreshed, fx.unused]


def wait_for_failed_activity_flush(server, s: Held) -> None:
    """During the fault: the periodic flush of device activity fails (and says so). Keeps the
    device active meanwhile (a whoami answered from the token cache): the flusher writes only
    when there are sightings."""
    deadline = time.monotonic() + RECOVERY_DEADLINE
    while "device activity: batch write failed" not in server.log_text():
        assert_ok(whoami(server, s.access), f"whoami of {s.device_id} (token cache)")
        assert time.monotonic() < deadline, \
            f"no failed device activity flush in the log\n{server.log_tail()}"
        time.sleep(0.1)


def check_activity_flushed(server, s: Held) -> None:
    """The periodic flush of device activity works again: a request made now shows up in the
    device's last_seen_ts (written by the flusher, [devices] last_seen_flush) without a
    restart."""
    now_ms = int(time.time() * 1000) - 1000  # the server's clock is this machine's
    deadline = time.monotonic() + RECOVERY_DEADLINE
    while True:
        listed = assert_ok(devices(server, s.access), "GET /devices")
        seen = {d["device_id"]: d.get("last_seen_ts") or 0 for d in listed["devices"]}
        if seen.get(s.device_id, 0) >= now_ms:
            return
        assert time.monotonic() < deadline, \
            f"{s.device_id}'s last_seen_ts stays at {seen.get(s.device_id)} (now: {now_ms})"
        time.sleep(0.1)


def check_database(server, held: list[Held]) -> None:
    """With the server stopped: the file is intact and each held session is live at the
    generation its client holds (and has used), with no second live session on its device."""
    assert h.db_query(server, "PRAGMA integrity_check") == [("ok",)]
    assert h.db_query(server, "PRAGMA foreign_key_check") == []
    doubles = h.db_query(server, "SELECT user_id, device_id, COUNT(*) FROM sessions "
                                 "WHERE revoked_ts = 0 GROUP BY user_id, device_id "
                                 "HAVING COUNT(*) > 1")
    assert not doubles, f"devices with more than one live session: {doubles}"
    for s in held:
        rows = h.db_query(server, "SELECT current_generation, used_generation FROM sessions "
                                  "WHERE user_id = ? AND device_id = ? AND revoked_ts = 0",
                          (s.user_id, s.device_id))
        expected = (s.gen, s.gen if s.used else s.gen - 1)
        assert rows == [expected], \
            f"{s.user_id}/{s.device_id}: (current, used) in the database {rows}, " \
            f"the client holds {expected}"


def check_after_restart(server, held: list[Held]) -> None:
    for s in held:
        body = assert_ok(whoami(server, s.access), f"{s.device_id}'s access token after restart")
        assert body.get("device_id") == s.device_id, body
        if s.refresh:
            assert_pair(assert_ok(refresh(server, s.refresh),
                                  f"{s.device_id}'s refresh token after restart"))


# ------------------------------------------------------------------------------ file faults

def shim_env(control: Path, folder: Path) -> dict:
    shim = h.fault_shim_path()
    assert shim.exists(), (f"the fault injector {shim} is missing: build the tests "
                           f"(cmake --build) or set MYELIN_FAULT_SHIM")
    preload = " ".join(x for x in (str(shim), os.environ.get("LD_PRELOAD", "")) if x)
    asan = ":".join(x for x in (os.environ.get("ASAN_OPTIONS", ""), "verify_asan_link_order=0")
                    if x)
    return {"LD_PRELOAD": preload, "MYELIN_FAULT_CONTROL": str(control),
            "MYELIN_FAULT_DIR": str(folder), "ASAN_OPTIONS": asan}


@pytest.mark.parametrize("fault,cause", FILE_FAULTS, ids=[f for f, _ in FILE_FAULTS])
def test_file_fault_answers_503_logs_the_cause_and_recovers_without_a_restart(
        server_factory, tmp_path, fault, cause):
    folder = Path(os.path.realpath(tmp_path))
    control = folder / "fault-control"
    control.write_text("")
    hs = server_factory(env=shim_env(control, folder),
                        devices={"last_seen_flush": "200ms"})
    pid = hs.proc.pid
    fx = prepare(hs)
    workers, stop = start_workers(hs)
    try:
        wait_for_answers(workers, "200", 10, timeout=20)
        control.write_text(fault)
        times = check_writes_fail(hs, fx)
        # The flush of device activity fails too (every 200 ms) and the client threads keep
        # meeting the fault.
        wait_for_answers(workers, "503", 3, timeout=20)
        hs.wait_for_log(r"sqlite: .* failed because .*" + cause, timeout=10)
        wait_for_failed_activity_flush(hs, fx.legacy)
        control.write_text("")
        recovered = wait_for_recovery(hs, fx)
        held = check_recovered(hs, fx)
        check_activity_flushed(hs, held[0])
        wait_for_answers(workers, "200", 10, timeout=20)
    finally:
        stop.set()
        control.write_text("")
    stop_workers(workers, stop)
    held += [w.settle() for w in workers]
    assert hs.is_running() and hs.proc.pid == pid, "the server is gone"
    print(f"\n{fault}: 503 times " + ", ".join(f"{k} {v:.3f}s" for k, v in times.items())
          + f"; recovered {recovered:.2f}s after the fault cleared; client threads: "
          + ", ".join(str(w.counts_now()) for w in workers))

    hs.stop()
    check_database(hs, held)
    hs.env = {}
    hs.start()
    check_after_restart(hs, held)


# (control file content, what the server's log must say when it cannot start)
START_FAULTS = [
    ("enospc", r"cannot start: cannot open database '[^']+': .*the disk is full"),
    ("erofs", r"cannot start: cannot open database '[^']+' for writing: the file or its file "
              r"system is read-only, or this user may not write it"),
    ("eacces", r"cannot start: cannot open database '[^']+' for writing: the file or its file "
               r"system is read-only, or this user may not write it"),
]


@pytest.mark.parametrize("fault,message", START_FAULTS, ids=[f for f, _ in START_FAULTS])
def test_stop_and_start_during_a_file_fault(server_factory, tmp_path, fault, message):
    """Stopped during the fault, the server exits cleanly and leaves an intact database; started
    during it, it refuses with a message that names the problem (rather than serving what it
    cannot write); started once the fault has cleared, it serves every token as before."""
    folder = Path(os.path.realpath(tmp_path))
    control = folder / "fault-control"
    control.write_text("")
    hs = server_factory(env=shim_env(control, folder))
    fx = prepare(hs)
    control.write_text(fault)
    assert_ok(whoami(hs, fx.legacy.access), "whoami (token cache)")
    assert_unavailable(refresh(hs, fx.refreshed.refresh), "refresh")
    hs.stop()  # SIGTERM: exit status 0 although the last writes fail
    assert h.db_query(hs, "PRAGMA integrity_check") == [("ok",)]

    hs.start(wait=False)
    assert hs.proc.wait(timeout=20) != 0, "the server started on a database it cannot write"
    hs.exit_code = hs.proc.returncode
    log = hs.log_text()
    assert re.search(message, log), log[-3000:]

    control.write_text("")
    hs.start()
    held = [fx.legacy, fx.refreshed, fx.logged_out]
    for s in held:
        s.gen, s.used = 0, True
    check_after_restart(hs, held)


# ------------------------------------------------------------------------------ the lock

HOLDER = r"""
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
db.execute("UPDATE devices SET display_name = 'renamed by another process' "
           "WHERE user_id = ? AND device_id = ?", (sys.argv[2], sys.argv[3]))
print("locked", flush=True)
sys.stdin.read()  # until the test closes stdin
db.execute("COMMIT")
db.close()
print("released", flush=True)
"""


def test_database_locked_by_another_process_answers_503_and_recovers(server_factory):
    hs = server_factory(devices={"last_seen_flush": "200ms"})
    pid = hs.proc.pid
    fx = prepare(hs)
    workers, stop = start_workers(hs)
    holder = None
    try:
        wait_for_answers(workers, "200", 10, timeout=20)
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(hs.data_dir / "homeserver.db"),
             fx.legacy.user_id, fx.legacy.device_id],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "locked", "the lock holder did not start"
        locked_at = time.monotonic()
        # Writes wait for the busy timeout and then answer 503; run them side by side, as the
        # requests of different clients would.
        results: dict[str, requests.Response | BaseException] = {}
        elapsed: dict[str, float] = {}

        def attempt(name, fn, *args, **kwargs):
            started = time.monotonic()
            try:
                results[name] = fn(Patient(hs), *args, **kwargs)
            except BaseException as e:  # noqa: BLE001 - reported below
                results[name] = e
            elapsed[name] = time.monotonic() - started

        writes = [
            ("login", login, (fx.localpart, fx.password), {"device_id": "FAULTD4",
                                                            "refresh_token": True}),
            ("refresh", refresh, (fx.refreshed.refresh,), {}),
            ("legacy tokenrefresh", legacy_refresh, (fx.legacy.refresh,), {}),
            ("logout", logout, (fx.logged_out.access,), {}),
            ("first use of a new access token", whoami, (fx.unused.access,), {}),
        ]
        threads = [threading.Thread(target=attempt, args=(name, fn, *args), kwargs=kwargs)
                   for name, fn, args, kwargs in writes]
        for t in threads:
            t.start()
        # Meanwhile the token cache and the readers answer at once (WAL: the lock holder blocks
        # writers only).
        for s in (fx.legacy, fx.refreshed, fx.logged_out):
            assert_ok(whoami(hs, s.access), f"whoami of {s.device_id} under the lock")
        listed = assert_ok(devices(hs, fx.legacy.access), "GET /devices under the lock")
        assert len(listed["devices"]) >= 4, listed
        reads_done = time.monotonic() - locked_at
        for t in threads:
            t.join(timeout=REQUEST_TIMEOUT + 5)
        for name, _fn, _args, _kwargs in writes:
            r = results.get(name)
            assert isinstance(r, requests.Response), f"{name} under the lock: no answer ({r!r})"
            assert_unavailable(r, f"{name} under the lock")
            # Within about one busy timeout: the writes that queue while the writer waits for
            # the lock share that wait's answer rather than waiting for a second one (which
            # took 10 s here before). The margin is for a loaded machine.
            assert elapsed[name] < BUSY_TIMEOUT * 1.6, \
                f"{name} answered 503 after {elapsed[name]:.2f}s"
        assert reads_done < BUSY_TIMEOUT, \
            f"whoami and GET /devices waited for the lock ({reads_done:.2f}s)"
        hs.wait_for_log(r"sqlite: starting a write transaction failed because the database is "
                        r"locked by another connection or process", timeout=5)
        wait_for_answers(workers, "503", 1, timeout=REQUEST_TIMEOUT)

        holder.stdin.close()
        assert holder.stdout.readline().strip() == "released"
        assert holder.wait(timeout=10) == 0
        holder = None
        recovered = wait_for_recovery(hs, fx)
        held = check_recovered(hs, fx)
        # The other process's committed change is visible to the server.
        body = assert_ok(hs.get(V3 + "/devices/" + fx.legacy.device_id,
                                headers=bearer(held[0].access)), "GET /devices/FAULTD0")
        assert body.get("display_name") == "renamed by another process", body
        check_activity_flushed(hs, held[0])
        wait_for_answers(workers, "200", 10, timeout=20)
    finally:
        stop.set()
        if holder is not None:
            holder.kill()
            holder.wait()
    stop_workers(workers, stop)
    held += [w.settle() for w in workers]
    assert hs.is_running() and hs.proc.pid == pid, "the server is gone"
    print("\nlock: 503 after " + ", ".join(f"{k} {v:.2f}s" for k, v in elapsed.items())
          + f"; recovered {recovered:.2f}s after the lock was released; client threads: "
          + ", ".join(str(w.counts_now()) for w in workers))
    hs.stop()
    check_database(hs, held)
    hs.start()
    check_after_restart(hs, held)
