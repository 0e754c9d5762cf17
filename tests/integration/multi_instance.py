"""Several myelin instances on one PostgreSQL database behind nginx: the deployment that
docs/deploy.md describes, on 127.0.0.1. Used by test_multi_instance.py and bench/cross_instance.py.

    nginx_binary() -> Path       Debian's nginx (nginx-light); an AssertionError if missing
    nginx_config(prefix, port, upstream_ports) -> str
        The configuration the tests run (and docs/deploy.md shows): one worker, round robin over
        the instances, no sticky sessions, X-Forwarded-For appended, and the answering instance in
        the response header X-Myelin-Upstream (so a test can see where a request went).
    NginxProxy(workdir, upstream_ports): .start() .stop() .base .port .upstream_ports
        .request/.get/.post (like MyelinServer, so client_helpers work through it)
        .error_log_text()  .access_log_text()
        nginx runs as a child process in the foreground (`nginx -p DIR -e LOG -c FILE -g
        'daemon off;'`), with its prefix, pid file, logs and temp folders under `workdir`.
    start_instances(tmp_path, n=2, overrides=None, *, public_baseurl=None, scope="fixture")
        -> list[MyelinServer]
        n servers on ONE fresh PostgreSQL database (MYELIN_INTEGRATION_BACKEND=postgres) with the
        same config and the same key file (written here first, as an operator would), each with
        its own port and its own metrics port; started at the same time, so the database's
        migrations also run under concurrent first opens.
    shared_database_url(servers) -> str    asserts they all use one database, returns its URL

Everything listens on 127.0.0.1 only. Whoever starts servers and proxies stops them (the conftest
fixtures stop servers; NginxProxy.stop() ends nginx by its pid).
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterable, Mapping

import requests

import myelin_harness as h

UPSTREAM_HEADER = "X-Myelin-Upstream"


def nginx_binary() -> Path:
    """Debian's nginx binary; fails (never skips) when it is missing."""
    path = shutil.which("nginx") or shutil.which(
        "nginx", path=os.pathsep.join(["/usr/sbin", "/usr/local/sbin", "/sbin"]))
    assert path, "nginx not found (install Debian's nginx-light: scripts/install-deps.sh)"
    return Path(path)


def nginx_config(prefix: Path, port: int, upstream_ports: Iterable[int]) -> str:
    prefix = Path(prefix)
    servers = "".join(f"        server 127.0.0.1:{p};\n" for p in upstream_ports)
    temps = "".join(f"    {d}_temp_path {prefix / ('tmp_' + d)};\n"
                    for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""# written by tests/integration/multi_instance.py (the example of docs/deploy.md)
worker_processes 1;
pid {prefix / 'nginx.pid'};
error_log {prefix / 'error.log'} warn;
events {{ worker_connections 1024; }}
http {{
    log_format upstream '$remote_addr "$request" $status upstream=$upstream_addr '
                        'time=$upstream_response_time';
    access_log {prefix / 'access.log'} upstream;
{temps}
    # Round robin over every instance; no ip_hash, no sticky cookie: any instance can answer any
    # request of any client.
    upstream myelin {{
{servers}    }}

    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 1m;

        location ~ ^(/_matrix|/\\.well-known/matrix/client|/health) {{
            proxy_pass http://myelin;
            # Myelin believes X-Forwarded-For from [rate_limits] trusted_proxies (default
            # 127.0.0.1 and ::1): one header, the client's address appended.
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header Host $host;
            # Which instance answered (for the tests; leave it out in production).
            add_header {UPSTREAM_HEADER} $upstream_addr always;
        }}
    }}
}}
"""


class NginxProxy:
    """nginx round robin in front of `upstream_ports`, on a free 127.0.0.1 port."""

    def __init__(self, workdir: Path, upstream_ports: Iterable[int], port: int | None = None):
        self.prefix = Path(workdir)
        self.prefix.mkdir(parents=True, exist_ok=True)
        self.upstream_ports = list(upstream_ports)
        self.port = port if port is not None else h.free_port()
        self.base = f"http://{h.LOCAL}:{self.port}"
        self.config_path = self.prefix / "nginx.conf"
        self.config_path.write_text(nginx_config(self.prefix, self.port, self.upstream_ports))
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        return [str(nginx_binary()), "-p", str(self.prefix), "-e", str(self.prefix / "error.log"),
                "-c", str(self.config_path), "-g", "daemon off;"]

    def start(self, timeout: float = 10.0) -> "NginxProxy":
        check = subprocess.run([*self.command()[:-2], "-t"], capture_output=True, text=True,
                               timeout=30)
        assert check.returncode == 0, f"nginx -t refused the config:\n{check.stderr}"
        with open(self.prefix / "stdout.log", "ab") as out:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"nginx exited with status {self.proc.returncode}\n"
                                     f"{self.error_log_text()[-3000:]}")
            try:
                if self.get("/health", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"nginx did not proxy GET /health within {timeout}s\n"
                                     f"{self.error_log_text()[-3000:]}")
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (fast shutdown; the workers leave with the master), SIGKILL after `timeout`."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def error_log_text(self) -> str:
        try:
            return (self.prefix / "error.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def access_log_text(self) -> str:
        try:
            return (self.prefix / "access.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # Same request interface as MyelinServer (one connection per request, 10 s timeout).
    def url(self, path: str) -> str:
        return self.base + (path if path.startswith("/") else "/" + path)

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        with requests.Session() as s:
            s.trust_env = False
            return s.request(method, self.url(path), **kwargs)

    def get(self, path: str, **kw) -> requests.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw) -> requests.Response:
        return self.request("POST", path, **kw)

    def __repr__(self) -> str:
        return f"<NginxProxy {self.base} -> {self.upstream_ports}>"


def write_key_file(path: Path) -> Path:
    """32 random bytes, mode 0600, in a 0700 folder: the one key file every instance reads."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secrets.token_bytes(32))
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def write_signing_key_file(path: Path) -> Path:
    """An ed25519 event signing key in Synapse's format, mode 0600: the one every instance
    reads (instances starting together must not race to create it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    seed = base64.b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, f"ed25519 a_test {seed}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def start_instances(tmp_path: Path, n: int = 2, overrides: Mapping | None = None, *,
                    public_baseurl: str | None = None, scope: str = "fixture"
                    ) -> list[h.MyelinServer]:
    """n instances on one fresh PostgreSQL database with one key file; see the module doc."""
    assert h.backend() == "postgres", \
        "several instances need the PostgreSQL backend (MYELIN_INTEGRATION_BACKEND=postgres)"
    tmp_path = Path(tmp_path)
    database_url = h.fresh_postgres_url()
    key_file = write_key_file(tmp_path / "shared-secrets" / "myelin.key")
    write_signing_key_file(tmp_path / "shared-secrets" / "myelin.signing.key")
    shared = h.deep_merge({
        "database": {"url": database_url, "pool_size": 4},
        "secrets": {"key_file": str(key_file)},
    }, overrides or {})
    if public_baseurl is not None:
        shared = h.deep_merge(shared, {"public_baseurl": public_baseurl})
    servers: list[h.MyelinServer] = []
    try:
        for _ in range(n):
            per_instance = {"metrics": {"enabled": True, "address": h.LOCAL,
                                        "port": h.free_port()}}
            servers.append(h.start_server(tmp_path, h.deep_merge(shared, per_instance),
                                          wait=False, scope=scope))
        for s in servers:
            s.wait_healthy()
    except BaseException:
        h.stop_servers(servers, check=False)
        raise
    return servers


def shared_database_url(servers: Iterable[h.MyelinServer]) -> str:
    urls = {s.config["database"]["url"] for s in servers}
    assert len(urls) == 1, f"the instances use different databases: {urls}"
    return urls.pop()
