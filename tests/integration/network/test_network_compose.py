"""Debian's docker-compose (1.29, Python) against berthd: a web service and a worker on a user
network (the worker reaches the web by its service name) with a named volume."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request
import uuid

import pytest

pytestmark = pytest.mark.root

COMPOSE = shutil.which("docker-compose")

FILE = """\
version: "3.7"
services:
  web:
    image: busybox:latest
    command: sh -c "mkdir -p /www && echo compose-web > /www/index.html && exec httpd -f -p 80 -h /www"
    ports: ["127.0.0.1:{port}:80"]
    networks: [appnet]
    stop_grace_period: 1s
  worker:
    image: busybox:latest
    command: sh -c "while true; do wget -qO- http://web/index.html >> /data/log && echo fetched; sleep 0.3; done"
    volumes: ["appdata:/data"]
    networks: [appnet]
    depends_on: [web]
    stop_grace_period: 1s
networks:
  appnet: {{}}
volumes:
  appdata: {{}}
"""


def test_compose_up_ps_logs_exec_down(berthd, busybox, docker, tmp_path):
    assert COMPOSE is not None, "docker-compose is not installed (.ci/run installs it)"
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    (tmp_path / "docker-compose.yml").write_text(FILE.format(port=port))
    project = f"bt{uuid.uuid4().hex[:6]}"

    def compose(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return subprocess.run([COMPOSE, "-p", project, *args], cwd=tmp_path, env=berthd.env,
                              capture_output=True, text=True, timeout=timeout)

    try:
        r = compose("up", "-d")
        assert r.returncode == 0, r.stdout + r.stderr
        r = compose("ps")
        assert r.returncode == 0, r.stderr
        assert f"{project}_web_1" in r.stdout and f"{project}_worker_1" in r.stdout and "Up" in r.stdout
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=5) as resp:
            assert resp.read() == b"compose-web\n"
        deadline = time.monotonic() + 20
        while "fetched" not in (r := compose("logs", "--no-color", "worker")).stdout:
            assert time.monotonic() < deadline, r.stdout + r.stderr
            time.sleep(0.2)
        r = compose("exec", "-T", "worker", "cat", "/data/log")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "compose-web" in r.stdout
        r = compose("down", "-v")
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"{project}_appdata" not in docker("volume", "ls", "-q").stdout
        assert f"{project}_appnet" not in docker("network", "ls", "--format", "{{.Name}}").stdout
    finally:
        compose("down", "-v", "-t", "1")
