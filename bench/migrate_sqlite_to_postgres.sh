#!/usr/bin/env bash
# Time and peak memory of `myelin admin migrate-sqlite-to-postgres` on a large database:
# N sessions (default 1,000,000) with an access token and a refresh token each (a sealed
# successor of 120 bytes on every refresh token) and N/10 users, written straight into a fresh
# SQLite database, then copied into a throwaway PostgreSQL cluster (scripts/pg-test-cluster.sh).
#
#   bench/migrate_sqlite_to_postgres.sh [N]      MYELIN_BUILD=build (default)
#
# Needs sqlite3, psql and GNU time. Everything lives in a temporary folder deleted at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${MYELIN_TEST_POSTGRES_URL:-}" ]; then
  exec scripts/pg-test-cluster.sh "$0" "$@"
fi
N=${1:-1000000}
BIN=$(realpath "${MYELIN_BUILD:-build}/myelin")
tmp=$(mktemp -d "${TMPDIR:-/tmp}/myelin-migrate-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/data"
printf 'server_name = "localhost"\n[database]\nurl = "sqlite:data/homeserver.db"\n' > "$tmp/hs.toml"
"$BIN" admin --config "$tmp/hs.toml" registration-token list >/dev/null  # creates the schema
echo "filling SQLite with $N sessions ..." >&2
sqlite3 "$tmp/data/homeserver.db" <<SQL
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $N / 10)
INSERT INTO users (user_id, password_hash, created_ts)
  SELECT '@u' || i || ':localhost', '\$argon2id\$v=19\$m=19456,t=2,p=1\$c2FsdA\$aGFzaA', i FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $N)
INSERT INTO sessions (user_id, device_id, refreshable, created_ts, ends_ts, current_generation,
                      used_generation)
  SELECT '@u' || (i % ($N / 10)) || ':localhost', 'DEV' || i, 1, i, i + 1000, 1, 0 FROM n;
INSERT INTO access_tokens SELECT randomblob(32), session_id, 0, created_ts, 0 FROM sessions;
INSERT INTO refresh_tokens
  SELECT randomblob(32), session_id, 0, created_ts, 0, randomblob(120) FROM sessions;
COMMIT;
SQL
ls -l "$tmp/data/homeserver.db" >&2
psql -q "$MYELIN_TEST_POSTGRES_URL" -c "CREATE DATABASE migrate_bench"
/usr/bin/time -f "wall %e s, peak RSS %M KiB" \
  "$BIN" admin migrate-sqlite-to-postgres --from "$tmp/data/homeserver.db" \
  --to "${MYELIN_TEST_POSTGRES_URL%/*}/migrate_bench" 2>&1 | grep -v '^copying' | sed -n '1,13p;/^wall/p'
