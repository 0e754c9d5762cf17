#!/usr/bin/python3
"""Myelin's load benchmarks: every figure next to a ceiling measured in the same run.

  versions  GET /_matrix/client/versions          vs nginx returning the same bytes
  whoami    GET /account/whoami, 10,000 sessions  vs nginx returning a body of the same size
  refresh   POST /refresh, durable rotations/s    vs the storage micro-benchmark (same SQLite backend)
  refresh_pg  the same on PostgreSQL (a throwaway cluster, scripts/pg-test-cluster.sh, when the
            binaries are installed; MYELIN_TEST_POSTGRES_URL to use another loopback cluster)
  login     POST /login (argon2id OWASP)          vs cores / one argon2id verification
  register  POST /register (argon2id OWASP hash)  vs cores / one argon2id hash
  login_storm  whoami p50/p99 quiet vs during 200 concurrent logins (bench/login_storm.py)
  scale     idle RSS (default config); start-up, RSS and whoami with 1,000,000 sessions
            (filled directly, bench/fill_sessions.py) vs 1,000 sessions
  idle_conns  whoami with 10,000 idle keep-alive connections held vs none; RSS per connection
  sync      /sync (bench/sync_bench.py): send-to-sync latency p50/p99, messages/s in a room of 100
            members all long-polling, initial sync in 100 rooms (ms, bytes), RSS per idle long-poll

Each benchmark runs ROUNDS interleaved rounds (server, ceiling, server, ...: the order alternates
between rounds) and reports the median and range of server/ceiling ratios taken within a round,
latency percentiles, and server CPU microseconds per request (utime+stime of the server's
processes from /proc/<pid>/stat around each wrk run). Everything runs on 127.0.0.1, every load
run is bounded (wrk -d), and every process started here is stopped here (SIGTERM, then SIGKILL).

Writes bench/results/REPORT.md and bench/results/raw.json, prints a summary.
Usage: bench/run_bench.py [--quick] [--only NAME[,NAME]] [--rounds N] [--duration S] [--output F]
       bench/run_bench.py --target URL [--target-user U --target-password P]
                          [--registration-token T] [--quick] [--output F]
  --target: the HTTP benchmarks against any homeserver (bench/target_bench.py); it SENDS LOAD
  to that URL.
Environment: MYELIN_BUILD (default build/), MYELIN_BENCH_TMP (parent of the scratch folder).
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/: targets, target_bench...
import targets  # noqa: E402  (issue #6's targets, checked against the results)

if __name__ == "__main__":  # so that `import run_bench` (login_storm.py) shares this module
    sys.modules.setdefault("run_bench", sys.modules["__main__"])

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
LOAD = BENCH / "load"
RESULTS = BENCH / "results"
BUILD = Path(os.environ.get("MYELIN_BUILD", REPO / "build"))
MYELIN = BUILD / "myelin"
MICRO = BUILD / "bench" / "myelin_micro_bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1
BENCHMARKS = ("versions", "whoami", "refresh", "refresh_pg", "login", "register", "login_storm",
              "scale", "idle_conns", "sync")
PASSWORD = "bench-password-0123"

TARGETS = {  # issue #6, section 2 (checked in bench/targets.py)
    "whoami": "myelin >= 0.9x nginx, pinned",
    "refresh": ">= 0.6x the storage rotation",
    "refresh_pg": ">= 0.6x the storage rotation",
    "login": ">= 0.85x the argon2id ceiling (cores / one verification)",
    "login_storm": "p99 <= 3x quiet p99",
    "idle_rss": "<= 16 MiB",
    "startup": "<= 3 s",
    "memory": "<= 300 B per live session",
    "scale": ">= 0.9x (1M vs 1k sessions)",
}


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- processes ---------------------------------------------------------------------------------

def proc_cpu_ticks(pid):
    """utime + stime of one process (all its threads), in clock ticks; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return 0


def proc_cpu_split(pid):
    """(utime, stime) of one process (all its threads), in clock ticks; (0, 0) if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]), int(fields[12])
    except (OSError, IndexError, ValueError):
        return 0, 0


def proc_children(pid):
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Server:
    """A server process started here; stop() ends it and the children it had (by pid)."""

    live = []  # every Server not yet stopped, for the final clean-up
    ok_status = (0, -signal.SIGTERM)  # exit statuses that are not worth a log line

    def __init__(self, name, argv, log_path, cpus=None, env=None):
        self.name = name
        self.log_path = log_path
        if cpus is not None:
            argv = ["taskset", "-c", cpus] + argv  # taskset execs: the pid is the server's
        self.log_file = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log_file,
                                     stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.pid = self.proc.pid
        self.pids = [self.pid]
        Server.live.append(self)

    def note_children(self):
        """Remembers the current children (nginx workers) for CPU accounting and stop()."""
        self.pids = [self.pid] + proc_children(self.pid)

    def cpu_seconds(self):
        return sum(proc_cpu_ticks(p) for p in self.pids) / CLK_TCK

    def cpu_user_kernel_seconds(self):
        ticks = [proc_cpu_split(p) for p in self.pids]
        return sum(u for u, _ in ticks) / CLK_TCK, sum(k for _, k in ticks) / CLK_TCK

    def log_tail(self, n=30):
        try:
            return "\n".join(Path(self.log_path).read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, grace=10.0):
        if self not in Server.live:
            return
        Server.live.remove(self)
        kids = [p for p in set(self.pids + proc_children(self.pid)) if p != self.pid]
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                log(f"{self.name} did not stop on SIGTERM within {grace:.0f}s: SIGKILL")
                self.proc.kill()
                self.proc.wait(timeout=10)
        deadline = time.time() + 5
        for kid in kids:  # nginx workers leave with their master; make sure of it
            while pid_alive(kid) and time.time() < deadline:
                time.sleep(0.05)
            if pid_alive(kid):
                try:
                    os.kill(kid, signal.SIGKILL)
                except OSError:
                    pass
        self.log_file.close()
        if self.proc.returncode not in self.ok_status:
            log(f"{self.name} exited with status {self.proc.returncode}:\n{self.log_tail()}")


def stop_all():
    for s in list(Server.live):
        try:
            s.stop()
        except Exception as e:  # keep stopping the others
            log(f"stopping {s.name}: {e}")


def wait_http(server, url, timeout=30.0, poll=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited with status {server.proc.returncode}:\n"
                               f"{server.log_tail()}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(poll)
    raise RuntimeError(f"{server.name} did not answer {url} within {timeout:.0f}s:\n"
                       f"{server.log_tail()}")


# ---- myelin and nginx --------------------------------------------------------------------------

class Myelin:
    def __init__(self, ctx, name, data_dir, threads, cpus=None, argon2=(8192, 1),
                 hashing_threads=0, extra="", defaults=False, start_timeout=30.0, warm=None,
                 db_url=None):
        """defaults: only what has no usable default (name, address, port, database, and the
        metrics port, which defaults to a fixed one); `extra` is appended to [limits]; warm:
        [tokens] warm_cache_at_startup (None: the default); db_url: the [database] url
        (default: SQLite in data_dir)."""
        self.db_url = db_url or f"sqlite:{data_dir / 'homeserver.db'}"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        data_dir.mkdir(parents=True, exist_ok=True)
        conf = ctx.tmp / f"{name}.toml"
        if defaults:
            conf.write_text(f"""# written by bench/run_bench.py: the default configuration
server_name = "localhost"
[listen]
address = "127.0.0.1"
port = {self.port}
[database]
url = "{self.db_url}"
[metrics]
port = {free_port()}
""")
        else:
            self._write_bench_conf(conf, data_dir, threads, argon2, hashing_threads, extra)
        if warm is not None:
            with open(conf, "a") as f:
                f.write(f"[tokens]\nwarm_cache_at_startup = {str(warm).lower()}\n")
        t0 = time.time()
        self.server = Server(f"myelin[{name}]", [str(MYELIN), "serve", "--config", str(conf)],
                             ctx.tmp / f"{name}.log", cpus=cpus)
        wait_http(self.server, self.base + "/_matrix/client/versions", timeout=start_timeout,
                  poll=0.02)
        self.ready_s = time.time() - t0  # exec to the first 200: start-up time

    def _write_bench_conf(self, conf, data_dir, threads, argon2, hashing_threads, extra):
        conf.write_text(f"""# written by bench/run_bench.py
server_name = "localhost"
public_baseurl = "{self.base}/"
[listen]
address = "127.0.0.1"
port = {self.port}
threads = {threads}
[database]
url = "{self.db_url}"
[registration]
enabled = true
[passwords]
argon2_memory_kib = {argon2[0]}
argon2_iterations = {argon2[1]}
hashing_threads = {hashing_threads}
[limits]
max_connections = 20000
{extra}
[rate_limits]
enabled = false
[metrics]
# on, as by default, on a port of its own (never scraped here)
enabled = true
address = "127.0.0.1"
port = {free_port()}
[logging]
level = "warn"
access_log = false
""")

    def stop(self):
        self.server.stop()


def nginx_quote(text):
    if "$" in text:
        raise ValueError("nginx `return` text cannot hold a literal '$'")
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Nginx:
    """nginx answering every request with `body`, `content_type` and the extra headers."""

    def __init__(self, ctx, name, workers, body, content_type, headers, cpus=None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        prefix = ctx.tmp / name
        prefix.mkdir(parents=True, exist_ok=True)
        add = "".join(f"        add_header {k} {nginx_quote(v)} always;\n" for k, v in headers)
        temps = "".join(f"    {d}_temp_path {prefix / d};\n"
                        for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        conf = prefix / "nginx.conf"
        conf.write_text(f"""# written by bench/run_bench.py
worker_processes {workers};
pid {prefix / 'nginx.pid'};
error_log {prefix / 'error.log'} warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    server_tokens off;
{temps}    server {{
        listen 127.0.0.1:{self.port} reuseport;
        default_type {nginx_quote(content_type)};
        location / {{
{add}            return 200 {nginx_quote(body)};
        }}
    }}
}}
""")
        self.server = Server(f"nginx[{name}]",
                             ["nginx", "-p", str(prefix), "-e", str(prefix / "error.log"),
                              "-c", str(conf), "-g", "daemon off;"],
                             prefix / "stdout.log", cpus=cpus)
        wait_http(self.server, self.base + "/")
        deadline = time.time() + 5
        while len(proc_children(self.server.pid)) < workers and time.time() < deadline:
            time.sleep(0.05)
        self.server.note_children()
        got = requests.get(self.base + "/_matrix/client/versions", timeout=5)
        if got.content != body.encode():
            raise RuntimeError(f"nginx[{name}] does not return the expected body")

    def stop(self):
        self.server.stop()


def copy_headers(resp):
    """The response headers nginx should send as well (CORS...), minus per-response ones."""
    skip = {"content-type", "content-length", "date", "server", "connection", "keep-alive",
            "x-request-id", "transfer-encoding"}
    return [(k, v) for k, v in resp.headers.items() if k.lower() not in skip]


# ---- clients -----------------------------------------------------------------------------------

_tls = threading.local()


def http():
    if not hasattr(_tls, "s"):
        _tls.s = requests.Session()
    return _tls.s


def register(base, user, password):
    body = {"username": user, "password": password, "auth": {"type": "m.login.dummy"}}
    r = http().post(base + "/_matrix/client/v3/register", json=body, timeout=30)
    if r.status_code == 401 and "session" in r.json():
        body["auth"]["session"] = r.json()["session"]
        r = http().post(base + "/_matrix/client/v3/register", json=body, timeout=30)
    if r.status_code != 200:
        raise RuntimeError(f"register {user}: {r.status_code} {r.text}")
    return r.json()


def login(base, user, password, device_id, refresh):
    body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user},
            "password": password, "refresh_token": refresh, "device_id": device_id}
    for attempt in range(5):
        r = http().post(base + "/_matrix/client/v3/login", json=body, timeout=60)
        if r.status_code == 200:
            return r.json()
        if r.status_code not in (429, 503):
            break
        time.sleep(0.2 * (attempt + 1))
    raise RuntimeError(f"login {user}/{device_id}: {r.status_code} {r.text}")


def login_many(base, user, device_ids, refresh, workers=8):
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda d: login(base, user, PASSWORD, d, refresh), device_ids))


# ---- wrk and the micro-benchmarks --------------------------------------------------------------

def run_wrk(url, threads, conns, duration, script, cpus=None, env=None, server=None):
    argv = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--latency", "--timeout", "5s",
            "-s", str(LOAD / script), url]
    if cpus is not None:
        argv = ["taskset", "-c", cpus] + argv
    full_env = dict(os.environ, MYELIN_BENCH_LOAD=str(LOAD), MYELIN_WRK_THREADS=str(threads),
                    **(env or {}))
    cpu0 = server.cpu_seconds() if server else 0.0
    split0 = server.cpu_user_kernel_seconds() if server else (0.0, 0.0)
    p = subprocess.run(argv, capture_output=True, text=True, env=full_env, timeout=duration + 60)
    cpu1 = server.cpu_seconds() if server else 0.0
    split1 = server.cpu_user_kernel_seconds() if server else (0.0, 0.0)
    if p.returncode != 0:
        raise RuntimeError(f"wrk failed ({p.returncode}): {p.stderr}{p.stdout}")
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith("MYELIN_WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{p.stdout}\n{p.stderr}")
    r = json.loads(line.split(" ", 1)[1])
    secs = r["duration_us"] / 1e6
    r["rps"] = r["requests"] / secs
    r["errors"] = sum(r[k] for k in ("err_connect", "err_read", "err_write", "err_status",
                                     "err_timeout"))
    r["ok"] = r["requests"] - r["err_status"]
    if server:
        r["cpu_s"] = cpu1 - cpu0
        r["cpu_user_s"], r["cpu_kernel_s"] = split1[0] - split0[0], split1[1] - split0[1]
        r["cpu_us_per_req"] = (cpu1 - cpu0) * 1e6 / r["requests"] if r["requests"] else None
        r["cpu_util"] = (cpu1 - cpu0) / secs  # cores kept busy by the server
    return r


def run_micro(filter_regex, min_time, env=None):
    argv = [str(MICRO), f"--benchmark_filter={filter_regex}", f"--benchmark_min_time={min_time}",
            "--benchmark_format=json"]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, **(env or {})))
    if p.returncode != 0:
        raise RuntimeError(f"{MICRO.name} failed ({p.returncode}): {p.stderr[-2000:]}")
    out = json.loads(p.stdout)["benchmarks"]
    if not out:
        raise RuntimeError(f"{MICRO.name}: no benchmark matches {filter_regex}")
    for b in out:
        if b.get("error_occurred"):
            raise RuntimeError(f"{b['name']}: {b.get('error_message')}")
    return out


def fsync_probe(folder, n=30):
    """Median and max latency (µs) of an 8 KiB write + fdatasync in `folder`."""
    path = folder / "fsync.probe"
    lat = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        block = os.urandom(8192)
        for i in range(n):
            t = time.perf_counter()
            os.pwrite(fd, block, (i % 16) * 8192)
            os.fdatasync(fd)
            lat.append((time.perf_counter() - t) * 1e6)
    finally:
        os.close(fd)
        path.unlink()
    return {"median_us": statistics.median(lat), "max_us": max(lat)}


# ---- the benchmarks ----------------------------------------------------------------------------

MODES = {
    # server cores, server threads/workers, wrk cores, wrk threads
    "pinned": {"server_cpus": "0", "threads": 1, "wrk_cpus": "1", "wrk_threads": 1},
    "shared": {"server_cpus": None, "threads": 2, "wrk_cpus": None, "wrk_threads": 2},
}


def server_vs_nginx(ctx, name, myelin_start, body_and_headers, script, env, warmup):
    """For each mode: start myelin and nginx, then ROUNDS rounds alternating which goes first."""
    out = {}
    for mode, m in MODES.items():
        log(f"{name} [{mode}]: starting servers (load {loadavg()})")
        my = myelin_start(mode, m)
        ng = None
        try:
            body, ctype, headers = body_and_headers(my)
            ng = Nginx(ctx, f"nginx-{name}-{mode}", m["threads"], body, ctype, headers,
                       cpus=m["server_cpus"])
            targets = {"myelin": (my.base, my.server), "nginx": (ng.base, ng.server)}
            for who, (base, srv) in targets.items():  # warm-up (token cache, connections)
                run_wrk(base + ctx.path[name], m["wrk_threads"], 64, warmup, script,
                        cpus=m["wrk_cpus"], env=env)
            rounds = []
            for r in range(ctx.rounds):
                order = ["myelin", "nginx"] if r % 2 == 0 else ["nginx", "myelin"]
                rnd = {"load_before": loadavg()}
                for who in order:
                    base, srv = targets[who]
                    rnd[who] = run_wrk(base + ctx.path[name], m["wrk_threads"], 64, ctx.duration,
                                       script, cpus=m["wrk_cpus"], env=env, server=srv)
                    time.sleep(1)
                rnd["ratio"] = rnd["myelin"]["rps"] / rnd["nginx"]["rps"]
                log(f"{name} [{mode}] round {r + 1}: myelin {rnd['myelin']['rps']:,.0f} req/s, "
                    f"nginx {rnd['nginx']['rps']:,.0f} req/s, ratio {rnd['ratio']:.2f} "
                    f"(load {rnd['load_before']})")
                rounds.append(rnd)
            out[mode] = {"rounds": rounds, "body_bytes": len(body), "content_type": ctype,
                         "copied_headers": [k for k, _ in headers]}
        finally:
            if ng:
                ng.stop()
            my.stop()
    return out


def bench_versions(ctx):
    data = ctx.tmp / "versions-data"

    def start(mode, m):
        return Myelin(ctx, f"versions-{mode}", data, m["threads"], cpus=m["server_cpus"])

    def body_and_headers(my):
        r = requests.get(my.base + "/_matrix/client/versions", timeout=5)
        return r.text, r.headers["Content-Type"], copy_headers(r)

    return server_vs_nginx(ctx, "versions", start, body_and_headers, "report.lua", {},
                           ctx.warmup)


def bench_whoami(ctx):
    data = ctx.tmp / "whoami-data"
    n = ctx.sessions
    token_file = ctx.tmp / "whoami-tokens.txt"
    log(f"whoami: creating {n:,} sessions (argon2id m=1024 KiB, t=1 for setup speed)")
    t0 = time.time()
    setup = Myelin(ctx, "whoami-setup", data, 2, argon2=(1024, 1))  # the lowest cost allowed
    try:
        register(setup.base, "bench", PASSWORD)
        devices = [f"WHOAMI{i:05d}" for i in range(n)]  # same width: same body size
        logins = login_many(setup.base, "bench", devices, refresh=False)
        token_file.write_text("".join(x["access_token"] + "\n" for x in logins))
        who = http().get(setup.base + "/_matrix/client/v3/account/whoami", timeout=5,
                         headers={"Authorization": "Bearer " + logins[0]["access_token"]})
        if who.status_code != 200:
            raise RuntimeError(f"whoami: {who.status_code} {who.text}")
    finally:
        setup.stop()
    setup_s = time.time() - t0
    log(f"whoami: {n:,} sessions in {setup_s:.1f}s")

    def start(mode, m):
        return Myelin(ctx, f"whoami-{mode}", data, m["threads"], cpus=m["server_cpus"])

    def body_and_headers(my):
        r = http().get(my.base + "/_matrix/client/v3/account/whoami", timeout=5,
                       headers={"Authorization": "Bearer " + logins[0]["access_token"]})
        if r.status_code != 200:
            raise RuntimeError(f"whoami after restart: {r.status_code} {r.text}")
        return r.text, r.headers["Content-Type"], copy_headers(r)

    out = server_vs_nginx(ctx, "whoami", start, body_and_headers, "whoami.lua",
                          {"MYELIN_TOKENS": str(token_file)}, ctx.warmup)
    out["sessions"] = n
    out["setup_s"] = setup_s
    return out


PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


def psql(url, sql):
    p = subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", sql],
                       capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise RuntimeError(f"psql {sql!r}: {p.stderr.strip()}")


def pg_database_url(cluster_url, name):
    """The URL of database `name` on the cluster of `cluster_url` (same user, host, port)."""
    return cluster_url.rsplit("/", 1)[0] + "/" + name


def start_pg_cluster(ctx):
    """A throwaway PostgreSQL cluster on 127.0.0.1 (scripts/pg-test-cluster.sh, kept running
    until its Server is stopped: SIGTERM makes the script stop and delete it). Returns
    (server, url)."""
    srv = Server("pg-test-cluster", [str(REPO / "scripts" / "pg-test-cluster.sh")],
                 ctx.tmp / "pg-cluster.log")
    srv.ok_status = (0, 143, -signal.SIGTERM)
    deadline = time.time() + 120
    while time.time() < deadline:
        for line in Path(srv.log_path).read_text(errors="replace").splitlines():
            if line.startswith("MYELIN_TEST_POSTGRES_URL="):
                return srv, line.split("=", 1)[1].strip()
        if srv.proc.poll() is not None:
            raise RuntimeError(f"pg-test-cluster.sh exited with {srv.proc.returncode}:\n"
                               f"{srv.log_tail()}")
        time.sleep(0.2)
    raise RuntimeError("pg-test-cluster.sh printed no URL within 120 s")


def bench_refresh(ctx, backend="sqlite", pg_url=None):
    """Durable rotations/s through POST /refresh, and the storage ceiling for the same work.

    Every round starts a server on a new database, signs in `pool` fresh sessions, runs wrk
    (FIFO token pools: every session is rotated in turn), stops the server, then runs the
    storage micro-benchmark on a new database with the same number of fresh sessions,
    each rotated as many times as the server rotated its sessions on average: a rotation's cost
    grows with the number of rotated-out tokens its session holds, so both must do the same.
    Rounds alternate server, ceiling, server, ceiling... (the ceiling needs the server's count).
    backend "postgres": the server's database and the ceiling's (BM_PgRotationMatched) live on
    the cluster of pg_url, a new database each round.
    """
    conns, threads, pool = 64, 2, ctx.refresh_sessions
    pg = backend == "postgres"
    rounds = []
    for r in range(ctx.rounds):
        # A new server on a new database every round, like the micro-benchmark's: the rounds
        # then start from the same state instead of an ever larger token table.
        db_url = None
        if pg:
            db_name = f"myelin_bench_refresh_{os.getpid()}_{r}"
            psql(pg_url, f"CREATE DATABASE {db_name}")
            db_url = pg_database_url(pg_url, db_name)
        data = ctx.tmp / f"refresh-data-{backend}-{r}"
        try:
            my = Myelin(ctx, f"refresh-{backend}-{r}", data, 0, db_url=db_url)  # threads = cores
            try:
                register(my.base, "bench", PASSWORD)
                devices = [f"R{r}D{i:04d}" for i in range(pool)]
                logins = login_many(my.base, "bench", devices, refresh=True)
                token_file = ctx.tmp / f"refresh-tokens-{backend}-{r}.txt"
                token_file.write_text("".join(x["refresh_token"] + "\n" for x in logins))
                rnd = {"load_before": loadavg(), "fsync_before": fsync_probe(ctx.tmp)}
                w = run_wrk(my.base + "/_matrix/client/v3/refresh", threads, conns, ctx.duration,
                            "refresh.lua", server=my.server,
                            env={"MYELIN_TOKENS": str(token_file)})
            finally:
                my.stop()
        finally:
            shutil.rmtree(data, ignore_errors=True)
            if pg:
                psql(pg_url, f"DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")
        w["rotations_per_s"] = w["rotated"] / (w["duration_us"] / 1e6)
        w["cpu_us_per_rotation"] = (w["cpu_s"] * 1e6 / w["rotated"]) if w["rotated"] else None
        w["rotations_per_session"] = w["rotated"] / pool
        rnd["myelin"] = w
        time.sleep(1)

        per_session = max(1, round(w["rotated"] / pool))
        env = {"MYELIN_BENCH_DIR": str(ctx.tmp), "MYELIN_BENCH_SESSIONS": str(pool),
               "MYELIN_BENCH_ROTATIONS_PER_SESSION": str(per_session),
               "MYELIN_TEST_POSTGRES_URL": pg_url or ""}
        name = "BM_PgRotationMatched" if pg else "BM_StorageRotationMatched"
        b = run_micro(f"^{name}/", ctx.micro_time, env=env)[0]
        rnd["ceiling"] = {"rotations_per_s": b["items_per_second"],
                          "jobs_per_commit": b.get("jobs_per_commit"),
                          "lost_races": b.get("lost_races"), "gave_up": b.get("gave_up"),
                          "cpu_us_per_rotation": b.get("cpu_us_per_rotation"),
                          "rotations_per_session": per_session}
        rnd["fsync_after"] = fsync_probe(ctx.tmp)
        rnd["ratio"] = w["rotations_per_s"] / rnd["ceiling"]["rotations_per_s"]
        log(f"refresh [{backend}] round {r + 1}: myelin {w['rotations_per_s']:,.0f} rotations/s "
            f"(non-2xx {w['err_status']}, {w['rotations_per_session']:.0f} per session), "
            f"storage ceiling {rnd['ceiling']['rotations_per_s']:,.0f}/s, ratio "
            f"{rnd['ratio']:.2f}, fsync p50 {rnd['fsync_before']['median_us']:.0f} µs "
            f"(load {rnd['load_before']})")
        rounds.append(rnd)
        time.sleep(1)
    out = {"rounds": rounds, "connections": conns, "wrk_threads": threads, "sessions": pool,
           "backend": backend}
    if not ctx.quick and not pg and ctx.diagnostics:
        log("refresh: storage diagnostics (1, 8, 64 threads; with crypto; aged sessions)")
        diag = run_micro("^BM_StorageRotation(/|WithCrypto|Aged)", ctx.diag_time,
                         env={"MYELIN_BENCH_DIR": str(ctx.tmp), "MYELIN_TEST_POSTGRES_URL": ""})
        out["diagnostics"] = [{"name": b["name"], "rotations_per_s": b["items_per_second"],
                               "jobs_per_commit": b.get("jobs_per_commit"),
                               "cpu_us_per_rotation": b.get("cpu_us_per_rotation"),
                               "rotations_per_session": b.get("rotations_per_session")}
                              for b in diag]
    return out


def bench_refresh_pg(ctx):
    """bench_refresh on PostgreSQL: MYELIN_TEST_POSTGRES_URL's cluster (loopback only) if set,
    else a throwaway cluster started here and deleted afterwards; skipped with a note when the
    PostgreSQL binaries are not installed."""
    url = os.environ.get("MYELIN_TEST_POSTGRES_URL", "")
    cluster = None
    if url:
        host = url.split("@")[-1].split("/")[0].rsplit(":", 1)[0]
        if host not in ("127.0.0.1", "localhost", "[::1]"):
            raise RuntimeError(f"MYELIN_TEST_POSTGRES_URL is not on loopback ({host})")
    elif not (PG_BIN / "initdb").exists():
        return {"skipped": f"PostgreSQL binaries not installed ({PG_BIN}/initdb not found; "
                           "scripts/install-deps.sh installs postgresql)"}
    else:
        log("refresh [postgres]: starting a throwaway cluster (scripts/pg-test-cluster.sh)")
        cluster, url = start_pg_cluster(ctx)
    try:
        out = bench_refresh(ctx, "postgres", url)
        out["cluster"] = "MYELIN_TEST_POSTGRES_URL" if cluster is None else \
            "throwaway (scripts/pg-test-cluster.sh: PostgreSQL 15, fsync on, defaults)"
        return out
    finally:
        if cluster:
            cluster.stop(grace=60)


def bench_login(ctx):
    data = ctx.tmp / "login-data"
    my = Myelin(ctx, "login", data, 0, argon2=(19456, 2), hashing_threads=0)
    rounds = []
    env = {"MYELIN_USER": "bench", "MYELIN_PASSWORD": PASSWORD}
    try:
        register(my.base, "bench", PASSWORD)
        login(my.base, "bench", PASSWORD, "WRKLOGIN", False)
        for r in range(ctx.rounds):
            rnd = {"load_before": loadavg()}

            def server_run():
                w = run_wrk(my.base, 2, 8, ctx.duration, "login.lua", env=env, server=my.server)
                w["logins_per_s"] = w["ok"] / (w["duration_us"] / 1e6)
                w["cpu_us_per_login"] = (w["cpu_s"] * 1e6 / w["ok"]) if w["ok"] else None
                w["cpu_user_us_per_login"] = (w["cpu_user_s"] * 1e6 / w["ok"]) if w["ok"] else None
                w["cpu_kernel_us_per_login"] = (w["cpu_kernel_s"] * 1e6 / w["ok"]) if w["ok"] else None
                rnd["myelin"] = w

            def ceiling_of(name):
                b = run_micro(f"^{name}/real_time/threads:1$", ctx.micro_time)[0]
                verify_s = b["real_time"] / {"ms": 1e3, "us": 1e6, "ns": 1e9}[b["time_unit"]]
                cpu_s = b["cpu_time"] / {"ms": 1e3, "us": 1e6, "ns": 1e9}[b["time_unit"]]
                return {"verify_ms": verify_s * 1e3, "verify_cpu_ms": cpu_s * 1e3,
                        "logins_per_s": CORES / verify_s}

            def ceiling_run():
                # The ceiling is the server's own path (a worker's arena); libsodium's per-call
                # mapping (the server before the arena) is measured next to it for comparison.
                rnd["ceiling"] = ceiling_of("BM_LoginCeilingArgon2idVerifyOwasp")
                rnd["ceiling_no_arena"] = ceiling_of("BM_LoginCeilingArgon2idVerifyOwaspNoArena")

            for step in ([server_run, ceiling_run] if r % 2 == 0 else [ceiling_run, server_run]):
                step()
                time.sleep(1)
            rnd["ratio"] = rnd["myelin"]["logins_per_s"] / rnd["ceiling"]["logins_per_s"]
            log(f"login round {r + 1}: myelin {rnd['myelin']['logins_per_s']:.1f} logins/s "
                f"(non-2xx {rnd['myelin']['err_status']}), ceiling "
                f"{rnd['ceiling']['logins_per_s']:.1f}/s ({CORES} x 1/"
                f"{rnd['ceiling']['verify_ms']:.1f} ms; without the arena "
                f"{rnd['ceiling_no_arena']['logins_per_s']:.1f}/s), ratio {rnd['ratio']:.2f} "
                f"(load {rnd['load_before']})")
            rounds.append(rnd)
    finally:
        my.stop()
    out = {"rounds": rounds, "connections": 8, "cores": CORES}
    if not ctx.quick:
        diag = run_micro("^BM_LoginCeilingArgon2id", ctx.micro_time)
        out["diagnostics"] = [{"name": b["name"], "real_ms": b["real_time"],
                               "cpu_ms": b["cpu_time"], "unit": b["time_unit"],
                               "items_per_second": b["items_per_second"]} for b in diag]
    return out


def hash_ceiling(ctx):
    """One single-threaded argon2id OWASP hash (the server's PasswordHasher): ms wall and CPU,
    and the ceiling cores / wall."""
    b = run_micro("^BM_LoginCeilingArgon2idHashOwasp", ctx.micro_time)[0]
    unit = {"ms": 1e3, "us": 1e6, "ns": 1e9}[b["time_unit"]]
    return {"hash_ms": b["real_time"] / unit * 1e3, "hash_cpu_ms": b["cpu_time"] / unit * 1e3,
            "registers_per_s": CORES / (b["real_time"] / unit)}


def bench_register(ctx):
    """POST /register (user-interactive auth, m.login.dummy) from 8 client threads with the
    OWASP argon2id cost, vs cores / one argon2id hash, interleaved per round."""
    import target_bench  # bench/target_bench.py: the UIA client
    my = Myelin(ctx, "register", ctx.tmp / "register-data", 0, argon2=(19456, 2),
                hashing_threads=0)
    rounds = []
    try:
        for r in range(ctx.rounds):
            rnd = {"load_before": loadavg()}

            def server_run():
                cpu0 = my.server.cpu_seconds()
                g = target_bench.register_load(my.base, ctx.duration, 8, f"reg{r}_", PASSWORD)
                g["cpu_us_per_register"] = ((my.server.cpu_seconds() - cpu0) * 1e6 / g["ok"]
                                            if g["ok"] else None)
                rnd["myelin"] = g

            def ceiling_run():
                rnd["ceiling"] = hash_ceiling(ctx)

            for step in ([server_run, ceiling_run] if r % 2 == 0 else [ceiling_run, server_run]):
                step()
                time.sleep(1)
            rnd["ratio"] = rnd["myelin"]["registers_per_s"] / rnd["ceiling"]["registers_per_s"]
            log(f"register round {r + 1}: myelin {rnd['myelin']['registers_per_s']:.1f}/s "
                f"(statuses {rnd['myelin']['statuses']}), ceiling "
                f"{rnd['ceiling']['registers_per_s']:.1f}/s ({CORES} x 1/"
                f"{rnd['ceiling']['hash_ms']:.1f} ms), ratio {rnd['ratio']:.2f}")
            rounds.append(rnd)
    finally:
        my.stop()
    return {"rounds": rounds, "clients": 8, "cores": CORES}


def bench_login_storm(ctx):
    """bench/login_storm.py folded in: whoami (16 connections, 200 tokens) quiet, then inside a
    storm of 200 login connections; p99 ratio per round."""
    import login_storm  # bench/login_storm.py
    args = argparse.Namespace(rounds=ctx.rounds, duration=ctx.duration,
                              logins=ctx.storm_logins, sessions=200, hashing_threads=0,
                              hashing_queue=0, argon2=(19456, 2))
    tmp = ctx.tmp / "storm"
    tmp.mkdir()
    try:
        rounds, summary = login_storm.run_storm(tmp, args)
    finally:
        stop_all()
    return {"rounds": rounds, "summary": summary, "logins": args.logins,
            "whoami_connections": login_storm.WHOAMI_CONNS, "sessions": args.sessions}


def bench_sync(ctx):
    """bench/sync_bench.py folded in (SQLite; its --postgres is left to the standalone script)."""
    import sync_bench  # bench/sync_bench.py
    args = argparse.Namespace(quick=ctx.quick, postgres=False)
    return sync_bench.bench(ctx, args)


# ---- scale: memory, start-up and whoami with 1,000,000 sessions; idle connections ------------

SCALE_SMALL, SCALE_BIG = 1_000, 1_000_000
IDLE_CONNS = 10_000


def proc_mem(pid):
    """VmRSS, RssAnon, RssFile, VmHWM (KiB) and the thread count of a process, from /proc."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[key] = int(value.split()[0])
            elif key == "Threads":
                out["threads"] = int(value)
    try:  # proportional set size: shared library pages divided among the processes mapping them
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    out["Pss"] = int(line.split()[1])
    except OSError:
        pass
    return out


def tcp_mem_kib():
    """Kernel memory held by TCP sockets (/proc/net/sockstat `TCP: ... mem` pages), KiB."""
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            f = line.split()
            return int(f[f.index("mem") + 1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    return 0


def settled_rss(pid, wait=1.0):
    time.sleep(wait)
    return proc_mem(pid)


def sessions_db(ctx, n, sample):
    """A data folder whose database holds n + 1 live sessions (filled directly; see
    bench/fill_sessions.py) and a file of `sample` of their raw access tokens. Cached per n."""
    import fill_sessions  # bench/fill_sessions.py
    cache = ctx.__dict__.setdefault("session_dbs", {})
    if n in cache:
        return cache[n]
    data = ctx.tmp / f"sessions-{n}"
    setup = Myelin(ctx, f"sessions-{n}-setup", data, 1)
    try:  # the schema, the key file and one real session (the template of the filled rows)
        register(setup.base, "template", PASSWORD)
    finally:
        setup.stop()
    log(f"filling {n:,} sessions into {data.name}")
    tokens, secs = fill_sessions.fill(str(data / "homeserver.db"), str(data / "myelin.key"), n,
                                      sample=sample)
    token_file = ctx.tmp / f"sessions-{n}-tokens.txt"
    token_file.write_text("".join(t + "\n" for t in tokens))
    db_mib = sum(p.stat().st_size for p in data.glob("homeserver.db*")) / 2**20
    log(f"{n:,} sessions filled in {secs:.1f}s ({db_mib:.0f} MiB)")
    cache[n] = {"data": data, "tokens": token_file, "fill_s": secs, "db_mib": db_mib,
                "sample": len(tokens)}
    return cache[n]


def check_whoami(base, token_file):
    token = token_file.read_text().split("\n", 1)[0]
    r = http().get(base + "/_matrix/client/v3/account/whoami", timeout=5,
                   headers={"Authorization": "Bearer " + token})
    if r.status_code != 200:
        raise RuntimeError(f"whoami with a filled token: {r.status_code} {r.text}")


def bench_scale(ctx):
    """Idle RSS (default config), start-up time and memory with 1,000,000 sessions, and whoami
    req/s with 1,000 vs 1,000,000 live sessions, side by side in each round."""
    small_n, big_n = ctx.scale_small, ctx.scale_big
    small = sessions_db(ctx, small_n, small_n)
    big = sessions_db(ctx, big_n, ctx.scale_sample)
    out = {"small_sessions": small_n + 1, "big_sessions": big_n + 1,
           "small_db": {k: small[k] for k in ("fill_s", "db_mib", "sample")},
           "big_db": {k: big[k] for k in ("fill_s", "db_mib", "sample")}}

    # 1. The default configuration (network and hashing threads = cores, 2 SQLite readers...)
    # on the small database: idle, then under a whoami load from 2 wrk threads.
    log(f"scale: idle RSS, default config (load {loadavg()})")
    my = Myelin(ctx, "scale-default", small["data"], 0, defaults=True)
    try:
        check_whoami(my.base, small["tokens"])
        idle = settled_rss(my.server.pid, 2.0)
        env = {"MYELIN_TOKENS": str(small["tokens"])}
        w = run_wrk(my.base + ctx.path["whoami"], 2, 64, ctx.duration, "whoami.lua", env=env,
                    server=my.server)
        loaded = proc_mem(my.server.pid)  # right after the run; VmHWM: the peak
        out["default"] = {"idle": idle, "after_load": loaded, "load_rps": w["rps"],
                          "ready_s": my.ready_s}
        log(f"scale: default config idle RSS {idle['VmRSS'] / 1024:.1f} MiB "
            f"({idle['threads']} threads); after {w['rps']:,.0f} req/s whoami "
            f"{loaded['VmRSS'] / 1024:.1f} MiB, peak {loaded['VmHWM'] / 1024:.1f} MiB")
    finally:
        my.stop()

    # 2. The default (lazy) token cache on the big database: start-up and memory do not depend
    # on the sessions stored; then whoami over the sampled tokens (each loaded on first use).
    m = MODES["pinned"]
    log(f"scale: {big_n:,} sessions, lazy token cache (load {loadavg()})")
    srv = Myelin(ctx, "scale-lazy", big["data"], m["threads"], cpus=m["server_cpus"])
    try:
        check_whoami(srv.base, big["tokens"])
        lazy = {"ready_s": srv.ready_s, "mem_start": settled_rss(srv.server.pid)}
        env = {"MYELIN_TOKENS": str(big["tokens"])}
        lazy["wrk"] = run_wrk(srv.base + ctx.path["whoami"], m["wrk_threads"], 64, ctx.duration,
                              "whoami.lua", cpus=m["wrk_cpus"], env=env, server=srv.server)
        lazy["mem_load"] = proc_mem(srv.server.pid)
        out["lazy"] = lazy
        log(f"scale: lazy start-up {lazy['ready_s']:.2f}s, RSS "
            f"{lazy['mem_start']['VmRSS'] / 1024:.1f} MiB, whoami {lazy['wrk']['rps']:,.0f} req/s")
    finally:
        srv.stop()

    # 3. Rounds with every token cached at start-up (warm_cache_at_startup = true): start both
    # servers (order alternating), then whoami on each (same order), pinned (server on core 0,
    # wrk on core 1).
    rounds = []
    for r in range(ctx.rounds):
        order = ["small", "big"] if r % 2 == 0 else ["big", "small"]
        rnd = {"load_before": loadavg()}
        servers = {}
        try:
            for which in order:
                db = small if which == "small" else big
                srv = Myelin(ctx, f"scale-{which}-{r}", db["data"], m["threads"],
                             cpus=m["server_cpus"], start_timeout=300, warm=True)
                servers[which] = srv
                check_whoami(srv.base, db["tokens"])
                rnd[which] = {"ready_s": srv.ready_s, "mem_start": settled_rss(srv.server.pid)}
            for which in order:
                db = small if which == "small" else big
                srv = servers[which]
                env = {"MYELIN_TOKENS": str(db["tokens"])}
                run_wrk(srv.base + ctx.path["whoami"], 1, 64, ctx.warmup, "whoami.lua",
                        cpus=m["wrk_cpus"], env=env)
                rnd[which]["wrk"] = run_wrk(srv.base + ctx.path["whoami"], m["wrk_threads"], 64,
                                            ctx.duration, "whoami.lua", cpus=m["wrk_cpus"],
                                            env=env, server=srv.server)
                rnd[which]["mem_load"] = proc_mem(srv.server.pid)
                time.sleep(1)
        finally:
            for srv in servers.values():
                srv.stop()
        a, b = rnd["small"], rnd["big"]
        rnd["ratio"] = b["wrk"]["rps"] / a["wrk"]["rps"]
        rnd["bytes_per_session"] = ((b["mem_start"]["VmRSS"] - a["mem_start"]["VmRSS"]) * 1024 /
                                    (big_n - small_n))
        log(f"scale round {r + 1}: start-up {a['ready_s']:.2f}s / {b['ready_s']:.2f}s, RSS "
            f"{a['mem_start']['VmRSS'] / 1024:.1f} / {b['mem_start']['VmRSS'] / 1024:.1f} MiB "
            f"({rnd['bytes_per_session']:.0f} B/session), whoami {a['wrk']['rps']:,.0f} / "
            f"{b['wrk']['rps']:,.0f} req/s, ratio {rnd['ratio']:.2f} (load {rnd['load_before']})")
        rounds.append(rnd)
    out["rounds"] = rounds
    return out


def open_idle_connections(port, n):
    """n keep-alive connections, each after one GET /versions answered 200; the sockets."""
    req = (b"GET /_matrix/client/versions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           b"Connection: keep-alive\r\n\r\n")
    socks = []
    try:
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            socks.append(s)
            s.sendall(req)
            got = b""
            while b"\r\n\r\n" not in got:
                chunk = s.recv(65536)
                if not chunk:
                    raise RuntimeError(f"connection {len(socks)} closed by the server")
                got += chunk
            head, _, body = got.partition(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"connection {len(socks)}: {head[:80]!r}")
            length = next((int(ln.split(b":", 1)[1]) for ln in head.split(b"\r\n")
                           if ln.lower().startswith(b"content-length:")), 0)
            while len(body) < length:
                chunk = s.recv(65536)
                if not chunk:
                    raise RuntimeError(f"connection {len(socks)} closed mid-body")
                body += chunk
    except BaseException:
        close_all(socks)
        raise
    return socks


def still_open(socks):
    """How many of the sockets the server has not closed (a peek that would block = open)."""
    n = 0
    for s in socks:
        s.setblocking(False)
        try:
            if s.recv(1, socket.MSG_PEEK):
                n += 1  # unexpected data, but open
        except BlockingIOError:
            n += 1
        except OSError:
            pass
    return n


def close_all(socks):
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


def bench_idle_conns(ctx):
    """whoami req/s with and without 10,000 idle keep-alive connections held open, and the
    server memory each idle connection costs, side by side in each round (pinned)."""
    n = ctx.idle_conns
    db = sessions_db(ctx, ctx.scale_small, ctx.scale_small)
    m = MODES["pinned"]
    env = {"MYELIN_TOKENS": str(db["tokens"])}
    # 20,000 connections (the harness's cap), none per address: all come from 127.0.0.1.
    my = Myelin(ctx, "idle-conns", db["data"], m["threads"], cpus=m["server_cpus"],
                extra="max_connections_per_ip = 0")
    rounds = []
    try:
        url = my.base + ctx.path["whoami"]
        run_wrk(url, 1, 64, ctx.warmup, "whoami.lua", cpus=m["wrk_cpus"], env=env)
        # Memory freed when connections close stays in the allocator (RSS does not fall), so
        # every round compares its held RSS with this one taken before any were opened.
        baseline = settled_rss(my.server.pid)
        for r in range(ctx.rounds):
            rnd = {"load_before": loadavg()}

            def quiet():
                rnd["quiet"] = run_wrk(url, m["wrk_threads"], 64, ctx.duration, "whoami.lua",
                                       cpus=m["wrk_cpus"], env=env, server=my.server)
                time.sleep(1)

            def held():
                before = settled_rss(my.server.pid)
                tcp0 = tcp_mem_kib()
                t0 = time.time()
                socks = open_idle_connections(my.port, n)
                try:
                    rnd["open_s"] = time.time() - t0
                    rnd["mem_before"], rnd["mem_held"] = before, settled_rss(my.server.pid)
                    rnd["tcp_mem_kib"] = tcp_mem_kib() - tcp0
                    rnd["held"] = run_wrk(url, m["wrk_threads"], 64, ctx.duration, "whoami.lua",
                                          cpus=m["wrk_cpus"], env=env, server=my.server)
                    rnd["still_open"] = still_open(socks)
                finally:
                    close_all(socks)
                rnd["mem_after_close"] = settled_rss(my.server.pid)

            for step in ((quiet, held) if r % 2 == 0 else (held, quiet)):
                step()
            rnd["ratio"] = rnd["held"]["rps"] / rnd["quiet"]["rps"]
            rnd["bytes_per_conn"] = (rnd["mem_held"]["VmRSS"] - baseline["VmRSS"]) * 1024 / n
            log(f"idle_conns round {r + 1}: {n:,} opened in {rnd['open_s']:.1f}s, "
                f"{rnd['bytes_per_conn']:,.0f} B each (RSS), {rnd['still_open']:,} still open "
                f"after the load; whoami {rnd['quiet']['rps']:,.0f} quiet / "
                f"{rnd['held']['rps']:,.0f} req/s held, ratio {rnd['ratio']:.2f}")
            rounds.append(rnd)
    finally:
        my.stop()
    return {"connections": n, "rounds": rounds, "baseline": baseline}


# ---- report ------------------------------------------------------------------------------------

def med_range(values, fmt="{:,.0f}"):
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    m = statistics.median(values)
    if len(values) == 1:
        return fmt.format(m)
    return f"{fmt.format(m)} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def med(values, fmt="{:,.0f}"):
    values = [v for v in values if v is not None]
    return fmt.format(statistics.median(values)) if values else "n/a"


def ms(us):
    return us / 1000.0


def ok(results, name):
    """Whether benchmark `name` ran and has figures (not failed, not skipped)."""
    res = results.get(name)
    return res is not None and "error" not in res and "skipped" not in res


def summarize(results):
    """Rows of the headline table: (benchmark, mode, myelin, ceiling, ratio, latency, cpu, target)."""
    rows = []
    for name in ("versions", "whoami"):
        if not ok(results, name):
            continue
        for mode in MODES:
            rs = results[name][mode]["rounds"]
            rows.append({
                "bench": name, "mode": mode,
                "server": med_range([x["myelin"]["rps"] for x in rs]) + " req/s",
                "ceiling": "nginx " + med_range([x["nginx"]["rps"] for x in rs]) + " req/s",
                "ratio": med_range([x["ratio"] for x in rs], "{:.2f}"),
                "latency": f"{med([ms(x['myelin']['lat_p50_us']) for x in rs], '{:.2f}')} / "
                           f"{med([ms(x['myelin']['lat_p99_us']) for x in rs], '{:.2f}')} ms "
                           f"(nginx {med([ms(x['nginx']['lat_p50_us']) for x in rs], '{:.2f}')} / "
                           f"{med([ms(x['nginx']['lat_p99_us']) for x in rs], '{:.2f}')})",
                "cpu": f"{med([x['myelin']['cpu_us_per_req'] for x in rs], '{:.1f}')} "
                       f"(nginx {med([x['nginx']['cpu_us_per_req'] for x in rs], '{:.1f}')})",
                "errors": sum(x["myelin"]["errors"] for x in rs),
                "target": TARGETS.get(name, "") if mode == "pinned" else "",
            })
    for name in ("refresh", "refresh_pg"):
        if not ok(results, name):
            continue
        rs = results[name]["rounds"]
        rows.append({
            "bench": "refresh" + (" (PostgreSQL)" if name == "refresh_pg" else " (SQLite)"),
            "mode": "shared, -c64",
            "server": med_range([x["myelin"]["rotations_per_s"] for x in rs]) + " rotations/s",
            "ceiling": "storage " + med_range([x["ceiling"]["rotations_per_s"] for x in rs]) + "/s",
            "ratio": med_range([x["ratio"] for x in rs], "{:.2f}"),
            "latency": f"{med([ms(x['myelin']['lat_p50_us']) for x in rs], '{:.2f}')} / "
                       f"{med([ms(x['myelin']['lat_p99_us']) for x in rs], '{:.2f}')} ms",
            "cpu": f"{med([x['myelin']['cpu_us_per_rotation'] for x in rs], '{:.1f}')} "
                   f"(storage {med([x['ceiling']['cpu_us_per_rotation'] for x in rs], '{:.1f}')})",
            "errors": sum(x["myelin"]["errors"] + x["myelin"]["pool_empty"] +
                          x["myelin"]["no_token"] for x in rs),
            "target": TARGETS[name],
        })
    if ok(results, "login"):
        rs = results["login"]["rounds"]
        rows.append({
            "bench": "login", "mode": "shared, -c8",
            "server": med_range([x["myelin"]["logins_per_s"] for x in rs], "{:.1f}") + " logins/s",
            "ceiling": "argon2id " + med_range([x["ceiling"]["logins_per_s"] for x in rs],
                                               "{:.1f}") + "/s",
            "ratio": med_range([x["ratio"] for x in rs], "{:.2f}"),
            "latency": f"{med([ms(x['myelin']['lat_p50_us']) for x in rs], '{:.1f}')} / "
                       f"{med([ms(x['myelin']['lat_p99_us']) for x in rs], '{:.1f}')} ms",
            "cpu": f"{med([x['myelin']['cpu_us_per_login'] for x in rs], '{:,.0f}')} "
                   f"(one verify {med([x['ceiling']['verify_cpu_ms'] * 1000 for x in rs], '{:,.0f}')})",
            "errors": sum(x["myelin"]["errors"] for x in rs),
            "target": TARGETS["login"],
        })
    if ok(results, "register"):
        rs = results["register"]["rounds"]
        rows.append({
            "bench": "register", "mode": "shared, 8 clients",
            "server": med_range([x["myelin"]["registers_per_s"] for x in rs], "{:.1f}") +
                      " registrations/s",
            "ceiling": "argon2id hash " + med_range([x["ceiling"]["registers_per_s"] for x in rs],
                                                    "{:.1f}") + "/s",
            "ratio": med_range([x["ratio"] for x in rs], "{:.2f}"),
            "latency": f"{med([ms(x['myelin']['lat_p50_us']) for x in rs], '{:.1f}')} / "
                       f"{med([ms(x['myelin']['lat_p99_us']) for x in rs], '{:.1f}')} ms",
            "cpu": f"{med([x['myelin']['cpu_us_per_register'] for x in rs], '{:,.0f}')} "
                   f"(one hash {med([x['ceiling']['hash_cpu_ms'] * 1000 for x in rs], '{:,.0f}')})",
            "errors": sum(x["myelin"]["errors"] for x in rs),
            "target": "",
        })
    if ok(results, "login_storm"):
        res = results["login_storm"]
        rs = res["rounds"]
        rows.append({
            "bench": "whoami in a login storm",
            "mode": f"shared, -c{res['whoami_connections']}, {res['logins']} logins",
            "server": med_range([x["storm"]["rps"] for x in rs]) + " req/s",
            "ceiling": "quiet " + med_range([x["quiet"]["rps"] for x in rs]) + " req/s",
            "ratio": "p99 " + med_range([x["p99_ratio"] for x in rs], "{:.1f}") + "× quiet",
            "latency": f"{med([ms(x['storm']['lat_p50_us']) for x in rs], '{:.2f}')} / "
                       f"{med([ms(x['storm']['lat_p99_us']) for x in rs], '{:.2f}')} ms "
                       f"(quiet {med([ms(x['quiet']['lat_p50_us']) for x in rs], '{:.2f}')} / "
                       f"{med([ms(x['quiet']['lat_p99_us']) for x in rs], '{:.2f}')})",
            "cpu": f"{med([x['storm']['cpu_us_per_req'] for x in rs], '{:.1f}')} "
                   "(incl. the logins' hashing)",
            "errors": sum(x["storm"]["errors"] + x["quiet"]["errors"] for x in rs),
            "target": TARGETS["login_storm"],
        })
    rows += scale_rows(results)
    if ok(results, "sync"):
        import sync_bench
        rows += sync_bench.summary_rows(results["sync"])
    return rows


def kib_mib(kib):
    return f"{kib / 1024:,.1f} MiB"


def scale_rows(results):
    """Headline rows of the scale and idle_conns benchmarks (same columns as summarize())."""
    rows = []
    if "scale" in results and "error" not in results["scale"]:
        res = results["scale"]
        rs = res["rounds"]
        big = f"{res['big_sessions'] - 1:,}"
        d = res["default"]
        rows.append({
            "bench": "idle RSS", "mode": "default config",
            "server": kib_mib(d["idle"]["VmRSS"]) + f" (anon {kib_mib(d['idle']['RssAnon'])}, "
                      f"{d['idle']['threads']} threads)",
            "ceiling": "", "ratio": "", "latency": "",
            "cpu": f"under whoami load {kib_mib(d['after_load']['VmRSS'])}, "
                   f"peak {kib_mib(d['after_load']['VmHWM'])}",
            "errors": "", "target": TARGETS["idle_rss"],
        })
        lz = res["lazy"]
        rows.append({
            "bench": "start-up", "mode": f"{big} sessions, default (lazy cache)",
            "server": f"{lz['ready_s']:.2f} s, RSS {kib_mib(lz['mem_start']['VmRSS'])}",
            "ceiling": "all cached at start-up " +
                       med_range([x["big"]["ready_s"] for x in rs], "{:.2f}") + " s; 1,000 " +
                       med_range([x["small"]["ready_s"] for x in rs], "{:.2f}") + " s",
            "ratio": "", "latency": "",
            "cpu": f"whoami {lz['wrk']['rps']:,.0f} req/s over {res['big_db']['sample']:,} tokens",
            "errors": lz["wrk"]["errors"], "target": TARGETS["startup"],
        })
        rows.append({
            "bench": "memory", "mode": f"{big} sessions, all cached",
            "server": med_range([x["bytes_per_session"] for x in rs]) + " B/session",
            "ceiling": "RSS " + med_range([x["big"]["mem_start"]["VmRSS"] / 1024 for x in rs],
                                          "{:,.1f}") +
                       " MiB vs 1,000 sessions " +
                       med_range([x["small"]["mem_start"]["VmRSS"] / 1024 for x in rs],
                                 "{:,.1f}") + " MiB",
            "ratio": "", "latency": "",
            "cpu": "under load " + med([x["big"]["mem_load"]["VmRSS"] / 1024 for x in rs],
                                       "{:,.1f}") + " MiB",
            "errors": "", "target": TARGETS["memory"],
        })
        rows.append({
            "bench": "whoami", "mode": f"pinned, {big} sessions cached",
            "server": med_range([x["big"]["wrk"]["rps"] for x in rs]) + " req/s",
            "ceiling": "1,000 sessions " + med_range([x["small"]["wrk"]["rps"] for x in rs]) +
                       " req/s",
            "ratio": med_range([x["ratio"] for x in rs], "{:.2f}"),
            "latency": f"{med([ms(x['big']['wrk']['lat_p50_us']) for x in rs], '{:.2f}')} / "
                       f"{med([ms(x['big']['wrk']['lat_p99_us']) for x in rs], '{:.2f}')} ms",
            "cpu": f"{med([x['big']['wrk']['cpu_us_per_req'] for x in rs], '{:.1f}')} "
                   f"(1,000: {med([x['small']['wrk']['cpu_us_per_req'] for x in rs], '{:.1f}')})",
            "errors": sum(x[w]["wrk"]["errors"] for x in rs for w in ("small", "big")),
            "target": TARGETS["scale"],
        })
    if "idle_conns" in results and "error" not in results["idle_conns"]:
        res = results["idle_conns"]
        rs = res["rounds"]
        rows.append({
            "bench": "whoami", "mode": f"pinned, {res['connections']:,} idle conns",
            "server": med_range([x["held"]["rps"] for x in rs]) + " req/s",
            "ceiling": "none held " + med_range([x["quiet"]["rps"] for x in rs]) + " req/s",
            "ratio": med_range([x["ratio"] for x in rs], "{:.2f}"),
            "latency": f"{med([ms(x['held']['lat_p50_us']) for x in rs], '{:.2f}')} / "
                       f"{med([ms(x['held']['lat_p99_us']) for x in rs], '{:.2f}')} ms",
            "cpu": f"{med([x['held']['cpu_us_per_req'] for x in rs], '{:.1f}')} "
                   f"(none held {med([x['quiet']['cpu_us_per_req'] for x in rs], '{:.1f}')})",
            "errors": sum(x[w]["errors"] for x in rs for w in ("quiet", "held")),
            "target": "",
        })
        rows.append({
            "bench": "idle conn", "mode": f"{res['connections']:,} held",
            "server": med_range([x["bytes_per_conn"] for x in rs]) + " B/conn (server RSS)",
            "ceiling": "kernel TCP " + med_range([x["tcp_mem_kib"] * 1024 / res["connections"]
                                                  for x in rs]) + " B/conn",
            "ratio": "", "latency": "", "cpu": "",
            "errors": sum(res["connections"] - x["still_open"] for x in rs),
            "target": "",
        })
    return rows


def scale_report(results):
    """Per-round tables of the scale and idle_conns benchmarks (lines of REPORT.md)."""
    L = []
    if "scale" in results and "error" not in results["scale"]:
        res = results["scale"]
        d = res["default"]
        L.append(f"**scale** — databases filled directly (`bench/fill_sessions.py`): "
                 f"{res['small_sessions']:,} live sessions ({res['small_db']['db_mib']:.0f} MiB, "
                 f"whoami over all {res['small_db']['sample']:,} tokens) and "
                 f"{res['big_sessions']:,} ({res['big_db']['db_mib']:.0f} MiB, filled in "
                 f"{res['big_db']['fill_s']:.0f} s, whoami over {res['big_db']['sample']:,} tokens "
                 "spread over the table); pinned (server core 0, 1 network thread; wrk -t1 -c64 "
                 "core 1). Start-up = exec to the first 200 on /versions; RSS 1 s after.\n")
        L.append(f"Default config, 1,000 sessions: idle RSS {kib_mib(d['idle']['VmRSS'])} "
                 f"(anon {kib_mib(d['idle']['RssAnon'])}, file {kib_mib(d['idle']['RssFile'])}, "
                 f"PSS {kib_mib(d['idle'].get('Pss', 0))}, "
                 f"{d['idle']['threads']} threads), start-up {d['ready_s']:.2f} s; after "
                 f"{d['load_rps']:,.0f} req/s of whoami (wrk -t2 -c64, not pinned) "
                 f"{kib_mib(d['after_load']['VmRSS'])}, peak {kib_mib(d['after_load']['VmHWM'])}.\n")
        lz = res["lazy"]
        L.append(f"Default (lazy) token cache, {res['big_sessions']:,} sessions: start-up "
                 f"{lz['ready_s']:.2f} s, RSS {kib_mib(lz['mem_start']['VmRSS'])}; whoami "
                 f"{lz['wrk']['rps']:,.0f} req/s (each token loaded on its first request), RSS "
                 f"after {kib_mib(lz['mem_load']['VmRSS'])}. The rounds below run with "
                 "`warm_cache_at_startup = true` (every session in memory).\n")
        L.append("| round | load | start-up s (1k / 1M) | RSS MiB after start (1k / 1M) | anon MiB (1k / 1M) | B/session | whoami req/s (1k / 1M) | ratio | CPU µs/req (1k / 1M) | RSS MiB after load (1k / 1M) |")
        L.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for i, x in enumerate(res["rounds"]):
            a, b = x["small"], x["big"]
            L.append(f"| {i + 1} | {x['load_before']} | {a['ready_s']:.2f} / {b['ready_s']:.2f} | "
                     f"{a['mem_start']['VmRSS'] / 1024:,.1f} / {b['mem_start']['VmRSS'] / 1024:,.1f} | "
                     f"{a['mem_start']['RssAnon'] / 1024:,.1f} / {b['mem_start']['RssAnon'] / 1024:,.1f} | "
                     f"{x['bytes_per_session']:,.0f} | {a['wrk']['rps']:,.0f} / {b['wrk']['rps']:,.0f} | "
                     f"{x['ratio']:.2f} | {a['wrk']['cpu_us_per_req']:.1f} / "
                     f"{b['wrk']['cpu_us_per_req']:.1f} | {a['mem_load']['VmRSS'] / 1024:,.1f} / "
                     f"{b['mem_load']['VmRSS'] / 1024:,.1f} |")
        L.append("")
    if "idle_conns" in results and "error" not in results["idle_conns"]:
        res = results["idle_conns"]
        L.append(f"**idle_conns** — {res['connections']:,} keep-alive connections, each after one "
                 "answered GET /versions, held open by the harness while wrk -t1 -c64 runs whoami "
                 "(1,000 sessions); pinned as above. Ratio = held ÷ none held, same round. "
                 f"B/conn = (RSS held − RSS before any was opened, "
                 f"{kib_mib(res['baseline']['VmRSS'])}) ÷ {res['connections']:,}: memory freed "
                 "by closed connections stays in the allocator, so RSS does not fall after "
                 "close.\n")
        L.append("| round | load | opened in s | RSS MiB before / held / after close | B/conn | kernel TCP KiB | still open | whoami req/s none / held | ratio | CPU µs/req none / held | p99 ms none / held |")
        L.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for i, x in enumerate(res["rounds"]):
            q, h = x["quiet"], x["held"]
            L.append(f"| {i + 1} | {x['load_before']} | {x['open_s']:.1f} | "
                     f"{x['mem_before']['VmRSS'] / 1024:,.1f} / {x['mem_held']['VmRSS'] / 1024:,.1f} / "
                     f"{x['mem_after_close']['VmRSS'] / 1024:,.1f} | {x['bytes_per_conn']:,.0f} | "
                     f"{x['tcp_mem_kib']:,} | {x['still_open']:,} | {q['rps']:,.0f} / {h['rps']:,.0f} | "
                     f"{x['ratio']:.2f} | {q['cpu_us_per_req']:.1f} / {h['cpu_us_per_req']:.1f} | "
                     f"{ms(q['lat_p99_us']):.2f} / {ms(h['lat_p99_us']):.2f} |")
        L.append("")
    return L


def write_report(ctx, results, meta):
    rows = summarize(results)
    L = []
    L.append("# Myelin load benchmarks — results of one run\n")
    L.append(f"Run {meta['started']} → {meta['finished']} ({meta['elapsed_s']:.0f} s), "
             f"`{meta['command']}`, commit `{meta['commit']}`{' (+ uncommitted changes)' if meta['dirty'] else ''}. "
             f"{meta['cores']} cores, {meta['cpu_model']}, kernel {meta['kernel']}. "
             f"Load average at start {meta['load_start']}, at end {meta['load_end']}. "
             f"{ctx.rounds} interleaved round(s) of {ctx.duration} s per figure.\n")
    L.append("## Targets (issue #6, section 2)\n")
    L += targets.format_target_table(targets.target_rows(results))
    L.append("")
    L.append(METHOD_SUMMARY.format(rounds=ctx.rounds, duration=ctx.duration, warmup=ctx.warmup,
                                   sessions=ctx.sessions, big=ctx.scale_big,
                                   idle=ctx.idle_conns, storm=ctx.storm_logins))
    L.append("## Figures and their ceilings\n")
    L.append("Medians over the rounds, (min–max) in brackets. Ratio = myelin ÷ ceiling measured in "
             "the same round. CPU = server CPU time (utime+stime of all its threads/processes) per "
             "request, in µs. Latency = wrk p50 / p99. Errors = non-2xx + socket errors "
             "(+ refresh pool misses) over all rounds of myelin.\n")
    L.append("| benchmark | mode | myelin | ceiling | ratio | latency p50 / p99 | CPU µs/req | errors | target |")
    L.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        L.append(f"| {r['bench']} | {r['mode']} | {r['server']} | {r['ceiling']} | {r['ratio']} | "
                 f"{r['latency']} | {r['cpu']} | {r['errors']} | {r['target']} |")
    L.append("")
    for name, res in results.items():
        if "error" in res:
            L.append(f"**{name} failed:** `{res['error']}`\n")
        elif "skipped" in res:
            L.append(f"**{name} not measured:** {res['skipped']}\n")
    L.append("## Rounds\n")
    for name in ("versions", "whoami"):
        if not ok(results, name):
            continue
        res = results[name]
        extra = (f"; {res['sessions']:,} sessions (created in {res['setup_s']:.0f} s)"
                 if name == "whoami" else "")
        for mode in MODES:
            m = res[mode]
            L.append(f"**{name}, {mode}** — body {m['body_bytes']} bytes, `{m['content_type']}`, "
                     f"nginx also sends {', '.join(m['copied_headers']) or 'no extra headers'}{extra}\n")
            L.append("| round | load | myelin req/s | nginx req/s | ratio | myelin p50/p99 ms | nginx p50/p99 ms | myelin CPU µs/req | nginx CPU µs/req | cores busy myelin / nginx |")
            L.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
            for i, x in enumerate(m["rounds"]):
                a, b = x["myelin"], x["nginx"]
                L.append(f"| {i + 1} | {x['load_before']} | {a['rps']:,.0f} | {b['rps']:,.0f} | "
                         f"{x['ratio']:.2f} | {ms(a['lat_p50_us']):.2f} / {ms(a['lat_p99_us']):.2f} | "
                         f"{ms(b['lat_p50_us']):.2f} / {ms(b['lat_p99_us']):.2f} | "
                         f"{a['cpu_us_per_req']:.1f} | {b['cpu_us_per_req']:.1f} | "
                         f"{a['cpu_util']:.2f} / {b['cpu_util']:.2f} |")
            L.append("")
    for rname in ("refresh", "refresh_pg"):
        if not ok(results, rname):
            continue
        res = results[rname]
        pg = rname == "refresh_pg"
        L.append(f"**{rname}** — {'PostgreSQL, ' + res.get('cluster', '') if pg else 'SQLite'}; "
                 f"{res['sessions']} fresh sessions per round, wrk "
                 f"-t{res['wrk_threads']} -c{res['connections']}; ceiling "
                 f"`{'BM_PgRotationMatched' if pg else 'BM_StorageRotationMatched'}` "
                 "(bench/micro/storage_bench.cpp): the same write job as the service's refresh, "
                 "same backend and durability, the same number of fresh sessions on 64 threads, "
                 "each rotated as often as the server's were" +
                 ("; jobs/commit is n/a on PostgreSQL (one transaction per job)" if pg else "") +
                 "\n")
        L.append("| round | load | fsync p50 before/after µs | myelin rotations/s | non-2xx | rotations/session | p50/p99 ms | myelin CPU µs/rot | myelin cores busy | storage rotations/s | jobs/commit | storage CPU µs/rot | ratio |")
        L.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for i, x in enumerate(res["rounds"]):
            a, c = x["myelin"], x["ceiling"]
            L.append(f"| {i + 1} | {x['load_before']} | {x['fsync_before']['median_us']:.0f} / "
                     f"{x['fsync_after']['median_us']:.0f} | {a['rotations_per_s']:,.0f} | "
                     f"{a['err_status']} | {a['rotations_per_session']:.0f} | "
                     f"{ms(a['lat_p50_us']):.2f} / {ms(a['lat_p99_us']):.2f} | "
                     f"{a['cpu_us_per_rotation'] or 0:.1f} | {a['cpu_util']:.2f} | "
                     f"{c['rotations_per_s']:,.0f} | "
                     f"{c['jobs_per_commit'] or 0:.1f} | {c['cpu_us_per_rotation'] or 0:.1f} | "
                     f"{x['ratio']:.2f} |")
        L.append("")
        if "diagnostics" in res:
            L.append("Storage diagnostics (one pass, same binary):\n")
            L.append("| micro-benchmark | rotations/s | jobs/commit | CPU µs/rotation | rotations/session in the run |")
            L.append("| --- | --- | --- | --- | --- |")
            for d in res["diagnostics"]:
                L.append(f"| `{d['name']}` | {d['rotations_per_s']:,.0f} | "
                         f"{d['jobs_per_commit'] or 0:.1f} | {d['cpu_us_per_rotation'] or 0:.1f} | "
                         f"{d['rotations_per_session'] or 0:,.0f} |")
            L.append("")
    if ok(results, "login"):
        res = results["login"]
        L.append(f"**login** — wrk -t2 -c{res['connections']}, OWASP argon2id (m=19456 KiB, t=2), "
                 f"hashing_threads = cores = {res['cores']}; ceiling = cores ÷ "
                 "`BM_LoginCeilingArgon2idVerifyOwasp/real_time/threads:1`\n")
        L.append("| round | load | myelin logins/s | non-2xx | p50/p99 ms | myelin CPU µs/login (user / kernel) | myelin cores busy | one verify (wall / CPU) ms | ceiling logins/s | ratio | ceiling without the arena (`…NoArena`) |")
        L.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for i, x in enumerate(res["rounds"]):
            a, c = x["myelin"], x["ceiling"]
            n = x.get("ceiling_no_arena")
            L.append(f"| {i + 1} | {x['load_before']} | {a['logins_per_s']:.1f} | {a['err_status']} | "
                     f"{ms(a['lat_p50_us']):.1f} / {ms(a['lat_p99_us']):.1f} | "
                     f"{a['cpu_us_per_login'] or 0:,.0f} ({a.get('cpu_user_us_per_login') or 0:,.0f} / "
                     f"{a.get('cpu_kernel_us_per_login') or 0:,.0f}) | {a['cpu_util']:.2f} | {c['verify_ms']:.1f} / "
                     f"{c['verify_cpu_ms']:.1f} | {c['logins_per_s']:.1f} | {x['ratio']:.2f} | "
                     + (f"{n['logins_per_s']:.1f}/s ({n['verify_ms']:.1f} / {n['verify_cpu_ms']:.1f} ms) |"
                        if n else "— |"))
        L.append("")
        if "diagnostics" in res:
            L.append("argon2id diagnostics (one pass): " + "; ".join(
                f"`{d['name']}` {d['real_ms']:.1f} {d['unit']} wall, {d['cpu_ms']:.1f} {d['unit']} "
                f"CPU, {d['items_per_second']:.1f}/s" for d in res["diagnostics"]) + "\n")
    if ok(results, "register"):
        res = results["register"]
        L.append(f"**register** — POST /register with user-interactive auth (m.login.dummy: two "
                 f"requests per account) from {res['clients']} Python client threads, OWASP "
                 "argon2id; ceiling = cores ÷ `BM_LoginCeilingArgon2idHashOwasp` (one hash)\n")
        L.append("| round | load | registrations/s | statuses | p50/p99 ms | myelin CPU µs/registration | one hash (wall / CPU) ms | ceiling /s | ratio |")
        L.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for i, x in enumerate(res["rounds"]):
            a, c = x["myelin"], x["ceiling"]
            L.append(f"| {i + 1} | {x['load_before']} | {a['registers_per_s']:.1f} | "
                     f"{a['statuses']} | {ms(a['lat_p50_us'] or 0):.1f} / "
                     f"{ms(a['lat_p99_us'] or 0):.1f} | {a['cpu_us_per_register'] or 0:,.0f} | "
                     f"{c['hash_ms']:.1f} / {c['hash_cpu_ms']:.1f} | {c['registers_per_s']:.1f} | "
                     f"{x['ratio']:.2f} |")
        L.append("")
    if ok(results, "login_storm"):
        res = results["login_storm"]
        L.append(f"**login_storm** — `bench/login_storm.py`: whoami from wrk -t1 "
                 f"-c{res['whoami_connections']} over {res['sessions']} tokens, quiet and then "
                 f"inside a storm of {res['logins']} login connections (OWASP argon2id, hashing "
                 "queue at its default, rate limits off; a shed login waits its Retry-After). "
                 "Not pinned.\n")
        L.append("| round | load | whoami req/s quiet / storm | p50 ms quiet / storm | p99 ms quiet / storm | p99 × | logins admitted/s | shed/s | login p50 / p99 ms |")
        L.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for i, x in enumerate(res["rounds"]):
            q, st, lg = x["quiet"], x["storm"], x["logins"]
            secs = lg["duration_us"] / 1e6
            L.append(f"| {i + 1} | {x['load_before']} | {q['rps']:,.0f} / {st['rps']:,.0f} | "
                     f"{ms(q['lat_p50_us']):.2f} / {ms(st['lat_p50_us']):.2f} | "
                     f"{ms(q['lat_p99_us']):.2f} / {ms(st['lat_p99_us']):.2f} | "
                     f"{x['p99_ratio'] or 0:.1f} | {lg['ok'] / secs:.0f} | "
                     f"{lg['err_status'] / secs:.0f} | {ms(lg['lat_p50_us']):.0f} / "
                     f"{ms(lg['lat_p99_us']):.0f} |")
        L.append("")
    L += scale_report(results)
    if ok(results, "sync"):
        import sync_bench
        L += sync_bench.report_lines(results["sync"])
    L.append("Raw figures: `raw.json` next to this report. Method: `bench/README.md`, "
             "`docs/performance.md`.\n")
    ctx.output.write_text("\n".join(L))
    return rows


METHOD_SUMMARY = """**Method, in short** (details: `bench/README.md`, `docs/performance.md`). Every
figure is measured next to its ceiling in the same round, and the order alternates between rounds:
the machine is shared and noisy, so only same-round ratios and CPU µs per request hold still.
{rounds} round(s) of {duration} s per wrk run after a {warmup} s warm-up (the issue's budget of
15 minutes for the whole run on 2 cores sets these; `--rounds`/`--duration` give longer runs).
*Pinned*: server on core 0 with 1 thread (nginx 1 worker), wrk -t1 -c64 on core 1. *Shared*:
nothing pinned, 2 threads/workers, wrk -t2 -c64. whoami uses {sessions:,} live sessions; scale
fills {big:,} sessions straight into SQLite; idle_conns holds {idle:,} keep-alive connections;
login_storm runs {storm} login connections. Rate limits off, access log off, SQLite WAL with
synchronous=FULL (PostgreSQL: fsync on, synchronous commit). Everything on 127.0.0.1.
"""


# ---- main --------------------------------------------------------------------------------------

class Ctx:
    pass


def git(*args):
    try:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short smoke run (1 round, 3 s runs)")
    ap.add_argument("--only", default="", help="comma-separated subset of " + ",".join(BENCHMARKS))
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--duration", type=int, default=None, help="seconds per wrk run")
    ap.add_argument("--no-diagnostics", action="store_true",
                    help="skip the one-pass micro-benchmark diagnostics")
    ap.add_argument("--output", default=None,
                    help="report path (default bench/results/REPORT.md, with --target "
                         "bench/results/REPORT-target.md); raw figures go next to it (.json)")
    tg = ap.add_argument_group("another homeserver (SENDS LOAD to URL; see bench/README.md)")
    tg.add_argument("--target", metavar="URL", default=None,
                    help="run the HTTP benchmarks against this homeserver base URL instead")
    tg.add_argument("--target-user", default=None, help="existing account (localpart or MXID)")
    tg.add_argument("--target-password", default=None)
    tg.add_argument("--registration-token", default=None,
                    help="for servers whose registration needs m.login.registration_token")
    tg.add_argument("--target-register", action="store_true",
                    help="measure register/s even with --target-user")
    tg.add_argument("--target-sessions", type=int, default=None,
                    help="sessions logged in for whoami and refresh (default 16, --quick 4)")
    tg.add_argument("--target-pid", type=int, default=None,
                    help="pid of a local target server: adds its CPU µs/request and RSS")
    tg.add_argument("--no-ceilings", action="store_true",
                    help="with --target on loopback: no nginx ceiling")
    return ap, ap.parse_args(argv)


def main():
    ap, args = parse_args()
    if args.target:
        return main_target(args)

    only = [x for x in args.only.split(",") if x] or list(BENCHMARKS)
    for x in only:
        if x not in BENCHMARKS:
            ap.error(f"unknown benchmark {x!r}; expected one of {', '.join(BENCHMARKS)}")
    for tool, path in (("myelin", MYELIN), ("micro-benchmarks", MICRO)):
        if not path.exists():
            sys.exit(f"{tool} not built: {path} is missing (run `make build`)")
    for tool in ("wrk", "nginx", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found (scripts/install-deps.sh installs it)")

    ctx = Ctx()
    ctx.quick = args.quick
    # Defaults sized so that the whole run stays under 15 minutes on 2 cores (issue #6).
    ctx.rounds = args.rounds or (1 if args.quick else 3)
    ctx.duration = args.duration or (3 if args.quick else 6)
    ctx.warmup = 1 if args.quick else 2
    ctx.micro_time = 1 if args.quick else 2
    ctx.diag_time = 1
    ctx.diagnostics = not args.no_diagnostics
    ctx.sessions = 1000 if args.quick else 10000
    ctx.refresh_sessions = 256
    ctx.storm_logins = 200
    ctx.scale_small = SCALE_SMALL
    ctx.scale_big = 100_000 if args.quick else SCALE_BIG
    ctx.scale_sample = 1_000  # the same number of distinct tokens as the 1,000-session run
    ctx.idle_conns = 2_000 if args.quick else IDLE_CONNS
    ctx.path = {"versions": "/_matrix/client/versions",
                "whoami": "/_matrix/client/v3/account/whoami"}
    ctx.output = Path(args.output) if args.output else RESULTS / "REPORT.md"
    ctx.tmp = Path(tempfile.mkdtemp(prefix="myelin-bench-",
                                    dir=os.environ.get("MYELIN_BENCH_TMP") or None))

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    ctx.output.parent.mkdir(parents=True, exist_ok=True)
    meta = {"started": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": " ".join(["bench/run_bench.py"] + sys.argv[1:]),
            "commit": git("rev-parse", "--short", "HEAD") or "unknown",
            "dirty": bool(git("status", "--porcelain")),
            "cores": CORES, "cpu_model": cpu_model(), "kernel": platform.release(),
            "load_start": loadavg(), "rounds": ctx.rounds, "duration_s": ctx.duration}
    t0 = time.time()
    results = {}
    log(f"benchmarks: {', '.join(only)}; {ctx.rounds} round(s) x {ctx.duration}s; "
        f"scratch {ctx.tmp}; load {loadavg()}")
    try:
        for name in only:
            try:
                results[name] = globals()[f"bench_{name}"](ctx)
            except KeyboardInterrupt:
                raise
            except Exception as e:  # report it and go on with the next benchmark
                log(f"{name} FAILED: {e}")
                results[name] = {"error": str(e)}
            finally:
                stop_all()
    except KeyboardInterrupt as e:
        log(f"interrupted ({e}); stopping servers")
        stop_all()
        shutil.rmtree(ctx.tmp, ignore_errors=True)
        sys.exit(130)
    finally:
        stop_all()
        shutil.rmtree(ctx.tmp, ignore_errors=True)

    meta.update(finished=datetime.datetime.now().isoformat(timespec="seconds"),
                elapsed_s=time.time() - t0, load_end=loadavg())
    raw = ctx.output.parent / ("raw.json" if ctx.output.name == "REPORT.md"
                               else ctx.output.stem + ".json")
    raw.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    rows = write_report(ctx, results, meta)
    print()
    print(f"{'benchmark':<9} {'mode':<13} {'ratio (range)':<20} myelin | ceiling | CPU µs/req")
    for r in rows:
        print(f"{r['bench']:<9} {r['mode']:<13} {r['ratio']:<20} {r['server']} | {r['ceiling']} | "
              f"{r['cpu']}" + (f" | ERRORS {r['errors']}" if r["errors"] else ""))
    for r in targets.target_rows(results):
        print(f"target: {r['target']}: {r['measured']} -> {r['met']}")
    print(f"\nReport: {ctx.output} ({meta['elapsed_s']:.0f} s)")
    return 1 if any("error" in v for v in results.values()) else 0


SECRET_OPTIONS = ("--target-password", "--registration-token")


def redact_argv(argv):
    """argv with the values of SECRET_OPTIONS replaced by *** (for the report)."""
    out, hide = [], False
    for a in argv:
        if hide:
            out.append("***")
            hide = False
        elif a in SECRET_OPTIONS:
            out.append(a)
            hide = True
        elif a.split("=", 1)[0] in SECRET_OPTIONS and "=" in a:
            out.append(a.split("=", 1)[0] + "=***")
        else:
            out.append(a)
    return out


def main_target(args):
    """--target URL: bench/target_bench.py's run against another homeserver."""
    import target_bench
    if shutil.which("wrk") is None:
        sys.exit("wrk not found (scripts/install-deps.sh installs it)")
    print(f"*** --target {args.target}: this sends load (wrk at full speed) to that server "
          "and may create accounts on it. ***", flush=True)
    ctx = Ctx()
    ctx.tmp = Path(tempfile.mkdtemp(prefix="myelin-bench-target-",
                                    dir=os.environ.get("MYELIN_BENCH_TMP") or None))
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.duration = args.duration or (3 if args.quick else 10)
    args.target_sessions = args.target_sessions or (4 if args.quick else 16)
    args.tmp, args.ctx = ctx.tmp, ctx
    output = Path(args.output) if args.output else RESULTS / "REPORT-target.md"
    output.parent.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now().isoformat(timespec="seconds")
    load_start, t0 = loadavg(), time.time()

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        meta, results = target_bench.run_target(args, sys.modules[__name__], log)
    except KeyboardInterrupt as e:
        log(f"interrupted ({e})")
        return 130
    finally:
        stop_all()
        shutil.rmtree(ctx.tmp, ignore_errors=True)
    meta.update(started=started, finished=datetime.datetime.now().isoformat(timespec="seconds"),
                elapsed_s=time.time() - t0, load_start=load_start, load_end=loadavg(),
                command=" ".join(["bench/run_bench.py"] + redact_argv(sys.argv[1:])),
                commit=git("rev-parse", "--short", "HEAD") or "unknown", cores=CORES,
                cpu_model=cpu_model(), rounds=args.rounds, duration_s=args.duration)
    meta.pop("target_password", None)
    output.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": results},
                                                      indent=1))
    output.write_text(target_bench.format_target_report(meta, results))
    for r in target_bench.summary_rows(results):
        print(f"{r['bench']:<9} {r['rate']} | ceiling {r['ceiling'] or '-'} {r['ratio']} | "
              f"{r['latency']} | errors {r['errors']}")
    print(f"\nReport: {output} ({meta['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
