"""GET /containers/{id}/attach/ws with a real WebSocket client (websocket-client, what
docker-py's attach_socket(ws=True) uses): stdin in, raw binary frames out, fragmentation,
ping/pong, close, detach keys, logs replay, and the handshake's errors."""

from __future__ import annotations

import json
import socket
import struct
import time
import uuid

import pytest

from berth.api.attach_ws import accept_key

import websocket  # noqa: E402  (websocket-client, a test dependency)
pytestmark = pytest.mark.root


@pytest.fixture
def name(berthd, busybox):
    n = "ws-" + uuid.uuid4().hex[:8]
    yield n
    berthd.request("DELETE", f"/containers/{n}?force=1")


def connect(berthd, path: str, timeout: float = 10):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(berthd.sock))
    return websocket.create_connection("ws://localhost" + path, socket=s, timeout=timeout)


def read_until(ws, needle: bytes, timeout: float = 10) -> tuple[bytes, set[int]]:
    got, ops = b"", set()
    end = time.time() + timeout
    while needle not in got and time.time() < end:
        op, data = ws.recv_data()
        ops.add(op)
        if op == websocket.ABNF.OPCODE_CLOSE:
            break
        got += data
    return got, ops


def running(docker, name: str) -> bool:
    return docker("inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "true"


def test_accept_key_rfc6455_example():
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_ws_attach_sh_stdin_fragments_ping_close(docker, berthd, name):
    assert docker("run", "-di", "--name", name, "busybox", "sh").returncode == 0
    ws = connect(berthd, f"/v1.41/containers/{name}/attach/ws?stream=1&stdin=1&stdout=1&stderr=1")
    ws.send("echo hello-$((6*7)); echo oops >&2\n")
    got, ops = read_until(ws, b"oops\n")
    assert b"hello-42\n" in got and b"oops\n" in got
    assert ops == {websocket.ABNF.OPCODE_BINARY}  # raw bytes, no stdcopy headers
    assert b"\x01\x00\x00\x00" not in got
    # one command in three fragments, with a ping between them
    ws.send_frame(websocket.ABNF.create_frame("echo fr", websocket.ABNF.OPCODE_TEXT, fin=0))
    ws.send_frame(websocket.ABNF.create_frame("ag", websocket.ABNF.OPCODE_CONT, fin=0))
    ws.ping(b"are-you-there")
    ws.send_frame(websocket.ABNF.create_frame("ment-ok\n", websocket.ABNF.OPCODE_CONT, fin=1))
    seen_pong, got = False, b""
    end = time.time() + 10
    while b"fragment-ok\n" not in got and time.time() < end:
        op, data = ws.recv_data(control_frame=True)
        if op == websocket.ABNF.OPCODE_PONG:
            assert data == b"are-you-there"
            seen_pong = True
        else:
            got += data
    assert seen_pong and b"fragment-ok\n" in got
    # a binary frame is stdin too
    ws.send_binary(b"echo bin-ok\n")
    got_bin, ops_bin = read_until(ws, b"bin-ok\n")
    assert b"bin-ok\n" in got_bin, (got_bin, ops_bin)
    assert websocket.ABNF.OPCODE_CLOSE not in ops_bin, (got_bin, ops_bin)
    # the client closes: the server answers with its close frame; the container keeps running
    ws.send_close(1000)
    op, data = ws.recv_data(control_frame=True)
    assert op == websocket.ABNF.OPCODE_CLOSE and struct.unpack("!H", data[:2])[0] == 1000
    ws.shutdown()
    time.sleep(0.2)
    assert running(docker, name)
    # a second session still works, and the container's exit ends it with a close frame
    ws = connect(berthd, f"/containers/{name}/attach/ws?stream=1&stdin=1&stdout=1&stderr=1")
    ws.send("exit 3\n")
    op, data = ws.recv_data(control_frame=True)
    assert op == websocket.ABNF.OPCODE_CLOSE and struct.unpack("!H", data[:2])[0] == 1000
    ws.shutdown()
    assert docker("wait", name).stdout.strip() == "3"


def test_ws_tty_detach_keys(docker, berthd, name):
    assert docker("run", "-dit", "--name", name, "busybox", "sh").returncode == 0
    ws = connect(berthd, f"/containers/{name}/attach/ws?stream=1&stdin=1&stdout=1&detachKeys=ctrl-x")
    ws.send("echo tty-$((1+1))\r")
    assert b"tty-2" in read_until(ws, b"tty-2\r\n")[0]
    ws.send_binary(b"\x18")  # ctrl-x: detach
    op, data = ws.recv_data(control_frame=True)
    while op != websocket.ABNF.OPCODE_CLOSE:
        op, data = ws.recv_data(control_frame=True)
    ws.shutdown()
    time.sleep(0.2)
    assert running(docker, name)


def test_ws_logs_replay(docker, berthd, name):
    r = docker("run", "--name", name, "busybox", "sh", "-c", "echo one; echo two >&2; echo three")
    assert r.returncode == 0
    ws = connect(berthd, f"/containers/{name}/attach/ws?logs=1&stream=0&stdout=1&stderr=1")
    got, ops = read_until(ws, b"never")
    # stdout and stderr are two pipes: their relative order is not kept (nor is it by Docker)
    assert sorted(got.splitlines()) == [b"one", b"three", b"two"] and websocket.ABNF.OPCODE_CLOSE in ops
    ws.shutdown()
    ws = connect(berthd, f"/containers/{name}/attach/ws?logs=1&stream=0&stdout=1")
    assert read_until(ws, b"never")[0] == b"one\nthree\n"
    ws.shutdown()
    # before API 1.28 Docker sent text frames
    ws = connect(berthd, f"/v1.27/containers/{name}/attach/ws?logs=1&stream=0&stdout=1")
    got, ops = read_until(ws, b"never")
    assert got == b"one\nthree\n" and websocket.ABNF.OPCODE_TEXT in ops
    ws.shutdown()


def _raw(berthd, head: bytes) -> tuple[bytes, socket.socket]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(str(berthd.sock))
    s.sendall(head)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    return buf, s


def test_ws_handshake_errors_and_protocol_error(docker, berthd, name):
    assert docker("run", "-di", "--name", name, "busybox", "sh").returncode == 0
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    ok = (b"GET /containers/%s/attach/ws?stream=1&stdin=1&stdout=1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
          b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (name.encode(), key.encode()))
    head, s = _raw(berthd, ok.replace(name.encode(), b"nosuchcontainer-" + uuid.uuid4().hex[:6].encode()))
    assert head.startswith(b"HTTP/1.1 404")
    s.close()
    head, s = _raw(berthd, ok.replace(b"Sec-WebSocket-Key: " + key.encode() + b"\r\n", b""))
    assert head.startswith(b"HTTP/1.1 400")
    s.close()
    head, s = _raw(berthd, ok.replace(b"Version: 13", b"Version: 8"))
    assert head.startswith(b"HTTP/1.1 426") and b"Sec-WebSocket-Version: 13" in head
    s.close()
    head, s = _raw(berthd, ok)
    assert head.startswith(b"HTTP/1.1 101") and b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
    s.sendall(b"\x81\x05hello")  # an unmasked client frame: protocol error, close 1002
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    assert data[0] == 0x88  # FIN + close
    assert struct.unpack("!H", data[2:4])[0] == 1002
    s.close()
    assert running(docker, name)
    assert json.loads(docker("inspect", name).stdout)[0]["State"]["Running"]
