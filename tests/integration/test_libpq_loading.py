"""libpq is loaded only when a PostgreSQL database is opened: a server on SQLite never maps it
(nor GnuTLS, Kerberos, LDAP... that it pulls in), and one on PostgreSQL does."""

from pathlib import Path

from myelin_harness import backend


def mapped_libraries(pid: int) -> set[str]:
    names = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 6 and ".so" in fields[5]:
            names.add(Path(fields[5]).name)
    return names


def test_libpq_is_mapped_only_by_a_server_on_postgresql(server):
    assert server.get("/_matrix/client/versions").status_code == 200
    libraries = mapped_libraries(server.proc.pid)
    pq = {name for name in libraries if name.startswith("libpq.so")}
    if backend() == "postgres":
        assert pq, sorted(libraries)
    else:
        assert not pq, sorted(libraries)
        pulled_in = {name for name in libraries
                     if name.startswith(("libgnutls", "libkrb5", "libldap", "libp11-kit"))}
        assert not pulled_in, sorted(pulled_in)
