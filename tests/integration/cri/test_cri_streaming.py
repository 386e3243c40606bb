"""Exec, Attach and PortForward through berthd's CRI streaming server, driven by the
``kubernetes`` Python client's stream module (the WebSocket channel protocol, v5 and v4) and,
for port forwarding, a raw WebSocket client (websocket-client)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from tests.integration.cri.conftest import Cri, StreamPod, grpc, pb, stream_pod

ws_client = pytest.importorskip("kubernetes.stream.ws_client", reason="the test extra (kubernetes) is not installed")
from kubernetes.client import Configuration  # noqa: E402
from websocket import ABNF, WebSocket  # noqa: E402

pytestmark = pytest.mark.root



Pod = StreamPod


@pytest.fixture(scope="module")
def pod(cri: Cri, busybox: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    with stream_pod(cri, busybox, tmp_path_factory.mktemp("streaming"), "streaming", "hello-from-pod") as p:
        yield p


def _client(url: str) -> ws_client.WSClient:
    """The kubernetes client's channel-protocol WebSocket (it offers v5 and v4)."""
    return ws_client.WSClient(Configuration(), ws_client.get_websocket_url(url), None, capture_all=True)


def _exec_url(cri: Cri, cid: str, cmd: list[str], **kw: bool) -> str:
    return cri.runtime.Exec(pb.ExecRequest(container_id=cid, cmd=cmd, **kw)).url


def test_exec_streams_and_exit_code(cri: Cri, pod: Pod) -> None:
    url = _exec_url(cri, pod.shell, ["sh", "-c", "read x; echo got $x; echo err >&2; exit 3"],
                    stdin=True, stdout=True, stderr=True)
    assert url.startswith("http://127.0.0.1:")
    c = _client(url)
    assert c.subprotocol == "v5.channel.k8s.io"
    c.write_stdin("hello\n")
    c.run_forever(timeout=20)
    assert not c.is_open()
    assert (c.read_stdout(), c.read_stderr(), c.returncode) == ("got hello\n", "err\n", 3)

    ok = _client(_exec_url(cri, pod.shell, ["hostname"], stdout=True))
    ok.run_forever(timeout=20)
    assert (ok.read_stdout(), ok.returncode) == ("streaming\n", 0)


def test_exec_v5_closes_stdin_and_v4_still_works(cri: Cri, pod: Pod) -> None:
    c = _client(_exec_url(cri, pod.shell, ["sh", "-c", "cat; echo done"], stdin=True, stdout=True))
    c.write_stdin("abc\n")
    c.close_channel(0)  # v5: stdin's EOF, so cat ends
    c.run_forever(timeout=20)
    assert (c.read_stdout(), c.returncode) == ("abc\ndone\n", 0)

    v4 = ws_client.WSClient(Configuration(), ws_client.get_websocket_url(
        _exec_url(cri, pod.shell, ["sh", "-c", "exit 7"], stdout=True)),
        {"sec-websocket-protocol": "v4.channel.k8s.io"}, capture_all=True)
    v4.run_forever(timeout=20)
    assert (v4.subprotocol, v4.returncode) == ("v4.channel.k8s.io", 7)


def test_exec_tty_resize(cri: Cri, pod: Pod) -> None:
    c = _client(_exec_url(cri, pod.shell, ["sh", "-c", "read x; stty size"], stdin=True, stdout=True, tty=True))
    c.write_channel(4, json.dumps({"Width": 101, "Height": 33}))
    c.write_stdin("go\n")
    c.run_forever(timeout=20)
    assert "33 101" in c.read_stdout()
    assert c.returncode == 0


def test_attach(cri: Cri, pod: Pod) -> None:
    url = cri.runtime.Attach(pb.AttachRequest(container_id=pod.shell, stdin=True, stdout=True)).url
    c = _client(url)
    c.write_stdin("ping\n")
    assert c.readline_stdout(timeout=20) == "seen ping"
    c.close()
    # a URL is good for one connection
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url, timeout=10)
    assert e.value.code == 404


def test_port_forward(cri: Cri, pod: Pod) -> None:
    url = cri.runtime.PortForward(pb.PortForwardRequest(pod_sandbox_id=pod.sid, port=[8080])).url
    ws = WebSocket()
    ws.connect(url.replace("http://", "ws://") + "?ports=8080,9", subprotocols=["v4.channel.k8s.io"], timeout=20)
    try:
        assert ws.subprotocol == "v4.channel.k8s.io"
        first = sorted(ws.recv_data_frame(True)[1].data for _ in range(4))
        assert first == [b"\x00\x90\x1f", b"\x01\x90\x1f", b"\x02\x09\x00", b"\x03\x09\x00"]
        ws.send(b"\x00GET /index.html HTTP/1.0\r\n\r\n", opcode=ABNF.OPCODE_BINARY)
        got: dict[int, bytes] = {0: b"", 3: b""}
        while b"hello-from-pod" not in got[0] or not got[3]:  # port 9: nothing listens in the pod
            data = ws.recv_data_frame(True)[1].data
            got[data[0]] = got.get(data[0], b"") + data[1:]
        assert got[0].startswith(b"HTTP/1.")
        assert b"error forwarding port 9 to pod" in got[3] and b"refused" in got[3]
    finally:
        ws.close()


def test_streaming_bad_input(cri: Cri, pod: Pod) -> None:
    rt = cri.runtime
    with pytest.raises(grpc.RpcError) as e:
        rt.Exec(pb.ExecRequest(container_id=pod.shell, cmd=["true"]))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "stdin, stdout, or stderr" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        rt.Exec(pb.ExecRequest(container_id=pod.shell, cmd=["true"], stdout=True, stderr=True, tty=True))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as e:
        rt.Attach(pb.AttachRequest(container_id="0" * 64, stdout=True))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as e:
        rt.PortForward(pb.PortForwardRequest(pod_sandbox_id="nope", port=[80]))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    # no upgrade (a plain GET): 400, the token is spent
    url = _exec_url(cri, pod.shell, ["true"], stdout=True)
    with pytest.raises(urllib.error.HTTPError) as h:
        urllib.request.urlopen(url, timeout=10)
    assert h.value.code == 400
    base = url.rsplit("/", 2)[0]
    with pytest.raises(urllib.error.HTTPError) as h:
        urllib.request.urlopen(base + "/exec/not-a-token", timeout=10)
    assert h.value.code == 404
    # a command that is not there: the error channel says so, with its exit code
    c = _client(_exec_url(cri, pod.shell, ["/no/such/thing"], stdout=True, stderr=True))
    c.run_forever(timeout=20)
    assert c.returncode != 0
