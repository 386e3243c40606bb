"""berthd on tcp:// with TLS: the docker CLI (DOCKER_TLS_VERIFY, DOCKER_CERT_PATH) and docker-py
(TLSConfig) with client certificates; clients without one, with an expired one or one from
another CA are refused at the handshake and berthd stays up; plain TCP needs --tls=false."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import docker
import pytest

from tests.integration.daemon import ROOT, Daemon
from tests.integration.remote.conftest import free_port
from tests.integration.remote.certs import Certs

pytestmark = pytest.mark.root
DOCKER = "/usr/local/bin/docker"


@pytest.fixture(scope="module")
def tls_daemon(certs: Certs) -> Iterator[tuple[Daemon, int]]:
    port = free_port()
    d = Daemon(args=["-H", f"tcp://127.0.0.1:{port}", "--tlsverify", f"--tlscacert={certs.ca / 'ca.pem'}",
                     f"--tlscert={certs.server / 'cert.pem'}", f"--tlskey={certs.server / 'key.pem'}"])
    d.start()
    d.import_busybox()
    try:
        yield d, port
    finally:
        d.cleanup()


def cli_env(port: int, cert_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    return {**env, "DOCKER_HOST": f"tcp://127.0.0.1:{port}", "DOCKER_TLS_VERIFY": "1",
            "DOCKER_CERT_PATH": str(cert_path)}


def tls_ping(port: int, cert_dir: Path | None, ca: Path) -> bytes:
    """GET /_ping over TLS as a client with ``cert_dir``'s certificate (None: no certificate)."""
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert_dir is not None:
        ctx.load_cert_chain(str(cert_dir / "cert.pem"), str(cert_dir / "key.pem"))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(b"GET /_ping HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            out = b""
            while chunk := s.recv(4096):
                out += chunk
            return out


def test_docker_cli_over_tls(tls_daemon: tuple[Daemon, int], certs: Certs) -> None:
    _, port = tls_daemon
    env = cli_env(port, certs.client)
    r = subprocess.run([DOCKER, "run", "--rm", "busybox", "echo", "over tls"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "over tls\n"
    # an attach with a tty (a hijacked connection) works through TLS too
    r = subprocess.run([DOCKER, "run", "--rm", "-i", "busybox", "cat"], env=env, input="piped\n",
                       capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, "piped\n"), r.stderr


def test_docker_py_tlsconfig(tls_daemon: tuple[Daemon, int], certs: Certs, monkeypatch: pytest.MonkeyPatch) -> None:
    _, port = tls_daemon
    # requests lets these variables override the session's CA (docker-py's ca_cert) when set
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    tls = docker.tls.TLSConfig(client_cert=(str(certs.client / "cert.pem"), str(certs.client / "key.pem")),
                               ca_cert=str(certs.ca / "ca.pem"), verify=True)
    client = docker.DockerClient(base_url=f"tcp://127.0.0.1:{port}", tls=tls)
    try:
        assert client.ping()
        assert client.containers.run("busybox", ["echo", "py"], remove=True) == b"py\n"
    finally:
        client.close()


@pytest.mark.parametrize("who", ["none", "expired", "stranger"])
def test_bad_client_certificates_are_refused(tls_daemon: tuple[Daemon, int], certs: Certs, who: str) -> None:
    d, port = tls_daemon
    cert_dir = {"none": None, "expired": certs.expired, "stranger": certs.stranger}[who]
    with pytest.raises((ssl.SSLError, ConnectionError)):
        reply = tls_ping(port, cert_dir, certs.ca / "ca.pem")
        assert not reply, reply  # TLS 1.3: the refusal may come as the connection closing
        raise ConnectionError("closed without a reply")
    # the docker CLI as that client fails too; berthd stays up for the good ones
    if cert_dir is not None:
        r = subprocess.run([DOCKER, "version"], env=cli_env(port, cert_dir), capture_output=True, text=True,
                           timeout=30)
        assert r.returncode != 0 and "Server:" not in r.stdout
    assert tls_ping(port, certs.client, certs.ca / "ca.pem").endswith(b"OK")
    assert d.proc is not None and d.proc.poll() is None


def test_plain_http_to_the_tls_port_gets_no_api(tls_daemon: tuple[Daemon, int]) -> None:
    _, port = tls_daemon
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"OK" not in s.recv(4096)


def test_tls_without_verify_is_server_tls_only(certs: Certs) -> None:
    port = free_port()
    d = Daemon(args=["-H", f"tcp://127.0.0.1:{port}", "--tls", f"--tlscert={certs.server / 'cert.pem'}",
                     f"--tlskey={certs.server / 'key.pem'}"])
    d.start()
    try:
        assert tls_ping(port, None, certs.ca / "ca.pem").endswith(b"OK")
        assert "Binding to IP address without --tlsverify is insecure" in d.log.read_text()
    finally:
        d.cleanup()


def _berthd(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="berth-", dir="/tmp") as base:
        return subprocess.run([sys.executable, "-m", "berth.daemon.main", "--data-root", f"{base}/data",
                               "--exec-root", f"{base}/run", "-H", f"unix://{base}/s.sock", *args],
                              cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_plain_tcp_is_refused_without_explicit_tls_false() -> None:
    r = _berthd("-H", f"tcp://127.0.0.1:{free_port()}")
    assert r.returncode != 0
    assert "without TLS" in r.stderr and "--tls=false" in r.stderr


def test_missing_certificates_stop_berthd(certs: Certs, tmp_path: Path) -> None:
    r = _berthd("-H", f"tcp://127.0.0.1:{free_port()}", "--tlsverify", f"--tlscacert={tmp_path / 'nope.pem'}",
                f"--tlscert={certs.server / 'cert.pem'}", f"--tlskey={certs.server / 'key.pem'}")
    assert r.returncode != 0 and "could not read CA certificate" in r.stderr and "nope.pem" in r.stderr


def test_plain_tcp_with_tls_false_warns_and_serves() -> None:
    port = free_port()
    d = Daemon(args=["-H", f"tcp://127.0.0.1:{port}", "--tls=false"])
    d.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert s.recv(4096).endswith(b"OK")
        log = d.log.read_text()
        assert "Binding to IP address without --tlsverify is insecure" in log
        assert f"tcp://127.0.0.1:{port}" in log
    finally:
        d.cleanup()
