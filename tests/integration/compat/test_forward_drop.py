"""berth's bridges work beside a firewall whose forward path drops (Docker, ufw, firewalld).

Docker 20.10+ behaviour: dockerd sets the iptables FORWARD policy to DROP and makes its own
bridges work anyway through its DOCKER-USER / DOCKER-FORWARD chains (Docker 28: DOCKER-FORWARD,
DOCKER-CT, DOCKER-BRIDGE); netavark and firewalld's "docker" zone do the same. With
br_netfilter, even traffic between two containers on one bridge passes that hook. berth must
make its bridges work whatever the host's filter policy is, and leave nothing behind.

The host's firewall is never touched: berthd runs in a network namespace of its own whose
forward path drops, with a veth pair to "the world" (``firewalled.py``).
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.integration.compat.firewalled import (
    HOST_ADDR,
    IPTABLES,
    WORLD_ADDR,
    Firewalled,
    br_netfilter,
    firewalled,
    in_ns,
    ok,
)
from tests.integration.daemon import Daemon

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def fw() -> Iterator[Firewalled]:
    if not br_netfilter():
        pytest.skip("br_netfilter is not available")

    def httpd(d: Daemon) -> list[str]:
        web_root = d.base / "www"
        web_root.mkdir()
        (web_root / "index.html").write_text("hello from the world\n")
        return ["busybox", "httpd", "-f", "-p", f"{WORLD_ADDR}:8080", "-h", str(web_root)]

    with firewalled("bfw", httpd) as fw:
        ok(fw.docker("run", "--rm", "busybox:latest", "true"))   # berthd sets its network up lazily
        yield fw


def _uid() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def made(fw: Firewalled) -> Iterator[Callable[[str, str], str]]:
    """made("container"|"network", name): removed after the test."""
    names: list[tuple[str, str]] = []

    def add(kind: str, name: str) -> str:
        names.append((kind, name))
        return name
    yield add
    for kind, name in reversed(names):
        fw.docker("rm", "-f", name) if kind == "container" else fw.docker("network", "rm", name)


def _web(fw: Firewalled, made: Callable[[str, str], str], *args: str) -> str:
    name = made("container", f"web{_uid()}")
    ok(fw.docker("run", "-d", "--name", name, *args, "busybox:latest", "sh", "-c",
                 "mkdir /www && echo hello-from-web > /www/index.html && exec httpd -f -p 80 -h /www"))
    return name


def _fetch(fw: Firewalled, net: str, url: str, tries: int = 10) -> subprocess.CompletedProcess[str]:
    """wget from a fresh container; retries a short while for the server to listen. The last
    exit status goes to stderr: 143 is a timeout (this busybox's ``wget -T`` crashes)."""
    script = (f"for i in $(seq {tries}); do timeout 3 wget -q -O - {url} && exit 0; rc=$?; sleep 0.2; done; "
              "echo rc=$rc >&2; exit 1")
    return fw.docker("run", "--rm", "--network", net, "busybox:latest", "sh", "-c", script, timeout=120)


def test_containers_on_user_network_reach_each_other_by_name(fw: Firewalled, made) -> None:
    net = made("network", f"fwnet{_uid()}")
    ok(fw.docker("network", "create", net))
    web = _web(fw, made, "--network", net)
    r = _fetch(fw, net, f"http://{web}/")
    assert r.returncode == 0 and r.stdout == "hello-from-web\n", r.stdout + r.stderr


@pytest.mark.parametrize("where", [*IPTABLES, "nft"])
def test_forward_drop_really_drops_without_berths_rules(fw: Firewalled, made, where: str) -> None:
    """The control: take berth's rules out of any one of the firewalls and the same traffic
    times out (a packet must be accepted by every base chain on the hook); it works again
    when berth next applies its rules (here: another network is created)."""
    net = made("network", f"fwnet{_uid()}")
    ok(fw.docker("network", "create", net))
    web = _web(fw, made, "--network", net)
    assert _fetch(fw, net, f"http://{web}/").returncode == 0
    assert any(r.startswith(f"{where}:") for r in fw.berth_rules()), fw.berth_rules()
    fw.drop_berth_rules(where)
    assert not any(r.startswith(f"{where}:") for r in fw.berth_rules()), fw.berth_rules()
    r = _fetch(fw, net, f"http://{web}/", tries=1)
    assert r.returncode != 0 and "rc=143" in r.stderr, r.stdout + r.stderr
    other = made("network", f"fwnet{_uid()}")
    ok(fw.docker("network", "create", other))
    assert _fetch(fw, net, f"http://{web}/").returncode == 0


def test_container_reaches_published_port_through_host_address(fw: Firewalled, made) -> None:
    """Server on a user network, client on the default bridge: DNAT then bridge to bridge."""
    net = made("network", f"fwnet{_uid()}")
    ok(fw.docker("network", "create", net))
    web = _web(fw, made, "--network", net, "-p", "18080:80")
    assert web
    r = _fetch(fw, "bridge", f"http://{HOST_ADDR}:18080/")
    assert r.returncode == 0 and r.stdout == "hello-from-web\n", r.stdout + r.stderr


def test_container_reaches_the_world_through_masquerade(fw: Firewalled) -> None:
    r = _fetch(fw, "bridge", f"http://{WORLD_ADDR}:8080/")
    assert r.returncode == 0 and r.stdout == "hello from the world\n", r.stdout + r.stderr


def test_connect_then_reach_by_name(fw: Firewalled, made) -> None:
    net = made("network", f"fwnet{_uid()}")
    ok(fw.docker("network", "create", net))
    web = _web(fw, made)
    ok(fw.docker("network", "connect", net, web))
    r = _fetch(fw, net, f"http://{web}/")
    assert r.returncode == 0 and r.stdout == "hello-from-web\n", r.stdout + r.stderr


def test_rules_follow_the_bridges(fw: Firewalled) -> None:
    """A network's bridge gets rules in every dropping firewall; they go with the network."""
    net = f"fwnet{_uid()}"
    ok(fw.docker("network", "create", net))
    try:
        bridge = "br-" + ok(fw.docker("network", "inspect", "-f", "{{.Id}}", net)).strip()[:12]
        rules = fw.berth_rules()
        for where in [*IPTABLES, "nft"]:
            assert any(r.startswith(f"{where}:") and bridge in r for r in rules), (where, rules)
    finally:
        ok(fw.docker("network", "rm", net))
    assert not any(bridge in r for r in fw.berth_rules())
    assert fw.berth_rules(), "the default bridge's rules went too"


def test_nothing_left_after_berthd_stops() -> None:
    """A berthd with no running containers that stops removes its chains and rules."""
    if not br_netfilter():
        pytest.skip("br_netfilter is not available")
    with firewalled("bfw", None) as fw:
        ok(fw.docker("run", "--rm", "busybox:latest", "true"))   # berthd sets its network up lazily
        ok(fw.docker("network", "create", "leftover"))
        assert fw.berth_rules()
        fw.daemon.stop()
        assert fw.berth_rules() == []
        assert "table ip berth" not in in_ns(fw.ns, "nft", "list", "tables").stdout
