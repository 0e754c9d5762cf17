#!/usr/bin/python3
"""Fills a Myelin SQLite database with N live sessions, straight into the tables.

Creating a million sessions through POST /login would take hours (argon2id per login); the
scale benchmarks need the database a million logins would leave behind. This writes the same
rows a login writes (users, devices, sessions, access_tokens; see
src/myelin/service/session_service.cpp create_session and the schema in
src/myelin/storage/sqlite/migrations.cpp), with token hashes the server can verify:

  token      myat_<43 base62 chars, uniform by rejection sampling>_<base62 CRC-32 of the rest>
  token_hash keyed BLAKE2b-256 (libsodium crypto_generichash) of the token's ASCII bytes, keyed
             with subkey 1 / context "tokenhsh" of the server secret (crypto_kdf_derive_from_key
             = BLAKE2b-256 of nothing, keyed with the secret, salt = subkey id little-endian,
             personal = context); docs/tokens.md, src/myelin/auth/token_hasher.cpp

Only `sample` sessions get a raw token (returned, for whoami load); the others get a random
32-byte hash, which is what a token hash looks like to anyone without the token (hashing every
token in Python would only slow the fill down). The database must already carry the schema and
one real session (a login through the server): its row is the template for created_ts, ends_ts
and the access token's expiry, so the filled rows look like the server's own.

The server must not be running while this writes. Usage (as a module: fill()):
  bench/fill_sessions.py DB KEY_FILE N [--users U] [--sample K] [--tokens OUT]
"""

import argparse
import hashlib
import os
import random
import sqlite3
import struct
import time
import zlib

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def base62(value, width):
    out = []
    for _ in range(width):
        value, d = divmod(value, 62)
        out.append(ALPHABET[d])
    return "".join(reversed(out))


def make_token(prefix="myat_"):
    """A fresh token in Myelin's format (docs/tokens.md)."""
    chars = []
    while len(chars) < 43:
        for b in os.urandom(64):
            if b < 248:  # 248 = 4 * 62: rejection sampling keeps every character uniform
                chars.append(ALPHABET[b % 62])
                if len(chars) == 43:
                    break
    head = prefix + "".join(chars)
    return head + "_" + base62(zlib.crc32(head.encode()), 6)


def token_hash_key(secret):
    """Subkey 1, context "tokenhsh" (libsodium crypto_kdf_derive_from_key)."""
    return hashlib.blake2b(b"", digest_size=32, key=secret,
                           salt=struct.pack("<Q", 1) + bytes(8),
                           person=b"tokenhsh" + bytes(8)).digest()


def token_hash(key, token):
    return hashlib.blake2b(token.encode(), digest_size=32, key=key).digest()


def fill(db_path, key_path, n, users=None, sample=1000, seed=1):
    """Adds n live sessions (one device each) for `users` users; returns (tokens, seconds).

    tokens: raw access tokens of `sample` sessions spread evenly over the n.
    """
    t0 = time.time()
    users = users or max(1, n // 10)
    secret = open(key_path, "rb").read()
    if len(secret) != 32:
        raise ValueError(f"{key_path}: not a 32-byte server secret")
    key = token_hash_key(secret)
    db = sqlite3.connect(db_path, isolation_level=None)
    try:
        tmpl = db.execute(
            "SELECT s.created_ts, s.ends_ts, t.expires_ts, s.refreshable FROM sessions AS s "
            "JOIN access_tokens AS t ON t.session_id = s.session_id "
            "WHERE s.revoked_ts = 0 ORDER BY s.session_id LIMIT 1").fetchone()
        if tmpl is None:
            raise ValueError(f"{db_path}: no live session to copy (log in once first)")
        created, ends, expires, refreshable = tmpl
        if refreshable:
            raise ValueError("the template session is refreshable: log in with refresh_token=false")
        first_id = (db.execute("SELECT COALESCE(MAX(session_id), 0) FROM sessions").fetchone()[0]
                    + 1)
        db.execute("PRAGMA journal_mode = DELETE")  # one big transaction, no WAL growth
        db.execute("PRAGMA synchronous = OFF")
        db.execute("PRAGMA cache_size = -262144")  # 256 MiB while filling
        rng = random.Random(seed)
        step = max(1, n // max(1, sample))
        sampled = set(range(0, n, step)[:sample])
        tokens = []
        user_ids = [f"@scale{u:07d}:localhost" for u in range(users)]
        db.execute("BEGIN")
        db.executemany("INSERT OR IGNORE INTO users (user_id, password_hash, created_ts) "
                       "VALUES (?, '', ?)", ((u, created) for u in user_ids))

        def session_rows():
            for i in range(n):
                yield (first_id + i, user_ids[i % users], f"SCALE{i:07d}", created, ends)

        db.executemany("INSERT INTO devices (user_id, device_id, created_ts) VALUES (?, ?, ?)",
                       ((u, d, c) for _, u, d, c, _ in session_rows()))
        db.executemany("INSERT INTO sessions (session_id, user_id, device_id, refreshable, "
                       "is_guest, created_ts, ends_ts) VALUES (?, ?, ?, 0, 0, ?, ?)",
                       session_rows())
        hashes = []
        for i in range(n):
            if i in sampled:
                tok = make_token()
                tokens.append(tok)
                h = token_hash(key, tok)
            else:
                h = rng.getrandbits(256).to_bytes(32, "little")
            hashes.append((h, first_id + i))
        hashes.sort()  # primary-key order: appends instead of random B-tree inserts
        db.executemany("INSERT INTO access_tokens (token_hash, session_id, generation, issued_ts, "
                       "expires_ts) VALUES (?, ?, 0, ?, ?)",
                       ((h, s, created, expires) for h, s in hashes))
        db.execute("COMMIT")
        db.execute("PRAGMA journal_mode = WAL")  # as the server keeps it
    finally:
        db.close()
    return tokens, time.time() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("db")
    ap.add_argument("key_file")
    ap.add_argument("n", type=int)
    ap.add_argument("--users", type=int, default=None)
    ap.add_argument("--sample", type=int, default=1000)
    ap.add_argument("--tokens", default=None, help="write the sampled raw tokens here")
    a = ap.parse_args()
    tokens, secs = fill(a.db, a.key_file, a.n, a.users, a.sample)
    if a.tokens:
        with open(a.tokens, "w") as f:
            f.write("".join(t + "\n" for t in tokens))
    print(f"{a.n:,} sessions in {secs:.1f} s; {len(tokens)} sampled tokens")


if __name__ == "__main__":
    main()
