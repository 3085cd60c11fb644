"""Start and stop the real `flightstore serve` binary (FLIGHTSTORE_BIN) for the tests."""
import os
import re
import subprocess
import tempfile
import threading
import time

BIN = os.environ.get("FLIGHTSTORE_BIN", "target/debug/flightstore")


def start_server(*flags, data=None, env=None):
    """`flightstore serve` on a free port over `data` (a new temporary folder by default)
    with extra `flags` (and environment `env`); returns (process, address) where address
    is `host:port`."""
    data = str(data or tempfile.mkdtemp(prefix="flightstore-pytest-"))
    proc = subprocess.Popen([BIN, "serve", "--data", data, "--bind", "127.0.0.1:0", *flags],
                            stderr=subprocess.PIPE, text=True, env=env)
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
    # Keep draining its log: a full pipe would block the server's logging.
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    return proc, address


def stop_server(proc):
    """SIGTERM, and check the clean shutdown's exit status 0."""
    proc.terminate()
    assert proc.wait(timeout=30) == 0
