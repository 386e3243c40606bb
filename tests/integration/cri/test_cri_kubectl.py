"""A real client-go SPDY client against berth's streaming server: ``kubectl exec`` and
``kubectl port-forward`` (with their WebSocket variants turned off, so SPDY/3.1 as before
Kubernetes 1.30) talk to a stand-in API server written here, which does what the API server
and the kubelet do between them: it answers the pod GET, asks berthd's CRI for an Exec or
PortForward URL, and splices the client's upgraded connection onto that URL byte for byte
(the kubelet's proxy does not touch the SPDY frames either)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from urllib.parse import parse_qs, urlparse

import pytest

from tests.integration.cri.conftest import Cri, container_config, pb, pod_config

pytestmark = pytest.mark.root

KUBECTL = shutil.which("kubectl") or "kubectl"  # .ci/run installs Debian's kubernetes-client
SERVER = "mkdir -p /www && echo hello-from-kubectl > /www/index.html && exec httpd -f -p 8080 -h /www"


class FakeApiServer:
    """Pod GETs, and exec/portforward upgrades spliced onto berthd's streaming server."""

    def __init__(self, cri: Cri, sandbox: str, containers: dict[str, str]):
        self.cri, self.sandbox, self.containers = cri, sandbox, containers
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.protocols: list[str] = []  # what the clients offered
        self.upgrades: list[str] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = conn.recv(65536)
            if not chunk:
                conn.close()
                return
            buf += chunk
        head, rest = buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        method, target = lines[0].split()[:2]
        headers = [tuple(x.strip() for x in ln.split(":", 1)) for ln in lines[1:]]
        u = urlparse(target)
        q = parse_qs(u.query)
        if u.path.endswith("/exec"):
            url = self.cri.runtime.Exec(pb.ExecRequest(
                container_id=self.containers[q["container"][0]], cmd=q["command"], tty=q.get("tty") == ["true"],
                stdin=q.get("stdin") == ["true"], stdout=q.get("stdout") == ["true"],
                stderr=q.get("stderr") == ["true"])).url
            self._splice(conn, url, headers, rest)
        elif u.path.endswith("/portforward"):
            url = self.cri.runtime.PortForward(pb.PortForwardRequest(pod_sandbox_id=self.sandbox)).url
            self._splice(conn, url, headers, rest)
        else:
            body = json.dumps(self._get(u.path)).encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                         b"Connection: close\r\n\r\n%s" % (len(body), body))
            conn.close()

    def _get(self, path: str) -> dict:
        """Discovery (what kubectl asks first), else the pod."""
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}
        if path == "/apis":
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": []}
        if path == "/api/v1":
            sub = [{"name": f"pods/{r}", "singularName": "", "namespaced": True, "kind": k, "verbs": ["create", "get"]}
                   for r, k in (("exec", "PodExecOptions"), ("portforward", "PodPortForwardOptions"))]
            return {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
                {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod", "verbs": ["get", "list"],
                 "shortNames": ["po"]}, *sub]}
        return self._pod(path.rsplit("/", 1)[1])

    def _pod(self, name: str) -> dict:
        return {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": name, "namespace": "default"},
                "spec": {"containers": [{"name": n, "image": "busybox"} for n in self.containers]},
                "status": {"phase": "Running"}}

    def _splice(self, conn: socket.socket, url: str, headers: list, rest: bytes) -> None:
        u = urlparse(url)
        up = socket.create_connection((u.hostname, u.port))
        keep = [f"{k}: {v}" for k, v in headers if k.lower() in ("connection", "upgrade", "x-stream-protocol-version")]
        self.protocols += [v for k, v in headers if k.lower() == "x-stream-protocol-version"][:1]
        self.upgrades += [v for k, v in headers if k.lower() == "upgrade"]
        up.sendall((f"GET {u.path} HTTP/1.1\r\nHost: {u.netloc}\r\n" + "\r\n".join(keep) + "\r\n\r\n").encode() + rest)

        def pipe(a: socket.socket, b: socket.socket) -> None:
            try:
                while data := a.recv(65536):
                    b.sendall(data)
            except OSError:
                pass
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        threading.Thread(target=pipe, args=(up, conn), daemon=True).start()
        pipe(conn, up)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def api(cri: Cri, busybox: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeApiServer]:
    rt = cri.runtime
    cfg = pod_config(tmp_path_factory.mktemp("kubectl"), "kubectl")
    sid = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=cfg)).pod_sandbox_id
    api = None
    try:
        ids = {}
        for name, cmd in (("web", ["sh", "-c", SERVER]), ("shell", ["sleep", "3600"])):
            ids[name] = rt.CreateContainer(pb.CreateContainerRequest(
                pod_sandbox_id=sid, sandbox_config=cfg, config=container_config(name, busybox, cmd))).container_id
            rt.StartContainer(pb.StartContainerRequest(container_id=ids[name]))
        api = FakeApiServer(cri, sid, ids)
        yield api
    finally:
        if api:
            api.close()
        rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))


def kubectl(api: FakeApiServer, *args: str, stdin: str = "", timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, KUBECONFIG="/dev/null", KUBECTL_REMOTE_COMMAND_WEBSOCKETS="false",
               KUBECTL_PORT_FORWARD_WEBSOCKETS="false")
    return subprocess.run([KUBECTL, "--server", api.url, "-n", "default", *args], input=stdin, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_kubectl_exec_over_spdy(api: FakeApiServer) -> None:
    r = kubectl(api, "exec", "-i", "kubectl", "-c", "shell", "--", "sh", "-c",
                "read x; echo got $x; echo oops >&2; exit 3", stdin="hello\n")
    assert (r.stdout, r.stderr.strip().splitlines()[0], r.returncode) == ("got hello\n", "oops", 3), r.stderr
    assert "command terminated with exit code 3" in r.stderr
    assert api.upgrades == ["SPDY/3.1"]
    assert api.protocols[-1].split(",")[0].strip() in ("v5.channel.k8s.io", "v4.channel.k8s.io")
    ok = kubectl(api, "exec", "kubectl", "-c", "shell", "--", "hostname")
    assert (ok.stdout, ok.returncode) == ("kubectl\n", 0), ok.stderr


def test_kubectl_port_forward_over_spdy(api: FakeApiServer) -> None:
    env = dict(os.environ, KUBECONFIG="/dev/null", KUBECTL_PORT_FORWARD_WEBSOCKETS="false")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = subprocess.Popen([KUBECTL, "--server", api.url, "-n", "default", "port-forward", "pod/kubectl",
                          f"{port}:8080"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=10).read()
                break
            except OSError:
                assert p.poll() is None and time.monotonic() < deadline, p.stderr.read() if p.stderr else ""
                time.sleep(0.2)
        assert body == b"hello-from-kubectl\n"
        assert api.upgrades[-1] == "SPDY/3.1" and api.protocols[-1] == "portforward.k8s.io"
    finally:
        p.terminate()
        p.wait(10)
