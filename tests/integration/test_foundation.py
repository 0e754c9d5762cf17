"""Black-box tests of the foundation: discovery, routing, errors, CORS, HTTP limits, logging,
shutdown, the CLI and config handling, first-start storage."""

import json
import os
import re
import select
import signal
import stat
import time
import tomllib
from pathlib import Path

import pytest

import myelin_harness as h
from myelin_harness import (RawConnection, assert_cors, assert_json_content_type,
                            assert_matches_spec, assert_matrix_error, build_request)

V3 = "/_matrix/client/v3"
R0 = "/_matrix/client/r0"
DB_FILES = re.compile(r"^homeserver\.db(-wal|-shm|-journal)?$")


# ------------------------------------------------------------------------------ discovery

def test_health(shared_server):
    r = shared_server.get("/health")
    assert r.status_code == 200, r.text


def test_versions(shared_server):
    r = shared_server.get("/_matrix/client/versions")
    assert r.status_code == 200, r.text
    assert_json_content_type(r)
    body = r.json()
    assert_matches_spec(body, "versions.yaml", "/_matrix/client/versions", "get", 200)
    versions = body["versions"]
    assert "v1.0" not in versions
    assert len(set(versions)) == len(versions), f"duplicates in {versions}"
    v1 = [v for v in versions if v.startswith("v")]
    others = [v for v in versions if not v.startswith("v")]
    assert all(re.fullmatch(r"r\d+\.\d+\.\d+", v) for v in others), versions
    assert all(re.fullmatch(r"v1\.[1-9]\d*", v) for v in v1), versions
    minors = sorted(int(v.split(".")[1]) for v in v1)
    assert minors and minors[0] == 1, f"must start at v1.1: {versions}"
    assert minors == list(range(1, minors[-1] + 1)), f"not contiguous from v1.1: {versions}"
    assert minors[-1] >= 3, f"must include v1.3 or later: {versions}"
    assert isinstance(body.get("unstable_features"), dict), body


def test_well_known_client(shared_server):
    r = shared_server.get("/.well-known/matrix/client")
    assert r.status_code == 200, r.text
    assert_json_content_type(r)
    assert_cors(r)
    body = r.json()
    assert_matches_spec(body, "wellknown.yaml", "/.well-known/matrix/client", "get", 200)
    assert body["m.homeserver"]["base_url"].rstrip("/") == \
        shared_server.config["public_baseurl"].rstrip("/")


@pytest.mark.parametrize("prefix", [V3, R0])
def test_login_flows_under_v3_and_r0(shared_server, prefix):
    r = shared_server.get(prefix + "/login")
    assert r.status_code == 200, r.text
    body = r.json()
    assert_matches_spec(body, "login.yaml", prefix + "/login", "get", 200)
    assert "m.login.password" in [f["type"] for f in body["flows"]], body


# ------------------------------------------------------------------------------ routing

@pytest.mark.parametrize("path", [V3 + "/this/does/not/exist", R0 + "/nope",
                                  "/nonexistent", "/_matrix/client/v3"])
def test_unknown_path_is_404_unrecognized(shared_server, path):
    r = shared_server.get(path)
    assert_matrix_error(r, 404, "M_UNRECOGNIZED")
    assert_cors(r)


@pytest.mark.parametrize("method,path,allowed", [
    ("DELETE", V3 + "/login", {"GET", "POST"}),
    ("PUT", R0 + "/login", {"GET", "POST"}),
    ("POST", "/_matrix/client/versions", {"GET"}),
])
def test_wrong_method_is_405_with_allow(shared_server, method, path, allowed):
    r = shared_server.request(method, path, json={})
    assert_matrix_error(r, 405, "M_UNRECOGNIZED")
    assert_cors(r)
    allow = {m.upper() for m in h.header_tokens(r.headers.get("Allow"))}
    assert allowed <= allow, f"Allow {r.headers.get('Allow')!r} lacks {allowed - allow}"
    assert method not in allow, f"Allow {r.headers.get('Allow')!r} lists {method}"


# ------------------------------------------------------------------------------ CORS and OPTIONS

@pytest.mark.parametrize("method,path,status", [
    ("GET", "/_matrix/client/versions", 200),
    ("GET", "/health", 200),
    ("GET", V3 + "/login", 200),
    ("GET", V3 + "/no/such/endpoint", 404),
    ("DELETE", V3 + "/login", 405),
    ("GET", V3 + "/account/whoami", 401),
    ("POST", V3 + "/login", 400),
])
def test_cors_headers_on_every_response(shared_server, method, path, status):
    r = shared_server.request(method, path, data=b"not json" if method == "POST" else None)
    assert r.status_code == status, r.text
    assert_cors(r)


def test_missing_token_is_401_m_missing_token(shared_server):
    r = shared_server.get(V3 + "/account/whoami")
    assert_matrix_error(r, 401, "M_MISSING_TOKEN")
    assert_matches_spec(r.json(), "whoami.yaml", V3 + "/account/whoami", "get", 401)


@pytest.mark.parametrize("path", [V3 + "/account/whoami", R0 + "/account/whoami",
                                  V3 + "/login", "/_matrix/client/versions"])
def test_options_preflight_needs_no_auth(shared_server, path):
    r = shared_server.options(path, headers={
        "Origin": "https://app.example",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization, content-type",
    })
    assert 200 <= r.status_code < 300, f"{r.status_code}: {r.text}"
    assert_cors(r)


def test_options_does_not_run_the_endpoint(shared_server):
    # POST /login would answer 400 M_NOT_JSON to this body; OPTIONS must not look at it.
    r = shared_server.options(V3 + "/login", data=b"not json",
                              headers={"Content-Type": "application/json"})
    assert 200 <= r.status_code < 300, f"{r.status_code}: {r.text}"
    assert_cors(r)
    assert "M_NOT_JSON" not in r.text


# ------------------------------------------------------------------------------ JSON errors

@pytest.mark.parametrize("path,body,errcode,spec_file,spec_path", [
    (V3 + "/login", b"not json", "M_NOT_JSON", "login.yaml", "/login"),
    (V3 + "/login", b"[1,2]", "M_BAD_JSON", "login.yaml", "/login"),
    (V3 + "/login", b'{"type": 5}', "M_BAD_JSON", "login.yaml", "/login"),
    (V3 + "/login", b"{}", "M_MISSING_PARAM", "login.yaml", "/login"),
    (R0 + "/login", b"{}", "M_MISSING_PARAM", "login.yaml", "/login"),
    (V3 + "/register", b'{"username": 5}', "M_BAD_JSON", "registration.yaml", "/register"),
], ids=["login-not-json", "login-array", "login-type-int", "login-missing-type",
        "r0-login-missing-type", "register-username-int"])
def test_bad_bodies_are_400_with_errcode(shared_server, path, body, errcode, spec_file,
                                         spec_path):
    r = shared_server.post(path, data=body, headers={"Content-Type": "application/json"})
    err = assert_matrix_error(r, 400, errcode)
    assert_cors(r)
    assert_matches_spec(err, spec_file, spec_path, "post", 400)


def test_json_body_without_content_type_is_still_parsed(shared_server):
    r = shared_server.post(V3 + "/login", data=b"{}")  # requests adds no Content-Type here
    assert "Content-Type" not in r.request.headers
    assert_matrix_error(r, 400, "M_MISSING_PARAM")


# ------------------------------------------------------------------------------ request ids, logs

def test_every_response_has_a_unique_request_id(shared_server):
    ids = []
    for method, path in [("GET", "/_matrix/client/versions"), ("GET", "/health"),
                         ("GET", V3 + "/nope"), ("DELETE", V3 + "/login"),
                         ("OPTIONS", V3 + "/login"), ("GET", V3 + "/account/whoami")]:
        r = shared_server.request(method, path)
        rid = r.headers.get("X-Request-Id")
        assert rid, f"{method} {path} ({r.status_code}) has no X-Request-Id"
        ids.append(rid)
    assert len(set(ids)) == len(ids), ids


def _log_line_with(server, needle, timeout=5.0):
    m = server.wait_for_log(r"^.*" + re.escape(needle) + r".*$", timeout=timeout)
    return m.group(0)


@pytest.mark.parametrize("method,path,status", [
    ("GET", "/_matrix/client/versions", 200),
    ("POST", V3 + "/no/such/thing", 404),
    ("DELETE", V3 + "/login", 405),
])
def test_access_log_line_per_request(shared_server, method, path, status):
    r = shared_server.request(method, path)
    assert r.status_code == status
    rid = r.headers["X-Request-Id"]
    line = _log_line_with(shared_server, rid)
    for part in (method, path, str(status)):
        assert part in line, f"access log line lacks {part!r}: {line!r}"


def test_access_log_never_contains_tokens_or_passwords(server):
    r = server.get(V3 + "/account/whoami?access_token=SECRET123",
                   headers={"Authorization": "Bearer SECRET456"})
    assert r.status_code == 401, r.text
    line = _log_line_with(server, r.headers["X-Request-Id"])
    assert V3 + "/account/whoami" in line and "401" in line, line
    r2 = server.post(V3 + "/login", json={"type": "m.login.password",
                                          "identifier": {"type": "m.id.user", "user": "nobody"},
                                          "password": "SECRET789"})
    _log_line_with(server, r2.headers["X-Request-Id"])
    log = server.log_text() + server.stdout_text()
    for secret in ("SECRET123", "SECRET456", "SECRET789"):
        assert secret not in log, f"{secret} leaked into the log:\n" + \
            "\n".join(l for l in log.splitlines() if secret in l)


# ------------------------------------------------------------------------------ keep-alive

def test_keep_alive_two_requests_on_one_connection(shared_server):
    with RawConnection(shared_server.port) as c:
        for _ in range(2):
            c.send_request("GET", "/_matrix/client/versions")
            r = c.read_response()
            assert r.status == 200, r.text
            assert "versions" in r.json()
        assert not c.wait_closed(0.2), "server closed a keep-alive connection"


# ------------------------------------------------------------------------------ limits

@pytest.mark.parametrize("shape", ["one-big-header", "many-headers"])
def test_header_block_too_large_is_431(server_factory, shape):
    s = server_factory(limits={"max_header_bytes": 4096})
    if shape == "one-big-header":
        headers = {"X-Filler": "a" * 5000}
    else:
        headers = {f"X-Filler-{i}": "b" * 60 for i in range(100)}
    with RawConnection(s.port) as c:
        try:
            c.send_request("GET", "/_matrix/client/versions", headers)
        except h.ConnectionClosed:
            pass  # the server may answer and close before reading it all
        r = c.read_response()
        assert r.status == 431, f"{r.status} {r.text}"
        assert_cors(r)
    # The server is fine afterwards, and a header block under the limit passes.
    with RawConnection(s.port) as c:
        c.send_request("GET", "/_matrix/client/versions", {"X-Filler": "c" * 2000})
        assert c.read_response().status == 200


def _big_json(size):
    """A JSON object (without `type`) of exactly `size` bytes."""
    base = b'{"padding": ""}'
    return b'{"padding": "' + b"x" * (size - len(base)) + b'"}'


def _post_raw(port, path, body, chunked=False, chunk_size=8192):
    headers = {"Content-Type": "application/json"}
    if chunked:
        headers["Transfer-Encoding"] = "chunked"
        data = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + chunk_size]), body[i:i + chunk_size])
                        for i in range(0, len(body), chunk_size)) + b"0\r\n\r\n"
        raw = build_request("POST", path, headers, content_length=False) + data
    else:
        raw = build_request("POST", path, headers, body)
    with RawConnection(port, timeout=10) as c:
        try:
            c.send(raw)
        except h.ConnectionClosed:
            pass  # answered early; the response should still be readable
        return c.read_response()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_over_64k_is_413(shared_server, chunked):
    r = _post_raw(shared_server.port, V3 + "/login", _big_json(70_000), chunked=chunked)
    assert_matrix_error(r, 413, "M_TOO_LARGE")
    assert_cors(r)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_under_64k_is_accepted(shared_server, chunked):
    r = _post_raw(shared_server.port, V3 + "/login", _big_json(60_000), chunked=chunked)
    assert_matrix_error(r, 400, "M_MISSING_PARAM")


def _wait_for_cutoff(conn, deadline):
    """Waits until the server answers (any status) or closes; returns (kind, response)."""
    while time.monotonic() < deadline:
        try:
            r = conn.read_response(timeout=max(0.05, deadline - time.monotonic()))
            return "response", r
        except h.ConnectionClosed:
            return "closed", None
        except TimeoutError:
            return "timeout", None
    return "timeout", None


@pytest.mark.parametrize("partial", [
    b"GET /_matrix/client/versions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half",
    b"POST /_matrix/client/v3/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"type\":",
], ids=["stalled-headers", "stalled-body"])
def test_stalled_request_times_out(server_factory, partial):
    s = server_factory(limits={"request_timeout": "1s"})
    with RawConnection(s.port, timeout=8) as c:
        start = time.monotonic()
        c.send(partial)
        kind, r = _wait_for_cutoff(c, start + 5)
        elapsed = time.monotonic() - start
        assert kind != "timeout", "server still waiting 5 s after a 1 s request_timeout"
        if kind == "response":
            assert r.status == 408, f"expected 408 or a close, got {r.status} {r.text}"
        assert elapsed >= 0.5, f"cut off after {elapsed:.2f}s, before request_timeout"
    assert s.get("/health").status_code == 200


@pytest.mark.parametrize("phase", ["headers", "body"])
def test_slow_drip_is_cut_off_by_whole_request_deadline(server_factory, phase):
    """A client that keeps sending a byte every 100 ms never goes idle; request_timeout is a
    deadline for the whole request and must still end it."""
    s = server_factory(limits={"request_timeout": "1s", "idle_timeout": "75s"})
    if phase == "headers":
        first, drip = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ", b"a"
    else:
        first = (b"POST /_matrix/client/v3/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n")
        drip = b" "
    with RawConnection(s.port, timeout=8) as c:
        start = time.monotonic()
        c.send(first)
        outcome = None
        while time.monotonic() - start < 6:  # our own limit: the test always ends
            readable, _, _ = select.select([c.sock], [], [], 0.1)
            if readable:
                kind, r = _wait_for_cutoff(c, time.monotonic() + 1)
                outcome = (kind, r)
                break
            try:
                c.send(drip)
            except h.ConnectionClosed:
                outcome = ("closed", None)
                break
        elapsed = time.monotonic() - start
        assert outcome is not None, "a slow-drip request was still accepted after 6 s"
        kind, r = outcome
        if kind == "response":
            assert r.status == 408, f"expected 408 or a close, got {r.status} {r.text}"
        assert elapsed < 4, f"cut off only after {elapsed:.1f}s (request_timeout 1s)"


def test_idle_keep_alive_connection_is_closed(server_factory):
    s = server_factory(limits={"idle_timeout": "1s"})
    with RawConnection(s.port) as c:
        c.send_request("GET", "/health")
        assert c.read_response().status == 200
        start = time.monotonic()
        closed = c.wait_closed(5)
        elapsed = time.monotonic() - start
        assert closed, "idle keep-alive connection still open 5 s after a 1 s idle_timeout"
        assert elapsed >= 0.5, f"closed after {elapsed:.2f}s, before idle_timeout"


def test_max_connections(server_factory):
    s = server_factory(limits={"max_connections": 3})
    held = []
    try:
        for _ in range(3):
            deadline = time.monotonic() + 3  # connections of the startup probe may linger
            while True:
                c = RawConnection(s.port)
                try:
                    c.send_request("GET", "/health")
                    r = c.read_response()
                    if r.status == 200:
                        held.append(c)
                        break
                except h.ConnectionClosed:
                    pass
                c.close()
                assert time.monotonic() < deadline, "could not open 3 connections"
                time.sleep(0.1)
        with RawConnection(s.port) as fourth:
            try:
                fourth.send_request("GET", "/health")
                r = fourth.read_response(timeout=5)
            except h.ConnectionClosed:
                r = None  # refused by closing: allowed
            if r is not None:
                assert r.status == 503, f"4th connection got {r.status} {r.text}"
                assert r.header("Retry-After"), "503 without Retry-After"
                assert_cors(r)
    finally:
        for c in held:
            c.close()
    deadline = time.monotonic() + 5
    while True:
        try:
            if s.get("/health", timeout=2).status_code == 200:
                break
        except Exception:
            pass
        assert time.monotonic() < deadline, "no request worked after closing the 3 connections"
        time.sleep(0.1)


# ------------------------------------------------------------------------------ shutdown

def test_sigterm_exits_0_with_idle_keep_alive_connection(server):
    with RawConnection(server.port) as c:
        c.send_request("GET", "/_matrix/client/versions")
        assert c.read_response().status == 200
        start = time.monotonic()
        server.stop(expect_exit=0, timeout=5)
        assert time.monotonic() - start < 5
        assert c.wait_closed(1), "the idle connection is still open after the exit"


# ------------------------------------------------------------------------------ CLI and config

def test_version_flag(myelin_binary):
    p = h.run_cli("--version")
    assert p.returncode == 0, p.stderr
    assert re.search(r"\d+\.\d+", p.stdout + p.stderr), (p.stdout, p.stderr)


def test_generate_config_is_accepted_by_check_config(tmp_path, myelin_binary):
    p = h.run_cli("generate-config")
    assert p.returncode == 0, p.stderr
    tomllib.loads(p.stdout)  # valid TOML
    path = tmp_path / "generated.toml"
    path.write_text(p.stdout)
    c = h.run_cli("check-config", "--config", path)
    assert c.returncode == 0, f"check-config rejected generate-config output:\n{c.stdout}{c.stderr}"


def test_check_config_accepts_the_test_config(tmp_path, myelin_binary):
    path = tmp_path / "homeserver.toml"
    path.write_text(h.to_toml(h.default_config(h.free_port())))
    c = h.run_cli("check-config", "--config", path)
    assert c.returncode == 0, c.stdout + c.stderr


BAD_VALUES = [
    ({"listen": {"port": "abc"}}, "listen.port", "abc"),
    ({"tokens": {"access_token_lifetime": "5 parsecs"}}, "tokens.access_token_lifetime",
     "5 parsecs"),
]


@pytest.mark.parametrize("command", ["check-config", "serve"])
@pytest.mark.parametrize("override,key,value", BAD_VALUES, ids=["port", "lifetime"])
def test_bad_config_value_exits_2_naming_key_and_value(tmp_path, myelin_binary, command,
                                                       override, key, value):
    path = tmp_path / "homeserver.toml"
    path.write_text(h.to_toml(h.deep_merge(h.default_config(h.free_port()), override)))
    p = h.run_cli(command, "--config", path, timeout=15, cwd=tmp_path)
    out = p.stdout + p.stderr
    assert p.returncode == 2, f"exit {p.returncode}, expected 2:\n{out}"
    assert key in out, f"message does not name {key}:\n{out}"
    assert value in out, f"message does not show the bad value {value!r}:\n{out}"


def test_myelin_config_env_var_replaces_flag(server_factory):
    s = server_factory(config_via_env=True)
    assert s.command()[-1] == "serve"
    r = s.get("/.well-known/matrix/client")
    assert r.status_code == 200
    assert r.json()["m.homeserver"]["base_url"].rstrip("/") == s.base


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def key_dir(server) -> Path:
    """Where the server secret goes without secrets.key_file: beside the SQLite file, or in the
    config's folder when the database is PostgreSQL (core/config.cpp)."""
    return server.data_dir if h.backend() == "sqlite" else server.config_path.parent


def test_first_start_creates_a_0600_secret_file_beside_the_database(server):
    folder = key_dir(server)
    files = [p for p in folder.iterdir() if p.is_file() and not DB_FILES.match(p.name)]
    assert files, f"no file besides the database in {folder}: " \
                  f"{sorted(p.name for p in folder.iterdir())}"
    modes = {p.name: oct(_mode(p)) for p in files}
    assert any(_mode(p) == 0o600 for p in files), f"no 0600 secret file: {modes}"


def test_secret_key_file_is_myelin_key_and_survives_restart(server):
    key = key_dir(server) / "myelin.key"
    assert key.is_file(), sorted(p.name for p in key.parent.iterdir())
    assert _mode(key) == 0o600, oct(_mode(key))
    before = key.read_bytes()
    assert before
    server.restart()
    assert key.read_bytes() == before, "the key file was rewritten on restart"
    assert _mode(key) == 0o600


@h.skip_on_postgres("the sqlite: database path is resolved against the config's folder")
def test_database_created_relative_to_config_folder(server):
    assert (server.data_dir / "homeserver.db").is_file()
    assert not (server.cwd / "data").exists(), "data/ was created relative to the cwd"
