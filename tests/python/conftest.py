"""Start the real `flightstore serve` binary on a free port for the tests."""
import os
import subprocess
import tempfile

import pyarrow.flight as flight
import pytest

from servers import BIN, start_server, stop_server


@pytest.fixture(scope="session")
def server():
    proc, address = start_server()
    yield f"grpc://{address}"
    stop_server(proc)


@pytest.fixture
def client(server):
    c = flight.connect(server)
    yield c
    c.close()


# ---------------------------------------------------------------------------------------
# test_client.py: a server with an auth file (tokens and a user) and a 1 MiB message limit.


@pytest.fixture(scope="session")
def auth_server():
    """`{"url", "tokens": {name: token}, "user": (name, password)}` of a second server
    started with `--auth-file` (tokens `reader` = *:read, `writer` = *:write, `admin` =
    *:admin; user `alice` = *:write) and `--max-message-mb 1`."""
    folder = tempfile.mkdtemp(prefix="flightstore-pytest-auth-")
    auth_file = os.path.join(folder, "auth.json")

    def cli(*args, input=None):
        done = subprocess.run([BIN, *args], input=input, capture_output=True, text=True, timeout=60, check=True)
        return done.stdout.strip()

    tokens = {}
    for name, grant in (("reader", "*:read"), ("writer", "*:write"), ("admin", "*:admin")):
        tokens[name] = cli("token", "create", "--auth-file", auth_file, "--name", name, "--grant", grant)
    cli("user", "add", "--auth-file", auth_file, "--name", "alice", "--grant", "*:write", "--password-stdin",
        input="s3cret\n")
    proc, address = start_server("--auth-file", auth_file, "--max-message-mb", "1",
                                 data=os.path.join(folder, "data"))
    yield {"url": f"grpc://{address}", "tokens": tokens, "user": ("alice", "s3cret")}
    stop_server(proc)
