"""Client-side helpers for the auth tests (register, login, refresh, whoami, logout, tokens).

Thin wrappers over MyelinServer.request(): every call is one HTTP request to 127.0.0.1 and
returns the requests.Response, except the `*_ok` variants, which assert success (with the
server's answer in the message) and return a `Session` or the parsed body.

    s = register_ok(server, "alice", refresh_token=True)   # -> Session(user_id, access_token, ...)
    s2 = login_ok(server, "alice", s.password, device_id=s.device_id)
    r = refresh(server, s.refresh_token)                    # -> requests.Response
    assert whoami(server, s.access_token).status_code == 200
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
import secrets
import statistics
import time
import zlib
from typing import Any, Callable

import requests

from myelin_harness import MyelinServer

V3 = "/_matrix/client/v3"
R0 = "/_matrix/client/r0"
V1 = "/_matrix/client/v1"
API_V1 = "/_matrix/client/api/v1"
PREFIXES = [V3, R0]

SERVER_NAME = "localhost"
ACCESS_TOKEN_RE = re.compile(r"^myat_[0-9A-Za-z]{43}_[0-9A-Za-z]{6}$")
REFRESH_TOKEN_RE = re.compile(r"^myrt_[0-9A-Za-z]{43}_[0-9A-Za-z]{6}$")
# Localpart grammar of the spec (appendices, user identifiers, v1.8+ for new IDs).
LOCALPART_RE = re.compile(r"^[a-z0-9._=\-/+]+$")
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

_counter = itertools.count(1)
_RUN = secrets.token_hex(3)


def unique_name(stem: str = "user") -> str:
    """A localpart no other test in this process uses (lower case, valid grammar)."""
    return f"{stem}_{_RUN}_{os.getpid() % 1000}_{next(_counter)}".lower()


def unique_password() -> str:
    """A distinctive password (easy to find in a byte scan, never a prefix of another)."""
    return f"pw-{secrets.token_hex(12)}-Zq!"


def mxid(localpart: str) -> str:
    return f"@{localpart}:{SERVER_NAME}"


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def body_of(resp: requests.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return resp.text


def show(resp: requests.Response) -> str:
    """`<status> <body>` for assertion messages."""
    return f"{resp.status_code} {resp.text[:600]}"


@dataclasses.dataclass
class Session:
    user_id: str
    access_token: str | None
    device_id: str | None
    refresh_token: str | None = None
    expires_in_ms: int | None = None
    password: str | None = None
    body: dict = dataclasses.field(default_factory=dict)

    @property
    def localpart(self) -> str:
        return self.user_id[1:].split(":", 1)[0]


def _session(body: dict, password: str | None) -> Session:
    return Session(user_id=body.get("user_id"), access_token=body.get("access_token"),
                   device_id=body.get("device_id"), refresh_token=body.get("refresh_token"),
                   expires_in_ms=body.get("expires_in_ms"), password=password, body=body)


# ------------------------------------------------------------------------------ registration

def register(server: MyelinServer, body: dict | None = None, *, prefix: str = V3,
             kind: str | None = None, **kw) -> requests.Response:
    """POST {prefix}/register with `body` as JSON (no auth added)."""
    params = {"kind": kind} if kind is not None else None
    return server.post(prefix + "/register", json=body if body is not None else {},
                       params=params, **kw)


def register_ok(server: MyelinServer, username: str | None = None, password: str | None = None,
                *, prefix: str = V3, device_id: str | None = None,
                refresh_token: bool | None = None, inhibit_login: bool | None = None,
                display_name: str | None = None, two_step: bool = False,
                extra: dict | None = None) -> Session:
    """Registers a user through the m.login.dummy stage and asserts 200.
    two_step=True first asks for the UIA session (401) and completes it with that session;
    otherwise sends {"auth": {"type": "m.login.dummy"}} at once (as matrix-nio does)."""
    password = password if password is not None else unique_password()
    body: dict = {"password": password}
    if username is not None:
        body["username"] = username
    if device_id is not None:
        body["device_id"] = device_id
    if refresh_token is not None:
        body["refresh_token"] = refresh_token
    if inhibit_login is not None:
        body["inhibit_login"] = inhibit_login
    if display_name is not None:
        body["initial_device_display_name"] = display_name
    body.update(extra or {})
    if two_step:
        r = register(server, body, prefix=prefix)
        assert r.status_code == 401, f"register without auth: expected the UIA 401, got {show(r)}"
        session = r.json().get("session")
        assert isinstance(session, str), f"no UIA session in {r.text[:400]}"
        body["auth"] = {"type": "m.login.dummy", "session": session}
    else:
        body["auth"] = {"type": "m.login.dummy"}
    r = register(server, body, prefix=prefix)
    assert r.status_code == 200, f"register {username!r} failed: {show(r)}"
    return _session(r.json(), password)


def register_guest(server: MyelinServer, body: dict | None = None, *, prefix: str = V3
                   ) -> requests.Response:
    return register(server, body or {}, prefix=prefix, kind="guest")


# ------------------------------------------------------------------------------ login

def login(server: MyelinServer, user: str | None, password: str | None, *, prefix: str = V3,
          device_id: str | None = None, refresh_token: bool | None = None,
          legacy_user_field: bool = False, extra: dict | None = None) -> requests.Response:
    """POST {prefix}/login with m.login.password. `user` goes into an m.id.user identifier
    (or the deprecated top-level `user` with legacy_user_field=True); None leaves it out, as
    does password=None."""
    body: dict = {"type": "m.login.password"}
    if user is not None:
        if legacy_user_field:
            body["user"] = user
        else:
            body["identifier"] = {"type": "m.id.user", "user": user}
    if password is not None:
        body["password"] = password
    if device_id is not None:
        body["device_id"] = device_id
    if refresh_token is not None:
        body["refresh_token"] = refresh_token
    body.update(extra or {})
    return server.post(prefix + "/login", json=body)


def login_ok(server: MyelinServer, user: str, password: str, **kw) -> Session:
    r = login(server, user, password, **kw)
    assert r.status_code == 200, f"login as {user!r} failed: {show(r)}"
    return _session(r.json(), password)


# ------------------------------------------------------------------------------ tokens

def whoami(server: MyelinServer, token: str | None, *, prefix: str = V3,
           via: str = "header") -> requests.Response:
    """GET {prefix}/account/whoami with the token in the Authorization header (via="header")
    or the access_token query parameter (via="query"); token=None sends none."""
    if token is None:
        return server.get(prefix + "/account/whoami")
    if via == "query":
        return server.get(prefix + "/account/whoami", params={"access_token": token})
    return server.get(prefix + "/account/whoami", headers=bearer(token))


def token_works(server: MyelinServer, token: str) -> bool:
    r = whoami(server, token)
    assert r.status_code in (200, 401), f"whoami: unexpected {show(r)}"
    return r.status_code == 200


def refresh(server: MyelinServer, refresh_token: Any, *, prefix: str = V3,
            headers: dict | None = None) -> requests.Response:
    """POST {prefix}/refresh {"refresh_token": refresh_token} (no access token unless in
    `headers`)."""
    return server.post(prefix + "/refresh", json={"refresh_token": refresh_token},
                       headers=headers)


def refresh_ok(server: MyelinServer, refresh_token: str, **kw) -> dict:
    r = refresh(server, refresh_token, **kw)
    assert r.status_code == 200, f"refresh failed: {show(r)}"
    return r.json()


def legacy_refresh(server: MyelinServer, refresh_token: Any, *, prefix: str = R0
                   ) -> requests.Response:
    """POST {prefix}/tokenrefresh (the 2015 API; prefix R0 or API_V1)."""
    return server.post(prefix + "/tokenrefresh", json={"refresh_token": refresh_token})


def logout(server: MyelinServer, token: str, *, prefix: str = V3, all_devices: bool = False,
           json_body: bool = False) -> requests.Response:
    """POST {prefix}/logout[/all] with an empty body, or `{}` with json_body=True."""
    path = prefix + ("/logout/all" if all_devices else "/logout")
    if json_body:
        return server.post(path, json={}, headers=bearer(token))
    return server.post(path, headers=bearer(token))


# ------------------------------------------------------------------------------ token forging

def crc_base62(prefix_and_body: str) -> str:
    """The 6-character checksum of the token format (docs/tokens.md): CRC-32 (zlib) of the
    ASCII prefix+body, base62 0-9A-Za-z, most significant digit first, left-padded with 0."""
    value = zlib.crc32(prefix_and_body.encode("ascii")) & 0xFFFFFFFF
    digits = []
    for _ in range(6):
        digits.append(BASE62[value % 62])
        value //= 62
    return "".join(reversed(digits))


def forge_token(prefix: str = "myrt_") -> str:
    """A random, well-formed token (correct checksum) that the server never issued."""
    body = "".join(secrets.choice(BASE62) for _ in range(43))
    return f"{prefix}{body}_{crc_base62(prefix + body)}"


def checksum_ok(token: str) -> bool:
    return len(token) == 55 and token[48] == "_" and token[49:] == crc_base62(token[:48])


def change_char(token: str, index: int) -> str:
    """`token` with the character at `index` replaced by another base62 character."""
    c = token[index]
    repl = BASE62[(BASE62.index(c) + 1) % 62] if c in BASE62 else "A"
    return token[:index] + repl + token[index + 1:]


def change_body_keep_checksum(token: str) -> str:
    """`token` with one body character changed and the checksum recomputed: well formed, but
    not a token the server issued."""
    changed = change_char(token, 20)[:48]
    return f"{changed}_{crc_base62(changed)}"


# ------------------------------------------------------------------------------ misc

def median_seconds(fn: Callable[[], Any], n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def assert_no_soft_logout(body: dict) -> None:
    assert body.get("soft_logout") in (None, False), \
        f"soft_logout must be absent or false here: {body}"
