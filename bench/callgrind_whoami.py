#!/usr/bin/python3
"""User-space instructions per whoami request, under callgrind (deterministic to a few
instructions; this VM has no hardware counters and its timings drift with the other work on it).

  bench/callgrind_whoami.py [BINARY]        # myelin (default build/myelin): 8 sessions
  bench/callgrind_whoami.py --nginx         # nginx answering a whoami-sized body, same requests

The server runs under `valgrind --tool=callgrind --instr-atstart=no` (myelin: one network
thread, rate limits off, access log off, metrics on, as in run_bench.py). One keep-alive
connection sends exactly the bytes wrk sends with load/whoami.lua (request line, Host,
Authorization), waits for each answer, 500 requests as warm-up, then instrumentation on for N
requests (default 3,000). Prints total instructions / N and leaves the callgrind files in the
scratch folder for callgrind_annotate. Everything on 127.0.0.1; the server is stopped by pid.
"""

import argparse
import glob
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
BODY = '{"user_id":"@bench:localhost","device_id":"WHOAMI00000","is_guest":false}'
PASSWORD = "bench-password-0123"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("server did not start")


def start_myelin(binary, tmp):
    port, mport = free_port(), free_port()
    conf = tmp / "myelin.toml"
    conf.write_text(f"""server_name = "localhost"
public_baseurl = "http://127.0.0.1:{port}/"
[listen]
address = "127.0.0.1"
port = {port}
threads = 1
[database]
url = "sqlite:{tmp}/hs.db"
[registration]
enabled = true
[passwords]
argon2_memory_kib = 8192
argon2_iterations = 1
hashing_threads = 1
[rate_limits]
enabled = false
[metrics]
enabled = true
address = "127.0.0.1"
port = {mport}
[logging]
level = "warn"
access_log = false
""")
    proc = callgrind(tmp, [binary, "serve", "--config", str(conf)])
    wait_port(port, proc)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):  # the HTTP server answers once the start-up is done
        try:
            requests.get(base + "/_matrix/client/versions", timeout=2)
            break
        except requests.RequestException:
            time.sleep(0.2)
    r = requests.post(base + "/_matrix/client/v3/register", timeout=60,
                      json={"username": "bench", "password": PASSWORD,
                            "auth": {"type": "m.login.dummy"}})
    tokens = [r.json()["access_token"]]
    for i in range(7):
        r = requests.post(base + "/_matrix/client/v3/login", timeout=60, json={
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": "bench"},
            "password": PASSWORD, "device_id": f"WHOAMI{i:05d}"})
        tokens.append(r.json()["access_token"])
    return proc, port, tokens


def start_nginx(tmp):
    port = free_port()
    temps = "".join(f"{d}_temp_path {tmp / d};\n" for d in
                    ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    cors = ("add_header Access-Control-Allow-Origin '*' always; "
            "add_header Access-Control-Allow-Methods 'GET, POST, PUT, DELETE, OPTIONS' always; "
            "add_header Access-Control-Allow-Headers "
            "'X-Requested-With, Content-Type, Authorization' always;")
    conf = tmp / "nginx.conf"
    conf.write_text(f"""daemon off; master_process off; worker_processes 1;
pid {tmp}/nginx.pid; error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{ access_log off; keepalive_requests 1000000; server_tokens off; {temps}
  server {{ listen 127.0.0.1:{port}; default_type application/json;
    location / {{ {cors} return 200 '{BODY}'; }} }} }}
""")
    proc = callgrind(tmp, ["nginx", "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(conf)])
    wait_port(port, proc)
    # Any well-formed token: nginx does not look at it.
    return proc, port, ["myat_0123456789abcdefghijABCDEFGHIJ0123456789abc_0AbCdE"]


def callgrind(tmp, argv):
    return subprocess.Popen(["valgrind", "--tool=callgrind", "--instr-atstart=no",
                             f"--callgrind-out-file={tmp}/callgrind.out.%p"] + argv,
                            stdout=subprocess.DEVNULL, stderr=open(tmp / "valgrind.log", "w"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("binary", nargs="?", default=str(REPO / "build" / "myelin"))
    ap.add_argument("--nginx", action="store_true")
    ap.add_argument("-n", type=int, default=3000)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="myelin-callgrind-"))
    proc = None
    try:
        if a.nginx:
            proc, port, tokens = start_nginx(tmp)
        else:
            proc, port, tokens = start_myelin(a.binary, tmp)
        reqs = [(f"GET /_matrix/client/v3/account/whoami HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                 f"Authorization: Bearer {t}\r\n\r\n").encode() for t in tokens]
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pending = b""

        def run(n):
            nonlocal pending
            for i in range(n):
                sock.sendall(reqs[i % len(reqs)])
                data = pending
                while True:
                    end = data.find(b"\r\n\r\n")
                    if end >= 0:
                        head = data[:end].decode()
                        length = int(next(ln.split(":", 1)[1] for ln in head.split("\r\n")
                                          if ln.lower().startswith("content-length:")))
                        if len(data) >= end + 4 + length:
                            break
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise RuntimeError("connection closed")
                    data += chunk
                if not head.startswith("HTTP/1.1 200"):
                    raise RuntimeError(head)
                pending = data[end + 4 + length:]

        run(500)
        subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], capture_output=True)
        run(a.n)
        subprocess.run(["callgrind_control", "-i", "off", str(proc.pid)], capture_output=True)
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], capture_output=True)
        time.sleep(1)
    finally:
        if proc:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    total = 0
    for name in glob.glob(f"{tmp}/callgrind.out.*"):
        for line in open(name):
            if line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split()[1]))
    print(f"{'nginx' if a.nginx else a.binary}: {total // a.n:,} instructions per request "
          f"({a.n:,} requests); callgrind files in {tmp}")


if __name__ == "__main__":
    sys.exit(main())
