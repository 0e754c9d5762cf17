#!/usr/bin/python3
"""Myelin's load benchmarks: every figure next to a ceiling measured in the same run.

  versions  GET /_matrix/client/versions          vs nginx returning the same bytes
  whoami    GET /account/whoami, 10,000 sessions  vs nginx returning a body of the same size
  refresh   POST /refresh, durable rotations/s    vs the storage micro-benchmark (same SQLite backend)
  login     POST /login (argon2id OWASP)          vs cores / one argon2id verification

Each benchmark runs ROUNDS interleaved rounds (server, ceiling, server, ...: the order alternates
between rounds) and reports the median and range of server/ceiling ratios taken within a round,
latency percentiles, and server CPU microseconds per request (utime+stime of the server's
processes from /proc/<pid>/stat around each wrk run). Everything runs on 127.0.0.1, every load
run is bounded (wrk -d), and every process started here is stopped here (SIGTERM, then SIGKILL).

Writes bench/results/REPORT.md and bench/results/raw.json, prints a summary.
Usage: bench/run_bench.py [--quick] [--only NAME[,NAME]] [--rounds N] [--duration S]
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

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
LOAD = BENCH / "load"
RESULTS = BENCH / "results"
BUILD = Path(os.environ.get("MYELIN_BUILD", REPO / "build"))
MYELIN = BUILD / "myelin"
MICRO = BUILD / "bench" / "myelin_micro_bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1
BENCHMARKS = ("versions", "whoami", "refresh", "login")
PASSWORD = "bench-password-0123"

TARGETS = {
    "whoami": "myelin >= 0.8x nginx, pinned",
    "refresh": ">= 5,000 durable rotations/s",
    "login": ">= 0.85x the argon2id ceiling (cores / one verification)",
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
        if self.proc.returncode not in (0, -signal.SIGTERM):
            log(f"{self.name} exited with status {self.proc.returncode}:\n{self.log_tail()}")


def stop_all():
    for s in list(Server.live):
        try:
            s.stop()
        except Exception as e:  # keep stopping the others
            log(f"stopping {s.name}: {e}")


def wait_http(server, url, timeout=30.0):
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
        time.sleep(0.1)
    raise RuntimeError(f"{server.name} did not answer {url} within {timeout:.0f}s:\n"
                       f"{server.log_tail()}")


# ---- myelin and nginx --------------------------------------------------------------------------

class Myelin:
    def __init__(self, ctx, name, data_dir, threads, cpus=None, argon2=(8192, 1),
                 hashing_threads=0):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        data_dir.mkdir(parents=True, exist_ok=True)
        conf = ctx.tmp / f"{name}.toml"
        conf.write_text(f"""# written by bench/run_bench.py
server_name = "localhost"
public_baseurl = "{self.base}/"
[listen]
address = "127.0.0.1"
port = {self.port}
threads = {threads}
[database]
url = "sqlite:{data_dir / 'homeserver.db'}"
[registration]
enabled = true
[passwords]
argon2_memory_kib = {argon2[0]}
argon2_iterations = {argon2[1]}
hashing_threads = {hashing_threads}
[limits]
max_connections = 20000
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
        self.server = Server(f"myelin[{name}]", [str(MYELIN), "serve", "--config", str(conf)],
                             ctx.tmp / f"{name}.log", cpus=cpus)
        wait_http(self.server, self.base + "/_matrix/client/versions")

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
    p = subprocess.run(argv, capture_output=True, text=True, env=full_env, timeout=duration + 60)
    cpu1 = server.cpu_seconds() if server else 0.0
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
    log(f"whoami: creating {n:,} sessions (argon2id m=8192 KiB, t=1 for setup speed)")
    t0 = time.time()
    setup = Myelin(ctx, "whoami-setup", data, 2)
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


def bench_refresh(ctx):
    """Durable rotations/s through POST /refresh, and the storage ceiling for the same work.

    Every round starts a server on a new database, signs in `pool` fresh sessions, runs wrk
    (FIFO token pools: every session is rotated in turn), stops the server, then runs the
    storage micro-benchmark on a new database with the same number of fresh sessions,
    each rotated as many times as the server rotated its sessions on average: a rotation's cost
    grows with the number of rotated-out tokens its session holds, so both must do the same.
    Rounds alternate server, ceiling, server, ceiling... (the ceiling needs the server's count).
    """
    conns, threads, pool = 64, 2, ctx.refresh_sessions
    rounds = []
    for r in range(ctx.rounds):
        # A new server on a new database every round, like the micro-benchmark's: the rounds
        # then start from the same state instead of an ever larger token table.
        my = Myelin(ctx, f"refresh-{r}", ctx.tmp / f"refresh-data-{r}", 0)  # threads = cores
        try:
            register(my.base, "bench", PASSWORD)
            devices = [f"R{r}D{i:04d}" for i in range(pool)]
            logins = login_many(my.base, "bench", devices, refresh=True)
            token_file = ctx.tmp / f"refresh-tokens-{r}.txt"
            token_file.write_text("".join(x["refresh_token"] + "\n" for x in logins))
            rnd = {"load_before": loadavg(), "fsync_before": fsync_probe(ctx.tmp)}
            w = run_wrk(my.base + "/_matrix/client/v3/refresh", threads, conns, ctx.duration,
                        "refresh.lua", server=my.server, env={"MYELIN_TOKENS": str(token_file)})
        finally:
            my.stop()
        shutil.rmtree(ctx.tmp / f"refresh-data-{r}", ignore_errors=True)
        w["rotations_per_s"] = w["rotated"] / (w["duration_us"] / 1e6)
        w["cpu_us_per_rotation"] = (w["cpu_s"] * 1e6 / w["rotated"]) if w["rotated"] else None
        w["rotations_per_session"] = w["rotated"] / pool
        rnd["myelin"] = w
        time.sleep(1)

        per_session = max(1, round(w["rotated"] / pool))
        b = run_micro("^BM_StorageRotationMatched/", ctx.micro_time,
                      env={"MYELIN_BENCH_DIR": str(ctx.tmp), "MYELIN_BENCH_SESSIONS": str(pool),
                           "MYELIN_BENCH_ROTATIONS_PER_SESSION": str(per_session)})[0]
        rnd["ceiling"] = {"rotations_per_s": b["items_per_second"],
                          "jobs_per_commit": b.get("jobs_per_commit"),
                          "cpu_us_per_rotation": b.get("cpu_us_per_rotation"),
                          "rotations_per_session": per_session}
        rnd["fsync_after"] = fsync_probe(ctx.tmp)
        rnd["ratio"] = w["rotations_per_s"] / rnd["ceiling"]["rotations_per_s"]
        log(f"refresh round {r + 1}: myelin {w['rotations_per_s']:,.0f} rotations/s "
            f"(non-2xx {w['err_status']}, {w['rotations_per_session']:.0f} per session), "
            f"storage ceiling {rnd['ceiling']['rotations_per_s']:,.0f}/s, ratio "
            f"{rnd['ratio']:.2f}, fsync p50 {rnd['fsync_before']['median_us']:.0f} µs "
            f"(load {rnd['load_before']})")
        rounds.append(rnd)
        time.sleep(1)
    out = {"rounds": rounds, "connections": conns, "wrk_threads": threads, "sessions": pool}
    if not ctx.quick:
        log("refresh: storage diagnostics (1, 8, 64 threads; with crypto; aged sessions)")
        diag = run_micro("^BM_StorageRotation(/|WithCrypto|Aged)", ctx.diag_time,
                         env={"MYELIN_BENCH_DIR": str(ctx.tmp)})
        out["diagnostics"] = [{"name": b["name"], "rotations_per_s": b["items_per_second"],
                               "jobs_per_commit": b.get("jobs_per_commit"),
                               "cpu_us_per_rotation": b.get("cpu_us_per_rotation"),
                               "rotations_per_session": b.get("rotations_per_session")}
                              for b in diag]
    return out


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
                rnd["myelin"] = w

            def ceiling_run():
                b = run_micro("^BM_LoginCeilingArgon2idVerifyOwasp/real_time/threads:1$",
                              ctx.micro_time)[0]
                verify_s = b["real_time"] / {"ms": 1e3, "us": 1e6, "ns": 1e9}[b["time_unit"]]
                cpu_s = b["cpu_time"] / {"ms": 1e3, "us": 1e6, "ns": 1e9}[b["time_unit"]]
                rnd["ceiling"] = {"verify_ms": verify_s * 1e3, "verify_cpu_ms": cpu_s * 1e3,
                                  "logins_per_s": CORES / verify_s}

            for step in ([server_run, ceiling_run] if r % 2 == 0 else [ceiling_run, server_run]):
                step()
                time.sleep(1)
            rnd["ratio"] = rnd["myelin"]["logins_per_s"] / rnd["ceiling"]["logins_per_s"]
            log(f"login round {r + 1}: myelin {rnd['myelin']['logins_per_s']:.1f} logins/s "
                f"(non-2xx {rnd['myelin']['err_status']}), ceiling "
                f"{rnd['ceiling']['logins_per_s']:.1f}/s ({CORES} x 1/"
                f"{rnd['ceiling']['verify_ms']:.1f} ms), ratio {rnd['ratio']:.2f} "
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


def summarize(results):
    """Rows of the headline table: (benchmark, mode, myelin, ceiling, ratio, latency, cpu, target)."""
    rows = []
    for name in ("versions", "whoami"):
        if name not in results or "error" in results[name]:
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
    if "refresh" in results and "error" not in results["refresh"]:
        rs = results["refresh"]["rounds"]
        rows.append({
            "bench": "refresh", "mode": "shared, -c64",
            "server": med_range([x["myelin"]["rotations_per_s"] for x in rs]) + " rotations/s",
            "ceiling": "storage " + med_range([x["ceiling"]["rotations_per_s"] for x in rs]) + "/s",
            "ratio": med_range([x["ratio"] for x in rs], "{:.2f}"),
            "latency": f"{med([ms(x['myelin']['lat_p50_us']) for x in rs], '{:.2f}')} / "
                       f"{med([ms(x['myelin']['lat_p99_us']) for x in rs], '{:.2f}')} ms",
            "cpu": f"{med([x['myelin']['cpu_us_per_rotation'] for x in rs], '{:.1f}')} "
                   f"(storage {med([x['ceiling']['cpu_us_per_rotation'] for x in rs], '{:.1f}')})",
            "errors": sum(x["myelin"]["errors"] + x["myelin"]["pool_empty"] +
                          x["myelin"]["no_token"] for x in rs),
            "target": TARGETS["refresh"],
        })
    if "login" in results and "error" not in results["login"]:
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
    return rows


def write_report(ctx, results, meta):
    rows = summarize(results)
    L = []
    L.append("# Myelin load benchmarks — results of one run\n")
    L.append(f"Run {meta['started']} → {meta['finished']} ({meta['elapsed_s']:.0f} s), "
             f"`{meta['command']}`, commit `{meta['commit']}`{' (+ uncommitted changes)' if meta['dirty'] else ''}. "
             f"{meta['cores']} cores, {meta['cpu_model']}, kernel {meta['kernel']}. "
             f"Load average at start {meta['load_start']}, at end {meta['load_end']}. "
             f"{ctx.rounds} interleaved round(s) of {ctx.duration} s per figure.\n")
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
    L.append("## Rounds\n")
    for name in ("versions", "whoami"):
        if name not in results or "error" in results[name]:
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
    if "refresh" in results and "error" not in results["refresh"]:
        res = results["refresh"]
        L.append(f"**refresh** — {res['sessions']} fresh sessions per round, wrk "
                 f"-t{res['wrk_threads']} -c{res['connections']}; ceiling "
                 "`BM_StorageRotationMatched` (bench/micro/storage_bench.cpp): the same number of "
                 "fresh sessions on 64 threads, each rotated as often as the server's were\n")
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
    if "login" in results and "error" not in results["login"]:
        res = results["login"]
        L.append(f"**login** — wrk -t2 -c{res['connections']}, OWASP argon2id (m=19456 KiB, t=2), "
                 f"hashing_threads = cores = {res['cores']}; ceiling = cores ÷ "
                 "`BM_LoginCeilingArgon2idVerifyOwasp/real_time/threads:1`\n")
        L.append("| round | load | myelin logins/s | non-2xx | p50/p99 ms | myelin CPU µs/login | myelin cores busy | one verify (wall / CPU) ms | ceiling logins/s | ratio |")
        L.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for i, x in enumerate(res["rounds"]):
            a, c = x["myelin"], x["ceiling"]
            L.append(f"| {i + 1} | {x['load_before']} | {a['logins_per_s']:.1f} | {a['err_status']} | "
                     f"{ms(a['lat_p50_us']):.1f} / {ms(a['lat_p99_us']):.1f} | "
                     f"{a['cpu_us_per_login'] or 0:,.0f} | {a['cpu_util']:.2f} | {c['verify_ms']:.1f} / "
                     f"{c['verify_cpu_ms']:.1f} | {c['logins_per_s']:.1f} | {x['ratio']:.2f} |")
        L.append("")
        if "diagnostics" in res:
            L.append("argon2id diagnostics (one pass): " + "; ".join(
                f"`{d['name']}` {d['real_ms']:.1f} {d['unit']} wall, {d['cpu_ms']:.1f} {d['unit']} "
                f"CPU, {d['items_per_second']:.1f}/s" for d in res["diagnostics"]) + "\n")
    L.append("Raw figures: `bench/results/raw.json`. Method: `bench/README.md`.\n")
    (RESULTS / "REPORT.md").write_text("\n".join(L))
    return rows


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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short smoke run (1 round, 3 s runs)")
    ap.add_argument("--only", default="", help="comma-separated subset of " + ",".join(BENCHMARKS))
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--duration", type=int, default=None, help="seconds per wrk run")
    args = ap.parse_args()

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
    ctx.rounds = args.rounds or (1 if args.quick else 3)
    ctx.duration = args.duration or (3 if args.quick else 10)
    ctx.warmup = 1 if args.quick else 2
    ctx.micro_time = 1 if args.quick else 3
    ctx.diag_time = 1
    ctx.sessions = 1000 if args.quick else 10000
    ctx.refresh_sessions = 256
    ctx.path = {"versions": "/_matrix/client/versions",
                "whoami": "/_matrix/client/v3/account/whoami"}
    ctx.tmp = Path(tempfile.mkdtemp(prefix="myelin-bench-",
                                    dir=os.environ.get("MYELIN_BENCH_TMP") or None))

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    RESULTS.mkdir(parents=True, exist_ok=True)
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
    (RESULTS / "raw.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    rows = write_report(ctx, results, meta)
    print()
    print(f"{'benchmark':<9} {'mode':<13} {'ratio (range)':<20} myelin | ceiling | CPU µs/req")
    for r in rows:
        print(f"{r['bench']:<9} {r['mode']:<13} {r['ratio']:<20} {r['server']} | {r['ceiling']} | "
              f"{r['cpu']}" + (f" | ERRORS {r['errors']}" if r["errors"] else ""))
    print(f"\nReport: {RESULTS / 'REPORT.md'} ({meta['elapsed_s']:.0f} s)")
    return 1 if any("error" in v for v in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
