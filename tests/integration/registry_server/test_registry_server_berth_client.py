"""berth's own registry client (berthd pull/push, through the real docker CLI) against
`berth registry serve`: no auth, Basic (htpasswd), Bearer tokens, and TLS."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import bcrypt
import pytest
from registry_server_support import Server

pytestmark = pytest.mark.root
DOCKER = "/usr/local/bin/docker"

RULES = """
[[access]]
account = "alice"
repository = "*"
actions = ["*"]
"""


def _config(mode: str, tmp: Path) -> str | None:
    if mode in ("none", "tls"):
        return None
    htpasswd = tmp / "htpasswd"
    htpasswd.write_text("alice:" + bcrypt.hashpw(b"alice-pw", bcrypt.gensalt(5)).decode() + "\n")
    token = '[auth.token]\nservice = "berth-test"\n' if mode == "bearer" else ""
    return f'[auth]\nhtpasswd = "{htpasswd}"\n{token}{RULES}'


def _tls(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


@pytest.fixture(params=["none", "basic", "bearer", "tls"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Server]]:
    if request.param == "tls" and shutil.which("openssl") is None:
        pytest.fail("needs openssl to make a certificate (.ci/run installs it)")
    tls = _tls(tmp_path) if request.param == "tls" else None
    s = Server(tmp_path / "root", config=_config(request.param, tmp_path), tls=tls)
    try:
        yield request.param, s
    finally:
        s.stop()


def test_push_rmi_pull_run(server: tuple[str, Server], berthd, busybox, tmp_path: Path) -> None:
    mode, srv = server
    env = dict(berthd.env, DOCKER_CONFIG=str(tmp_path / "dockercfg"))

    def docker(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([DOCKER, *args], env=env, capture_output=True, text=True, timeout=120, input=input)

    ref = f"{srv.host}/team/bb:{mode}"
    assert docker("tag", busybox, ref).returncode == 0
    if mode in ("basic", "bearer"):
        r = docker("push", ref)
        assert r.returncode != 0, "push without credentials must be refused"
        r = docker("login", "-u", "alice", "--password-stdin", srv.host, input="wrong\n")
        assert r.returncode != 0
        r = docker("login", "-u", "alice", "--password-stdin", srv.host, input="alice-pw\n")
        assert r.returncode == 0, r.stderr
        assert "Login Succeeded" in r.stdout
    r = docker("push", ref)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "digest: sha256:" in r.stdout
    assert docker("rmi", ref).returncode == 0
    r = docker("pull", ref)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"Status: Downloaded newer image for {ref}" in r.stdout or "Image is up to date" in r.stdout
    r = docker("run", "--rm", ref, "echo", "pulled and ran")
    assert r.stdout == "pulled and ran\n", r.stderr
    docker("rmi", ref)
