"""What one client may hold of berthd's API (issue 16): header size and time, connections per
client, and descriptors kept free when connections pile up. A real berthd on a real socket,
started with 400 descriptors (so at most 144 connections), a 1 s header time and 100
connections per client."""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import time
from typing import Iterator

import pytest

from tests.integration.daemon import Daemon

pytestmark = pytest.mark.root

NOFILE = 400  # berthd keeps 256 for the engine: 144 connections
PER_CLIENT = 100

HOLDER = r"""
import socket, sys, time
socks = []
for _ in range(int(sys.argv[2])):
    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); socks.append(s)
print("ready", flush=True)
sys.stdin.read()
alive = 0
for s in socks:
    s.setblocking(False)
    try:
        alive += s.recv(1) != b""
    except BlockingIOError:
        alive += 1
    except OSError:
        pass
print(alive, flush=True)
"""


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    if os.geteuid() != 0:
        pytest.skip("needs uid 0")
    d = Daemon(env={"BERTH_API_HEADER_TIMEOUT": "1", "BERTH_API_CONNS_PER_CLIENT": str(PER_CLIENT)})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, hard))  # berthd inherits it
    try:
        d.start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        yield d
    finally:
        d.cleanup()


def _connect(d: Daemon) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(str(d.sock))
    return s


def _answer(s: socket.socket) -> tuple[int, bytes]:
    """Status and body of one response on a connection the server then closes."""
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def _ping_ms(d: Daemon) -> float:
    t0 = time.monotonic()
    assert d.request("GET", "/_ping", timeout=5) == (200, b"OK")
    return (time.monotonic() - t0) * 1000


def test_headers_over_a_mebibyte_are_a_431_and_under_it_pass(daemon: Daemon) -> None:
    status, _ = daemon.request("GET", "/_ping", headers={"X-Big": "a" * 900_000})
    assert status == 200  # Go's net/http (dockerd) takes up to 1 MiB of headers
    s = _connect(daemon)
    s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n")
    status, body = _answer(s)
    assert status == 431 and json.loads(body) == {"message": "request header fields too large"}
    assert _ping_ms(daemon) < 3000


def test_a_header_trickle_is_cut_after_the_header_time(daemon: Daemon) -> None:
    s = _connect(daemon)
    t0 = time.monotonic()
    s.sendall(b"GET /_ping HTTP/1.1\r\n")
    for i in range(80):  # a byte every 0.1 s: 8 s of trickle if nobody cuts it
        if _readable(s):
            break
        try:
            s.sendall(b"X")
        except OSError:
            break
        time.sleep(0.1)
        if i % 5 == 0:
            assert _ping_ms(daemon) < 3000  # the others are served meanwhile (a loaded machine: generous)
    cut = time.monotonic() - t0
    assert 0.9 < cut < 5, cut
    data = s.recv(65536)
    assert data.startswith(b"HTTP/1.1 408 ") and b"timeout reading the request header" in data


def _readable(s: socket.socket) -> bool:
    import select
    return bool(select.select([s], [], [], 0)[0])


def test_an_idle_keep_alive_connection_is_not_timed_out(daemon: Daemon) -> None:
    s = _connect(daemon)
    time.sleep(1.5)  # longer than the header time: waiting for a request is not slowloris
    s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert _answer(s) == (200, b"OK")


def test_one_client_holds_at_most_its_share(daemon: Daemon) -> None:
    held = [_connect(daemon) for _ in range(PER_CLIENT)]
    try:
        time.sleep(0.2)
        extra = _connect(daemon)
        extra.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
        status, body = _answer(extra)
        assert status == 429
        assert json.loads(body) == {"message": f"too many connections from this client (limit {PER_CLIENT})"}
        other = subprocess.run([sys.executable, "-c", _PING, str(daemon.sock)], capture_output=True,
                               text=True, timeout=30)
        assert other.stdout.strip() == "200", other.stderr  # another process is served
    finally:
        for s in held:
            s.close()
    time.sleep(0.2)
    assert _ping_ms(daemon) < 3000  # its share is back once it let go


_PING = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
print(s.recv(100).split(b" ")[1].decode())
"""


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_idle_connections_past_the_fd_budget_are_shed_not_fatal(daemon: Daemon) -> None:
    assert daemon.proc is not None
    holders = [subprocess.Popen([sys.executable, "-c", HOLDER, str(daemon.sock), "90"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True) for _ in range(4)]
    try:
        for h in holders:
            assert h.stdout is not None and h.stdout.readline().strip() == "ready"
        time.sleep(0.3)
        assert _fds(daemon.proc.pid) < NOFILE - 200  # 360 connections asked, 144 kept
        assert _ping_ms(daemon) < 3000  # a new client still gets in
        status, body = daemon.request("POST", "/volumes/create", json.dumps({"Name": "limits-vol"}).encode(),
                                      {"Content-Type": "application/json"})
        assert status == 201, body  # and the engine still has descriptors to work with
        assert daemon.request("DELETE", "/volumes/limits-vol")[0] == 204
        alive = 0
        for h in holders:
            out, _ = h.communicate("", timeout=30)
            alive += int(out.split()[-1])
        assert 100 < alive <= 144, alive  # the longest idle were closed, the rest kept
    finally:
        for h in holders:
            if h.poll() is None:
                h.kill()
                h.wait()
    assert daemon.proc.poll() is None


def _volumes(d: Daemon) -> list[str]:
    status, body = d.request("GET", "/volumes")
    assert status == 200, body
    return sorted(v["Name"] for v in json.loads(body)["Volumes"] or [])


def test_a_json_body_past_64_mib_is_a_413_and_nothing_is_stored(daemon: Daemon) -> None:
    """dockerd's ReadJSON has no bound; berth reads a JSON body whole, so it holds at most
    64 MiB of one (http.MAX_BODY): past it a 413 in Go's words, the connection closes without
    reading the rest, nothing is created, and berthd goes on."""
    before = _volumes(daemon)
    s = _connect(daemon)  # Content-Length says so: answered before a byte of the body is read
    s.sendall(b"POST /v1.50/volumes/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n{\"Name\": \"limits-big\", \"Labels\": {\"a\": \"" % ((64 << 20) + 1))
    status, body = _answer(s)
    s.close()
    assert status == 413 and json.loads(body) == {"message": "http: request body too large"}
    s = _connect(daemon)  # chunked: counted as it comes, answered once past the bound
    s.sendall(b"POST /v1.50/volumes/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n")
    piece = b"%x\r\n%s\r\n" % (1 << 20, b'{"Name":"limits-big","Labels":{"a":"' + b"a" * ((1 << 20) - 36))
    try:
        for _ in range(70):
            s.sendall(piece)
    except OSError:  # berthd closed it past 64 MiB: what it answered is still there to read
        pass
    status, body = _answer(s)
    s.close()
    assert status == 413 and json.loads(body) == {"message": "http: request body too large"}
    assert _volumes(daemon) == before
    assert _ping_ms(daemon) < 3000 and daemon.proc is not None and daemon.proc.poll() is None
    status, body = daemon.request("POST", "/volumes/create", json.dumps({"Name": "limits-small"}).encode(),
                                  {"Content-Type": "application/json"})
    assert status == 201, body  # under the bound, as before
    assert daemon.request("DELETE", "/volumes/limits-small")[0] == 204
