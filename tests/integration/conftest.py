"""pytest fixtures for the black-box suite; the helpers themselves live in myelin_harness.py.

Fixtures
    server          a fresh server with the default test config (function scope); at teardown it
                    gets SIGTERM and must exit with status 0 (unless the test stopped it).
    server_factory  factory(overrides=None, **kw) -> MyelinServer, same arguments as
                    start_server() minus tmp_path; every server it started is stopped at
                    teardown and must exit 0 (unless the test stopped or killed it).
    shared_server   one default server per test module, for read-only tests.
    myelin_binary   Path of the binary under test.

Any server a test starts itself with start_server() and leaves running is stopped (SIGTERM,
then SIGKILL) after the test, whatever the outcome.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import myelin_harness as h  # noqa: E402


@pytest.fixture(autouse=True)
def _stop_leftover_servers():
    yield
    h.stop_servers([s for s in h.live_servers() if s.scope == "test"], check=False)


@pytest.fixture(scope="session")
def myelin_binary() -> Path:
    binary = h.binary_path()
    assert binary.exists(), f"myelin binary not found at {binary} (set MYELIN_BINARY)"
    return binary


def _teardown(servers):
    # Every server whose end the test did not observe gets SIGTERM and must exit with 0; one
    # that already died on its own (a crash) is reported with its exit status.
    problems = h.stop_servers([s for s in servers if s.proc is not None and s.exit_code is None],
                              check=True)
    # A server that died on its own during the test (crash) is a failure too.
    for s in servers:
        if s.exit_code is not None and s.exit_code < 0 and s.exit_code != -9:
            problems.append(f"{s!r} died from signal {-s.exit_code}\n{s.log_tail()}")
    if problems:
        pytest.fail("server shutdown problems:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def server(tmp_path, myelin_binary):
    s = h.start_server(tmp_path, scope="fixture")
    yield s
    _teardown([s])


@pytest.fixture
def server_factory(tmp_path, myelin_binary):
    started = []

    def factory(overrides=None, **kwargs):
        kwargs.setdefault("scope", "fixture")
        s = h.start_server(tmp_path, overrides, **kwargs)
        started.append(s)
        return s

    yield factory
    _teardown(started)


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory, myelin_binary):
    s = h.start_server(tmp_path_factory.mktemp("shared"), scope="module")
    yield s
    _teardown([s])
