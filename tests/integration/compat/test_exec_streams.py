"""Exec and attach stream framing as Docker does it, through docker-py and the docker CLI.

Docker multiplexes an exec's output (stdcopy's 8-byte headers) unless the *start* request
says ``"Tty": true``; the create request's Tty only decides whether there is a pty. Detach
keys given at create (in any JSON case: docker-py sends ``detachKeys``) end the client's
stream and leave the process running.
"""

from __future__ import annotations

import json
import select
import socket
import struct
import time
import uuid

import docker
import pytest

from tests.integration.interactive.ptyrun import PtyProcess

pytestmark = pytest.mark.root
DOCKER = "/usr/local/bin/docker"
CMD = ["sh", "-c", "echo hello out; echo hello err >&2"]


@pytest.fixture
def ct(client):
    c = client.containers.run("busybox", ["sleep", "300"], detach=True, name="xs-" + uuid.uuid4().hex[:8])
    yield c
    c.remove(force=True)


def _read_until_closed(sock: socket.socket, timeout: float = 10) -> bytes:
    out = b""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r, _, _ = select.select([sock], [], [], 0.2)
        if r:
            d = sock.recv(65536)
            if not d:
                return out
            out += d
    raise TimeoutError(f"stream still open; got {out!r}")


def _frames(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    while data:
        stream, size = struct.unpack(">BxxxL", data[:8])
        out.append((stream, data[8:8 + size]))
        data = data[8 + size:]
    return out


def _raw_start(berthd, eid: str, body: dict, version: str = "v1.44") -> tuple[bytes, socket.socket]:
    """POST /exec/{id}/start upgraded, as the docker CLI does: the 101 head and the socket."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(berthd.sock))
    payload = json.dumps(body).encode()
    s.sendall(f"POST /{version}/exec/{eid}/start HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              f"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: {len(payload)}\r\n\r\n".encode() + payload)
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    return head, s


@pytest.mark.parametrize("tty,stream", [(False, False), (False, True), (True, False), (True, True)])
def test_exec_run_tty_stream_combinations(ct, tty, stream):
    """Docker 20.10+, API 1.41: docker-py's exec_run gets the whole output in each tty/stream mode."""
    r = ct.exec_run(CMD, tty=tty, stream=stream)
    out = b"".join(r.output) if stream else r.output
    assert out == (b"hello out\r\nhello err\r\n" if tty else b"hello out\nhello err\n")


def test_exec_run_demux_splits_streams(ct):
    """Docker 20.10+, API 1.41: exec_run(demux=True) gets stdout and stderr apart."""
    assert ct.exec_run(CMD, demux=True).output == (b"hello out\n", b"hello err\n")


def test_exec_created_with_tty_started_without_is_multiplexed(client, ct):
    """Docker 20.10+, API 1.41: start without Tty multiplexes, even for an exec created with a tty."""
    eid = client.api.exec_create(ct.id, CMD, tty=True)["Id"]
    assert client.api.exec_start(eid) == b"hello out\r\nhello err\r\n"


def test_exec_created_without_tty_started_with_tty_is_raw(client, ct):
    """Docker 20.10+, API 1.41: start with "Tty": true sends raw bytes, even without a pty."""
    eid = client.api.exec_create(ct.id, CMD, tty=False)["Id"]
    assert client.api.exec_start(eid, tty=True) == b"hello out\nhello err\n"


def test_exec_start_socket_reads_frames(client, ct):
    """Docker 20.10+, API 1.41: exec_start(socket=True) of a tty exec gets stdcopy frames."""
    eid = client.api.exec_create(ct.id, ["echo", "hello out"], tty=True)["Id"]
    sock = client.api.exec_start(eid, socket=True)._sock
    try:
        frames = _frames(_read_until_closed(sock))
    finally:
        sock.close()
    assert frames and all(stream == 1 for stream, _ in frames)
    assert b"".join(p for _, p in frames) == b"hello out\r\n"


def test_exec_start_content_type_follows_start_tty(berthd, client, ct):
    """Docker 23.0+, API 1.42: the 101's Content-Type is multiplexed-stream unless start says Tty."""
    eid = client.api.exec_create(ct.id, ["true"], tty=True)["Id"]
    head, s = _raw_start(berthd, eid, {"Detach": False, "Tty": False})
    s.close()
    assert b"\r\ncontent-type: application/vnd.docker.multiplexed-stream\r\n" in head.lower()


def _wait_prompt(sock: socket.socket) -> None:
    buf = b""
    end = time.monotonic() + 10
    while b"# " not in buf and time.monotonic() < end:
        r, _, _ = select.select([sock], [], [], 0.2)
        if r:
            buf += sock.recv(65536)


def _detach_with(client: docker.APIClient, cid: str, keys: bytes, **create: object) -> str:
    eid = client.exec_create(cid, ["sh"], stdin=True, tty=True, **create)["Id"]
    sock = client.exec_start(eid, socket=True, tty=True)._sock
    try:
        _wait_prompt(sock)
        sock.sendall(keys)
        _read_until_closed(sock, timeout=5)  # the daemon ends the stream
    finally:
        sock.close()
    return eid


def test_exec_detach_keys_from_docker_py(client, ct):
    """Docker 20.10+, API 1.41: exec_create(detach_keys=...) (sent as "detachKeys") detaches."""
    eid = _detach_with(client.api, ct.id, b"\x18x", detach_keys="ctrl-x,x")
    assert client.api.exec_inspect(eid)["Running"] is True


def test_exec_detach_keys_from_client_config(berthd, busybox, ct, tmp_path, monkeypatch):
    """Docker 20.10+, API 1.41: the client config's detachKeys (DOCKER_CONFIG) detach an exec."""
    (tmp_path / "config.json").write_text(json.dumps({"detachKeys": "ctrl-x,x"}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    api = docker.APIClient(base_url=berthd.host, timeout=60)
    try:
        eid = _detach_with(api, ct.id, b"\x18x")
        assert api.exec_inspect(eid)["Running"] is True
    finally:
        api.close()


def test_exec_detach_emits_exec_detach_event(client, ct):
    """Docker 20.10+, API 1.41: detaching from an exec emits the container event exec_detach."""
    since = int(time.time()) - 1
    eid = _detach_with(client.api, ct.id, b"\x10\x11")
    events = client.api.events(since=since, until=int(time.time()) + 2, decode=True,
                               filters={"container": ct.id, "event": "exec_detach"})
    assert [e["Actor"]["Attributes"].get("execID") for e in events] == [eid]


def test_docker_exec_it_detach_keys_flag(berthd, ct):
    """Docker 20.10+, API 1.41: `docker exec -it --detach-keys` leaves the shell running (the
    CLI says "read escape sequence" and exits 1, as with dockerd)."""
    p = PtyProcess([DOCKER, "exec", "-it", "--detach-keys", "ctrl-x,x", ct.name, "sh"], env=berthd.env)
    try:
        p.expect("# ")
        p.write("echo mark-$((6*7))\r")
        p.expect("mark-42")
        p.write(b"\x18x")
        assert p.wait(10) == 1
        assert b"read escape sequence" in p.buf
    finally:
        p.close()
    assert any(row[-1] == "sh" for row in ct.top()["Processes"])


def test_docker_exec_it_detach_keys_from_config(berthd, ct, tmp_path):
    """Docker 20.10+, API 1.41: `docker exec -it` takes detachKeys from the DOCKER_CONFIG dir."""
    (tmp_path / "config.json").write_text(json.dumps({"detachKeys": "ctrl-x,x"}))
    p = PtyProcess([DOCKER, "exec", "-it", ct.name, "sh"], env={**berthd.env, "DOCKER_CONFIG": str(tmp_path)})
    try:
        p.expect("# ")
        p.write(b"\x18x")
        assert p.wait(10) == 1
        assert b"read escape sequence" in p.buf
    finally:
        p.close()
    assert any(row[-1] == "sh" for row in ct.top()["Processes"])


@pytest.mark.parametrize("tty", [False, True])
def test_attach_logs_replay_reaches_docker_py(client, tty):
    """Docker 20.10+, API 1.41: attach(logs=True, stream=False) of an exited container returns its
    output every time (multiplexed without a tty, raw with one); none is lost with the 101 head."""
    ct = client.containers.run("busybox", CMD, detach=True, tty=tty)
    try:
        ct.wait()
        want = b"hello out\r\nhello err\r\n" if tty else b"hello out\nhello err\n"
        got = [ct.attach(logs=True, stream=False) for _ in range(20)]
        assert got == [want] * 20
    finally:
        ct.remove(force=True)
