"""Black-box test harness for the myelin binary.

Everything here talks to a real `myelin serve` process on 127.0.0.1 and never anywhere else.
Import it from test files as `from myelin_harness import ...` (conftest.py puts this folder on
sys.path). The public API:

Locations
    binary_path()                  MYELIN_BINARY, else <repo>/build/myelin
    spec_dir()                     MYELIN_SPEC_DIR, else <repo>/../shared/matrix-spec
    fault_shim_path()              MYELIN_FAULT_SHIM, else the LD_PRELOAD fault injector beside
                                   the binary's build (tests/integration/fault_shim/fault_shim.c)
    run_cli(*args, env=None, cwd=None, timeout=30)  -> subprocess.CompletedProcess (text)

Servers
    start_server(tmp_path, overrides=None, *, wait=True, env=None, config_via_env=False,
                 extra_toml="", expect_exit=0, **section_overrides) -> MyelinServer
        Writes <tmp_path>/hs[-N]/homeserver.toml (default config below, deep-merged with
        `overrides` and the keyword overrides; a value of None deletes the key), picks a free
        127.0.0.1 port, runs `myelin serve --config <path>` with cwd set to an unrelated empty
        folder, and waits for GET /health == 200.
        Example: start_server(tmp_path, tokens={"access_token_lifetime": "2s"},
                              limits={"max_header_bytes": 4096})
    MyelinServer: .base .port .config_path .data_dir .workdir .proc .log_path .config (dict)
        .tls_certificate .verify()   (native TLS: [listen] tls_certificate set, relative to the
        server's folder; .base is then https:// and requests verify against that file)
        .url(path) .request(method, path, **requests_kwargs) .get/.post/.put/.delete/.options
        .stop(expect_exit=0, timeout=15) -> exit code   (SIGTERM; expect_exit=None: don't check)
        .kill() (SIGKILL)   .restart(**start_kwargs)   .start(wait=True)   .wait_healthy()
        .log_text()   .stdout_text()   .wait_for_log(regex, timeout=5) -> re.Match
        .is_running()   .exit_code
    default_config(port) -> dict,  to_toml(dict) -> str,  deep_merge(base, overrides) -> dict
    free_port() -> int

Backend
    MYELIN_INTEGRATION_BACKEND=postgres (with MYELIN_TEST_POSTGRES_URL, e.g. under
    scripts/pg-test-cluster.sh) makes default_config() point every server at a fresh database of
    its own on that cluster instead of SQLite under data/. backend() -> "sqlite" | "postgres".
    ctest runs the suite both ways (integration, integration_postgres). A test that checks the
    SQLite file itself is marked skip_on_postgres(reason); one that needs both backends at once
    (the SQLite to PostgreSQL copy) is marked only_on_postgres(reason) and runs once, in
    integration_postgres; fresh_postgres_url() makes it a database. Tests that look into the
    database use these, on either backend:
    db_query(server, sql, params=()) -> list of tuples   (one statement, "?" placeholders)
    db_execute(server, sql, param_rows=((),))            (the statement once per row, one
                                                          transaction)
        Plain SQL that both backends accept; on PostgreSQL the values go through psql as
        literals (None, bool, int, str), so booleans read back as True/False rather than 1/0.
    only_on_postgres(reason)   a mark that skips a test of the PostgreSQL backend itself on SQLite
    postgres_ctl(*args, timeout=90, check=True) -> CompletedProcess
        pg_ctl on the cluster, as its owner ("-m", "fast", "restart"; "-m", "immediate", "stop";
        "start"; "status"), through the MYELIN_TEST_POSTGRES_CTL script of
        scripts/pg-test-cluster.sh; fails (never skips) when the backend is postgres but the
        cluster cannot be controlled.

Spec validation (OpenAPI 3.1 files in data/api/client-server, Swagger 2.0 in historical/)
    assert_matches_spec(body, "login.yaml", "/_matrix/client/v3/login", "post", 200)
    assert_matches_historical(body, "r0.2.0", "/tokenrefresh", "post", 200, file=None)
    response_schema(...) / historical_response_schema(...) return (schema, validator) if needed.
        Paths: the full path, the path relative to the file's `servers` basePath, an r0 alias of
        a v3 path, a concrete path for a templated one ("/profile/@a:b" for "/profile/{userId}")
        or the template itself. Status: exact code, then "4XX"-style, then "default". An error
        status (>= 400) whose response has no schema falls back to the spec's error.yaml.

Response checks
    assert_cors(headers)                          the four CORS headers of the contract
    assert_matrix_error(resp, status, errcode)    status, JSON content type, errcode + error
    header_tokens(value) -> set of lowercased comma-separated tokens

Raw sockets (limit tests)
    RawConnection(port, timeout=5.0): .send(bytes|str) .send_request(method, path, headers=None,
        body=b"") .read_response(timeout=None) -> RawResponse  .wait_closed(timeout) -> bool
        .close()   (context manager)   raises ConnectionClosed if the peer closes/resets
        before a complete response, socket.timeout on timeout.
    RawResponse: .status .reason .version .headers (list of pairs) .header(name) .body .json()
    raw_exchange(port, data, timeout=5.0) -> RawResponse   (one request on a new connection)
    build_request(method, path, headers=None, body=b"", host="127.0.0.1") -> bytes
"""

from __future__ import annotations

import atexit
import copy
import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import unquote, urlparse

import jsonschema
import requests
import yaml

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
LOCAL = "127.0.0.1"

# Tests must only ever talk to 127.0.0.1: keep any proxy settings away from it.
for _var in ("NO_PROXY", "no_proxy"):
    _cur = os.environ.get(_var, "")
    if LOCAL not in _cur.split(","):
        os.environ[_var] = ",".join(x for x in (_cur, LOCAL, "localhost") if x)


# --------------------------------------------------------------------------------------------
# Locations and the CLI
# --------------------------------------------------------------------------------------------

def binary_path() -> Path:
    env = os.environ.get("MYELIN_BINARY")
    return Path(env) if env else REPO_ROOT / "build" / "myelin"


def spec_dir() -> Path:
    env = os.environ.get("MYELIN_SPEC_DIR")
    return Path(env) if env else (REPO_ROOT.parent / "shared" / "matrix-spec").resolve()


def fault_shim_path() -> Path:
    """The test-only LD_PRELOAD library that fails file writes on demand (fault_shim.c)."""
    env = os.environ.get("MYELIN_FAULT_SHIM")
    if env:
        return Path(env)
    return binary_path().parent / "tests" / "integration" / "fault_shim" / "libmyelin_fault_shim.so"


def _child_env(extra: Mapping[str, str] | None = None) -> dict:
    env = dict(os.environ)
    env.pop("MYELIN_CONFIG", None)  # a stray value must not change which config a test runs
    if extra:
        for k, v in extra.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = str(v)
    return env


def run_cli(*args: str, env: Mapping[str, str] | None = None, cwd: str | Path | None = None,
            timeout: float = 30, input: str | None = None) -> subprocess.CompletedProcess:
    """Runs the myelin binary with `args` and returns the finished process (text output)."""
    binary = binary_path()
    assert binary.exists(), f"myelin binary not found at {binary} (set MYELIN_BINARY)"
    return subprocess.run([str(binary), *map(str, args)], env=_child_env(env), cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, input=input,
                          stdin=None if input is not None else subprocess.DEVNULL)


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------

def backend() -> str:
    """The storage backend the servers of this run use: "sqlite" (default) or "postgres"."""
    value = os.environ.get("MYELIN_INTEGRATION_BACKEND", "sqlite")
    assert value in ("sqlite", "postgres"), f"MYELIN_INTEGRATION_BACKEND={value!r}"
    return value


_pg_databases = 0


def fresh_postgres_url() -> str:
    """Creates a new database on the MYELIN_TEST_POSTGRES_URL cluster and returns its URL."""
    global _pg_databases
    base = os.environ.get("MYELIN_TEST_POSTGRES_URL", "")
    assert base, "MYELIN_INTEGRATION_BACKEND=postgres needs MYELIN_TEST_POSTGRES_URL"
    _pg_databases += 1
    name = f"myelin_it_{os.getpid()}_{_pg_databases}"
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", base, "-c", f"CREATE DATABASE {name}"],
                   check=True, capture_output=True, timeout=60)
    return base.rsplit("/", 1)[0] + "/" + name


def skip_on_postgres(reason: str):
    """A pytest mark that skips a test that checks SQLite itself when the backend is postgres;
    `reason` names what the test checks."""
    import pytest  # only test modules need it; the harness works without pytest loaded

    return pytest.mark.skipif(backend() == "postgres", reason=f"SQLite only: {reason}")


def only_on_postgres(reason: str):
    """A pytest mark for a test that needs the PostgreSQL cluster as well as SQLite: it runs in
    the postgres run of the suite (integration_postgres) and skips in the SQLite one; `reason`
    names what it checks."""
    import pytest

    return pytest.mark.skipif(backend() != "postgres",
                              reason=f"runs in integration_postgres: {reason}")


def postgres_ctl(*args: str, timeout: float = 90, check: bool = True
                 ) -> subprocess.CompletedProcess:
    """Runs pg_ctl with `args` on the test cluster (MYELIN_TEST_POSTGRES_CTL, set by
    scripts/pg-test-cluster.sh) and, with `check`, asserts it succeeded; returns the finished
    process ("status" exits 3 when the cluster is stopped)."""
    assert backend() == "postgres", "postgres_ctl needs MYELIN_INTEGRATION_BACKEND=postgres"
    ctl = os.environ.get("MYELIN_TEST_POSTGRES_CTL", "")
    assert ctl and Path(ctl).exists(), (
        "MYELIN_TEST_POSTGRES_CTL is not set or missing: run the suite under "
        "scripts/pg-test-cluster.sh (ctest integration_postgres) to control the cluster")
    r = subprocess.run([ctl, *args], capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0 or not check, f"pg_ctl {' '.join(args)} failed ({r.returncode}): " \
                                           f"{r.stdout.strip()} {r.stderr.strip()}"
    return r


def _pg_literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"db_query/db_execute: unsupported parameter {value!r}")


def _pg_statement(sql: str, params: Iterable[Any]) -> str:
    """`sql` with its "?" placeholders replaced by the literals of `params`, in order."""
    parts = sql.split("?")
    values = list(params)
    assert len(values) == len(parts) - 1, f"{len(values)} parameters for {sql!r}"
    out = parts[0]
    for value, rest in zip(values, parts[1:]):
        out += _pg_literal(value) + rest
    return out


def _psql(server: "MyelinServer", script: str, *extra: str) -> str:
    r = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", *extra,
                        server.config["database"]["url"]],
                       input=script, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"psql failed: {r.stderr.strip()}"
    return r.stdout


def _sqlite_connect(server: "MyelinServer"):
    import sqlite3

    return sqlite3.connect(str(server.data_dir / "homeserver.db"), timeout=10)


def db_query(server: "MyelinServer", sql: str, params: Iterable[Any] = ()) -> list[tuple]:
    """The rows of one SELECT on `server`'s database, whichever the backend."""
    if backend() == "postgres":
        # json keeps the column types; the pairs hook keeps the column order (and duplicates).
        text = _psql(server, f"SELECT json_agg(t) FROM ({_pg_statement(sql, params)}) AS t;\n",
                     "-t", "-A")
        rows = json.loads(text.strip() or "null",
                          object_pairs_hook=lambda pairs: tuple(v for _, v in pairs))
        return list(rows or [])
    conn = _sqlite_connect(server)
    try:
        return [tuple(row) for row in conn.execute(sql, tuple(params))]
    finally:
        conn.close()


def db_execute(server: "MyelinServer", sql: str,
               param_rows: Iterable[Iterable[Any]] = ((),)) -> None:
    """Runs one statement per parameter row on `server`'s database, in one transaction."""
    if backend() == "postgres":
        _psql(server, "".join(_pg_statement(sql, row) + ";\n" for row in param_rows), "-1")
        return
    conn = _sqlite_connect(server)
    try:
        with conn:
            conn.executemany(sql, [tuple(row) for row in param_rows])
    finally:
        conn.close()


def default_config(port: int) -> dict:
    database = ({"url": fresh_postgres_url(), "pool_size": 4} if backend() == "postgres"
                else {"url": "sqlite:data/homeserver.db"})
    return {
        "server_name": "localhost",
        "public_baseurl": f"http://{LOCAL}:{port}/",
        "listen": {"address": LOCAL, "port": port, "threads": 2},
        "database": database,
        "registration": {"enabled": True, "allow_guests": True},
        "tokens": {"access_token_lifetime": "5m"},
        "passwords": {"argon2_memory_kib": 8192, "argon2_iterations": 1},
        "limits": {
            "max_header_bytes": 16384,
            "max_body_bytes": 65536,
            "request_timeout": "30s",
            "idle_timeout": "75s",
            "max_connections": 1000,
        },
        "rate_limits": {"enabled": False},
        # Every server would otherwise bind 127.0.0.1:9008; metrics tests enable it on free_port().
        "metrics": {"enabled": False},
        "logging": {"level": "info", "access_log": True},
    }


def deep_merge(base: Mapping, overrides: Mapping | None) -> dict:
    """Returns a copy of `base` with `overrides` merged in; nested dicts merge key by key, a
    value of None deletes the key."""
    out = copy.deepcopy(dict(base))
    for key, value in (overrides or {}).items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON string escapes are valid TOML
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(config: Mapping) -> str:
    """Serialises a nested dict: scalars first, then one [table] per nested dict."""
    lines: list[str] = []

    def emit(table: Mapping, prefix: tuple[str, ...]) -> None:
        scalars = [(k, v) for k, v in table.items() if not isinstance(v, Mapping)]
        tables = [(k, v) for k, v in table.items() if isinstance(v, Mapping)]
        if prefix and (scalars or not tables):
            if lines:
                lines.append("")
            lines.append("[" + ".".join(_toml_key(p) for p in prefix) + "]")
        for k, v in scalars:
            lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
        for k, v in tables:
            emit(v, prefix + (k,))

    emit(config, ())
    return "\n".join(lines) + "\n"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOCAL, 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------------------------

_LIVE: list["MyelinServer"] = []


def live_servers() -> list["MyelinServer"]:
    return list(_LIVE)


def _http_session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # no proxies, no netrc
    return s


class MyelinServer:
    """One myelin process. Create it with start_server()."""

    def __init__(self, workdir: Path, config: dict, *, env: Mapping[str, str] | None = None,
                 config_via_env: bool = False, extra_toml: str = "", scope: str = "test"):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.port: int = int(config["listen"]["port"])
        # Native TLS ([listen] tls_certificate): https, verified against that (self-signed)
        # certificate, read anew for each request so that a reloaded certificate is trusted.
        tls_certificate = config["listen"].get("tls_certificate")
        self.tls_certificate: Path | None = (
            (self.workdir / tls_certificate) if tls_certificate else None)
        scheme = "https" if self.tls_certificate else "http"
        self.base = f"{scheme}://{LOCAL}:{self.port}"
        self.config_path = self.workdir / "homeserver.toml"
        self.data_dir = self.workdir / "data"
        self.log_path = self.workdir / "myelin.stderr.log"
        self.stdout_path = self.workdir / "myelin.stdout.log"
        self.cwd = self.workdir / "cwd"  # an unrelated folder: relative paths must not use it
        self.cwd.mkdir(exist_ok=True)
        self.env = dict(env or {})
        self.config_via_env = config_via_env
        self.extra_toml = extra_toml
        self.scope = scope
        self.proc: subprocess.Popen | None = None
        self.exit_code: int | None = None
        self.write_config()

    # -- config ---------------------------------------------------------------------------
    def write_config(self) -> None:
        text = to_toml(self.config)
        if self.extra_toml:
            text += "\n" + self.extra_toml.strip("\n") + "\n"
        self.config_path.write_text(text)

    # -- process --------------------------------------------------------------------------
    def command(self) -> list[str]:
        if self.config_via_env:
            return [str(binary_path()), "serve"]
        return [str(binary_path()), "serve", "--config", str(self.config_path)]

    def start(self, wait: bool = True, timeout: float = 20.0) -> "MyelinServer":
        assert self.proc is None or self.proc.poll() is not None, "server already running"
        binary = binary_path()
        assert binary.exists(), f"myelin binary not found at {binary} (set MYELIN_BINARY)"
        env = dict(self.env)
        if self.config_via_env:
            env["MYELIN_CONFIG"] = str(self.config_path)
        with open(self.log_path, "ab") as err, open(self.stdout_path, "ab") as out:
            err.write(f"=== start {' '.join(self.command())}\n".encode())
            err.flush()
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=err, cwd=self.cwd, env=_child_env(env),
                                         start_new_session=True)
        self.exit_code = None
        if self not in _LIVE:
            _LIVE.append(self)
        if wait:
            self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while True:
            rc = self.proc.poll()
            if rc is not None:
                self.exit_code = rc
                _forget(self)
                raise AssertionError(f"myelin exited with status {rc} before answering /health"
                                     f"\n--- log ---\n{self.log_tail()}")
            try:
                with _http_session() as session:  # closed at once: holds no connection
                    r = session.get(self.base + "/health", timeout=1.0, verify=self.verify())
                if r.status_code == 200:
                    return
                last = f"status {r.status_code}: {r.text[:200]}"
            except requests.RequestException as e:
                last = f"{type(e).__name__}: {e}"
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"myelin did not answer GET /health with 200 within "
                                     f"{timeout}s (last: {last})\n--- log ---\n{self.log_tail()}")
            time.sleep(0.05)

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, expect_exit: int | None = 0, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait up to `timeout` s (then SIGKILL and fail), check the exit status.
        Returns the exit status (negative: killed by that signal)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.exit_code = self.proc.returncode
                _forget(self)
                raise AssertionError(f"myelin did not exit within {timeout}s of SIGTERM"
                                     f"\n--- log ---\n{self.log_tail()}")
        self.exit_code = self.proc.returncode
        _forget(self)
        if expect_exit is not None:
            assert self.exit_code == expect_exit, (
                f"myelin exited with status {self.exit_code}, expected {expect_exit}"
                f"\n--- log ---\n{self.log_tail()}")
        return self.exit_code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
            self.proc.wait()
        if self.proc is not None:
            self.exit_code = self.proc.returncode
        _forget(self)

    def restart(self, expect_exit: int | None = 0, **start_kwargs) -> "MyelinServer":
        """Stops (SIGTERM, checking the exit status) and starts again on the same port, config
        and data. Call write_config() before it after changing .config."""
        self.stop(expect_exit=expect_exit)
        return self.start(**start_kwargs)

    # -- logs -----------------------------------------------------------------------------
    def log_text(self) -> str:
        try:
            return self.log_path.read_bytes().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def stdout_text(self) -> str:
        try:
            return self.stdout_path.read_bytes().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, chars: int = 6000) -> str:
        text = self.log_text()
        out = self.stdout_text()
        if out.strip():
            text += "\n--- stdout ---\n" + out
        return text[-chars:]

    def wait_for_log(self, pattern: str | re.Pattern, timeout: float = 5.0) -> re.Match:
        """Waits until the stderr log matches `pattern` (re.search, MULTILINE)."""
        rx = re.compile(pattern, re.MULTILINE) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.log_text())
            if m:
                return m
            if time.monotonic() > deadline:
                raise AssertionError(f"log did not match {rx.pattern!r} within {timeout}s"
                                     f"\n--- log ---\n{self.log_tail()}")
            time.sleep(0.05)

    # -- HTTP -----------------------------------------------------------------------------
    def verify(self) -> str | bool:
        """requests' `verify=`: the server's certificate file with native TLS, else True."""
        return str(self.tls_certificate) if self.tls_certificate else True

    def url(self, path: str) -> str:
        return self.base + (path if path.startswith("/") else "/" + path)

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        """One request on a fresh connection (closed afterwards); default timeout 10 s.
        `json=`, `data=`, `headers=`, `params=` as in requests."""
        kwargs.setdefault("timeout", 10)
        kwargs.setdefault("verify", self.verify())
        with _http_session() as s:
            return s.request(method, self.url(path), **kwargs)

    def get(self, path: str, **kw) -> requests.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw) -> requests.Response:
        return self.request("POST", path, **kw)

    def put(self, path: str, **kw) -> requests.Response:
        return self.request("PUT", path, **kw)

    def delete(self, path: str, **kw) -> requests.Response:
        return self.request("DELETE", path, **kw)

    def options(self, path: str, **kw) -> requests.Response:
        return self.request("OPTIONS", path, **kw)

    def __repr__(self) -> str:
        return f"<MyelinServer {self.base} {self.workdir}>"


def _forget(server: MyelinServer) -> None:
    if server in _LIVE:
        _LIVE.remove(server)


def _unique_workdir(tmp_path: Path, name: str = "hs") -> Path:
    tmp_path = Path(tmp_path)
    n = 1
    while True:
        candidate = tmp_path / (name if n == 1 else f"{name}-{n}")
        try:
            candidate.mkdir(parents=True)
            return candidate
        except FileExistsError:
            n += 1


def start_server(tmp_path: Path, overrides: Mapping | None = None, *, wait: bool = True,
                 env: Mapping[str, str] | None = None, config_via_env: bool = False,
                 extra_toml: str = "", scope: str = "test", workdir: Path | None = None,
                 **section_overrides) -> MyelinServer:
    """Starts a myelin server in a new folder under tmp_path; see the module docstring."""
    merged_overrides = deep_merge(overrides or {}, section_overrides)
    attempts = 3
    for attempt in range(attempts):
        port = free_port()
        config = deep_merge(default_config(port), merged_overrides)
        wd = workdir if (workdir is not None and attempt == 0) else _unique_workdir(tmp_path)
        server = MyelinServer(wd, config, env=env, config_via_env=config_via_env,
                              extra_toml=extra_toml, scope=scope)
        try:
            return server.start(wait=wait)
        except AssertionError:
            # Another process may have taken the port between our probe and the bind: retry.
            if attempt + 1 < attempts and "in use" in server.log_text().lower():
                continue
            raise
    raise AssertionError("unreachable")


def stop_servers(servers: Iterable[MyelinServer], check: bool = False) -> list[str]:
    """Stops every server still running; returns failure messages (check=True: wrong exit
    status or no exit within 15 s count as failures)."""
    problems = []
    for s in list(servers):
        try:
            s.stop(expect_exit=0 if check else None)
        except AssertionError as e:
            problems.append(f"{s!r}: {e}")
        finally:
            s.kill()
    return problems


@atexit.register
def _kill_all() -> None:
    for s in list(_LIVE):
        s.kill()


# --------------------------------------------------------------------------------------------
# Response checks
# --------------------------------------------------------------------------------------------

def header_tokens(value: str | None) -> set[str]:
    return {t.strip().lower() for t in (value or "").split(",") if t.strip()}


def _get_header(headers: Any, name: str) -> str | None:
    if hasattr(headers, "header"):  # RawResponse
        return headers.header(name)
    if hasattr(headers, "headers") and not isinstance(headers, Mapping):  # requests.Response
        headers = headers.headers
    return headers.get(name)


def assert_cors(headers: Any) -> None:
    """`headers`: a requests.Response, its .headers, or a RawResponse."""
    origin = _get_header(headers, "Access-Control-Allow-Origin")
    assert origin == "*", f"Access-Control-Allow-Origin is {origin!r}, expected '*'"
    methods = header_tokens(_get_header(headers, "Access-Control-Allow-Methods"))
    missing = {"get", "post", "put", "delete", "options"} - methods
    assert not missing, f"Access-Control-Allow-Methods {methods} lacks {sorted(missing)}"
    allow_headers = header_tokens(_get_header(headers, "Access-Control-Allow-Headers"))
    missing = {"x-requested-with", "content-type", "authorization"} - allow_headers
    assert not missing, f"Access-Control-Allow-Headers {allow_headers} lacks {sorted(missing)}"
    expose = header_tokens(_get_header(headers, "Access-Control-Expose-Headers"))
    assert "retry-after" in expose, f"Access-Control-Expose-Headers {expose} lacks Retry-After"


def assert_json_content_type(headers: Any) -> None:
    ctype = _get_header(headers, "Content-Type") or ""
    assert ctype.split(";")[0].strip().lower() == "application/json", \
        f"Content-Type is {ctype!r}, expected application/json"


def assert_matrix_error(resp: Any, status: int, errcode: str | None = None) -> dict:
    """Checks a Matrix error response (requests.Response or RawResponse): status, JSON content
    type, a JSON object with string `errcode` (== errcode if given) and string `error`.
    Returns the body."""
    got = resp.status_code if hasattr(resp, "status_code") else resp.status
    text = resp.text
    assert got == status, f"status {got}, expected {status}; body: {text[:500]}"
    assert_json_content_type(resp)
    try:
        body = json.loads(text)
    except ValueError:
        raise AssertionError(f"error body is not JSON: {text[:500]!r}")
    assert isinstance(body, dict), f"error body is not an object: {body!r}"
    assert isinstance(body.get("errcode"), str), f"no string errcode in {body!r}"
    assert isinstance(body.get("error"), str), f"no string error in {body!r}"
    if errcode is not None:
        assert body["errcode"] == errcode, f"errcode {body['errcode']!r}, expected {errcode!r}"
    return body


# --------------------------------------------------------------------------------------------
# Spec validation
# --------------------------------------------------------------------------------------------

_YAML_CACHE: dict[str, Any] = {}


def load_yaml(path: str | Path) -> Any:
    key = str(Path(path).resolve())
    if key not in _YAML_CACHE:
        with open(key, "r", encoding="utf-8") as f:
            _YAML_CACHE[key] = yaml.safe_load(f)
    return _YAML_CACHE[key]


def _uri_to_path(uri: str) -> Path:
    return Path(unquote(urlparse(uri).path))


def _file_handler(uri: str) -> Any:
    return load_yaml(_uri_to_path(uri))


def _resolver(path: Path) -> jsonschema.RefResolver:
    path = Path(path).resolve()
    return jsonschema.RefResolver(base_uri=path.as_uri(), referrer=load_yaml(path),
                                  handlers={"file": _file_handler})


def _deref(obj: Any, resolver: jsonschema.RefResolver) -> Any:
    """Follows $ref chains on OpenAPI objects (responses, media types); schemas are left to
    jsonschema, with the resolver's scope at the file that held them."""
    seen = 0
    while isinstance(obj, Mapping) and "$ref" in obj:
        url, obj = resolver.resolve(obj["$ref"])
        resolver.push_scope(url)
        seen += 1
        if seen > 20:
            raise LookupError("$ref loop")
    return obj


def _status_entry(responses: Mapping, status: int | str) -> Any:
    code = str(status)
    for key in (code, f"{code[0]}XX", f"{code[0]}xx", "default"):
        for k, v in responses.items():
            if str(k) == key:
                return v
    raise LookupError(f"no response {status} (have {sorted(map(str, responses))})")


def _template_regex(template: str) -> re.Pattern:
    parts = re.split(r"(\{[^}]+\})", template)
    return re.compile("^" + "".join("[^/]+" if p.startswith("{") else re.escape(p)
                                    for p in parts if p) + "$")


def _match_path(paths: Mapping, candidates: list[str]) -> str:
    for c in candidates:
        if c in paths:
            return c
    for c in candidates:
        for template in paths:
            if "{" in template and _template_regex(template).match(c):
                return template
    raise LookupError(f"no path among {candidates} (file has {sorted(paths)})")


def _openapi_base_paths(doc: Mapping) -> list[str]:
    bases = []
    for server in doc.get("servers") or []:
        url = server.get("url", "")
        variables = server.get("variables") or {}

        def sub(m: re.Match) -> str:
            return str((variables.get(m.group(1)) or {}).get("default", ""))

        url = re.sub(r"\{(\w+)\}", sub, url)
        bases.append(urlparse(url).path if "://" in url else url)
    return [b.rstrip("/") for b in bases if b.strip("/")]


def _path_candidates(path: str, bases: list[str]) -> list[str]:
    path = path.split("?", 1)[0]
    variants = [path]
    if "/_matrix/client/r0/" in path:  # r0 is an alias of v3
        variants.append(path.replace("/_matrix/client/r0/", "/_matrix/client/v3/", 1))
    out = list(variants)
    for v in variants:
        for base in bases:
            if base.startswith("^"):
                m = re.match(base, v)
                if m:
                    out.append(v[m.end():])
            elif v.startswith(base + "/"):
                out.append(v[len(base):])
    return out


def _schema_failure(body: Any, schema_where: str, validator: jsonschema.protocols.Validator) -> None:
    errors = sorted(validator.iter_errors(body), key=lambda e: list(map(str, e.absolute_path)))
    if not errors:
        return
    lines: list[str] = []
    for e in errors:
        where = "/".join(map(str, e.absolute_path)) or "(root)"
        line = f"  at {where}: {e.message[:300]}"
        if line not in lines:
            lines.append(line)
    if len(lines) > 10:
        lines = lines[:10] + [f"  ... and {len(lines) - 10} more"]
    shown = json.dumps(body, ensure_ascii=False, default=str)
    raise AssertionError(f"body does not match {schema_where}:\n" + "\n".join(lines)
                         + f"\nbody: {shown[:1000]}")


def _error_fallback(spec_file: Path, candidates: list[str]) -> Path | None:
    for rel in candidates:
        p = spec_file.parent / rel
        if p.exists():
            return p
    return None


def response_schema(file: str, path: str, method: str, status: int | str):
    """(schema, validator, description) for a response of an OpenAPI 3.1 client-server file."""
    spec_file = Path(file)
    if not spec_file.is_absolute():
        spec_file = spec_dir() / "data" / "api" / "client-server" / file
    doc = load_yaml(spec_file)
    resolver = _resolver(spec_file)
    paths = doc.get("paths") or {}
    key = _match_path(paths, _path_candidates(path, _openapi_base_paths(doc)))
    operation = (paths[key] or {}).get(method.lower())
    if operation is None:
        raise LookupError(f"{spec_file.name} {key}: no {method.upper()} operation")
    where = f"{spec_file.name} {method.upper()} {key} {status}"
    response = _deref(_status_entry(operation.get("responses") or {}, status), resolver)
    content = _deref((response or {}).get("content") or {}, resolver)
    media = content.get("application/json")
    if media is None and len(content) == 1:
        media = next(iter(content.values()))
    schema = _deref(media, resolver).get("schema") if isinstance(media, Mapping) else None
    if schema is None:
        fallback = _error_fallback(spec_file, ["definitions/errors/error.yaml"])
        if int(str(status)[0]) >= 4 and fallback is not None:
            resolver = _resolver(fallback)
            schema = load_yaml(fallback)
            where += " (no schema in the spec: checked against definitions/errors/error.yaml)"
        else:
            raise LookupError(f"{where}: the spec gives no JSON schema for this response")
    return schema, jsonschema.Draft202012Validator(schema, resolver=resolver), where


def assert_error_schema(resp: Any) -> None:
    """The error body of `resp` matches the spec's generic error schema (errors/error.yaml): for
    errors an endpoint's own OpenAPI file does not list."""
    path = spec_dir() / "data" / "api" / "client-server" / "definitions" / "errors" / "error.yaml"
    validator = jsonschema.Draft202012Validator(load_yaml(path), resolver=_resolver(path))
    errors = [e.message for e in validator.iter_errors(resp.json())]
    assert not errors, (resp.json(), errors)


def assert_matches_spec(body: Any, file: str, path: str, method: str, status: int | str) -> None:
    """Validates `body` (parsed JSON, or a requests.Response) against the response schema of
    an OpenAPI 3.1 file in data/api/client-server (e.g. "login.yaml")."""
    if hasattr(body, "json") and callable(body.json):
        body = body.json()
    _schema, validator, where = response_schema(file, path, method, status)
    _schema_failure(body, where, validator)


def _historical_files(version: str, file: str | None) -> list[Path]:
    root = spec_dir() / "historical" / version
    if not root.is_dir():
        raise LookupError(f"no historical spec {version!r} under {root.parent}")
    if file is not None:
        matches = [p for p in root.rglob(file) if p.is_file()]
        if not matches:
            raise LookupError(f"no {file} in {root}")
        return matches
    return sorted(p for p in root.rglob("*.yaml") if "definitions" not in p.parts)


def historical_response_schema(version: str, path: str, method: str, status: int | str,
                               file: str | None = None):
    """(schema, validator, description) for a response of a historical Swagger 2.0 file."""
    for spec_file in _historical_files(version, file):
        doc = load_yaml(spec_file)
        if not isinstance(doc, Mapping) or "paths" not in doc:
            continue
        base = str(doc.get("basePath") or "").rstrip("/")
        bases = []
        if base:
            rx = "".join("[^/]+" if re.fullmatch(r"%[A-Z_]+%", part) else re.escape(part)
                         for part in re.split(r"(%[A-Z_]+%)", base))
            bases.append("^" + rx + "(?=/)")
        try:
            key = _match_path(doc["paths"], _path_candidates(path, bases))
        except LookupError:
            continue
        operation = (doc["paths"][key] or {}).get(method.lower())
        if operation is None:
            continue
        resolver = _resolver(spec_file)
        where = f"historical {version} {spec_file.name} {method.upper()} {key} {status}"
        response = _deref(_status_entry(operation.get("responses") or {}, status), resolver)
        schema = (response or {}).get("schema")
        if schema is None:
            fallback = _error_fallback(spec_file, ["definitions/error.yaml",
                                                   "definitions/errors/error.yaml"])
            if int(str(status)[0]) >= 4 and fallback is not None:
                resolver = _resolver(fallback)
                schema = load_yaml(fallback)
                where += " (no schema in the spec: checked against definitions/error.yaml)"
            else:
                raise LookupError(f"{where}: the spec gives no schema for this response")
        return schema, jsonschema.Draft4Validator(schema, resolver=resolver), where
    raise LookupError(f"no {method.upper()} {path} in historical spec {version}")


def assert_matches_historical(body: Any, version: str, path: str, method: str,
                              status: int | str, file: str | None = None) -> None:
    """Validates `body` against a historical Swagger 2.0 response schema, e.g.
    assert_matches_historical(body, "r0.2.0", "/tokenrefresh", "post", 200). `version` is a
    folder under historical/ ("r0.0.0", "r0.2.0", "pr26-2015-09-25")."""
    if hasattr(body, "json") and callable(body.json):
        body = body.json()
    _schema, validator, where = historical_response_schema(version, path, method, status, file)
    _schema_failure(body, where, validator)


# --------------------------------------------------------------------------------------------
# Raw sockets
# --------------------------------------------------------------------------------------------

class ConnectionClosed(Exception):
    """The peer closed or reset the connection before a complete response arrived."""

    def __init__(self, message: str, partial: bytes = b""):
        super().__init__(message)
        self.partial = partial


class RawResponse:
    def __init__(self, version: str, status: int, reason: str, headers: list[tuple[str, str]],
                 body: bytes, raw_head: bytes):
        self.version = version
        self.status = status
        self.status_code = status  # same name as requests
        self.reason = reason
        self.headers = headers
        self.body = body
        self.raw_head = raw_head

    def header(self, name: str, default: str | None = None) -> str | None:
        values = self.header_all(name)
        return ", ".join(values) if values else default

    def header_all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<RawResponse {self.status} {self.reason} {len(self.body)} bytes>"


def build_request(method: str, path: str, headers: Mapping[str, str] | list | None = None,
                  body: bytes | str = b"", host: str = LOCAL, content_length: bool = True) -> bytes:
    if isinstance(body, str):
        body = body.encode()
    items = list(headers.items()) if isinstance(headers, Mapping) else list(headers or [])
    names = {k.lower() for k, _ in items}
    if "host" not in names:
        items.insert(0, ("Host", host))
    if content_length and body and "content-length" not in names \
            and "transfer-encoding" not in names:
        items.append(("Content-Length", str(len(body))))
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in items) + "\r\n"
    return head.encode("latin-1") + body


class RawConnection:
    """A plain TCP connection to 127.0.0.1:port for hand-made HTTP/1.1."""

    def __init__(self, port: int, timeout: float = 5.0, host: str = LOCAL):
        assert host == LOCAL, "tests talk to 127.0.0.1 only"
        self.port = port
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = b""
        self.closed_by_peer = False

    def __enter__(self) -> "RawConnection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data: bytes | str) -> None:
        """Sends everything; raises ConnectionClosed if the peer has closed or reset."""
        if isinstance(data, str):
            data = data.encode("latin-1")
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as e:
            self.closed_by_peer = True
            raise ConnectionClosed(f"send failed: {e}") from e

    def send_request(self, method: str, path: str, headers=None, body: bytes | str = b"") -> None:
        self.send(build_request(method, path, headers, body))

    def _recv(self, deadline: float) -> bytes:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("timed out waiting for the response")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError as e:
            self.closed_by_peer = True
            raise ConnectionClosed(f"connection reset: {e}", self._buf) from e
        if not chunk:
            self.closed_by_peer = True
        return chunk

    def _need(self, n: int, deadline: float) -> None:
        while len(self._buf) < n:
            chunk = self._recv(deadline)
            if not chunk:
                raise ConnectionClosed("connection closed mid-response", self._buf)
            self._buf += chunk

    def _read_until(self, marker: bytes, deadline: float) -> bytes:
        while marker not in self._buf:
            chunk = self._recv(deadline)
            if not chunk:
                raise ConnectionClosed("connection closed before a complete response"
                                       if self._buf else "connection closed", self._buf)
            self._buf += chunk
        idx = self._buf.index(marker) + len(marker)
        out, self._buf = self._buf[:idx], self._buf[idx:]
        return out

    def read_response(self, timeout: float | None = None, skip_interim: bool = True,
                      head_request: bool = False) -> RawResponse:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            raw_head = self._read_until(b"\r\n\r\n", deadline)
            lines = raw_head.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/"):
                raise AssertionError(f"not an HTTP status line: {lines[0]!r}")
            version, status = parts[0], int(parts[1])
            reason = parts[2] if len(parts) > 2 else ""
            headers = []
            for line in lines[1:]:
                if not line:
                    continue
                k, _, v = line.partition(":")
                headers.append((k.strip(), v.strip()))
            if 100 <= status < 200 and skip_interim:
                continue
            break
        resp = RawResponse(version, status, reason, headers, b"", raw_head)
        te = (resp.header("Transfer-Encoding") or "").lower()
        length = resp.header("Content-Length")
        if head_request or status in (204, 304) or 100 <= status < 200:
            body = b""
        elif "chunked" in te:
            body = b""
            while True:
                size_line = self._read_until(b"\r\n", deadline)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self._read_until(b"\r\n", deadline)  # (trailers not supported) final CRLF
                    break
                self._need(size + 2, deadline)
                body += self._buf[:size]
                self._buf = self._buf[size + 2:]
        elif length is not None:
            n = int(length.split(",")[0])
            self._need(n, deadline)
            body, self._buf = self._buf[:n], self._buf[n:]
        else:  # until close
            while True:
                chunk = self._recv(deadline)
                if not chunk:
                    break
                self._buf += chunk
            body, self._buf = self._buf, b""
        resp.body = body
        return resp

    def wait_closed(self, timeout: float) -> bool:
        """True if the peer closes (FIN or RST) within `timeout` s. Data that arrives meanwhile
        is kept (see .pending)."""
        if self.closed_by_peer:
            return True
        deadline = time.monotonic() + timeout
        while True:
            try:
                chunk = self._recv(deadline)
            except ConnectionClosed:
                return True
            except (socket.timeout, TimeoutError):
                return False
            except OSError:
                self.closed_by_peer = True
                return True
            if not chunk:
                return True
            self._buf += chunk

    @property
    def pending(self) -> bytes:
        return self._buf


def raw_exchange(port: int, data: bytes | str, timeout: float = 5.0) -> RawResponse:
    """Sends `data` on a new connection and reads one response."""
    with RawConnection(port, timeout=timeout) as conn:
        conn.send(data)
        return conn.read_response(timeout)
