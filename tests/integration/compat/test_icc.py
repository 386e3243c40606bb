"""icc=false (daemon.json ``icc``, and a bridge network's ``com.docker.network.bridge.enable_icc``):
containers on that bridge cannot open connections to each other, but still reach published
ports (through the host address) and the outside, as Docker allows.

berthd runs in a network namespace of its own whose forward path drops (firewalled.py's
set-up: iptables FORWARD policy DROP, a firewalld-like nft table), with a veth to "the world",
once with each firewall back end (nftables, iptables-legacy).
The listener is busybox ``nc``; each refusal has a control that passes on the same path without
icc=false, so a drop cannot be a listener that never came up.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.integration.compat.firewalled import (
    HOST_ADDR,
    WORLD_ADDR,
    Firewalled,
    br_netfilter,
    firewalled,
    in_ns,
    ok,
)

pytestmark = pytest.mark.root
PORT = 7000


@pytest.fixture(scope="module", params=["nftables", "iptables-legacy"])
def fw(request: pytest.FixtureRequest) -> Iterator[Firewalled]:
    if not br_netfilter():
        pytest.fail("needs br_netfilter (bridged traffic through the ip hooks)")
    nc = ["busybox", "nc", "-ll", "-p", str(PORT), "-e", "echo", "world"]
    with firewalled("bicc", lambda d: nc, args=["--icc=false"], env={"BERTH_FIREWALL_BACKEND": request.param}) as fw:
        yield fw


def _listener(fw: Firewalled, name: str, *args: str) -> str:
    """A busybox nc server answering "pong" on PORT; returns its address on its first network."""
    ok(fw.docker("run", "-d", "--name", name, *args, "busybox:latest", "nc", "-ll", "-p", str(PORT),
                 "-e", "echo", "pong"))
    ip = ok(fw.docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", name)).split()[0]
    # the control: the host reaches it (host to bridge is not bridge to bridge)
    script = f"for i in $(seq 20); do r=$(busybox nc -w 2 {ip} {PORT}) && [ -n \"$r\" ] && echo $r && exit 0; sleep 0.1; done"
    assert in_ns(fw.ns, "sh", "-c", script, check=False).stdout.strip() == "pong", "the listener never came up"
    return ip


def _connect(fw: Firewalled, net: str, addr: str, port: int = PORT) -> str:
    """What a fresh client container on ``net`` reads from addr:port ("" when it cannot connect)."""
    r = fw.docker("run", "--rm", "--network", net, "busybox:latest", "nc", "-w", "2", addr, str(port), timeout=60)
    return r.stdout.strip()


def test_default_bridge_icc_false(fw: Firewalled) -> None:
    name = f"srv{uuid.uuid4().hex[:6]}"
    try:
        opts = ok(fw.docker("network", "inspect", "-f", "{{json .Options}}", "bridge"))
        assert '"com.docker.network.bridge.enable_icc":"false"' in opts, opts
        ip = _listener(fw, name, "-p", f"{PORT + 1}:{PORT}")
        assert _connect(fw, "bridge", ip) == ""                               # container to container: dropped
        assert _connect(fw, "bridge", HOST_ADDR, PORT + 1) == "pong"          # its published port: allowed
        assert _connect(fw, "bridge", WORLD_ADDR) == "world"                  # the outside: allowed
    finally:
        fw.docker("rm", "-f", name)


def test_network_option_enable_icc_false(fw: Firewalled) -> None:
    tag = uuid.uuid4().hex[:6]
    closed, open_ = f"noicc{tag}", f"icc{tag}"
    names = [f"a{tag}", f"b{tag}"]
    try:
        ok(fw.docker("network", "create", "-o", "com.docker.network.bridge.enable_icc=false", closed))
        ok(fw.docker("network", "create", open_))
        ip_closed = _listener(fw, names[0], "--network", closed)
        ip_open = _listener(fw, names[1], "--network", open_)
        assert _connect(fw, open_, ip_open) == "pong"       # the control: icc on, same traffic
        assert _connect(fw, closed, ip_closed) == ""
        assert _connect(fw, closed, names[0]) == ""          # by name (the embedded DNS) as well
        assert _connect(fw, closed, WORLD_ADDR) == "world"
    finally:
        fw.docker("rm", "-f", *names)
        fw.docker("network", "rm", closed, open_)
