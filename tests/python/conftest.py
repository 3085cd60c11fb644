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
