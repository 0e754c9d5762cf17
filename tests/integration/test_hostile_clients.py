"""Hostile clients (issue #7 §4): slow and flooding connections, malformed and oversized input,
identifier tricks.

Every attack comes from 127.0.0.2 (still loopback: all traffic goes to 127.0.0.1), so that it is
"one address" that is not the bystander's. While it runs, a Bystander thread on 127.0.0.1 keeps
asking GET /account/whoami with its own token on its own keep-alive connection (or on a new
connection per request, where the attack is about connections). Each test then checks:

- every answer to the attacker is a 4xx with a JSON errcode (a UIA 401 with flows counts), or the
  server closed the connection; never a 5xx, never a hang;
- every bystander request was answered 200;
- the server process is alive and GET /_matrix/client/versions answers 200.

Every attack has its own deadline, so the file always ends (about 30 s in all). Latencies are
collected but never asserted; bench/hostile_clients.py measures them.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from urllib.parse import quote

import pytest

import myelin_harness as h
from client_helpers import (V3, bearer, login, login_ok, register, register_ok, show,
                            unique_name, unique_password)
from myelin_harness import RawConnection, build_request

ATTACKER_IP = "127.0.0.2"
WHOAMI = V3 + "/account/whoami"
VERSIONS = "/_matrix/client/versions"
ADMIN = "/_myelin/admin/v1"

# The shared server: short request_timeout (slow clients are cut off quickly), a connection cap
# below what the flood opens, rate limits off so that the field table sees the endpoints' own
# answers (tests of the limiter start their own server), no trusted proxies (127.0.0.x must not
# be able to claim another address).
HOSTILE_LIMITS = {"request_timeout": "2s", "max_connections": 300, "max_connections_per_ip": 100}
NO_PROXIES = {"enabled": False, "trusted_proxies": []}


# ------------------------------------------------------------------------------ helpers

def attacker_socket(port: int, timeout: float = 5.0) -> socket.socket:
    """A TCP connection to 127.0.0.1:port from the attacker's address."""
    s = socket.create_connection((h.LOCAL, port), timeout=timeout, source_address=(ATTACKER_IP, 0))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


class AttackerConnection(RawConnection):
    """RawConnection from ATTACKER_IP."""

    def __init__(self, port: int, timeout: float = 5.0):  # noqa: super().__init__ would connect
        self.port = port
        self.timeout = timeout
        self.sock = attacker_socket(port, timeout)
        self._buf = b""
        self.closed_by_peer = False


def exchange(port: int, data: bytes, timeout: float = 5.0):
    """Sends `data` from the attacker's address; the first answer, or None when the server closed
    the connection without one."""
    with AttackerConnection(port, timeout) as c:
        try:
            c.send(data)
        except h.ConnectionClosed:
            pass  # answered early and closed: the answer may still be readable
        try:
            return c.read_response(timeout)
        except h.ConnectionClosed:
            return None


def attack_request(port: int, method: str, path: str, headers=None, body: bytes | str = b""):
    return exchange(port, build_request(method, path, headers or {}, body))


def describe(r) -> str:
    if r is None:
        return "closed"
    return f"{r.status} {r.body[:300]!r}"


def assert_refused(r, what: str, *, statuses=None) -> None:
    """A 4xx with a JSON errcode (or a UIA 401 with flows), or a closed connection."""
    if r is None:
        return
    assert 400 <= r.status < 500, f"{what}: {describe(r)}"
    if statuses is not None:
        assert r.status in statuses, f"{what}: {describe(r)}, expected one of {statuses}"
    try:
        body = r.json()
    except ValueError:
        pytest.fail(f"{what}: {r.status} without a JSON body: {r.body[:200]!r}")
    if r.status == 401 and "flows" in body:
        return  # User-Interactive Authentication: the next stage, not an error
    assert isinstance(body.get("errcode"), str) and body["errcode"].startswith("M_"), \
        f"{what}: no errcode in {describe(r)}"


def assert_errcode(r, status: int, errcode: str, what: str) -> None:
    assert r is not None, f"{what}: connection closed, expected {status} {errcode}"
    assert r.status == status, f"{what}: {describe(r)}, expected {status} {errcode}"
    assert r.json().get("errcode") == errcode, f"{what}: {describe(r)}, expected {errcode}"


class Bystander:
    """A well-behaved client on 127.0.0.1: GET /account/whoami in a loop while an attack runs.

    fresh=False keeps one keep-alive connection (re-opened only if the server closes it);
    fresh=True opens a new connection for every request. `pause` is the wait between requests.
    """

    def __init__(self, server: h.MyelinServer, token: str, *, fresh: bool = False,
                 pause: float = 0.01):
        self.server = server
        self.headers = bearer(token)
        self.fresh = fresh
        self.pause = pause
        self.statuses: list[int] = []
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._first = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Bystander":
        self._thread.start()
        assert self._first.wait(10), "the bystander got no first answer"
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(15)
        assert not self._thread.is_alive(), "the bystander thread hangs"

    def _run(self) -> None:
        conn = None
        while not self._stop.is_set():
            start = time.monotonic()
            try:
                if conn is None:
                    conn = RawConnection(self.server.port, timeout=10)
                conn.send_request("GET", WHOAMI, self.headers)
                r = conn.read_response(timeout=10)
                self.latencies.append(time.monotonic() - start)
                self.statuses.append(r.status)
                if self.fresh or (r.header("Connection") or "").lower() == "close":
                    conn.close()
                    conn = None
            except Exception as e:  # noqa: BLE001 - every failure is reported by check()
                self.failures.append(f"{type(e).__name__}: {e}")
                if conn is not None:
                    conn.close()
                conn = None
            self._first.set()
            self._stop.wait(self.pause)
        if conn is not None:
            conn.close()

    def check(self, min_requests: int = 3) -> None:
        """Every request answered 200; at least `min_requests` of them."""
        assert not self.failures, f"bystander requests failed: {self.failures[:5]}"
        bad = [s for s in self.statuses if s != 200]
        assert not bad, f"bystander got {len(bad)} non-200 answers: {sorted(set(bad))}"
        assert len(self.statuses) >= min_requests, \
            f"bystander served only {len(self.statuses)} requests during the attack"


def assert_server_fine(server: h.MyelinServer) -> None:
    assert server.is_running(), f"the server died\n{server.log_tail()}"
    r = server.get(VERSIONS, timeout=10)
    assert r.status_code == 200, show(r)


def wait_until_closed(socks: list[socket.socket], deadline: float, drip: bytes | None = None,
                      drip_every: float = 0.25) -> dict:
    """Waits until the server answers or closes each socket, sending `drip` to every socket still
    open every `drip_every` s. Returns {socket: first bytes received (b"" for a bare close)};
    sockets still open at `deadline` are missing from it."""
    outcome: dict[socket.socket, bytes] = {}
    next_drip = time.monotonic()
    while len(outcome) < len(socks) and time.monotonic() < deadline:
        open_socks = [s for s in socks if s not in outcome]
        if drip is not None and time.monotonic() >= next_drip:
            for s in open_socks:
                try:
                    s.send(drip)
                except OSError:
                    pass  # closed by the server: select() reports it
            next_drip = time.monotonic() + drip_every
        readable, _, _ = select.select(open_socks, [], [], 0.05)
        for s in readable:
            try:
                outcome[s] = s.recv(65536)
            except OSError:
                outcome[s] = b""
    return outcome


def status_of(first_bytes: bytes) -> int | None:
    """The status of a response's first bytes; None for a bare close."""
    if not first_bytes:
        return None
    line = first_bytes.split(b"\r\n", 1)[0].split(b" ")
    return int(line[1])


# ------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def hostile(tmp_path_factory, myelin_binary):
    s = h.start_server(tmp_path_factory.mktemp("hostile"), scope="module",
                       limits=HOSTILE_LIMITS, rate_limits=NO_PROXIES)
    yield s
    problems = h.stop_servers([s], check=True)
    assert not problems, problems


@pytest.fixture(scope="module")
def bystander_token(hostile):
    return register_ok(hostile, unique_name("bystander")).access_token


@pytest.fixture(scope="module")
def attacker(hostile):
    """An ordinary signed-in account that the attacks use where they need a token."""
    return register_ok(hostile, unique_name("mallory"))


# ------------------------------------------------------------------------------ slow clients

@pytest.mark.parametrize("phase", ["headers", "body"])
def test_slowloris_connections_are_cut_off_by_the_request_deadline(hostile, bystander_token,
                                                                   phase):
    """80 connections that each drip one byte every 250 ms: none is ever complete; each is ended
    by request_timeout (2 s) with a 408 or a close."""
    if phase == "headers":
        first, drip = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ", b"a"
    else:
        first = (b"POST /_matrix/client/v3/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n{")
        drip = b" "
    socks = []
    try:
        with Bystander(hostile, bystander_token) as bystander:
            for _ in range(80):
                s = attacker_socket(hostile.port)
                s.sendall(first)
                socks.append(s)
            outcome = wait_until_closed(socks, time.monotonic() + 8, drip=drip)
        still_open = len(socks) - len(outcome)
        assert still_open == 0, f"{still_open} slow connections still open after 8 s"
        statuses = {status_of(b) for b in outcome.values()}
        assert statuses <= {408, None}, f"slow connections got {statuses}"
        bystander.check()
    finally:
        for s in socks:
            s.close()
    assert_server_fine(hostile)


def test_connections_that_never_send_are_closed_within_the_request_deadline(hostile,
                                                                           bystander_token):
    """A new connection that sends nothing holds a slot: it gets request_timeout (2 s), not the
    keep-alive idle_timeout (75 s), to begin its first request."""
    socks = []
    try:
        with Bystander(hostile, bystander_token) as bystander:
            start = time.monotonic()
            for _ in range(80):
                socks.append(attacker_socket(hostile.port))
            outcome = wait_until_closed(socks, start + 8)
            elapsed = time.monotonic() - start
        assert len(outcome) == len(socks), \
            f"{len(socks) - len(outcome)} silent connections still open after {elapsed:.1f} s"
        assert all(b == b"" for b in outcome.values()), "a silent connection got an answer"
        bystander.check()
    finally:
        for s in socks:
            s.close()
    assert_server_fine(hostile)


# ------------------------------------------------------------------------------ floods

def test_connection_flood_from_one_address_leaves_room_for_others(hostile, bystander_token):
    """400 connections from one address against max_connections = 300: beyond
    max_connections_per_ip (100) they get 429 M_LIMIT_EXCEEDED or a close, and other addresses
    still get new connections (without the per-address cap the flood would take all 300 and
    everyone else would get 503)."""
    socks = []
    try:
        with Bystander(hostile, bystander_token, fresh=True, pause=0.02) as bystander:
            for _ in range(400):
                try:
                    socks.append(attacker_socket(hostile.port))
                except OSError:
                    break  # refused at the socket level: allowed
            # Every flood connection asks for /versions; the admitted ones are answered.
            request = build_request("GET", VERSIONS)
            for s in socks:
                try:
                    s.sendall(request)
                except OSError:
                    pass
            outcome = wait_until_closed(socks, time.monotonic() + 8)
            time.sleep(0.3)  # the bystander keeps opening connections while the flood holds
        assert len(outcome) == len(socks), "flood connections got neither an answer nor a close"
        statuses = [status_of(b) for b in outcome.values()]
        served = statuses.count(200)
        refused = [s for s in statuses if s != 200]
        assert set(refused) <= {429, None}, f"flood connections got {sorted(set(refused))}"
        assert served <= 100, f"{served} connections of one address admitted (cap 100)"
        for b in outcome.values():
            if status_of(b) == 429:
                assert b'"M_LIMIT_EXCEEDED"' in b, b[:300]
                break
        bystander.check()
    finally:
        for s in socks:
            s.close()
    assert_server_fine(hostile)


def test_pipelined_flood_is_answered_in_order_or_rate_limited(server_factory):
    """3000 whoami requests in one write from one address, with rate limits on: each is answered
    (200 until the address's budget is spent, then 429), in order, and a bystander on another
    address keeps its own budget."""
    s = server_factory(limits=HOSTILE_LIMITS, rate_limits={"enabled": True, "trusted_proxies": []})
    bystander_token = register_ok(s, unique_name("bystander")).access_token
    mallory = register_ok(s, unique_name("mallory")).access_token
    one = build_request("GET", WHOAMI, bearer(mallory))
    statuses = []
    with Bystander(s, bystander_token, pause=0.05) as bystander:  # ~20/s, under 50/s
        with AttackerConnection(s.port, timeout=10) as c:
            sender = threading.Thread(target=lambda: c.sock.sendall(one * 3000), daemon=True)
            sender.start()
            deadline = time.monotonic() + 20
            while len(statuses) < 3000 and time.monotonic() < deadline:
                try:
                    r = c.read_response(timeout=max(0.1, deadline - time.monotonic()))
                except h.ConnectionClosed:
                    break
                statuses.append(r.status)
                if r.status == 429:
                    assert r.json()["errcode"] == "M_LIMIT_EXCEEDED"
            sender.join(5)
    assert len(statuses) == 3000, f"only {len(statuses)} of 3000 pipelined requests answered"
    assert set(statuses) <= {200, 429}, sorted(set(statuses))
    assert statuses.count(429) > 2000, "the pipelined flood was not rate limited"
    bystander.check(min_requests=1)
    assert_server_fine(s)


def test_pipelined_flood_that_never_reads_is_bounded(hostile, bystander_token):
    """A client that pipelines requests without ever reading the answers: the server stops
    reading once its answers cannot be written (TCP back-pressure) and ends the connection after
    write_timeout at the latest; memory does not grow with what the client sends."""
    one = build_request("GET", VERSIONS)
    with Bystander(hostile, bystander_token) as bystander:
        with AttackerConnection(hostile.port, timeout=0.5) as c:
            sent = 0
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                try:
                    c.sock.sendall(one * 200)
                    sent += 200
                except (socket.timeout, TimeoutError):
                    break  # the server no longer reads: back-pressure
                except OSError:
                    break
        # Closing with unread answers makes the kernel reset the connection.
    assert sent < 1_000_000, f"the server read {sent} requests nobody collected"
    bystander.check()
    assert_server_fine(hostile)


def test_pipelined_garbage_after_a_valid_request(hostile, bystander_token):
    """A valid request followed by bytes that are no HTTP: the first is answered, the garbage
    gets 400 and a close (or just a close)."""
    with Bystander(hostile, bystander_token):
        with AttackerConnection(hostile.port) as c:
            c.send(build_request("GET", VERSIONS) + b"\x00\x01GARBAGE \xff\xfe\r\n\r\n" * 100)
            assert c.read_response().status == 200
            try:
                r = c.read_response()
            except h.ConnectionClosed:
                r = None
            assert_refused(r, "garbage after a pipelined request")
    assert_server_fine(hostile)


# ------------------------------------------------------------------------------ JSON bodies

def _nested(depth: int, open_: bytes = b"[", close: bytes = b"]") -> bytes:
    return open_ * depth + close * depth


HUGE_BODIES = {
    "depth-33-arrays": (_nested(33), 400),
    "depth-33-objects": (b'{"a":' * 33 + b"1" + b"}" * 33, 400),
    "depth-30000-unclosed": (b"[" * 30000, 400),
    "depth-20000-in-auth": (b'{"auth":' + _nested(20000) + b"}", 400),
    "20k-keys": (b"{" + b",".join(b'"k%d":1' % i for i in range(6000)) + b"}", 400),
    "60k-string": (b'{"type":"' + b"x" * 60000 + b'"}', 400),
    "60k-digit-number": (b'{"type":' + b"9" * 60000 + b"}", 400),
    "exponent-overflow": (b'{"type":1e99999999999999999999}', 400),
    "64k-plus-one": (b'{"type":"' + b"x" * 65536 + b'"}', 413),
    "10k-empty-objects": (b'{"a":[' + b",".join([b"{}"] * 10000) + b"]}", 400),
}


@pytest.mark.parametrize("shape", list(HUGE_BODIES))
@pytest.mark.parametrize("path", ["/login", "/register", "/account/password"])
def test_huge_and_deeply_nested_json(hostile, bystander_token, attacker, shape, path):
    body, status = HUGE_BODIES[shape]
    # Valid JSON of no use is 400, or the UIA flows (401) where nothing else is missing.
    statuses = {status} if status == 413 else {400, 401}
    headers = {"Content-Type": "application/json", **bearer(attacker.access_token)}
    with Bystander(hostile, bystander_token) as bystander:
        r = attack_request(hostile.port, "POST", V3 + path, headers, body)
    assert_refused(r, f"{shape} to {path}", statuses=statuses)
    bystander.check(min_requests=1)
    assert_server_fine(hostile)


@pytest.mark.parametrize("raw", [
    b"\xff\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x80", b"\x80",
], ids=["ff-fe", "overlong-slash", "surrogate", "above-10ffff", "truncated", "continuation"])
@pytest.mark.parametrize("where", ["value", "key"])
def test_invalid_utf8_in_json_bodies(hostile, bystander_token, attacker, raw, where):
    if where == "value":
        body = b'{"type":"m.login.password","user":"a' + raw + b'","password":"x"}'
    else:
        body = b'{"type":"m.login.password","us' + raw + b'er":"a","password":"x"}'
    headers = {"Content-Type": "application/json", **bearer(attacker.access_token)}
    with Bystander(hostile, bystander_token) as bystander:
        for path in ("/login", "/register", "/refresh", "/account/password", "/delete_devices"):
            r = attack_request(hostile.port, "POST", V3 + path, headers, body)
            assert_errcode(r, 400, "M_NOT_JSON", f"{raw!r} in a {where} to {path}")
    bystander.check(min_requests=1)
    assert_server_fine(hostile)


def test_duplicate_keys_the_last_one_counts(hostile, attacker):
    """Like Python's json (and so Synapse and most clients): a repeated key means its last
    value, for every field alike, so a filter that looked at the first cannot be fooled into
    believing something else was asked for."""
    port = hostile.port
    name, password = unique_name("dup"), unique_password()
    register_ok(hostile, name, password)
    headers = {"Content-Type": "application/json"}

    def post_login(body: bytes):
        return attack_request(port, "POST", V3 + "/login", headers, body)

    r = post_login(b'{"type":"m.login.password","type":"m.login.token",'
                   b'"user":"%s","password":"%s"}' % (name.encode(), password.encode()))
    assert_errcode(r, 400, "M_UNKNOWN", "type repeated, last one unsupported")
    r = post_login(b'{"type":"m.login.password","user":"%s","password":"%s","password":"x"}'
                   % (name.encode(), password.encode()))
    assert_errcode(r, 403, "M_FORBIDDEN", "password repeated, last one wrong")
    r = post_login(b'{"type":"m.login.password","user":"%s","user":"%s","password":"%s"}'
                   % (attacker.user_id.encode(), name.encode(), password.encode()))
    assert r is not None and r.status == 200, describe(r)
    assert r.json()["user_id"] == h_mxid(name)
    r = post_login(b'{"type":"m.login.password","user":"%s","password":"%s","password":3}'
                   % (name.encode(), password.encode()))
    assert_errcode(r, 400, "M_BAD_JSON", "password repeated, last one a number")
    assert_server_fine(hostile)


def h_mxid(localpart: str) -> str:
    return f"@{localpart}:localhost"


# ------------------------------------------------------------------------------ every field

# Values for a field, by name: (JSON type, raw JSON). A value of another type than the field's
# must be refused with a 4xx; null means "absent" (refused only where the field is required).
VALUES = {
    "null": ("null", b"null"),
    "number": ("number", b"42"),
    "1e400": ("number", b"1e400"),
    "-1e400": ("number", b"-1e400"),
    "1e-400": ("number", b"1e-400"),
    "2^64": ("number", b"18446744073709551616"),
    "bool": ("bool", b"true"),
    "list": ("list", b'["x"]'),
    "object": ("object", b'{"x":"y"}'),
    # Strings hostile in content: where a string is expected, a 4xx or a success, except that
    # U+0000 is always refused (400 M_BAD_JSON).
    "long-string": ("string", json.dumps("A" * 60000).encode()),
    "nul-string": ("string", b'"a\\u0000b"'),
    "rtl-override": ("string", json.dumps("\u202eevil").encode()),
}

# (method, path, needs a token, base body, fields to corrupt as "name:type"). The base bodies are
# valid where that is harmless and never carry a valid UIA proof, so no account is changed by
# this table.
ENDPOINTS = [
    ("POST", V3 + "/register", False,
     {"username": "$NEW", "password": "$PW", "device_id": "DEV1",
      "initial_device_display_name": "d", "inhibit_login": True, "refresh_token": False,
      "auth": {"type": "m.login.dummy"}},
     ["username:string", "password:string", "device_id:string",
      "initial_device_display_name:string", "inhibit_login:bool", "refresh_token:bool",
      "auth:object"]),
    ("POST", V3 + "/login", False,
     {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "$ME"},
      "password": "wrong", "device_id": "DEV2", "initial_device_display_name": "d",
      "refresh_token": False},
     ["type:string", "identifier:object", "password:string", "device_id:string",
      "initial_device_display_name:string", "refresh_token:bool", "user:string"]),
    ("POST", V3 + "/login", False,
     {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "$ME"},
      "password": "wrong"},
     ["identifier.type:string", "identifier.user:string"]),
    ("POST", V3 + "/refresh", False, {"refresh_token": "myrt_x"}, ["refresh_token:string"]),
    ("POST", "/_matrix/client/v1/refresh", False, {"refresh_token": "myrt_x"},
     ["refresh_token:string"]),
    ("POST", "/_matrix/client/r0/tokenrefresh", False, {"refresh_token": "myrt_x"},
     ["refresh_token:string"]),
    ("POST", V3 + "/account/password", True,
     {"new_password": "n", "logout_devices": False, "auth": {"type": "m.login.password"}},
     ["new_password:string", "logout_devices:bool", "auth:object"]),
    ("POST", V3 + "/account/deactivate", True,
     {"id_server": "x", "erase": False, "auth": {"type": "m.login.password"}},
     ["id_server:string", "erase:bool", "auth:object"]),
    ("PUT", V3 + "/devices/$DEVICE", True, {"display_name": "n"}, ["display_name:string"]),
    ("DELETE", V3 + "/devices/NOSUCHDEVICE", True, {"auth": {"type": "m.login.password"}},
     ["auth:object"]),
    ("POST", V3 + "/delete_devices", True,
     {"devices": ["NOSUCHDEVICE"], "auth": {"type": "m.login.password"}},
     ["devices:list", "auth:object", "devices.0:string"]),
    ("POST", V3 + "/logout", True, {}, []),  # body ignored: only the raw-body cases below
]

# Whole bodies that are not a JSON object; sent to every endpoint above.
RAW_BODIES = {
    "not-json": b"not json",
    "invalid-utf8": b'{"a":"\xff"}',
    "raw-nul": b'{"a":"\x00"}',
    "array": b"[]",
    "string": b'"x"',
    "number": b"1e400",
    "null": b"null",
    "truncated": b'{"a":',
    "bom": b'\xef\xbb\xbf{}',
}


def _with_field(base: dict, field: str, raw_value: bytes, subs: dict) -> bytes:
    """`base` as JSON with `field` (a.b for nested) set to the raw JSON `raw_value`."""
    marker = "\u2603FIELD\u2603"
    body = json.loads(json.dumps(base))
    target = body
    parts = field.split(".")
    for part in parts[:-1]:
        target = target[part]
    last = parts[-1]
    if isinstance(target, list):
        target[int(last)] = marker
    else:
        target[last] = marker
    text = json.dumps(body)
    for key, value in subs.items():
        text = text.replace(key, value)
    return text.encode().replace(json.dumps(marker).encode(), raw_value)


@pytest.mark.parametrize("endpoint", ENDPOINTS,
                         ids=[f"{e[0]} {e[1]} {e[4][0].split(':')[0] if e[4] else ''}"
                              for e in ENDPOINTS])
def test_wrong_types_and_hostile_values_in_every_field(hostile, bystander_token, endpoint):
    method, path, needs_token, base, fields = endpoint
    me = register_ok(hostile, unique_name("fields"))
    headers = {"Content-Type": "application/json"}
    if needs_token:
        headers.update(bearer(me.access_token))
    path = path.replace("$DEVICE", me.device_id)

    def subs():
        return {"$NEW": unique_name("new"), "$PW": unique_password(), "$ME": me.user_id}

    with Bystander(hostile, bystander_token) as bystander:
        for spec in fields:
            field, field_type = spec.split(":")
            for name, (value_type, value) in VALUES.items():
                body = _with_field(base, field, value, subs())
                r = attack_request(hostile.port, method, path, headers, body)
                what = f"{method} {path} {field}={name}"
                assert r is None or r.status < 500, f"{what}: {describe(r)}"
                if name == "nul-string":
                    assert_errcode(r, 400, "M_BAD_JSON", what)
                elif value_type == field_type or value_type == "null":
                    if r is not None and r.status >= 400:  # refused or accepted, both fine
                        assert_refused(r, what)
                else:
                    assert_refused(r, what)
        for name, body in RAW_BODIES.items():
            r = attack_request(hostile.port, method, path, headers, body)
            what = f"{method} {path} body {name}"
            if path.endswith("/logout"):
                assert r is None or r.status < 500, f"{what}: {describe(r)}"
            else:
                assert_refused(r, what, statuses={400})
    bystander.check(min_requests=1)
    # The signed-in account survived every attempt (no valid UIA proof was ever sent).
    r = hostile.get(WHOAMI, headers=bearer(me.access_token))
    if not path.endswith("/logout"):
        assert r.status_code == 200, show(r)
    assert_server_fine(hostile)


# ------------------------------------------------------------------------------ NUL bytes

def test_nul_bytes_anywhere_are_refused(hostile, bystander_token, attacker):
    port = hostile.port
    auth = bearer(attacker.access_token)
    with Bystander(hostile, bystander_token) as bystander:
        cases = [
            ("path", attack_request(port, "GET", V3 + "/devices/A%00B", auth)),
            ("query", attack_request(port, "GET", V3 + "/register/available?username=a%00")),
            ("query key", attack_request(port, "GET", WHOAMI + "?access%00_token=x", auth)),
            ("token query", attack_request(
                port, "GET", "/_matrix/client/v1/register/m.login.registration_token/validity"
                "?token=abc%00def")),
            ("raw in target", exchange(port, b"GET /health\x00 HTTP/1.1\r\nHost: x\r\n\r\n")),
            ("raw in header", exchange(
                port, b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n")),
            ("raw in header name", exchange(
                port, b"GET /health HTTP/1.1\r\nHost: x\r\nX\x00A: a\r\n\r\n")),
        ]
        for what, r in cases:
            assert_refused(r, f"NUL in {what}", statuses={400})
    bystander.check(min_requests=1)
    assert_server_fine(hostile)


def test_a_nul_in_a_login_name_is_not_an_alias(hostile):
    """PostgreSQL text stops at a NUL: "name:localhost\\u0000junk" would become a second name for
    "@name:localhost" (with a failed-login budget of its own for every junk suffix)."""
    name, password = unique_name("nul"), unique_password()
    register_ok(hostile, name, password)
    for user in (f"{name}:localhost\u0000x", f"{name}\u0000", f"@{name}:localhost\u0000"):
        r = login(hostile, user, password)
        assert r.status_code == 400 and r.json()["errcode"] == "M_BAD_JSON", show(r)
    r = login(hostile, name, password, device_id="DEV\u0000ICE")
    assert r.status_code == 400 and r.json()["errcode"] == "M_BAD_JSON", show(r)


# ------------------------------------------------------------------------------ invalid UTF-8

@pytest.mark.parametrize("raw", ["%FF", "%C0%AF", "%ED%A0%80", "%F4%90%80%80", "%E2%80"],
                         ids=["ff", "overlong", "surrogate", "above-10ffff", "truncated"])
def test_invalid_utf8_in_paths_and_queries(hostile, bystander_token, attacker, raw):
    """Decoded paths and query values reach storage: PostgreSQL refuses malformed UTF-8 (this was
    a 500), so the server refuses such a target first."""
    port = hostile.port
    auth = {**bearer(attacker.access_token), "Content-Type": "application/json"}
    with Bystander(hostile, bystander_token) as bystander:
        for method, target, body in [
            ("GET", V3 + f"/devices/{raw}", b""),
            ("PUT", V3 + f"/devices/{raw}", b'{"display_name":"x"}'),
            ("DELETE", V3 + f"/devices/A{raw}", b"{}"),
            ("GET", V3 + f"/register/available?username={raw}", b""),
            ("GET", "/_matrix/client/v1/register/m.login.registration_token/validity"
                    f"?token={raw}", b""),
            ("GET", WHOAMI + f"?access_token={raw}", b""),
            ("GET", ADMIN + f"/users/@{raw}:localhost", b""),
        ]:
            r = attack_request(port, method, target, auth, body)
            assert_errcode(r, 400, "M_UNRECOGNIZED", f"{method} {target}")
        # Raw (unescaped) bytes >= 0x80 in the request line and in headers.
        r = exchange(port, b"GET /_matrix/client/v3/devices/\xff HTTP/1.1\r\nHost: x\r\n\r\n")
        assert_refused(r, "raw 0xff in the target", statuses={400})
        r = attack_request(port, "GET", WHOAMI, {"Authorization": "Bearer \xff\xfe"})
        assert_refused(r, "0xff in the Authorization header", statuses={401})
        r = attack_request(port, "GET", WHOAMI, {**bearer(attacker.access_token),
                                                 "User-Agent": "\xff\xfe\xc0"})
        assert r is not None and r.status == 200, describe(r)
    bystander.check(min_requests=1)
    assert_server_fine(hostile)


# ------------------------------------------------------------------------------ long input

def test_very_long_names_ids_and_headers(hostile, bystander_token, attacker):
    port = hostile.port
    auth = bearer(attacker.access_token)
    json_headers = {"Content-Type": "application/json"}
    with Bystander(hostile, bystander_token) as bystander:
        for n in (245, 1000, 60000):  # "@" + 244 + ":localhost" is the longest, 255 bytes
            body = json.dumps({"username": "a" * n, "password": "x",
                               "auth": {"type": "m.login.dummy"}})
            r = attack_request(port, "POST", V3 + "/register", json_headers, body)
            assert_errcode(r, 400, "M_INVALID_USERNAME", f"{n}-byte username")
            r = attack_request(port, "GET",
                               V3 + "/register/available?username=" + "a" * min(n, 8000))
            assert_errcode(r, 400, "M_INVALID_USERNAME", f"{n}-byte username available?")
            body = json.dumps({"type": "m.login.password", "user": "a" * n, "password": "x"})
            r = attack_request(port, "POST", V3 + "/login", json_headers, body)
            assert_errcode(r, 403, "M_FORBIDDEN", f"{n}-byte login name")
        for n in (256, 60000):
            body = json.dumps({"type": "m.login.password", "user": attacker.user_id,
                               "password": attacker.password, "device_id": "D" * n})
            r = attack_request(port, "POST", V3 + "/login", json_headers, body)
            assert_errcode(r, 400, "M_INVALID_PARAM", f"{n}-byte device_id")
        r = attack_request(port, "GET", V3 + "/devices/" + "D" * 15000, auth)
        assert_errcode(r, 404, "M_NOT_FOUND", "15000-byte device ID in the path")
        r = attack_request(port, "GET", V3 + "/devices/" + "D" * 17000, auth)
        assert_errcode(r, 431, "M_TOO_LARGE", "17000-byte target")
        r = attack_request(port, "GET", WHOAMI, {"Authorization": "Bearer " + "a" * 15000})
        assert_errcode(r, 401, "M_UNKNOWN_TOKEN", "15000-byte token")
        r = attack_request(port, "GET", WHOAMI, {**auth, "X-Long": "v" * 20000})
        assert_errcode(r, 431, "M_TOO_LARGE", "20000-byte header")
        r = attack_request(port, "GET", WHOAMI, {**auth, "X-" + "n" * 20000: "v"})
        assert_errcode(r, 431, "M_TOO_LARGE", "20000-byte header name")
        many = [*auth.items(), *(("X-H", "v") for _ in range(3000))]
        r = attack_request(port, "GET", WHOAMI, many)
        assert_errcode(r, 431, "M_TOO_LARGE", "3000 header lines")
        r = attack_request(port, "GET", WHOAMI, {**auth, "User-Agent": "u" * 15000})
        assert r is not None and r.status == 200, describe(r)
    bystander.check(min_requests=1)
    assert_server_fine(hostile)


# ------------------------------------------------------------------------------ path tricks

def test_path_tricks_never_reach_another_users_device(hostile, bystander_token):
    """Mallory (with her own valid password for UIA) aims dot segments, encoded slashes, NULs and
    double encoding at Bob's device ID: every attempt is a 4xx or acts on Mallory's own
    (non-existent) device, and Bob's device and token are untouched."""
    bob = register_ok(hostile, unique_name("bob"), display_name="bob's phone")
    mallory = register_ok(hostile, unique_name("mallory"))
    port = hostile.port
    dev = bob.device_id
    enc = "".join(f"%{ord(c):02X}" for c in dev)  # every character escaped
    tricks = [
        f"{dev}", f"{enc}", f"%25{enc[1:]}", f"..%2F..%2Fdevices%2F{dev}", f"%2E%2E%2F{dev}",
        f"{dev}%2F..", f"{dev}%00", f"{dev}%2500", f"..%252F{dev}", f"%2F{dev}", f"{dev}%20",
        f"{dev}%3F", f"{dev}%23", f"./{dev}", f"../devices/{dev}", f"{dev}/.", f"{dev}/..",
        f"{dev};x", f"{dev}%C0%AF", f"%40{quote(bob.user_id)}%2F{dev}",
    ]
    auth = {**bearer(mallory.access_token), "Content-Type": "application/json"}
    uia = json.dumps({"auth": {"type": "m.login.password", "password": mallory.password,
                               "identifier": {"type": "m.id.user", "user": mallory.user_id}}})
    with Bystander(hostile, bystander_token) as bystander:
        for trick in tricks:
            target = V3 + "/devices/" + trick
            r = attack_request(port, "GET", target, auth)
            assert_refused(r, f"GET {target}")
            r = attack_request(port, "PUT", target, auth, b'{"display_name":"pwned"}')
            assert_refused(r, f"PUT {target}")
            r = attack_request(port, "DELETE", target, auth, uia)
            # DELETE of a device that is not (or no longer) the caller's is 200 {} by the spec.
            assert r is None or r.status < 500, f"DELETE {target}: {describe(r)}"
            if r is not None and r.status >= 400:
                assert_refused(r, f"DELETE {target}")
        r = attack_request(port, "POST", V3 + "/delete_devices", auth,
                           json.dumps({"devices": [dev, f"../{dev}", f"{dev}\u200b"],
                                       "auth": json.loads(uia)["auth"]}))
        assert r is not None and r.status == 200, describe(r)
    bystander.check(min_requests=1)
    r = hostile.get(V3 + "/devices/" + dev, headers=bearer(bob.access_token))
    assert r.status_code == 200, show(r)
    assert r.json().get("display_name") == "bob's phone", r.json()
    assert hostile.get(WHOAMI, headers=bearer(bob.access_token)).status_code == 200
    assert_server_fine(hostile)


def test_path_tricks_in_user_ids_of_the_admin_api(hostile, bystander_token):
    name, password = unique_name("admin"), unique_password()
    p = h.run_cli("admin", "create-user", name, "--password", password, "--admin",
                  "--config", str(hostile.config_path), "--json")
    assert p.returncode == 0, p.stderr
    admin = login_ok(hostile, h_mxid(name), password)
    bob = register_ok(hostile, unique_name("bob"))
    mallory = register_ok(hostile, unique_name("mallory"))
    port = hostile.port
    uid = quote(bob.user_id, safe="")
    tricks = [f"{uid}%2F..%2F{uid}", f"..%2F{uid}", f"{uid}%00", f"{uid}%2500",
              f"%2540{uid[3:]}", f"{uid}/../{uid}", "..", "%2E%2E", uid + "%20",
              quote("@\u0430" + bob.user_id[2:], safe="")]
    with Bystander(hostile, bystander_token) as bystander:
        for trick in tricks:
            for token in (admin.access_token, mallory.access_token):
                r = attack_request(port, "GET", ADMIN + f"/users/{trick}", bearer(token))
                assert_refused(r, f"GET users/{trick}")
                r = attack_request(port, "POST", ADMIN + f"/users/{trick}/deactivate",
                                   {**bearer(token), "Content-Type": "application/json"}, b"{}")
                assert_refused(r, f"POST users/{trick}/deactivate")
        # Not an admin: the real user ID is refused too.
        r = attack_request(port, "GET", ADMIN + f"/users/{uid}", bearer(mallory.access_token))
        assert_refused(r, "non-admin", statuses={403})
    bystander.check(min_requests=1)
    assert hostile.get(WHOAMI, headers=bearer(bob.access_token)).status_code == 200
    assert_server_fine(hostile)


# ------------------------------------------------------------------------------ look-alikes

LOOKALIKES = {
    "cyrillic-a": "\u0430",      # а
    "fullwidth-a": "\uff41",     # ａ
    "latin-alpha": "\u0251",     # ɑ
    "a-combining-dot": "a\u0307",
    "zero-width-space": "a\u200b",
    "rtl-override": "\u202ea",
    "turkish-dotless-i": "\u0131",  # for an "i"
}


@pytest.mark.parametrize("kind", list(LOOKALIKES))
def test_unicode_lookalike_user_names_are_refused(hostile, kind):
    """User IDs are limited to a-z 0-9 . _ = - / + (spec: user identifiers): a look-alike of an
    existing name can never be registered, and signing in with it never reaches the real
    account; upper case folds to the real name, as the spec's case-insensitive login wants."""
    real = unique_name("alice")
    password = unique_password()
    register_ok(hostile, real, password)
    swap = "i" if kind == "turkish-dotless-i" else "a"
    fake = real.replace(swap, LOOKALIKES[kind], 1)
    assert fake != real
    r = register(hostile, {"username": fake, "password": password,
                           "auth": {"type": "m.login.dummy"}})
    assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_USERNAME", show(r)
    r = hostile.get(V3 + "/register/available", params={"username": fake})
    assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_USERNAME", show(r)
    r = login(hostile, fake, password)
    assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN", show(r)
    r = register(hostile, {"username": real.upper(), "password": password,
                           "auth": {"type": "m.login.dummy"}})
    assert r.status_code == 400 and r.json()["errcode"] == "M_USER_IN_USE", show(r)
    assert login(hostile, real.upper(), password).status_code == 200
