"""Rootless berthd connected by slirp4netns (issue 15): where pasta is absent, or chosen with
BERTH_ROOTLESS_NET=slirp4netns as here. Published ports go through slirp4netns's API
(add_hostfwd, by the host-side watcher), the host's loopback registry is reached through
slirp's 10.0.2.2, and ``docker info`` names the tool.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.rootless.netclient import clients_seen, http_get
from tests.integration.rootless.user import RootlessDaemon, module_daemon, registry_round_trip

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def slirp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RootlessDaemon]:
    yield from module_daemon(tmp_path_factory, env={"BERTH_ROOTLESS_PORT_START": "1024",
                                                    "BERTH_ROOTLESS_NET": "slirp4netns"}, tool="slirp4netns")


def test_info_names_slirp4netns_and_pasta_is_not_running(slirp: RootlessDaemon) -> None:
    info = json.loads(slirp.docker("info", "--format", "{{json .}}").stdout)
    assert "name=rootless,network=slirp4netns" in info["SecurityOptions"]
    cmds = [Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")[0] for p in slirp.user.pids()
            if os.path.exists(f"/proc/{p}/cmdline")]
    assert any(c.endswith(b"slirp4netns") for c in cmds) and not any(c.endswith(b"pasta") for c in cmds)
    r = slirp.docker("info", "--format", "{{range .SecurityOptions}}{{println .}}{{end}}")
    assert "name=rootless,network=slirp4netns\n" in r.stdout


def test_published_ports_are_forwarded_through_slirp4netns(slirp: RootlessDaemon) -> None:
    from tests.integration.images.registry_proc import free_port
    port, lo = free_port(), free_port()
    r = slirp.docker("run", "-d", "--name", "sweb", "-p", f"{port}:80", "-p", f"127.0.0.1:{lo}:81", "busybox", "sh",
                     "-c", "httpd -p 80 -h /etc; exec httpd -f -p 81 -h /etc")
    assert r.returncode == 0, r.stderr
    try:
        want = r.stdout.strip()[:12].encode() + b"\n"
        assert http_get(f"http://127.0.0.1:{port}/hostname") == want
        assert http_get(f"http://127.0.0.1:{lo}/hostname") == want
    finally:
        slirp.docker("rm", "-f", "sweb")
    deadline = time.monotonic() + 5   # the forward goes with the container
    while time.monotonic() < deadline:
        try:
            http_get(f"http://127.0.0.1:{port}/hostname", timeout=0)
        except OSError:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"port {port} still forwarded after the container went")


def test_pull_from_a_registry_on_the_hosts_loopback(slirp: RootlessDaemon) -> None:
    registry_round_trip(slirp, "rootless/slirp:1")


def test_a_published_port_keeps_a_client_from_elsewhere_and_shows_slirps_gateway_for_loopback(
        slirp: RootlessDaemon) -> None:
    """slirp4netns's hostfwd keeps a client's address unless it is a loopback one (libslirp
    gives those its own host address, 10.0.2.2): a client in a network namespace behind a veth
    and the host's own addresses are seen as they are, the host's loopback as 10.0.2.2."""
    sent, seen = clients_seen(slirp, "ssrc")
    assert seen == [*sent[:3], "10.0.2.2"]
