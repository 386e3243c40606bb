"""The berth CLI against berthd's TLS listener, as the docker CLI: --tls, --tlsverify,
--tlscacert, --tlscert, --tlskey, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH. Each refusal is
checked against what the docker CLI itself prints and exits with, on the same listener."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.daemon import ROOT, Daemon
from tests.integration.remote.certs import Certs
from tests.integration.remote.test_tls import cli_env, tls_daemon  # noqa: F401 - the fixture

pytestmark = pytest.mark.root
DOCKER = "/usr/local/bin/docker"


def _run(cmd: list[str], env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, env=env, input=stdin, capture_output=True, text=True, timeout=60, cwd=ROOT)


def berth(*args: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return _run([sys.executable, "-m", "berth.cli.main", *args], {**env, "PYTHONPATH": str(ROOT)}, stdin)


def docker(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return _run([DOCKER, *args], env)


def _no_docker_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "BERTH_"))}


def test_env_cert_path_and_verify(tls_daemon: tuple[Daemon, int], certs: Certs) -> None:  # noqa: F811
    _, port = tls_daemon
    env = cli_env(port, certs.client)
    r = berth("run", "--rm", "busybox", "echo", "over tls", env=env)
    assert (r.returncode, r.stdout) == (0, "over tls\n"), r.stderr
    # a hijacked stream: stdin's end reaches the container through TLS (close_notify)
    r = berth("run", "--rm", "-i", "busybox", "cat", env=env, stdin="piped\n")
    assert (r.returncode, r.stdout) == (0, "piped\n"), r.stderr
    assert "Server Version" in berth("info", env=env).stdout


def test_flags(tls_daemon: tuple[Daemon, int], certs: Certs, tmp_path: Path) -> None:  # noqa: F811
    _, port = tls_daemon
    env = {**_no_docker_env(), "HOME": str(tmp_path)}     # no ~/.docker: only the flags count
    flags = ["-H", f"tcp://127.0.0.1:{port}", "--tlsverify", f"--tlscacert={certs.ca / 'ca.pem'}",
             f"--tlscert={certs.client / 'cert.pem'}", f"--tlskey={certs.client / 'key.pem'}"]
    r = berth(*flags, "ps", "-q", env=env)
    assert r.returncode == 0, r.stderr
    # --tls without --tlsverify: the server's certificate is not checked (a stranger CA passes)
    stranger_ca = tmp_path / "ca.pem"
    shutil.copy(certs.stranger.parent / "other-ca" / "ca.pem", stranger_ca)
    tls_only = ["-H", f"tcp://localhost:{port}", "--tls", f"--tlscacert={stranger_ca}",
                f"--tlscert={certs.client / 'cert.pem'}", f"--tlskey={certs.client / 'key.pem'}"]
    assert berth(*tls_only, "ps", "-q", env=env).returncode == 0
    assert docker(*tls_only, "ps", "-q", env=env).returncode == 0
    # DOCKER_TLS_VERIFY with the flags for the files
    r = berth("-H", f"tcp://127.0.0.1:{port}", *flags[3:], "version", "--format", "{{.Server.Version}}",
              env={**env, "DOCKER_TLS_VERIFY": "1"})
    assert r.returncode == 0 and r.stdout.strip(), r.stderr


def _same_failure(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``ps`` with both CLIs; they must fail alike. Returns berth's result."""
    want = docker(*args, "ps", env=env)
    got = berth(*args, "ps", env=env)
    assert want.returncode == 1 and got.returncode == want.returncode, (want, got)
    assert got.stderr.strip().replace("v1.50", "vX") == want.stderr.strip().replace("v1.50", "vX"), (want.stderr, got.stderr)
    return got


def test_wrong_ca_is_the_docker_cli_error(tls_daemon: tuple[Daemon, int], certs: Certs, tmp_path: Path) -> None:  # noqa: F811
    d, port = tls_daemon
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    for name in ("cert.pem", "key.pem"):
        shutil.copy(certs.client / name, wrong / name)
    shutil.copy(certs.stranger.parent / "other-ca" / "ca.pem", wrong / "ca.pem")
    r = _same_failure(cli_env(port, wrong))
    assert "tls: failed to verify certificate: x509: certificate signed by unknown authority" in r.stderr
    assert f'Get "https://127.0.0.1:{port}/v1.50/containers/json' in r.stderr
    # a missing CA file stops the CLI before any request
    r = _same_failure(cli_env(port, tmp_path / "nowhere"))
    assert r.stderr.startswith("Failed to initialize: unable to resolve docker endpoint: open ")
    assert d.proc is not None and d.proc.poll() is None
