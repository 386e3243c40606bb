"""Exec, Attach and PortForward over SPDY/3.1 (what client-go's remotecommand and portforward
speak to a kubelet's streaming server), through a SPDY client written here on a plain socket:
the HTTP upgrade and X-Stream-Protocol-Version negotiation by hand, frames through
berth.cri.spdy's codec (whose bytes tests/unit/cri/test_cri_spdy.py checks against the draft's
layouts and Chromium's frames), and the server's first frame checked byte by byte."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlparse

import pytest

from berth.cri import spdy
from tests.integration.cri.conftest import Cri, StreamPod, pb, stream_pod

pytestmark = pytest.mark.root



class SpdyClient:
    def __init__(self, url: str, protocols: list[str]):
        u = urlparse(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=20)
        head = [f"GET {u.path} HTTP/1.1", f"Host: {u.netloc}", "Connection: Upgrade", "Upgrade: SPDY/3.1"]
        head += [f"X-Stream-Protocol-Version: {p}" for p in protocols]
        self.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(4096)
            assert chunk, buf
            buf += chunk
        raw, self.rest = buf.split(b"\r\n\r\n", 1)
        lines = raw.decode().split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = [(k.strip().lower(), v.strip()) for k, v in (ln.split(":", 1) for ln in lines[1:])]
        self.codec = spdy.Codec()
        self.next_id = 1
        self.data: dict[int, bytes] = {}
        self.fin: set[int] = set()
        self.frames: list[spdy.Frame] = []
        self.first_bytes = b""
        self.closed = False

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name.lower()]

    def open(self, kind: str, **more: str) -> int:
        sid, self.next_id = self.next_id, self.next_id + 2
        self.sock.sendall(self.codec.encode(spdy.SynStream(sid, [("streamtype", kind), *more.items()])))
        return sid

    def send(self, sid: int, data: bytes, fin: bool = False) -> None:
        self.sock.sendall(spdy.data_frame(sid, data, fin))

    def pump(self, until: Callable[[], bool], timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not until():
            assert time.monotonic() < deadline, (self.data, self.frames[-5:])
            chunk, self.rest = (self.rest, b"") if self.rest else (self.sock.recv(65536), b"")
            if not chunk:
                self.closed = True
                return
            self.first_bytes = self.first_bytes or chunk
            for f in self.codec.feed(chunk):
                self.frames.append(f)
                if isinstance(f, spdy.Data):
                    self.data[f.stream_id] = self.data.get(f.stream_id, b"") + f.data
                    if f.fin:
                        self.fin.add(f.stream_id)

    def pump_for(self, seconds: float) -> None:
        """Read whatever comes within ``seconds`` (nothing more may come: that is the point)."""
        deadline = time.monotonic() + seconds
        try:
            while (left := deadline - time.monotonic()) > 0 and not self.closed:
                self.sock.settimeout(left)
                self.pump(lambda: False, timeout=left + 1)
        except (TimeoutError, socket.timeout):
            pass
        finally:
            self.sock.settimeout(20)

    def close(self) -> None:
        self.sock.close()


Pod = StreamPod


@pytest.fixture(scope="module")
def pod(cri: Cri, busybox: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    with stream_pod(cri, busybox, tmp_path_factory.mktemp("spdy"), "spdy", "hello-over-spdy") as p:
        yield p


def _exec(cri: Cri, cid: str, cmd: list[str], protocols: list[str], **kw: bool) -> SpdyClient:
    return SpdyClient(cri.runtime.Exec(pb.ExecRequest(container_id=cid, cmd=cmd, **kw)).url, protocols)


def test_exec_stdout_stderr_stdin_and_exit_status(cri: Cri, pod: Pod) -> None:
    c = _exec(cri, pod.shell, ["sh", "-c", "read x; echo got $x; echo err >&2; exit 3"],
              ["v5.channel.k8s.io", "v4.channel.k8s.io"], stdin=True, stdout=True, stderr=True)
    try:
        assert c.status == 101 and c.header("upgrade") == ["SPDY/3.1"]
        assert c.header("x-stream-protocol-version") == ["v5.channel.k8s.io"]
        err, stdin, out, errs = c.open("error"), c.open("stdin"), c.open("stdout"), c.open("stderr")
        c.sock.sendall(c.codec.encode(spdy.Ping(1)))
        c.send(stdin, b"hello\n", fin=True)
        c.pump(lambda: c.closed)
        # the server's first frame: SYN_REPLY (version 3, type 2) for stream 1, its header
        # block a zlib stream with the SPDY/3 dictionary's DICTID
        assert c.first_bytes[:4] == bytes.fromhex("80030002") and c.first_bytes[8:12] == bytes.fromhex("00000001")
        assert c.first_bytes[13] & 0x20 and c.first_bytes[14:18] == bytes.fromhex("e3c6a7c2")
        assert [f.stream_id for f in c.frames if isinstance(f, spdy.SynReply)] == [err, stdin, out, errs]
        assert spdy.Ping(1) in c.frames
        assert any(isinstance(f, spdy.WindowUpdate) and f.stream_id == stdin for f in c.frames)
        assert isinstance(c.frames[-1], spdy.GoAway)
        assert (c.data[out], c.data[errs]) == (b"got hello\n", b"err\n")
        status = json.loads(c.data[err])
        assert status["status"] == "Failure" and status["reason"] == "NonZeroExitCode"
        assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
        assert {err, out, errs} <= c.fin
    finally:
        c.close()


def test_exec_success_tty_resize_and_v1(cri: Cri, pod: Pod) -> None:
    c = _exec(cri, pod.shell, ["sh", "-c", "read x; stty size"], ["v4.channel.k8s.io"], stdin=True, stdout=True,
              tty=True)
    try:
        assert c.header("x-stream-protocol-version") == ["v4.channel.k8s.io"]
        err, stdin, out, resize = c.open("error"), c.open("stdin"), c.open("stdout"), c.open("resize")
        c.send(resize, json.dumps({"Width": 101, "Height": 33}).encode() + b"\n")
        time.sleep(0.5)
        c.send(stdin, b"go\n")
        c.pump(lambda: c.closed)
        assert b"33 101" in c.data[out]
        assert json.loads(c.data[err]) == {"metadata": {}, "status": "Success"}
    finally:
        c.close()
    # the oldest protocol: no Status, the error stream stays empty on success
    old = _exec(cri, pod.shell, ["hostname"], ["channel.k8s.io"], stdout=True)
    try:
        assert old.header("x-stream-protocol-version") == ["channel.k8s.io"]
        err, out = old.open("error"), old.open("stdout")
        old.pump(lambda: old.closed)
        assert old.data[out] == b"spdy\n" and old.data.get(err, b"") == b""
    finally:
        old.close()


def test_negotiation_refusals(cri: Cri, pod: Pod) -> None:
    c = _exec(cri, pod.shell, ["true"], ["v99.channel.k8s.io"], stdout=True)
    try:
        assert c.status == 403
        assert c.header("x-accepted-stream-protocol-versions")[:2] == ["v5.channel.k8s.io", "v4.channel.k8s.io"]
    finally:
        c.close()
    c = _exec(cri, pod.shell, ["true"], [], stdout=True)
    try:
        assert c.status == 400
    finally:
        c.close()
    # a stream the request did not ask for ends the session
    c = _exec(cri, pod.shell, ["true"], ["v4.channel.k8s.io"], stdout=True)
    try:
        c.open("error"), c.open("stdin")
        c.pump(lambda: c.closed)
        assert isinstance(c.frames[-1], spdy.GoAway)
    finally:
        c.close()


def test_attach(cri: Cri, pod: Pod) -> None:
    url = cri.runtime.Attach(pb.AttachRequest(container_id=pod.shell, stdin=True, stdout=True)).url
    c = SpdyClient(url, ["v4.channel.k8s.io"])
    try:
        c.open("error")
        stdin, out = c.open("stdin"), c.open("stdout")
        c.send(stdin, b"ping\n")
        c.pump(lambda: b"seen ping\n" in c.data.get(out, b""))
    finally:
        c.close()


def test_port_forward(cri: Cri, pod: Pod) -> None:
    url = cri.runtime.PortForward(pb.PortForwardRequest(pod_sandbox_id=pod.sid, port=[8080])).url
    c = SpdyClient(url, ["portforward.k8s.io"])
    try:
        assert c.header("x-stream-protocol-version") == ["portforward.k8s.io"]
        err = c.open("error", port="8080", requestid="0")
        data = c.open("data", port="8080", requestid="0")
        c.send(data, b"GET /index.html HTTP/1.0\r\n\r\n", fin=True)
        bad_err = c.open("error", port="9", requestid="1")
        bad_data = c.open("data", port="9", requestid="1")
        c.pump(lambda: {data, bad_err} <= c.fin)
        assert c.data[data].startswith(b"HTTP/1.") and b"hello-over-spdy" in c.data[data]
        assert c.data.get(err, b"") == b""
        assert b"error forwarding port 9 to pod" in c.data[bad_err] and b"refused" in c.data[bad_err]
        assert bad_data in c.fin or c.pump(lambda: bad_data in c.fin) is None
    finally:
        c.close()


def test_exec_output_held_at_the_clients_windows(cri: Cri, pod: Pod) -> None:
    """A client doing flow control (SETTINGS initial window 16 KiB) that holds back its
    WINDOW_UPDATEs gets exactly its window of a 1 MB output, and the rest once it grants more."""
    size, window = 1_000_000, 16 << 10
    c = _exec(cri, pod.shell, ["head", "-c", str(size), "/dev/zero"], ["v4.channel.k8s.io"], stdout=True)
    try:
        c.sock.sendall(c.codec.encode(spdy.Settings([(0, spdy.SETTINGS_INITIAL_WINDOW_SIZE, window)])))
        err, out = c.open("error"), c.open("stdout")
        c.pump(lambda: len(c.data.get(out, b"")) >= window)
        c.pump_for(1.0)
        assert len(c.data[out]) == window                      # stopped at the stream's window
        c.sock.sendall(c.codec.encode(spdy.WindowUpdate(out, 40 << 10)))
        c.pump(lambda: len(c.data[out]) >= 56 << 10)
        c.pump_for(0.5)
        assert len(c.data[out]) == 56 << 10                    # the stream's window again
        c.sock.sendall(c.codec.encode(spdy.WindowUpdate(out, 1 << 20)))
        c.pump(lambda: len(c.data[out]) >= 64 << 10)
        c.pump_for(0.5)
        assert len(c.data[out]) == 64 << 10                    # now the connection's (64 KiB)
        c.sock.sendall(c.codec.encode(spdy.WindowUpdate(0, 1 << 20)))
        c.pump(lambda: c.closed)
        assert len(c.data[out]) == size and c.data[out].count(0) == size
        assert json.loads(c.data[err]) == {"metadata": {}, "status": "Success"}
    finally:
        c.close()
