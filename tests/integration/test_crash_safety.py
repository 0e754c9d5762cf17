"""Crash safety of the token engine: several client threads register, log in, refresh (v3 and
the legacy /tokenrefresh), use and log out sessions while the server is killed with SIGKILL at
random moments and restarted on the same data folder, at least 20 times.

Every client records, per session, only what it actually received. After each restart the test
checks:

- every refresh answer a client received is usable: its access token works, and while the retry
  window is open a retry with the previous refresh token returns exactly that pair;
- a request whose answer was lost in the crash resolves the way the contract allows: a lost v3
  refresh, retried, yields a pair; a lost legacy refresh or logout either happened or did not,
  and the newest access token tells which (and then the refresh token must agree);
- every superseded access token is refused, a superseded refresh token is refused (and, being
  theft by the contract, ends the session: the newest access token dies with it), and the tokens
  of ended sessions stay dead;
- in the database (either backend; SQLite also passes `PRAGMA integrity_check`): no session has two live
  lineages (one refresh and one access token at the current generation, nothing newer, no
  generation twice, `used_generation` one behind `current_generation` at most, at most one
  sealed successor and only inside the retry window), no device has two live sessions, and each
  session the clients hold is live at exactly the generation they hold.

SIGKILL ends the process, not the kernel: what reached the page cache survives. So this checks
that no answer leaves the server before its transaction is committed. It cannot check that the
commit reached the disk (that is `synchronous = FULL`; it would take a power cut).

The run is seeded. The seed is printed; MYELIN_CRASH_SEED=<n> repeats the kill times and each
client's choices (thread interleaving, and so the moment each kill lands, still differs).
"""

from __future__ import annotations

import dataclasses
import os
import random
import threading
import time
from collections import Counter

import requests

import myelin_harness as h
from myelin_harness import assert_matrix_error
from client_helpers import (ACCESS_TOKEN_RE, REFRESH_TOKEN_RE, legacy_refresh, login, logout,
                            mxid, refresh, register, show, unique_name, unique_password, whoami)

CYCLES = 30                 # kills; the test needs at least 20
MIN_CYCLES = 20
WORKERS = 4                 # client threads
TRAFFIC_SECONDS = (0.15, 1.5)  # time between a restart's checks and the next kill
SOFT_DEADLINE = 75.0        # after MIN_CYCLES, no new cycle starts past this many seconds
MAX_LIVE_PER_WORKER = 6
PARK_TIMEOUT = 20.0         # a worker must notice a kill within this time


class ServerGone(Exception):
    """A request got no complete answer: the server died while it was in flight (or before)."""


@dataclasses.dataclass
class Lineage:
    """One signed-in session as its client knows it: every pair it received, in order
    (index = generation), and a lower bound of the server's `used_generation` that the client
    has proof of (an answered use of that generation's access token, or an answered refresh)."""
    localpart: str
    password: str
    device_id: str
    legacy: bool            # this session also refreshes on the legacy endpoint
    pairs: list             # [(access_token, refresh_token)], index = generation
    used: int = 0           # durable lower bound of used_generation
    via_v3: bool = False    # the newest pair came from POST /v3/refresh
    pending: tuple | None = None  # the request in flight when the server died, if any
    ended: str | None = None      # "logout", "reuse", "legacy_lost"
    checked_dead: bool = False    # its tokens were found dead after a restart

    @property
    def user_id(self) -> str:
        return mxid(self.localpart)

    @property
    def gen(self) -> int:
        return len(self.pairs) - 1

    @property
    def access(self) -> str:
        return self.pairs[-1][0]

    @property
    def refresh_token(self) -> str:
        return self.pairs[-1][1]

    def window_open(self) -> bool:
        """The previous refresh token may still be retried (v3, new access token unused)."""
        return self.via_v3 and self.used == self.gen - 1

    def __str__(self) -> str:
        return (f"session {self.user_id}/{self.device_id} (generation {self.gen}, proven used "
                f"{self.used}, {'legacy+v3' if self.legacy else 'v3'})")


# ------------------------------------------------------------------------------ checks

def expect_access_works(server, lin: Lineage, what: str) -> None:
    r = whoami(server, lin.access)
    assert r.status_code == 200, f"{lin}: {what}: the newest access token must work: {show(r)}"
    body = r.json()
    assert (body.get("user_id"), body.get("device_id")) == (lin.user_id, lin.device_id), \
        f"{lin}: {what}: whoami names another session: {body}"
    lin.used = lin.gen


def expect_access_refused(server, lin: Lineage, token: str, what: str) -> None:
    r = whoami(server, token)
    assert r.status_code == 401, f"{lin}: {what} must be refused: {show(r)}"
    assert_matrix_error(r, 401, "M_UNKNOWN_TOKEN")


def expect_refresh_refused(server, lin: Lineage, token: str, what: str, legacy: bool = False,
                           soft_logout: bool | None = None) -> None:
    r = legacy_refresh(server, token) if legacy else refresh(server, token)
    status, errcode = (403, "M_FORBIDDEN") if legacy else (401, "M_UNKNOWN_TOKEN")
    assert r.status_code == status, f"{lin}: {what} must be refused: {show(r)}"
    body = assert_matrix_error(r, status, errcode)
    if soft_logout is not None and not legacy:
        assert body.get("soft_logout") is soft_logout, \
            f"{lin}: {what}: expected soft_logout {soft_logout}: {body}"


def accept_pair(lin: Lineage, r, legacy: bool, what: str) -> None:
    """Records the pair of a 200 refresh answer (the request used the newest refresh token)."""
    assert r.status_code == 200, f"{lin}: {what}: {show(r)}"
    body = r.json()
    at, rt = body.get("access_token"), body.get("refresh_token")
    assert ACCESS_TOKEN_RE.match(at or "") and REFRESH_TOKEN_RE.match(rt or ""), \
        f"{lin}: {what}: not a token pair: {body}"
    seen = {t for p in lin.pairs for t in p}
    assert at not in seen and rt not in seen, f"{lin}: {what}: a token came back twice: {body}"
    old = lin.gen
    lin.pairs.append((at, rt))
    # A v3 rotation records used := old; the legacy one counts the new pair as used at once.
    lin.used = old + 1 if legacy else max(lin.used, old)
    lin.via_v3 = not legacy


# ------------------------------------------------------------------------------ operations
# Each sets `lin.pending` before its request and clears it once the answer is processed, so a
# crash leaves behind exactly the request whose fate is unknown.

def op_refresh(server, lin: Lineage, legacy: bool) -> None:
    lin.pending = ("legacy" if legacy else "refresh", lin.gen)
    r = legacy_refresh(server, lin.refresh_token) if legacy else refresh(server, lin.refresh_token)
    accept_pair(lin, r, legacy, f"{'legacy' if legacy else 'v3'} refresh of the newest token")
    lin.pending = None


def op_use(server, lin: Lineage) -> None:
    lin.pending = ("use", lin.gen)
    r = whoami(server, lin.access)
    assert r.status_code == 200, f"{lin}: the newest access token must work: {show(r)}"
    lin.used = lin.gen
    lin.pending = None


def op_retry(server, lin: Lineage, what: str = "a retry inside the window") -> None:
    """Retries the last v3 refresh: the identical pair must come back."""
    lin.pending = ("retry", lin.gen)
    r = refresh(server, lin.pairs[-2][1])
    assert r.status_code == 200, f"{lin}: {what} must succeed: {show(r)}"
    got = (r.json().get("access_token"), r.json().get("refresh_token"))
    assert got == lin.pairs[-1], \
        f"{lin}: {what} must return the pair received before: {got} vs {lin.pairs[-1]}"
    lin.pending = None


def op_old_access(server, lin: Lineage, rng: random.Random) -> None:
    g = rng.randrange(lin.used)
    expect_access_refused(server, lin, lin.pairs[g][0], f"superseded access token {g}")


def op_logout(server, lin: Lineage) -> None:
    lin.pending = ("logout", lin.gen)
    r = logout(server, lin.access)
    assert r.status_code == 200, f"{lin}: logout: {show(r)}"
    lin.ended = "logout"
    lin.pending = None


def op_reuse(server, lin: Lineage, rng: random.Random) -> None:
    """Presents a superseded refresh token: refused, and the session ends (reuse detection)."""
    g = rng.randrange(lin.used)
    legacy = lin.legacy and rng.random() < 0.5
    lin.pending = ("reuse", g, legacy)
    expect_refresh_refused(server, lin, lin.pairs[g][1], f"superseded refresh token {g}",
                           legacy=legacy, soft_logout=True)
    lin.ended = "reuse"
    lin.pending = None


def check_ended(server, lin: Lineage, what: str) -> None:
    """The last tokens of an ended session stay dead (neither request changes anything)."""
    expect_access_refused(server, lin, lin.access, f"{what}: the newest access token")
    expect_refresh_refused(server, lin, lin.refresh_token, f"{what}: the newest refresh token")


# ------------------------------------------------------------------------------ clients

class Control:
    """Runs and parks the client threads around each kill."""

    def __init__(self, workers: int):
        self.cv = threading.Condition()
        self.epoch = 0
        self.running = False
        self.done = False
        self.workers = workers
        self.parked: set[int] = set()
        self.kill_time = float("inf")

    def resume(self) -> None:
        with self.cv:
            self.epoch += 1
            self.parked.clear()
            self.kill_time = float("inf")
            self.running = True
            self.cv.notify_all()

    def park_all(self, timeout: float) -> None:
        with self.cv:
            self.running = False
            ok = self.cv.wait_for(lambda: len(self.parked) == self.workers, timeout=timeout)
        assert ok, f"client threads did not stop within {timeout}s of the kill"

    def finish(self) -> None:
        with self.cv:
            self.done = True
            self.running = False
            self.cv.notify_all()


class Worker(threading.Thread):
    """One client: owns its sessions (no other thread touches them while it runs)."""

    def __init__(self, index: int, server, rng: random.Random, ctl: Control):
        super().__init__(name=f"crash-client-{index}", daemon=True)
        self.index = index
        self.server = server
        self.rng = rng
        self.ctl = ctl
        self.users: list[tuple[str, str]] = []   # (localpart, password) of registered users
        self.lineages: list[Lineage] = []
        self.devices = 0
        self.failures: list[str] = []
        self.ops = Counter()
        self.lost = Counter()      # requests in flight when the server died, by kind

    # -- thread --------------------------------------------------------------------------
    def run(self) -> None:
        seen_epoch = 0
        while True:
            with self.ctl.cv:
                self.ctl.cv.wait_for(lambda: self.ctl.done or
                                     (self.ctl.running and self.ctl.epoch != seen_epoch))
                if self.ctl.done:
                    return
                seen_epoch = self.ctl.epoch
            try:
                while self.ctl.running and not self.failures:
                    self.step()
            except ServerGone:
                pass
            except Exception as e:  # an assertion (or a bug here): the test reports it
                self.failures.append(f"client {self.index}: {type(e).__name__}: {e}")
            with self.ctl.cv:
                self.ctl.parked.add(self.index)
                self.ctl.cv.notify_all()

    # -- traffic -------------------------------------------------------------------------
    def live(self) -> list[Lineage]:
        return [x for x in self.lineages if x.ended is None]

    def new_device(self) -> str:
        self.devices += 1
        return f"CRASH{self.index}D{self.devices}"

    def timed(self, kind: str, fn, *args) -> None:
        started = time.monotonic()
        self.ops[kind] += 1
        try:
            fn(*args)
        except requests.RequestException as e:
            # No complete answer: the server died while (or before) the request was in flight.
            if started < self.ctl.kill_time:
                self.lost[kind] += 1
            raise ServerGone(f"{kind}: {type(e).__name__}: {e}") from e

    def step(self) -> None:
        live = self.live()
        rng = self.rng
        if len(live) < 3 or (len(live) < MAX_LIVE_PER_WORKER and rng.random() < 0.04):
            if self.users and rng.random() < 0.5:
                self.timed("login", self.create, True)
            else:
                self.timed("register", self.create, False)
            return
        lin = rng.choice(live)
        x = rng.random()
        if x < 0.42:
            legacy = lin.legacy and rng.random() < 0.6
            self.timed("legacy_refresh" if legacy else "refresh", op_refresh, self.server, lin,
                       legacy)
        elif x < 0.62:
            self.timed("use", op_use, self.server, lin)
        elif x < 0.72:
            if lin.window_open():
                self.timed("retry", op_retry, self.server, lin)
            else:
                self.timed("use", op_use, self.server, lin)
        elif x < 0.84:
            if lin.used > 0:
                self.timed("old_access", op_old_access, self.server, lin, rng)
            else:
                self.timed("refresh", op_refresh, self.server, lin, False)
        elif x < 0.90:
            self.timed("logout", op_logout, self.server, lin)
        elif x < 0.95:
            if lin.used > 0:
                self.timed("reuse", op_reuse, self.server, lin, rng)
            else:
                self.timed("use", op_use, self.server, lin)
        else:
            ended = [x for x in self.lineages if x.ended and x.pending is None]
            if ended:
                dead = rng.choice(ended)
                self.timed("check_ended", check_ended, self.server, dead, f"ended ({dead.ended})")
            else:
                self.timed("use", op_use, self.server, lin)

    def create(self, by_login: bool) -> None:
        """Registers a user, or signs an existing one in on a new device, with refresh tokens.
        A sign-in whose answer is lost is simply forgotten (its session is nobody's)."""
        device = self.new_device()
        if by_login:
            localpart, password = self.rng.choice(self.users)
            r = login(self.server, localpart, password, device_id=device, refresh_token=True)
        else:
            localpart, password = unique_name("crash"), unique_password()
            r = register(self.server, {
                "username": localpart, "password": password, "device_id": device,
                "refresh_token": True, "auth": {"type": "m.login.dummy"}})
        assert r.status_code == 200, f"{'login' if by_login else 'register'}: {show(r)}"
        body = r.json()
        assert body.get("device_id") == device and body.get("refresh_token"), body
        if not by_login:
            self.users.append((localpart, password))
        self.lineages.append(Lineage(localpart, password, device, self.rng.random() < 0.35,
                                     [(body["access_token"], body["refresh_token"])]))


# ------------------------------------------------------------------------------ after a restart

def resolve_pending(server, lin: Lineage) -> None:
    """Settles the request that was in flight when the server died. Every branch is what a
    correct server must do whether or not that request's transaction committed."""
    kind = lin.pending[0]
    if kind == "use":
        # It may have recorded the use (closing the retry window) or not: the token works
        # either way, and using it settles the question before any retry is tried.
        expect_access_works(server, lin, "an access token whose first use was cut off")
    elif kind == "refresh":
        # Committed: the retry gets the sealed pair; not committed: it rotates now. Either way
        # the newest refresh token the client holds yields a pair.
        op_refresh(server, lin, legacy=False)
    elif kind in ("legacy", "logout"):
        # Neither has a retry window: the access token says whether it happened. If it did, the
        # refresh token the client holds is spent (after a legacy refresh, presenting it is
        # reuse, which ends the session whose new pair was lost with the answer).
        what, ended = {
            "legacy": ("the refresh token of a legacy refresh that committed", "legacy_lost"),
            "logout": ("the refresh token of a logged-out session", "logout"),
        }[kind]
        r = whoami(server, lin.access)
        if r.status_code == 200:
            lin.used = lin.gen
        else:
            assert_matrix_error(r, 401, "M_UNKNOWN_TOKEN")
            expect_refresh_refused(server, lin, lin.refresh_token, what)
            lin.ended = ended
    elif kind == "reuse":
        # Refused whether the first presentation committed (session ended) or not (reuse now).
        _, g, legacy = lin.pending
        expect_refresh_refused(server, lin, lin.pairs[g][1],
                               f"superseded refresh token {g} presented again", legacy=legacy,
                               soft_logout=True)
        lin.ended = "reuse"
    # A "retry" writes nothing; verify_after_restart repeats it.
    lin.pending = None


def verify_after_restart(server, lineages: list[Lineage], rng: random.Random,
                         stats: Counter) -> None:
    for lin in [x for x in lineages if x.pending is not None and x.ended is None]:
        stats[f"resolved_{lin.pending[0]}"] += 1
        resolve_pending(server, lin)
    for lin in [x for x in lineages if x.pending is not None]:  # ended before the request
        lin.pending = None

    for lin in [x for x in lineages if x.ended is None]:
        # Superseded tokens first: using the newest access token would itself end the older
        # ones, and so hide a first use that the crash lost although it had been answered.
        proven = lin.used
        for g in range(proven):
            expect_access_refused(server, lin, lin.pairs[g][0],
                                  f"superseded access token {g} after the crash")
            stats["superseded_access_checked"] += 1
        if proven > 0 and rng.random() < 0.2:
            g = rng.randrange(proven)
            legacy = lin.legacy and rng.random() < 0.5
            expect_refresh_refused(server, lin, lin.pairs[g][1],
                                   f"superseded refresh token {g} after the crash",
                                   legacy=legacy, soft_logout=True)
            expect_access_refused(server, lin, lin.access,
                                  "the newest access token after a superseded refresh token "
                                  "was presented")
            lin.ended = "reuse"
            stats["superseded_refresh_checked"] += 1
            continue
        if lin.window_open():
            # The answer of the last refresh was received; its write must have survived, and
            # the sealed successor with it.
            op_retry(server, lin, "a retry of the last refresh after the crash")
            stats["retried_after_crash"] += 1
        expect_access_works(server, lin, "after the crash")
        for g in range(proven, lin.gen):
            expect_access_refused(server, lin, lin.pairs[g][0],
                                  f"access token {g} after the newest one was used")
            stats["superseded_access_checked"] += 1

    # Sessions that ended since the last crash, all of them; older ones, a sample.
    ended = [x for x in lineages if x.ended]
    fresh = [x for x in ended if not x.checked_dead]
    older = [x for x in ended if x.checked_dead]
    for lin in fresh + rng.sample(older, min(len(older), 12)):
        check_ended(server, lin, f"ended ({lin.ended}) after the crash")
        lin.checked_dead = True
        stats["ended_checked"] += 1


def check_database(server, lineages: list[Lineage]) -> None:
    """Reads the database while the server runs (SQLite through WAL, PostgreSQL through psql).
    SQLite's integrity_check has no PostgreSQL counterpart short of amcheck; the lineage checks
    run on both backends."""
    if h.backend() == "sqlite":
        integrity = h.db_query(server, "PRAGMA integrity_check")
        assert integrity == [("ok",)], f"integrity_check: {integrity}"

    forks = h.db_query(
        server,
        "SELECT 'refresh', session_id, generation, COUNT(*) FROM refresh_tokens "
        "GROUP BY session_id, generation HAVING COUNT(*) > 1 "
        "UNION ALL SELECT 'access', session_id, generation, COUNT(*) FROM access_tokens "
        "GROUP BY session_id, generation HAVING COUNT(*) > 1")
    assert not forks, f"two tokens of one kind at one generation (kind, session, gen, n): " \
                      f"{forks}"

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
                    AND a.generation > s.current_generation),
               (SELECT COUNT(*) FROM refresh_tokens r WHERE r.session_id = s.session_id
                    AND r.sealed_successor IS NOT NULL),
               (SELECT MIN(r.generation) FROM refresh_tokens r
                    WHERE r.session_id = s.session_id AND r.sealed_successor IS NOT NULL)
        FROM sessions s WHERE s.revoked_ts = 0""")
    for (sid, user, device, refreshable, cur, used, rt_cur, at_cur, newer, sealed,
         sealed_gen) in rows:
        where = f"live session {sid} ({user}/{device}, current {cur}, used {used})"
        assert rt_cur == (1 if refreshable else 0), \
            f"{where}: {rt_cur} refresh tokens at the current generation"
        assert at_cur == 1, f"{where}: {at_cur} access tokens at the current generation"
        assert newer == 0, f"{where}: {newer} tokens newer than the current generation"
        assert cur - 1 <= used <= cur, f"{where}: used_generation out of range"
        assert sealed <= 1, f"{where}: {sealed} sealed successors"
        if sealed:
            assert sealed_gen == cur - 1 and used == cur - 1, \
                f"{where}: a sealed successor at generation {sealed_gen} outside the window"

    sealed_dead = h.db_query(
        server,
        "SELECT COUNT(*) FROM refresh_tokens r JOIN sessions s USING (session_id) "
        "WHERE s.revoked_ts != 0 AND r.sealed_successor IS NOT NULL")[0][0]
    assert sealed_dead == 0, f"{sealed_dead} sealed successors on ended sessions"

    doubles = h.db_query(
        server,
        "SELECT user_id, device_id, COUNT(*) FROM sessions WHERE revoked_ts = 0 "
        "GROUP BY user_id, device_id HAVING COUNT(*) > 1")
    assert not doubles, f"devices with more than one live session: {doubles}"

    live = {(u, d): (cur, used) for _sid, u, d, _r, cur, used, *_ in rows}
    for lin in lineages:
        key = (lin.user_id, lin.device_id)
        if lin.ended:
            assert key not in live, f"{lin} ended ({lin.ended}) but is live in the database"
        else:
            assert live.get(key) == (lin.gen, lin.gen), \
                f"{lin}: the database has (current, used) = {live.get(key)}, the client " \
                f"holds and has used generation {lin.gen}"



# ------------------------------------------------------------------------------ the test

def test_sigkill_at_random_moments_loses_no_answered_token_and_forks_no_lineage(server_factory):
    seed = int(os.environ.get("MYELIN_CRASH_SEED") or random.SystemRandom().randrange(1 << 32))
    print(f"\ncrash test seed {seed} (repeat with MYELIN_CRASH_SEED={seed})")
    rng = random.Random(seed)
    hs = server_factory()

    ctl = Control(WORKERS)
    workers = [Worker(i, hs, random.Random(rng.getrandbits(64)), ctl) for i in range(WORKERS)]
    for w in workers:
        w.start()
    stats = Counter()
    started = time.monotonic()
    cycles = 0
    try:
        while cycles < CYCLES and (cycles < MIN_CYCLES
                                   or time.monotonic() - started < SOFT_DEADLINE):
            cycles += 1
            ctl.resume()
            time.sleep(rng.uniform(*TRAFFIC_SECONDS))
            assert hs.is_running(), f"cycle {cycles}: the server died on its own\n" \
                                    f"{hs.log_tail()}"
            ctl.kill_time = time.monotonic()
            hs.kill()
            assert hs.exit_code == -9, f"cycle {cycles}: exit status {hs.exit_code}"
            ctl.park_all(PARK_TIMEOUT)
            failures = [f for w in workers for f in w.failures]
            assert not failures, f"seed {seed}, cycle {cycles}, during traffic:\n" + \
                "\n".join(failures)

            hs.start()
            lineages = [x for w in workers for x in w.lineages]
            try:
                verify_after_restart(hs, lineages, rng, stats)
                check_database(hs, lineages)
            except AssertionError as e:
                raise AssertionError(f"seed {seed}, after kill {cycles}: {e}") from e
    finally:
        ctl.finish()
        for w in workers:
            w.join(timeout=15)
    hs.stop()

    ops = sum((w.ops for w in workers), Counter())
    lost = sum((w.lost for w in workers), Counter())
    elapsed = time.monotonic() - started
    print(f"{cycles} kills in {elapsed:.1f}s; requests {dict(ops)}; in flight at a kill "
          f"{dict(lost)}; checks {dict(stats)}")
    assert cycles >= MIN_CYCLES
    # The test only means something if kills landed on refreshes and the checks ran.
    assert lost["refresh"] + lost["legacy_refresh"] > 0, \
        f"no refresh was in flight at a kill: {lost}"
    assert stats["superseded_access_checked"] > 0 and stats["ended_checked"] > 0, stats
