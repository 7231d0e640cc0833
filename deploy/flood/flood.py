#!/usr/bin/env python3
"""Connection flood against a built bridge binary, bounded in time (issue 13, item 1).

Starts the bridge (embedded Kafka, loopback listeners on free ports), opens --connections
connections from 127.0.0.1, each sending `POST /webhooks/telecmi HTTP/1.1`, `Host: x` and one
--header-bytes header that never ends, re-opening any the bridge closes, for --seconds.
The bridge runs in an empty directory, on its built-in defaults. Midway, a legitimate webhook is sent from 127.0.0.2. Prints the bridge's peak RSS and that
request's answer, stops the bridge and exits: 0 when the peak is under --max-rss-mb and the
answer is 200, 1 otherwise.

    cargo build && python3 deploy/flood/flood.py [--binary target/debug/telecmi-bridge]
"""

import argparse
import errno
import http.client
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

FLOOD_ADDRESS = "127.0.0.1"
LEGIT_ADDRESS = "127.0.0.2"
EVENT = b'{"type":"event","status":"answered","cmiuuid":"flood-legit"}'


def free_port():
    with socket.socket() as probe:
        probe.bind((FLOOD_ADDRESS, 0))
        return probe.getsockname()[1]


def rss_kib(pid, field):
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def wait_ready(admin_port, bridge, log_path, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if bridge.poll() is not None:
            with open(log_path, errors="replace") as log:
                tail = "".join(log.readlines()[-5:])
            sys.exit(f"the bridge exited with {bridge.returncode} before it was ready:\n{tail}")
        try:
            connection = http.client.HTTPConnection(FLOOD_ADDRESS, admin_port, timeout=2)
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit("the bridge was not ready within 60 s")


def legit_request(port):
    """The answer to one webhook from another address: status, or the error."""
    try:
        connection = http.client.HTTPConnection(
            FLOOD_ADDRESS, port, timeout=10, source_address=(LEGIT_ADDRESS, 0)
        )
        connection.request(
            "POST", "/webhooks/telecmi", EVENT, {"Content-Type": "application/json"}
        )
        response = connection.getresponse()
        return f"{response.status} {response.read().decode(errors='replace')}"
    except OSError as error:
        return f"no answer: {error}"


class Flood:
    """Non-blocking connections, each writing the same never-ending request head."""

    def __init__(self, port, connections, header_bytes):
        self.port = port
        self.wanted = connections
        self.payload = memoryview(
            b"POST /webhooks/telecmi HTTP/1.1\r\nHost: x\r\nX-Flood: " + b"a" * header_bytes
        )
        self.selector = selectors.DefaultSelector()
        self.sent = {}
        self.opened = 0
        self.closed_by_bridge = 0
        self.answers = 0

    def open_missing(self):
        while len(self.sent) < self.wanted:
            connection = socket.socket()
            connection.setblocking(False)
            connection.bind((FLOOD_ADDRESS, 0))
            result = connection.connect_ex((FLOOD_ADDRESS, self.port))
            if result not in (0, errno.EINPROGRESS):
                connection.close()
                return
            self.sent[connection] = 0
            self.opened += 1
            self.selector.register(connection, selectors.EVENT_READ | selectors.EVENT_WRITE)

    def close(self, connection):
        self.selector.unregister(connection)
        del self.sent[connection]
        connection.close()

    def pump(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.open_missing()
            for key, events in self.selector.select(timeout=0.1):
                connection = key.fileobj
                if events & selectors.EVENT_READ:
                    try:
                        data = connection.recv(65536)
                    except OSError:
                        data = b""
                    if data:
                        self.answers += 1
                    self.closed_by_bridge += 1
                    self.close(connection)
                    continue
                offset = self.sent[connection]
                if offset >= len(self.payload):
                    # Everything sent; never finished. Only reading matters now.
                    self.selector.modify(connection, selectors.EVENT_READ)
                    continue
                try:
                    self.sent[connection] = offset + connection.send(self.payload[offset:])
                except BlockingIOError:
                    pass
                except OSError:
                    self.closed_by_bridge += 1
                    self.close(connection)

    def stop(self):
        for connection in list(self.sent):
            self.close(connection)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", default="target/debug/telecmi-bridge")
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--header-bytes", type=int, default=390_000)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--max-rss-mb", type=float, default=128.0)
    arguments = parser.parse_args()

    port, admin_port = free_port(), free_port()
    environment = dict(
        os.environ,
        TELECMI_BRIDGE_SERVER__LISTEN=f"{FLOOD_ADDRESS}:{port}",
        TELECMI_BRIDGE_SERVER__ADMIN_LISTEN=f"{FLOOD_ADDRESS}:{admin_port}",
        TELECMI_BRIDGE_LOGGING__LEVEL="warn",
    )
    workdir = tempfile.TemporaryDirectory(prefix="flood-")
    log_path = os.path.join(workdir.name, "bridge.log")
    with open(log_path, "wb") as log:
        bridge = subprocess.Popen(
            [os.path.abspath(arguments.binary)],
            cwd=workdir.name,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    flood = Flood(port, arguments.connections, arguments.header_bytes)
    peak_kib = [0]
    sampling = threading.Event()

    def sample():
        while not sampling.is_set():
            peak_kib[0] = max(peak_kib[0], rss_kib(bridge.pid, "VmRSS"))
            time.sleep(0.1)

    try:
        wait_ready(admin_port, bridge, log_path)
        idle_kib = rss_kib(bridge.pid, "VmRSS")
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        half = arguments.seconds / 2
        flood.pump(half)
        answer = [None]
        legit = threading.Thread(target=lambda: answer.__setitem__(0, legit_request(port)))
        legit.start()
        flood.pump(half)
        legit.join(timeout=15)
        sampling.set()
        sampler.join()
        peak_kib[0] = max(peak_kib[0], rss_kib(bridge.pid, "VmHWM"))
        alive = bridge.poll() is None
    finally:
        flood.stop()
        bridge.send_signal(signal.SIGTERM)
        try:
            bridge.wait(timeout=30)
        except subprocess.TimeoutExpired:
            bridge.kill()
            bridge.wait()
        workdir.cleanup()

    peak_mb = peak_kib[0] / 1024
    print(f"binary:                    {arguments.binary}")
    print(
        f"flood:                     {arguments.connections} connections from {FLOOD_ADDRESS}, "
        f"{arguments.header_bytes}-byte header, {arguments.seconds:g} s"
    )
    print(f"connections opened:        {flood.opened} (closed by the bridge: {flood.closed_by_bridge}, "
          f"with an answer: {flood.answers})")
    print(f"RSS idle:                  {idle_kib / 1024:.1f} MB")
    print(f"RSS peak:                  {peak_mb:.1f} MB (limit {arguments.max_rss_mb:g} MB)")
    print(f"bridge alive after flood:  {alive}")
    print(f"legit request from {LEGIT_ADDRESS}: {answer[0]}")
    ok = alive and peak_mb < arguments.max_rss_mb and (answer[0] or "").startswith("200")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
