#!/usr/bin/python3
"""How fast does one instance learn what another did? Cross-instance propagation latency.

Two myelin instances share one PostgreSQL database and one key file (the deployment of
docs/deploy.md, started by tests/integration/multi_instance.py; no nginx: each request goes to
the instance it names). Each trial warms the token in both instances' caches, makes the change on
one instance, and then polls the OTHER instance with GET /account/whoami on a kept-alive
connection, back to back, until it answers 401. The time from the change's answer to that 401 is
the propagation latency. Directions alternate (A->B, B->A).

  revocation  POST /logout on one instance -> the access token is refused by the other
  refresh     POST /refresh on one instance, then the first use of the new access token there
              -> the OLD access token is refused by the other (docs/architecture.md: the old
              access token dies at the first use of the new one)

Reports p50/p99/max per series (and the poll round trip, the resolution of the measurement).
A trial that does not propagate within --timeout counts as a timeout; after 3 timeouts in a row
the series stops ("does not propagate").

Needs a PostgreSQL cluster: with MYELIN_TEST_POSTGRES_URL unset it runs itself under
scripts/pg-test-cluster.sh (a throwaway cluster, removed afterwards). Everything on 127.0.0.1;
every server started here is stopped here. Writes bench/results/cross_instance.json.
Usage: bench/cross_instance.py [--trials N] [--timeout S] [--only revocation,refresh]
                               [--output FILE]
Environment: MYELIN_BUILD (default build/), MYELIN_BENCH_TMP (parent of the scratch folder).
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUILD = Path(os.environ.get("MYELIN_BUILD", REPO / "build"))
RESULTS = REPO / "bench" / "results"
SERIES = ("revocation", "refresh")
PASSWORD = "bench-password-0123"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=200, help="trials per series (default 200)")
    p.add_argument("--timeout", type=float, default=2.0,
                   help="seconds a trial may take before it counts as not propagated")
    p.add_argument("--only", default=",".join(SERIES), help="revocation,refresh")
    p.add_argument("--output", default=str(RESULTS / "cross_instance.json"))
    args = p.parse_args()
    args.only = [s for s in args.only.split(",") if s]
    for s in args.only:
        if s not in SERIES:
            p.error(f"unknown series {s!r}")
    return args


def under_cluster():
    """Re-runs this script under scripts/pg-test-cluster.sh when no cluster URL is set."""
    if os.environ.get("MYELIN_TEST_POSTGRES_URL"):
        return
    script = REPO / "scripts" / "pg-test-cluster.sh"
    os.execv(str(script), [str(script), sys.executable, str(Path(__file__).resolve()),
                           *sys.argv[1:]])


def percentile(values, q):
    ordered = sorted(values)
    if not ordered:
        return None
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary(name, latencies, timeouts, trials):
    out = {"series": name, "trials": trials, "measured": len(latencies), "timeouts": timeouts}
    if latencies:
        out.update({"p50_ms": percentile(latencies, 50) * 1000,
                    "p99_ms": percentile(latencies, 99) * 1000,
                    "max_ms": max(latencies) * 1000,
                    "mean_ms": statistics.fmean(latencies) * 1000})
    return out


def main():
    args = parse_args()
    under_cluster()
    os.environ["MYELIN_INTEGRATION_BACKEND"] = "postgres"
    os.environ.setdefault("MYELIN_BINARY", str(BUILD / "myelin"))
    sys.path.insert(0, str(REPO / "tests" / "integration"))
    import requests  # noqa: E402  (Debian's python3-requests)

    import multi_instance as mi  # noqa: E402
    import myelin_harness as h  # noqa: E402

    if not h.binary_path().exists():
        sys.exit(f"cross_instance: {h.binary_path()} not found (build first, or set MYELIN_BUILD)")
    tmp = Path(tempfile.mkdtemp(prefix="myelin-xinst-", dir=os.environ.get("MYELIN_BENCH_TMP")))
    servers = []
    try:
        servers = mi.start_instances(tmp, 2, {
            "listen": {"threads": 2},
            "logging": {"level": "warn", "access_log": False},
            "tokens": {"access_token_lifetime": "1h"},
        }, scope="bench")
        a, b = servers

        def client():
            s = requests.Session()
            s.trust_env = False
            return s

        clients = {a.port: client(), b.port: client()}

        def post(server, path, body, token=None):
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            r = clients[server.port].post(server.url(path), json=body, headers=headers,
                                          timeout=10)
            if r.status_code != 200:
                raise RuntimeError(f"POST {path} on {server.base}: {r.status_code} {r.text[:300]}")
            return r.json()

        def whoami_status(server, token):
            return clients[server.port].get(server.url("/_matrix/client/v3/account/whoami"),
                                            headers={"Authorization": f"Bearer {token}"},
                                            timeout=10).status_code

        user = "xinst"
        post(a, "/_matrix/client/v3/register",
             {"username": user, "password": PASSWORD, "auth": {"type": "m.login.dummy"}})

        def login(server, refresh):
            return post(server, "/_matrix/client/v3/login",
                        {"type": "m.login.password", "password": PASSWORD,
                         "identifier": {"type": "m.id.user", "user": user},
                         "refresh_token": refresh})

        def warm(token, *servers_):
            for s in servers_:
                if whoami_status(s, token) != 200:
                    raise RuntimeError(f"token refused by {s.base} before the change")

        def wait_refused(server, token, since, timeout):
            polls = 0
            while True:
                status = whoami_status(server, token)
                polls += 1
                elapsed = time.perf_counter() - since
                if status == 401:
                    return elapsed, polls
                if status != 200:
                    raise RuntimeError(f"whoami on {server.base}: {status}")
                if elapsed > timeout:
                    return None, polls

        # The poll round trip: how finely a latency can be told apart.
        probe = login(a, False)["access_token"]
        rtts = []
        for _ in range(200):
            t0 = time.perf_counter()
            whoami_status(b, probe)
            rtts.append(time.perf_counter() - t0)
        poll_rtt_ms = statistics.median(rtts) * 1000

        results = []
        for series in args.only:
            latencies, timeouts, streak, done = [], 0, 0, 0
            for i in range(args.trials):
                origin, other = (a, b) if i % 2 == 0 else (b, a)
                if series == "revocation":
                    token = login(origin, False)["access_token"]
                    warm(token, origin, other)
                    post(origin, "/_matrix/client/v3/logout", {}, token)
                    since = time.perf_counter()
                else:
                    first = login(origin, True)
                    token = first["access_token"]
                    warm(token, origin, other)
                    new = post(origin, "/_matrix/client/v3/refresh",
                               {"refresh_token": first["refresh_token"]})
                    warm(new["access_token"], origin)  # the first use: ends the old token
                    since = time.perf_counter()
                latency, _polls = wait_refused(other, token, since, args.timeout)
                done += 1
                if latency is None:
                    timeouts += 1
                    streak += 1
                    if streak >= 3:
                        break
                else:
                    streak = 0
                    latencies.append(latency)
            results.append(summary(series, latencies, timeouts, done))

        h.stop_servers(servers, check=True)
    finally:
        h.stop_servers(servers, check=False)
        shutil.rmtree(tmp, ignore_errors=True)

    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    report = {"commit": commit, "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
              "host": platform.node(), "cores": os.cpu_count(), "trials": args.trials,
              "timeout_s": args.timeout, "poll_rtt_ms": poll_rtt_ms, "series": results}
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")

    print(f"cross-instance propagation, commit {commit}, {report['date']}, "
          f"poll round trip {poll_rtt_ms:.2f} ms (median)")
    print(f"{'series':<12} {'trials':>6} {'p50':>9} {'p99':>9} {'max':>9}  timeouts (> "
          f"{args.timeout:g} s)")
    for r in results:
        if r["measured"]:
            print(f"{r['series']:<12} {r['trials']:>6} {r['p50_ms']:>7.1f}ms {r['p99_ms']:>7.1f}ms "
                  f"{r['max_ms']:>7.1f}ms  {r['timeouts']}")
        else:
            print(f"{r['series']:<12} {r['trials']:>6} {'-':>9} {'-':>9} {'-':>9}  "
                  f"{r['timeouts']} (does not propagate)")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
