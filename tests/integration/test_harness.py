"""Tests of the harness itself (no myelin binary needed)."""

import socket
import threading
import time
import tomllib

import pytest

import myelin_harness as h


# ---------------------------------------------------------------------------- spec validation

def test_versions_schema_accepts_valid_and_rejects_wrong_bodies():
    good = {"versions": ["v1.1", "v1.2"], "unstable_features": {"org.example.x": True}}
    h.assert_matches_spec(good, "versions.yaml", "/_matrix/client/versions", "get", 200)
    h.assert_matches_spec(good, "versions.yaml", "/versions", "GET", "200")
    for bad in ({}, {"versions": "v1.1"}, {"versions": [1]},
                {"versions": ["v1.1"], "unstable_features": {"x": "yes"}}):
        with pytest.raises(AssertionError, match="does not match"):
            h.assert_matches_spec(bad, "versions.yaml", "/_matrix/client/versions", "get", 200)


def test_nested_relative_refs_are_resolved():
    ok = {"user_id": "@a:localhost", "access_token": "t", "device_id": "D",
          "well_known": {"m.homeserver": {"base_url": "http://127.0.0.1/"}}}
    h.assert_matches_spec(ok, "login.yaml", "/_matrix/client/v3/login", "post", 200)
    # well_known -> definitions/wellknown/full.yaml -> homeserver.yaml (relative to full.yaml)
    bad = dict(ok, well_known={"m.homeserver": {}})
    with pytest.raises(AssertionError, match="base_url"):
        h.assert_matches_spec(bad, "login.yaml", "/_matrix/client/v3/login", "post", 200)
    with pytest.raises(AssertionError, match="user_id"):
        h.assert_matches_spec({"access_token": "t", "device_id": "D"}, "login.yaml", "/login",
                              "post", 200)


def test_path_forms_r0_alias_and_templates():
    body = {"flows": [{"type": "m.login.password"}]}
    for path in ("/login", "/_matrix/client/v3/login", "/_matrix/client/r0/login"):
        h.assert_matches_spec(body, "login.yaml", path, "get", 200)
    chunk = {"chunk": [], "start": "s"}
    h.assert_matches_spec(chunk, "message_pagination.yaml",
                          "/_matrix/client/v3/rooms/!r:localhost/messages", "get", 200)
    h.assert_matches_spec(chunk, "message_pagination.yaml", "/rooms/{roomId}/messages",
                          "get", 200)
    with pytest.raises(LookupError):
        h.assert_matches_spec(body, "login.yaml", "/_matrix/client/v3/nope", "get", 200)
    with pytest.raises(LookupError):
        h.assert_matches_spec(body, "login.yaml", "/login", "delete", 200)


def test_error_schemas_and_response_level_refs():
    h.assert_matches_spec({"errcode": "M_NOT_JSON", "error": "x"}, "login.yaml", "/login",
                          "post", 400)
    with pytest.raises(AssertionError):
        h.assert_matches_spec({"error": "no errcode"}, "login.yaml", "/login", "post", 400)
    # "429": {$ref: '#/components/responses/rateLimited'} -> definitions/errors/rate_limited.yaml
    path = "/_matrix/client/v1/media/config"
    h.assert_matches_spec({"errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": 10},
                          "authed-content-repo.yaml", path, "get", 429)
    with pytest.raises(AssertionError, match="retry_after_ms"):
        h.assert_matches_spec({"errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": "10"},
                              "authed-content-repo.yaml", path, "get", 429)
    # A 404 without a schema falls back to the generic error schema.
    h.assert_matches_spec({"errcode": "M_NOT_FOUND"}, "wellknown.yaml",
                          "/.well-known/matrix/client", "get", 404)


def test_refs_into_event_schemas():
    event = {"type": "m.room.message", "content": {"msgtype": "m.text", "body": "hi"},
             "event_id": "$e", "sender": "@a:localhost", "origin_server_ts": 1,
             "room_id": "!r:localhost"}
    path = "/_matrix/client/v3/rooms/!r:localhost/messages"
    h.assert_matches_spec({"chunk": [event], "start": "s"}, "message_pagination.yaml", path,
                          "get", 200)
    with pytest.raises(AssertionError, match="origin_server_ts"):
        h.assert_matches_spec({"chunk": [dict(event, origin_server_ts="x")], "start": "s"},
                              "message_pagination.yaml", path, "get", 200)


def test_wellknown_schema():
    h.assert_matches_spec({"m.homeserver": {"base_url": "http://127.0.0.1:1/"}},
                          "wellknown.yaml", "/.well-known/matrix/client", "get", 200)
    with pytest.raises(AssertionError):
        h.assert_matches_spec({"m.homeserver": {"base_url": 5}}, "wellknown.yaml",
                              "/.well-known/matrix/client", "get", 200)


def test_historical_swagger():
    ok = {"access_token": "a", "refresh_token": "b"}
    h.assert_matches_historical(ok, "r0.2.0", "/tokenrefresh", "post", 200)
    h.assert_matches_historical(ok, "r0.0.0", "/_matrix/client/r0/tokenrefresh", "post", 200)
    h.assert_matches_historical(ok, "pr26-2015-09-25", "/_matrix/client/api/v1/tokenrefresh",
                                "post", 200)
    with pytest.raises(AssertionError, match="access_token"):
        h.assert_matches_historical({"access_token": 5}, "r0.2.0", "/tokenrefresh", "post", 200)
    # 403 has no schema in the Swagger: checked against definitions/error.yaml
    h.assert_matches_historical({"errcode": "M_FORBIDDEN"}, "r0.2.0", "/tokenrefresh", "post",
                                403)
    with pytest.raises(AssertionError):
        h.assert_matches_historical({"error": "x"}, "r0.2.0", "/tokenrefresh", "post", 429)
    with pytest.raises(LookupError):
        h.assert_matches_historical(ok, "r0.2.0", "/refresh", "post", 200)


def test_body_may_be_a_response_object():
    class FakeResponse:
        def json(self):
            return {"versions": ["v1.1"]}

    h.assert_matches_spec(FakeResponse(), "versions.yaml", "/versions", "get", 200)


# ---------------------------------------------------------------------------- config

def test_default_config_round_trips_through_toml():
    cfg = h.default_config(12345)
    text = h.to_toml(cfg)
    assert tomllib.loads(text) == cfg
    if h.backend() == "postgres":
        assert 'url = "postgresql://' in text
    else:
        assert 'url = "sqlite:data/homeserver.db"' in text
    assert text.index("server_name") < text.index("[listen]")


def test_overrides_merge_and_delete():
    cfg = h.deep_merge(h.default_config(1), {"tokens": {"access_token_lifetime": "2s"},
                                             "limits": {"max_header_bytes": 4096},
                                             "public_baseurl": None,
                                             "new": {"deep": {"x": [1, "a\"b"]}}})
    assert cfg["tokens"]["access_token_lifetime"] == "2s"
    assert cfg["limits"]["max_header_bytes"] == 4096
    assert cfg["limits"]["max_body_bytes"] == 65536
    assert "public_baseurl" not in cfg
    assert tomllib.loads(h.to_toml(cfg)) == cfg


# ---------------------------------------------------------------------------- raw sockets

def _toy_server(handler):
    """A one-connection-at-a-time TCP server on 127.0.0.1 running handler(conn)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    stop = threading.Event()

    def loop():
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                handler(conn)

    t = threading.Thread(target=loop, daemon=True)
    t.start()

    def close():
        stop.set()
        t.join(2)
        srv.close()

    return srv.getsockname()[1], close


def _read_head(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return data
        data += chunk
    return data


def test_raw_connection_reads_length_chunked_and_until_close():
    def handler(conn):
        _read_head(conn)
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n"
                     b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2\r\n\r\nhello")
        _read_head(conn)
        conn.sendall(b"HTTP/1.1 413 Too Large\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n")
        _read_head(conn)
        conn.sendall(b"HTTP/1.0 503 Busy\r\nRetry-After: 1\r\n\r\nbye")

    port, close = _toy_server(handler)
    try:
        with h.RawConnection(port, timeout=3) as c:
            c.send_request("GET", "/x")
            r = c.read_response()
            assert (r.status, r.body, r.header("x-a")) == (200, b"hello", "1, 2")
            c.send(h.build_request("POST", "/y", {"Content-Type": "application/json"}, b"{}"))
            r = c.read_response()
            assert r.status == 413 and r.json() == {"a": 1}
            c.send_request("GET", "/z")
            r = c.read_response()
            assert (r.status, r.reason, r.body, r.header("Retry-After")) == \
                (503, "Busy", b"bye", "1")
            assert c.wait_closed(2)
    finally:
        close()


def test_raw_connection_detects_close_and_timeout():
    def handler(conn):
        data = _read_head(conn)
        if b"/silent" in data:
            time.sleep(1.0)
        # then close without answering

    port, close = _toy_server(handler)
    try:
        with h.RawConnection(port, timeout=3) as c:
            c.send_request("GET", "/closeme")
            with pytest.raises(h.ConnectionClosed):
                c.read_response()
            assert c.wait_closed(0.1)
        with h.RawConnection(port, timeout=3) as c:
            c.send_request("GET", "/silent")
            with pytest.raises(socket.timeout):
                c.read_response(timeout=0.3)
            assert not c.wait_closed(0.1)
            assert c.wait_closed(3)
    finally:
        close()


def test_build_request_adds_host_and_length():
    raw = h.build_request("POST", "/p", {"A": "b"}, "xyz")
    assert raw == b"POST /p HTTP/1.1\r\nHost: 127.0.0.1\r\nA: b\r\nContent-Length: 3\r\n\r\nxyz"
