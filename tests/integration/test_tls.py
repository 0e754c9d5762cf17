"""Native TLS on the client listener ([listen] tls_certificate, tls_private_key).

Self-signed certificates are made with the `openssl` CLI into the test's tmp folder; clients
trust exactly those certificates (Python's ssl module). Covered: the client flow over HTTPS, TLS
versions and ALPN, what a plain-HTTP client or a silent one gets on the TLS port, SIGHUP reloads
(good, broken and mismatched files; open connections keep their certificate), and the config
checks of `serve` and `check-config` (exit status 2, message naming the key).
"""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

import myelin_harness as h
from client_helpers import login_ok, register_ok, unique_name, whoami

LOCAL = h.LOCAL


# ---- certificates ----------------------------------------------------------------------------

def make_cert(folder: Path, name: str, cn: str = "localhost") -> tuple[Path, Path]:
    """A self-signed EC certificate for 127.0.0.1 / localhost and its key (mode 0600)."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", f"/CN={cn}",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    key.chmod(0o600)
    return cert, key


def install(src: tuple[Path, Path], dst: tuple[Path, Path]) -> None:
    """Copies a certificate and key over the files the server is configured with."""
    for s, d in zip(src, dst):
        d.write_bytes(s.read_bytes())
        d.chmod(0o600)


def der(cert: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.read_text())


def client_context(*trusted: Path, alpn: list[str] | None = ("http/1.1",)) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for cert in trusted:
        ctx.load_verify_locations(cafile=str(cert))
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def tls_connect(port: int, ctx: ssl.SSLContext, timeout: float = 5.0) -> ssl.SSLSocket:
    raw = socket.create_connection((LOCAL, port), timeout=timeout)
    return ctx.wrap_socket(raw, server_hostname=LOCAL)


def peer_der(port: int, ctx: ssl.SSLContext) -> bytes:
    with tls_connect(port, ctx) as s:
        return s.getpeercert(binary_form=True)


def https_connection(port: int, ctx: ssl.SSLContext) -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection(LOCAL, port, context=ctx, timeout=10)


def get(conn: http.client.HTTPConnection, path: str, headers: dict | None = None):
    conn.request("GET", path, headers=headers or {})
    r = conn.getresponse()
    return r.status, r.read()


@pytest.fixture
def certs(tmp_path):
    """The files the server is configured with (tls/server.crt, .key) plus two spares."""
    folder = tmp_path / "tls"
    first = make_cert(folder, "first")
    second = make_cert(folder, "second")
    live = (folder / "server.crt", folder / "server.key")
    install(first, live)
    return {"folder": folder, "first": first, "second": second, "live": live}


def tls_server(tmp_path, certs, **overrides):
    # Relative to the server's folder (tmp_path/hs...): paths resolve against the config's folder.
    listen = {"tls_certificate": "../tls/server.crt", "tls_private_key": "../tls/server.key"}
    listen.update(overrides.pop("listen", {}))
    return h.start_server(tmp_path, {"listen": listen, "public_baseurl": None}, **overrides)


# ---- the client flow -------------------------------------------------------------------------

def test_client_flow_over_https(tmp_path, certs):
    server = tls_server(tmp_path, certs)
    assert server.base.startswith("https://")
    r = server.get("/_matrix/client/versions")
    assert r.status_code == 200 and "v1.1" in r.json()["versions"]
    # The default public_baseurl follows the listener: https.
    wk = server.get("/.well-known/matrix/client").json()
    assert wk["m.homeserver"]["base_url"].rstrip("/") == f"https://{LOCAL}:{server.port}"

    user = unique_name("tls")
    session = register_ok(server, user)
    assert whoami(server, session.access_token).json()["user_id"] == session.user_id
    again = login_ok(server, user, session.password)
    assert whoami(server, again.access_token).status_code == 200
    assert server.wait_for_log(r"serving localhost on https://")
    assert "BEGIN" not in server.log_text()  # no key (or certificate) material in the log


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls_versions_and_alpn(tmp_path, certs):
    server = tls_server(tmp_path, certs, logging={"level": "debug"})
    first_cert = certs["first"][0]
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = client_context(first_cert, alpn=["h2", "http/1.1"])
        ctx.minimum_version = ctx.maximum_version = version
        with tls_connect(server.port, ctx) as s:
            assert s.version() == version.name.replace("v1_", "v1.")
            assert s.selected_alpn_protocol() == "http/1.1"  # never h2: HTTP/1.1 only
            conn = https_connection(server.port, ctx)
            assert get(conn, "/health")[0] == 200
            conn.close()

    # TLS 1.1 is refused by the server: the client allows it (security level 0) and the server's
    # debug log names the reason.
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    old.minimum_version = ssl.TLSVersion.TLSv1
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, ConnectionError)):
        with tls_connect(server.port, old):
            pass
    server.wait_for_log(r"TLS handshake with 127\.0\.0\.1 failed: unsupported protocol")

    # A client without ALPN gets HTTP/1.1 just the same.
    ctx = client_context(first_cert, alpn=None)
    with tls_connect(server.port, ctx) as s:
        assert s.selected_alpn_protocol() is None
    assert server.is_running()


def test_plain_http_and_silent_clients_on_the_tls_port(tmp_path, certs):
    server = tls_server(tmp_path, certs, limits={"request_timeout": "1s"})
    # Plain HTTP: the handshake fails and the connection is closed, with no HTTP answer.
    with socket.create_connection((LOCAL, server.port), timeout=5) as s:
        s.sendall(h.build_request("GET", "/health"))
        received = b""
        try:
            while chunk := s.recv(4096):
                received += chunk
        except ConnectionResetError:
            pass
        assert not received.startswith(b"HTTP/"), received[:100]
    # A client that connects and says nothing is closed once the handshake deadline passes.
    with h.RawConnection(server.port, timeout=10) as conn:
        started = time.monotonic()
        assert conn.wait_closed(8), "a silent connection was not closed"
        assert time.monotonic() - started >= 0.5
    # Half a handshake (the first bytes of a ClientHello), then silence: closed the same way.
    with h.RawConnection(server.port, timeout=10) as conn:
        conn.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        assert conn.wait_closed(8), "a stalled handshake was not closed"
    assert server.get("/health").status_code == 200


# ---- SIGHUP ----------------------------------------------------------------------------------

def test_sighup_reload_keeps_open_connections_on_the_old_certificate(tmp_path, certs):
    server = tls_server(tmp_path, certs)
    first, second = certs["first"], certs["second"]
    both = client_context(first[0], second[0])
    assert peer_der(server.port, both) == der(first[0])

    session = register_ok(server, unique_name("hup"))
    auth = {"Authorization": f"Bearer {session.access_token}"}
    keep = https_connection(server.port, both)
    assert get(keep, "/_matrix/client/v3/account/whoami", auth)[0] == 200
    keep_sock = keep.sock
    assert keep_sock.getpeercert(binary_form=True) == der(first[0])

    install(second, certs["live"])
    server.proc.send_signal(signal.SIGHUP)
    server.wait_for_log(r"TLS certificate reloaded")
    assert "CN=localhost" in server.log_text()

    # The connection opened before SIGHUP goes on, on the old certificate.
    status, body = get(keep, "/_matrix/client/v3/account/whoami", auth)
    assert status == 200 and json.loads(body)["user_id"] == session.user_id
    assert keep.sock is keep_sock, "the keep-alive connection was re-opened"
    assert keep_sock.getpeercert(binary_form=True) == der(first[0])
    # New connections get the new one.
    assert peer_der(server.port, both) == der(second[0])
    assert peer_der(server.port, client_context(second[0])) == der(second[0])
    assert whoami(server, session.access_token).status_code == 200
    keep.close()
    assert server.is_running()


def test_sighup_with_broken_files_keeps_the_running_certificate(tmp_path, certs):
    server = tls_server(tmp_path, certs)
    first, second = certs["first"], certs["second"]
    cert_path, key_path = certs["live"]
    ctx = client_context(first[0], second[0])

    cert_path.write_text("-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n")
    server.proc.send_signal(signal.SIGHUP)
    m = server.wait_for_log(r"TLS certificate not reloaded, the previous one stays in use: "
                            r"config key 'listen.tls_certificate' names '[^']*server\.crt'.*")
    assert "holds no PEM certificate" in m.group(0)
    assert peer_der(server.port, ctx) == der(first[0])

    # The new certificate with the old key: refused, naming the key file.
    cert_path.write_bytes(second[0].read_bytes())
    server.proc.send_signal(signal.SIGHUP)
    m = server.wait_for_log(r"not reloaded.*config key 'listen.tls_private_key' names "
                            r"'[^']*server\.key', which does not belong to the certificate")
    assert peer_der(server.port, ctx) == der(first[0])

    # Fixed files load on the next SIGHUP.
    install(second, certs["live"])
    server.proc.send_signal(signal.SIGHUP)
    server.wait_for_log(r"TLS certificate reloaded")
    assert peer_der(server.port, ctx) == der(second[0])
    assert "PRIVATE KEY" not in server.log_text()


def test_sighup_on_a_plain_http_server_is_harmless(tmp_path):
    server = h.start_server(tmp_path)
    server.proc.send_signal(signal.SIGHUP)
    server.wait_for_log(r"SIGHUP received: nothing to reload")
    assert server.get("/health").status_code == 200


def test_shutdown_with_open_tls_connections(tmp_path, certs):
    server = tls_server(tmp_path, certs)
    ctx = client_context(certs["first"][0])
    idle = https_connection(server.port, ctx)
    assert get(idle, "/health")[0] == 200
    handshaking = socket.create_connection((LOCAL, server.port), timeout=5)
    started = time.monotonic()
    server.stop(expect_exit=0)
    assert time.monotonic() - started < 5
    idle.close()
    handshaking.close()


# ---- config checks ---------------------------------------------------------------------------

def write_config(tmp_path, name: str, listen: dict) -> Path:
    config = h.deep_merge(h.default_config(h.free_port()), {"listen": listen})
    path = tmp_path / f"{name}.toml"
    path.write_text(h.to_toml(config))
    return path


def serve_and_check(tmp_path, name, listen):
    """`serve` and `check-config` with this [listen]: both results."""
    path = write_config(tmp_path, name, listen)
    served = h.run_cli("serve", "--config", path, timeout=30)
    checked = h.run_cli("check-config", "--config", path, timeout=30)
    return served, checked


def test_config_checks_refuse_bad_tls_files(tmp_path, certs):
    folder = certs["folder"]
    first, second = certs["first"], certs["second"]
    cases = [
        ("missing", {"tls_certificate": str(folder / "nope.crt"),
                     "tls_private_key": str(first[1])},
         r"config key 'listen.tls_certificate' names '.*nope\.crt', which cannot be read"),
        ("mismatch", {"tls_certificate": str(first[0]), "tls_private_key": str(second[1])},
         r"config key 'listen.tls_private_key' names '.*second\.key', which does not belong to "
         r"the certificate in '.*first\.crt'"),
        ("cert_only", {"tls_certificate": str(first[0])},
         r"config key 'listen.tls_certificate' is set but 'listen.tls_private_key' is not"),
    ]
    readable = folder / "readable.key"
    readable.write_bytes(first[1].read_bytes())
    readable.chmod(0o644)
    cases.append(("world_readable", {"tls_certificate": str(first[0]),
                                     "tls_private_key": str(readable)},
                  r"config key 'listen.tls_private_key' names '.*readable\.key', which is "
                  r"accessible by others \(mode 0644\)"))
    for name, listen, pattern in cases:
        served, checked = serve_and_check(tmp_path, name, listen)
        for what, r in (("serve", served), ("check-config", checked)):
            assert r.returncode == 2, f"{name}/{what}: {r.returncode}\n{r.stdout}\n{r.stderr}"
            assert re.search(pattern, r.stderr + r.stdout), f"{name}/{what}: {r.stderr}"
            assert "BEGIN" not in r.stderr + r.stdout
        # Refused before anything was created.
        assert not (tmp_path / "data").exists()


def test_check_config_accepts_good_tls_files(tmp_path, certs):
    cert, key = certs["first"]
    key.chmod(0o640)  # group-readable keys are fine (Debian's ssl-cert group)
    path = write_config(tmp_path, "good", {"tls_certificate": str(cert),
                                           "tls_private_key": str(key)})
    r = h.run_cli("check-config", "--config", path)
    assert r.returncode == 0, r.stderr
    assert "TLS certificate: subject CN=localhost" in r.stdout
    assert "config OK" in r.stdout
