#!/usr/bin/python3
"""Pinned whoami (or /versions) of several myelin binaries and nginx, interleaved in one run.

  bench/compare_whoami.py main=/tmp/main-build/myelin new=build/myelin
  bench/compare_whoami.py --versions --rounds 3 main=... new=...
  bench/compare_whoami.py --syscalls --rounds 1 main=... new=...   # + perf stat counts

run_bench.py compares one binary with its ceiling; this compares binaries with each other (and
nginx) on one database, the servers started once, each round running every server back to back
(order reversed every other round). Pinned as run_bench.py's pinned mode: each server on core 0
with one network thread (nginx one worker), `wrk -t1 -c64` on core 1; the servers are
run_bench.py's (same configuration, same nginx answer). Reports per server the median req/s, CPU
µs per request split into user and system time (from /proc/<pid>/stat of the server and its
children), and the ratio to nginx of the same round. --syscalls adds `perf stat` counts of
system calls per request (the syscalls tracepoints; needs perf and access to them), which slow
the servers: read its CPU figures apart.
"""

import argparse
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run_bench as rb  # noqa: E402

SYSCALL_EVENTS = [
    ("all", ["-e", "raw_syscalls:sys_enter"]),
    ("recvfrom", ["-e", "syscalls:sys_enter_recvfrom"]),
    ("recvfrom EAGAIN", ["-e", "syscalls:sys_exit_recvfrom", "--filter", "ret == -11"]),
    ("sendmsg", ["-e", "syscalls:sys_enter_sendmsg"]),
    ("writev", ["-e", "syscalls:sys_enter_writev"]),
    ("epoll_wait", ["-e", "syscalls:sys_enter_epoll_wait"]),
    ("epoll_ctl", ["-e", "syscalls:sys_enter_epoll_ctl"]),
    ("futex", ["-e", "syscalls:sys_enter_futex"]),
    ("timerfd_settime", ["-e", "syscalls:sys_enter_timerfd_settime"]),
]


class Ctx:
    def __init__(self, tmp):
        self.tmp = tmp


def cpu_split(pids):
    user = system = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            user += int(fields[11])
            system += int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return user / rb.CLK_TCK, system / rb.CLK_TCK


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--sessions", type=int, default=10000)
    ap.add_argument("--versions", action="store_true", help="GET /versions instead of whoami")
    ap.add_argument("--syscalls", action="store_true")
    ap.add_argument("binaries", nargs="+", metavar="NAME=PATH")
    a = ap.parse_args()
    binaries = dict(b.split("=", 1) for b in a.binaries)
    path = "/_matrix/client/versions" if a.versions else "/_matrix/client/v3/account/whoami"
    script = "report.lua" if a.versions else "whoami.lua"
    tmp = Path(tempfile.mkdtemp(prefix="myelin-compare-"))
    ctx = Ctx(tmp)
    servers = {}
    try:
        data = tmp / "data"
        token_file = tmp / "tokens.txt"
        rb.MYELIN = Path(next(iter(binaries.values())))
        setup = rb.Myelin(ctx, "setup", data, 2)
        try:
            rb.register(setup.base, "bench", rb.PASSWORD)
            devices = [f"WHOAMI{i:05d}" for i in range(a.sessions)]
            logins = rb.login_many(setup.base, "bench", devices, refresh=False)
            token_file.write_text("".join(x["access_token"] + "\n" for x in logins))
        finally:
            setup.stop()
        for name, binary in binaries.items():
            rb.MYELIN = Path(binary)
            servers[name] = rb.Myelin(ctx, name, data, 1, cpus="0")
        first = servers[next(iter(binaries))]
        r = rb.http().get(first.base + path, timeout=5,
                          headers={"Authorization": "Bearer " + logins[0]["access_token"]})
        servers["nginx"] = rb.Nginx(ctx, "nginx", 1, r.text, r.headers["Content-Type"],
                                    rb.copy_headers(r), cpus="0")

        def run(name, duration, measure=True):
            srv = servers[name]
            pids = [srv.server.pid] + rb.proc_children(srv.server.pid)
            perf = None
            counts = tmp / f"perf-{name}.csv"
            if measure and a.syscalls:
                argv = ["perf", "stat", "-x,", "-o", str(counts), "-p",
                        ",".join(map(str, pids))]
                for _, event in SYSCALL_EVENTS:
                    argv += event
                perf = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
                time.sleep(1)
            u0, s0 = cpu_split(pids)
            w = rb.run_wrk(srv.base + path, 1, 64, duration, script, cpus="1",
                           env={"MYELIN_TOKENS": str(token_file)})
            u1, s1 = cpu_split(pids)
            out = {"rps": w["rps"], "errors": w["errors"],
                   "user": (u1 - u0) * 1e6 / w["requests"], "sys": (s1 - s0) * 1e6 / w["requests"]}
            if perf:
                perf.send_signal(signal.SIGINT)
                perf.wait(timeout=30)
                values = [ln.split(",")[0] for ln in counts.read_text().splitlines()
                          if ln and not ln.startswith("#")]
                out["syscalls"] = {label: int(v) / w["requests"]
                                   for (label, _), v in zip(SYSCALL_EVENTS, values)
                                   if v.strip().isdigit()}
            return out

        names = list(servers)
        for name in names:  # warm-up: token cache, connections
            run(name, 2, measure=False)
        results = {name: [] for name in names}
        for r in range(a.rounds):
            order = names if r % 2 == 0 else names[::-1]
            line = []
            for name in order:
                x = run(name, a.duration)
                results[name].append(x)
                line.append(f"{name} {x['rps']:,.0f}/s cpu {x['user']:.2f}+{x['sys']:.2f} µs"
                            f"{' errors %d' % x['errors'] if x['errors'] else ''}")
                time.sleep(0.5)
            print(f"round {r + 1} (load {rb.loadavg()}): " + " | ".join(line), flush=True)
        print(f"medians over {a.rounds} rounds ({path}):")
        for name in names:
            xs = results[name]
            ratio = ""
            if name != "nginx":
                per_round = [x["rps"] / y["rps"] for x, y in zip(xs, results["nginx"])]
                ratio = (f", ratio to nginx {statistics.median(per_round):.2f} "
                         f"({min(per_round):.2f}-{max(per_round):.2f})")
            cpu = statistics.median(x["user"] + x["sys"] for x in xs)
            print(f"  {name}: {statistics.median(x['rps'] for x in xs):,.0f} req/s, CPU "
                  f"{cpu:.2f} µs/request (user {statistics.median(x['user'] for x in xs):.2f}, "
                  f"sys {statistics.median(x['sys'] for x in xs):.2f}){ratio}")
            if a.syscalls:
                calls = xs[-1]["syscalls"]
                print("    system calls per request: " +
                      ", ".join(f"{k} {v:.2f}" for k, v in calls.items()))
    finally:
        for s in servers.values():
            s.stop()
        rb.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
