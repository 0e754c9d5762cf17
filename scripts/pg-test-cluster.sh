#!/usr/bin/env bash
# Starts a throwaway PostgreSQL 15 cluster for the tests and removes it again.
#
#   scripts/pg-test-cluster.sh COMMAND [ARGS...]   runs COMMAND with MYELIN_TEST_POSTGRES_URL set,
#                                                  then stops the cluster; exits with COMMAND's status
#   scripts/pg-test-cluster.sh                     prints the URL and keeps the cluster until Ctrl-C
#
# Besides MYELIN_TEST_POSTGRES_URL, COMMAND sees MYELIN_TEST_POSTGRES_CTL, a script that runs
# pg_ctl on this cluster as its owner (`$MYELIN_TEST_POSTGRES_CTL -m fast stop`, `... start`,
# `... restart`; it keeps the port and settings), and MYELIN_TEST_POSTGRES_LOG, the server's log.
#
# The cluster lives in a fresh temporary folder (initdb from Debian's postgresql-15), listens on
# 127.0.0.1 only, on a free port, with fsync on; its socket folder is inside that temporary folder.
# Connections over TCP need the superuser's random password, which is part of the URL. initdb
# refuses to run as root, so as root the cluster belongs to the `postgres` system user (created by
# Debian's postgresql package). Everything is stopped and deleted on exit, also on failure or
# Ctrl-C.
set -euo pipefail

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
for tool in initdb pg_ctl; do
  if [ ! -x "$PG_BIN/$tool" ]; then
    echo "pg-test-cluster: $PG_BIN/$tool not found; install Debian's postgresql package" \
         "(scripts/install-deps.sh)" >&2
    exit 2
  fi
done

as_owner=()
if [ "$(id -u)" -eq 0 ]; then
  owner=${PG_TEST_CLUSTER_USER:-postgres}
  if ! id "$owner" >/dev/null 2>&1; then
    echo "pg-test-cluster: running as root needs the system user '$owner' (from the postgresql" \
         "package) to own the cluster" >&2
    exit 2
  fi
  as_owner=(runuser -u "$owner" --)
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/myelin-pg.XXXXXX")
chmod 0755 "$tmp"
data="$tmp/data"
sock="$tmp/sock"
log="$tmp/postgres.log"
pwfile="$tmp/pwfile"
mkdir -p "$sock"
password=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
printf '%s\n' "$password" > "$pwfile"
if [ ${#as_owner[@]} -gt 0 ]; then chown -R "$owner" "$tmp"; fi

started=0
sleeper=""
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [ -n "$sleeper" ]; then kill "$sleeper" 2>/dev/null || true; fi
  if [ "$started" -eq 1 ]; then
    "${as_owner[@]}" "$PG_BIN/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$tmp"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

"${as_owner[@]}" "$PG_BIN/initdb" -D "$data" -U postgres --pwfile="$pwfile" -E UTF8 \
  --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256 >"$tmp/initdb.log" 2>&1 || {
  cat "$tmp/initdb.log" >&2
  exit 2
}
rm -f "$pwfile"

server_options() {
  echo "-p $1 -c listen_addresses=127.0.0.1 -c unix_socket_directories=$sock -c fsync=on -c max_connections=200"
}

# A port chosen free can be taken before the server binds it: try a few.
for attempt in 1 2 3 4 5; do
  port=$(free_port)
  if "${as_owner[@]}" "$PG_BIN/pg_ctl" -D "$data" -l "$log" -w -t 60 -o "$(server_options "$port")" \
      start >/dev/null 2>&1; then
    started=1
    break
  fi
  echo "pg-test-cluster: start attempt $attempt on port $port failed" >&2
done
if [ "$started" -ne 1 ]; then
  cat "$log" >&2 || true
  exit 2
fi

# Fault tests stop and start the cluster under a running server: pg_ctl as the cluster's owner,
# on its data folder, with the same port and settings. The cleanup above stops it whatever state
# a test leaves it in.
ctl="$tmp/pg-ctl"
{
  echo '#!/usr/bin/env bash'
  echo '# pg_ctl for the throwaway cluster of scripts/pg-test-cluster.sh: start, stop, restart, status'
  printf 'exec'
  printf ' %q' "${as_owner[@]}" "$PG_BIN/pg_ctl" -D "$data" -l "$log" -w -t 60 \
    -o "$(server_options "$port")"
  echo ' "$@"'
} >"$ctl"
chmod 0755 "$ctl"

export MYELIN_TEST_POSTGRES_URL="postgresql://postgres:$password@127.0.0.1:$port/postgres"
export MYELIN_TEST_POSTGRES_CTL="$ctl"
export MYELIN_TEST_POSTGRES_LOG="$log"
echo "pg-test-cluster: PostgreSQL listening on 127.0.0.1:$port (data in $data)" >&2

if [ $# -eq 0 ]; then
  echo "MYELIN_TEST_POSTGRES_URL=$MYELIN_TEST_POSTGRES_URL"
  echo "pg-test-cluster: Ctrl-C stops and deletes the cluster" >&2
  # In the background and waited for, so that Ctrl-C or SIGTERM runs the cleanup at once.
  while true; do
    sleep 3600 &
    sleeper=$!
    wait "$sleeper"
  done
fi

set +e
"$@"
status=$?
set -e
exit "$status"
