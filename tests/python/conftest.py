"""Start the real `flightstore serve` binary on a free port for the tests."""
import os
import re
import subprocess
import tempfile
import threading
import time

import pyarrow.flight as flight
import pytest


@pytest.fixture(scope="session")
def server():
    binary = os.environ.get("FLIGHTSTORE_BIN", "target/debug/flightstore")
    data = tempfile.mkdtemp(prefix="flightstore-pytest-")
    proc = subprocess.Popen(
        [binary, "serve", "--data", data, "--bind", "127.0.0.1:0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    address = None
    deadline = time.time() + 30
    while address is None and time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        m = re.search(r"addr=(\S+)", line)
        if m:
            address = m.group(1)
    if address is None:
        proc.kill()
        raise RuntimeError("the server did not report its address")
    # Keep draining the server's log: a full pipe would block its logging threads.
    threading.Thread(target=lambda: proc.stderr.read(), daemon=True).start()
    yield f"grpc://{address}"
    # SIGTERM: a clean shutdown exits 0.
    proc.terminate()
    assert proc.wait(timeout=30) == 0


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
    binary = os.environ.get("FLIGHTSTORE_BIN", "target/debug/flightstore")
    folder = tempfile.mkdtemp(prefix="flightstore-pytest-auth-")
    auth_file = os.path.join(folder, "auth.json")

    def cli(*args, input=None):
        done = subprocess.run([binary, *args], input=input, capture_output=True, text=True, timeout=60, check=True)
        return done.stdout.strip()

    tokens = {}
    for name, grant in (("reader", "*:read"), ("writer", "*:write"), ("admin", "*:admin")):
        tokens[name] = cli("token", "create", "--auth-file", auth_file, "--name", name, "--grant", grant)
    cli("user", "add", "--auth-file", auth_file, "--name", "alice", "--grant", "*:write", "--password-stdin",
        input="s3cret\n")
    proc = subprocess.Popen(
        [binary, "serve", "--data", os.path.join(folder, "data"), "--bind", "127.0.0.1:0",
         "--auth-file", auth_file, "--max-message-mb", "1"],
        stderr=subprocess.PIPE,
        text=True,
    )
    address = None
    deadline = time.time() + 30
    while address is None and time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        m = re.search(r"addr=(\S+)", line)
        if m:
            address = m.group(1)
    if address is None:
        proc.kill()
        raise RuntimeError("the auth server did not report its address")
    threading.Thread(target=lambda: proc.stderr.read(), daemon=True).start()
    yield {"url": f"grpc://{address}", "tokens": tokens, "user": ("alice", "s3cret")}
    proc.terminate()
    proc.wait(timeout=30)
