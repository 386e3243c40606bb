"""Rootless berthd connected by slirp4netns (issue 15): where pasta is absent, or chosen with
BERTH_ROOTLESS_NET=slirp4netns as here. Published ports go through slirp4netns's API
(add_hostfwd, by the host-side watcher), the host's loopback registry is reached through
slirp's 10.0.2.2, and ``docker info`` names the tool.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.rootless.netclient import ClientNetns
from tests.integration.rootless.test_rootless import _get, client_addresses, default_route
from tests.integration.rootless.user import RootlessDaemon, RootlessUser, need_tools, rootfs_tar

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def slirp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RootlessDaemon]:
    need_tools()
    if shutil.which("slirp4netns") is None:
        pytest.fail("needs slirp4netns (.ci/run installs it)")
    tar = rootfs_tar(tmp_path_factory.mktemp("rootfs"))
    u = RootlessUser.make()
    d = RootlessDaemon(u, env={"BERTH_ROOTLESS_PORT_START": "1024", "BERTH_ROOTLESS_NET": "slirp4netns"})
    try:
        d.start()
        d.import_busybox(tar)
        yield d
    finally:
        d.stop()
        u.remove()


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
        assert _get(f"http://127.0.0.1:{port}/hostname") == want
        assert _get(f"http://127.0.0.1:{lo}/hostname") == want
    finally:
        slirp.docker("rm", "-f", "sweb")
    deadline = time.monotonic() + 5   # the forward goes with the container
    while time.monotonic() < deadline:
        try:
            _get(f"http://127.0.0.1:{port}/hostname", timeout=0)
        except OSError:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"port {port} still forwarded after the container went")


def test_pull_from_a_registry_on_the_hosts_loopback(slirp: RootlessDaemon) -> None:
    from tests.integration.images.registry_proc import BINARY, RegistryProc
    if not os.path.exists(BINARY):
        pytest.fail("needs docker-registry (.ci/run installs it)")
    reg = RegistryProc().start()
    ref = f"{reg.host}/rootless/slirp:1"
    try:
        assert slirp.docker("tag", "busybox", ref).returncode == 0
        r = slirp.docker("push", ref)
        assert r.returncode == 0, r.stderr
        assert slirp.docker("rmi", ref).returncode == 0
        r = slirp.docker("pull", ref)
        assert r.returncode == 0, r.stderr
        assert slirp.docker("run", "--rm", ref, "echo", "pulled").stdout == "pulled\n"
    finally:
        slirp.docker("rmi", ref)
        reg.stop()


def test_a_published_port_keeps_a_client_from_elsewhere_and_shows_slirps_gateway_for_loopback(
        slirp: RootlessDaemon) -> None:
    """slirp4netns's hostfwd keeps a client's address unless it is a loopback one (libslirp
    gives those its own host address, 10.0.2.2): a client in a network namespace behind a veth
    is seen with its own address, one on the host's loopback as 10.0.2.2."""
    from tests.integration.images.registry_proc import free_port
    port = free_port()
    r = slirp.docker("run", "-d", "--name", "ssrc", "-p", f"{port}:80", "busybox", "httpd", "-f", "-vv", "-p", "80",
                     "-h", "/etc")
    assert r.returncode == 0, r.stderr
    try:
        with ClientNetns() as c:
            got = c.get(f"http://{c.host_addr}:{port}/hostname")
            assert got.stdout == r.stdout.strip()[:12] + "\n", got.stderr
            assert client_addresses(slirp, "ssrc") == [c.addr]
            assert _get(f"http://{c.host_addr}:{port}/hostname") == got.stdout.encode()
        own = default_route()[1]
        assert _get(f"http://{own}:{port}/hostname") == got.stdout.encode()
        assert _get(f"http://127.0.0.1:{port}/hostname") == got.stdout.encode()
        assert client_addresses(slirp, "ssrc") == [c.addr, c.host_addr, own, "10.0.2.2"]
    finally:
        slirp.docker("rm", "-f", "ssrc")
