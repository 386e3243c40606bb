"""Networks and volumes across berthd restarts (kill -9 and a clean stop), and cleanup: once
the containers, networks and volumes are gone and berthd has stopped, no bridge, veth, nft
table or mount of berth's is left on the host. Runs its own berthd."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request

import pytest

from tests.integration.conftest import DOCKER
from tests.integration.daemon import Daemon

pytestmark = pytest.mark.root


def _links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def _tables() -> str:
    return subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout


def _get(url: str, timeout: float = 10) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_restarts_keep_networks_and_volumes_and_cleanup_leaves_nothing():
    before_links = _links()
    d = Daemon()
    d.start()
    from berth.engine.networks import instance_of

    table = f"berth_{instance_of(d.data_root)}"

    def docker(*args: str) -> str:
        r = subprocess.run([DOCKER, *args], env=d.env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r.stdout

    try:
        d.import_busybox()
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        netid = docker("network", "create", "life").strip()
        docker("run", "--rm", "-v", "lifedata:/data", "busybox", "sh", "-c", "echo durable > /data/f")
        docker("run", "-d", "--name", "srv", "--network", "life", "-p", f"127.0.0.1:{port}:80",
               "-v", "lifedata:/www", "busybox", "httpd", "-f", "-p", "80", "-h", "/www")
        assert _get(f"http://127.0.0.1:{port}/f") == b"durable\n"
        srv_ip = json.loads(docker("inspect", "srv"))[0]["NetworkSettings"]["Networks"]["life"]["IPAddress"]
        assert table in _tables()

        d.kill9()
        d.start()
        # The kernel kept forwarding; berthd re-created its rules, port sockets and DNS.
        assert _get(f"http://127.0.0.1:{port}/f") == b"durable\n"
        out = docker("run", "--rm", "--network", "life", "busybox", "sh", "-c",
                     "wget -qO- http://srv/f; ip -o -4 addr show eth0")
        assert "durable" in out and f"inet {srv_ip}/" not in out
        s = socket.socket()
        with pytest.raises(OSError):
            s.bind(("127.0.0.1", port))
        s.close()

        d.stop()   # a clean stop with a container running keeps its network
        d.start()
        assert _get(f"http://127.0.0.1:{port}/f") == b"durable\n"

        docker("rm", "-f", "srv")
        assert docker("run", "--rm", "-v", "lifedata:/data", "busybox", "cat", "/data/f") == "durable\n"
        docker("network", "rm", "life")
        docker("volume", "rm", "lifedata")
        assert f"br-{netid[:12]}" not in _links()
    finally:
        d.cleanup()
    # Veths go with their namespace, which the kernel frees asynchronously (cleanup_net).
    deadline = time.monotonic() + 10
    while not _links() <= before_links and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _links() <= before_links, _links() - before_links
    assert table not in _tables()
    with open("/proc/self/mountinfo") as f:
        assert str(d.base) not in f.read()
