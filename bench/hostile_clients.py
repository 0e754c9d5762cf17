#!/usr/bin/python3
"""Do hostile clients slow down everyone else? whoami latency, quiet vs during each attack.

One myelin server (SQLite, cheap argon2id, 2 network threads, request_timeout 2 s,
max_connections 300, max_connections_per_ip 100, rate limits ON with no trusted proxies, the
bystander's account exempt from them so that its figures show the server, not its own budget).
The attacker connects from 127.0.0.2, the bystander from 127.0.0.1 (both loopback; all traffic
goes to 127.0.0.1). For each attack, the bystander sends GET /account/whoami on one keep-alive
connection, one request every 5 ms, for --duration seconds while the attack runs in
--attackers threads (each loops until the time is up; the slow and silent attacks hold 45
connections per thread, 90 in all, under the cap of 100 per address), and we report the
bystander's p50/p99/max and errors, the ratio of its p50/p99 to the quiet run of the same round,
and what the attacker got (answers by status class, connections closed on it). Attacks: see
ATTACKS below.

Usage: bench/hostile_clients.py [--rounds N] [--duration S] [--attackers N] [--output FILE]
Environment: MYELIN_BUILD (default build/), MYELIN_BENCH_TMP (parent of the scratch folder).
Writes bench/results/hostile_clients.json. Needs /usr/bin/python3 with requests, jsonschema, yaml
(the integration harness, tests/integration/myelin_harness.py, starts and stops the server).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import select
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))
os.environ.setdefault("MYELIN_BINARY", str(Path(os.environ.get("MYELIN_BUILD", ROOT / "build"))
                                          / "myelin"))
import myelin_harness as h  # noqa: E402

ATTACKER_IP = "127.0.0.2"
V3 = "/_matrix/client/v3"
WHOAMI = V3 + "/account/whoami"


def connect(port, timeout=5.0):
    s = socket.create_connection((h.LOCAL, port), timeout=timeout, source_address=(ATTACKER_IP, 0))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_statuses(sock, stats, until):
    """Reads from `sock` until it closes or `until`; counts the status lines it sees."""
    buf = b""
    while time.monotonic() < until:
        r, _, _ = select.select([sock], [], [], 0.05)
        if not r:
            continue
        try:
            chunk = sock.recv(65536)
        except OSError:
            chunk = b""
        if not chunk:
            stats["closed"] += 1
            return
        buf += chunk
        while b"HTTP/1.1 " in buf:
            i = buf.index(b"HTTP/1.1 ")
            code = buf[i + 9:i + 12]
            if len(code) < 3:
                break
            stats[code.decode()[0] + "xx"] += 1
            buf = buf[i + 12:]


# ---------------------------------------------------------------- attacks (each loops until `end`)

def slow(first, drip, conns):
    def attack(port, end, stats, ctx):
        socks = []
        while time.monotonic() < end:
            while len(socks) < conns:
                try:
                    s = connect(port)
                    s.sendall(first)
                    socks.append(s)
                    stats["connections"] += 1
                except OSError:
                    stats["connect-failed"] += 1
                    break
            for s in list(socks):
                try:
                    s.send(drip)
                except OSError:
                    pass
            readable, _, _ = select.select(socks, [], [], 0.25)
            for s in readable:
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if data.startswith(b"HTTP/1.1 "):
                    stats[data[9:10].decode() + "xx"] += 1
                else:
                    stats["closed"] += 1
                s.close()
                socks.remove(s)
        for s in socks:
            s.close()
    return attack


def silent(conns):
    def attack(port, end, stats, ctx):
        socks = []
        while time.monotonic() < end:
            while len(socks) < conns:
                try:
                    socks.append(connect(port))
                    stats["connections"] += 1
                except OSError:
                    stats["connect-failed"] += 1
                    break
            readable, _, _ = select.select(socks, [], [], 0.25)
            for s in readable:
                stats["closed"] += 1
                s.close()
                socks.remove(s)
        for s in socks:
            s.close()
    return attack


def connection_flood(batch):
    request = h.build_request("GET", "/_matrix/client/versions")

    def attack(port, end, stats, ctx):
        while time.monotonic() < end:
            socks = []
            for _ in range(batch):
                try:
                    s = connect(port)
                    s.sendall(request)
                    socks.append(s)
                    stats["connections"] += 1
                except OSError:
                    stats["connect-failed"] += 1
            until = min(end, time.monotonic() + 2)
            pending = list(socks)
            while pending and time.monotonic() < until:
                readable, _, _ = select.select(pending, [], [], 0.05)
                for s in readable:
                    try:
                        data = s.recv(4096)
                    except OSError:
                        data = b""
                    if data.startswith(b"HTTP/1.1 "):
                        stats[data[9:10].decode() + "xx"] += 1
                    else:
                        stats["closed"] += 1
                    pending.remove(s)
            for s in socks:
                s.close()
    return attack


def pipelined(count, read):
    def attack(port, end, stats, ctx):
        one = h.build_request("GET", WHOAMI, {"Authorization": "Bearer " + ctx["attacker_token"]})
        while time.monotonic() < end:
            try:
                s = connect(port, timeout=0.5)
            except OSError:
                stats["connect-failed"] += 1
                continue
            stats["connections"] += 1
            if read:
                sender = threading.Thread(target=lambda: _sendall(s, one * count), daemon=True)
                sender.start()
                read_statuses(s, stats, min(end, time.monotonic() + 10))
                sender.join(1)
            else:
                stop = min(end, time.monotonic() + 3)
                while time.monotonic() < stop:
                    try:
                        s.sendall(one * 200)
                        stats["sent"] += 200
                    except OSError:
                        break
            s.close()
    return attack


def _sendall(s, data):
    try:
        s.sendall(data)
    except OSError:
        pass


def bodies(kind):
    def requests_for(ctx):
        auth = {"Authorization": "Bearer " + ctx["attacker_token"],
                "Content-Type": "application/json"}
        if kind == "huge-json":
            return [
                ("POST", V3 + "/login", auth, b'{"type":"' + b"x" * 60000 + b'"}'),
                ("POST", V3 + "/login", auth, b"[" * 60000),
                ("POST", V3 + "/register", auth,
                 b"{" + b",".join(b'"k%d":1' % i for i in range(6000)) + b"}"),
                ("POST", V3 + "/login", auth, b'{"type":' + b"9" * 60000 + b"}"),
                ("POST", V3 + "/account/password", auth, b'{"a":[' + b",".join([b"{}"] * 10000)
                 + b"]}"),
            ]
        if kind == "bad-encoding":
            return [
                ("POST", V3 + "/login", auth, b'{"type":"\xff\xfe"}'),
                ("POST", V3 + "/login", auth, b'{"type":"m.login.password","user":"a\\u0000b"}'),
                ("GET", V3 + "/devices/%FF", auth, b""),
                ("GET", V3 + "/devices/A%00", auth, b""),
                ("PUT", V3 + "/devices/%C0%AF", auth, b'{"display_name":"x"}'),
                ("POST", V3 + "/refresh", auth, b'{"refresh_token":1e400}'),
                ("POST", V3 + "/delete_devices", auth, b'{"devices":[1,{"a":null}]}'),
                ("GET", V3 + "/register/available?username=%D0%B0lice", {}, b""),
            ]
        if kind == "long-headers":
            return [
                ("GET", WHOAMI, {"X-Long": "v" * 20000}, b""),
                ("GET", WHOAMI, {"Authorization": "Bearer " + "a" * 15000}, b""),
                ("GET", V3 + "/devices/" + "D" * 15000, auth, b""),
            ]
        raise ValueError(kind)

    def attack(port, end, stats, ctx):
        reqs = [h.build_request(m, p, hd, b) for m, p, hd, b in requests_for(ctx)]
        i = 0
        while time.monotonic() < end:
            try:
                s = connect(port)
            except OSError:
                stats["connect-failed"] += 1
                continue
            stats["connections"] += 1
            try:
                s.sendall(reqs[i % len(reqs)])
            except OSError:
                pass
            i += 1
            until = min(end + 5, time.monotonic() + 5)
            buf = b""
            while time.monotonic() < until and b"\r\n" not in buf:
                r, _, _ = select.select([s], [], [], 0.05)
                if r:
                    try:
                        chunk = s.recv(4096)
                    except OSError:
                        chunk = b""
                    if not chunk:
                        break
                    buf += chunk
            if buf.startswith(b"HTTP/1.1 "):
                stats[buf[9:10].decode() + "xx"] += 1
            else:
                stats["closed"] += 1
            s.close()
    return attack


ATTACKS = {
    "quiet": None,
    "slowloris-headers": slow(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ", b"a", 45),
    "slowloris-body": slow(b"POST /_matrix/client/v3/login HTTP/1.1\r\nHost: x\r\n"
                           b"Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n{",
                           b" ", 45),
    "silent-connections": silent(45),
    "connection-flood": connection_flood(400),
    "pipelined-flood": pipelined(3000, read=True),
    "pipelined-no-read": pipelined(0, read=False),
    "huge-json": bodies("huge-json"),
    "bad-encoding": bodies("bad-encoding"),
    "long-headers": bodies("long-headers"),
}


# ---------------------------------------------------------------- the bystander

def bystander(port, token, end, latencies, errors):
    headers = {"Authorization": "Bearer " + token}
    conn = None
    while time.monotonic() < end:
        start = time.monotonic()
        try:
            if conn is None:
                conn = h.RawConnection(port, timeout=10)
            conn.send_request("GET", WHOAMI, headers)
            r = conn.read_response(timeout=10)
            if r.status == 200:
                latencies.append(time.monotonic() - start)
            else:
                errors[str(r.status)] += 1
        except Exception as e:  # noqa: BLE001
            errors[type(e).__name__] += 1
            if conn is not None:
                conn.close()
            conn = None
        time.sleep(0.005)
    if conn is not None:
        conn.close()


def pct(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def run_one(server, name, attack, args, ctx):
    latencies, errors, stats = [], Counter(), Counter()
    end = time.monotonic() + args.duration
    threads = []
    if attack is not None:
        for _ in range(args.attackers):
            t = threading.Thread(target=attack, args=(server.port, end, stats, ctx), daemon=True)
            t.start()
            threads.append(t)
        time.sleep(0.3)  # the attack is under way before the measurement starts
    bystander(server.port, ctx["bystander_token"], end, latencies, errors)
    for t in threads:
        t.join(15)
    alive = server.is_running()
    versions = server.get("/_matrix/client/versions", timeout=10).status_code if alive else None
    return {
        "attack": name, "n": len(latencies),
        "p50_ms": pct(latencies, 50) * 1000, "p99_ms": pct(latencies, 99) * 1000,
        "max_ms": max(latencies) * 1000 if latencies else float("nan"),
        "bystander_errors": dict(errors), "attacker": dict(stats),
        "server_alive": alive, "versions_after": versions,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--attackers", type=int, default=2)
    ap.add_argument("--only", default="", help="comma-separated attack names")
    ap.add_argument("--output", default=str(ROOT / "bench" / "results" / "hostile_clients.json"))
    args = ap.parse_args()
    names = [n for n in ATTACKS if not args.only or n in args.only.split(",") or n == "quiet"]

    parent = os.environ.get("MYELIN_BENCH_TMP") or None
    tmp = Path(tempfile.mkdtemp(prefix="myelin-hostile-", dir=parent))
    server = None
    rounds = []
    try:
        server = h.start_server(tmp, scope="bench", listen={"threads": 2},
                                limits={"request_timeout": "2s", "max_connections": 300,
                                        "max_connections_per_ip": 100},
                                logging={"level": "warn", "access_log": False})
        import client_helpers as c  # noqa: E402  (needs the harness on sys.path)
        by = c.register_ok(server, c.unique_name("bystander"))
        mallory = c.register_ok(server, c.unique_name("mallory"))
        # Rate limits on, the bystander exempt: restart with the final config.
        server.stop()
        server.config["rate_limits"] = {"enabled": True, "trusted_proxies": [],
                                        "exempt_users": [by.user_id]}
        server.config_path.write_text(h.to_toml(server.config))
        server.start()
        ctx = {"bystander_token": by.access_token, "attacker_token": mallory.access_token}
        for rnd in range(args.rounds):
            results = []
            for name in names:
                r = run_one(server, name, ATTACKS[name], args, ctx)
                results.append(r)
                print(f"round {rnd + 1} {name:20s} p50 {r['p50_ms']:6.2f} ms  p99 "
                      f"{r['p99_ms']:6.2f} ms  max {r['max_ms']:7.2f} ms  n={r['n']:5d}  "
                      f"errors={r['bystander_errors']}  attacker={r['attacker']}", flush=True)
            rounds.append(results)
        assert server.is_running(), "the server died"
    finally:
        if server is not None:
            h.stop_servers([server], check=False)
        shutil.rmtree(tmp, ignore_errors=True)

    # Summary: medians over rounds, ratios to the quiet run of the same round.
    print()
    print(f"{'attack':20s} {'p50 ms':>8s} {'p99 ms':>8s} {'max ms':>8s} {'p50 ×':>6s} "
          f"{'p99 ×':>6s}  bystander errors / attacker answers")
    summary = []
    for i, name in enumerate(names):
        rows = [rnd[i] for rnd in rounds]
        quiet = [rnd[0] for rnd in rounds]
        p50 = statistics.median(r["p50_ms"] for r in rows)
        p99 = statistics.median(r["p99_ms"] for r in rows)
        mx = statistics.median(r["max_ms"] for r in rows)
        r50 = statistics.median(r["p50_ms"] / q["p50_ms"] for r, q in zip(rows, quiet))
        r99 = statistics.median(r["p99_ms"] / q["p99_ms"] for r, q in zip(rows, quiet))
        errs = sum(sum(r["bystander_errors"].values()) for r in rows)
        attacker = Counter()
        for r in rows:
            attacker.update(r["attacker"])
        summary.append({"attack": name, "p50_ms": p50, "p99_ms": p99, "max_ms": mx,
                        "p50_ratio": r50, "p99_ratio": r99, "bystander_errors": errs,
                        "attacker": dict(attacker)})
        print(f"{name:20s} {p50:8.2f} {p99:8.2f} {mx:8.2f} {r50:6.2f} {r99:6.2f}  {errs} / "
              f"{dict(attacker)}")
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.node(), "cpus": os.cpu_count(),
                               "args": vars(args), "rounds": rounds, "summary": summary},
                              indent=1))
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
