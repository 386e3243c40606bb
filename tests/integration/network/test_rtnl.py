"""A container's veth through raw rtnetlink (``linux.rtnl`` via ``network.netlink``), for real:
each test runs in a forked child that first unshares its network namespace, so the bridge,
the veths and the container's namespace it makes vanish with it and nothing touches the host.
``ip -j`` (iproute2) reads back what the kernel holds.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from typing import Any

import pytest

from berth.linux import netns, rtnl
from berth.linux.sched import CloneFlags, unshare
from berth.network import netlink
from tests.integration.runtime.test_runtime_linux import in_child

pytestmark = pytest.mark.root


def _ip(*args: str, ns: str = "") -> Any:
    cmd = (["nsenter", f"--net={ns}"] if ns else []) + ["ip", "-j", *args]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout or "[]")


def _private_bridge() -> None:
    unshare(CloneFlags.NEWNET)
    for cmd in (["link", "add", "br9", "type", "bridge"], ["addr", "add", "10.99.0.1/16", "dev", "br9"],
                ["link", "set", "br9", "up"]):
        subprocess.run(["ip", *cmd], check=True)


def _container_ns() -> str:
    return f"/proc/{os.getpid()}/fd/{netns.new_netns()}"


def test_veth_plugged_with_address_route_mac_mtu_and_master() -> None:
    def body() -> dict[str, Any]:
        _private_bridge()
        ns = _container_ns()
        netlink.add_endpoint("br9", "vethr2a", ns, "eth0", "02:42:0a:63:00:02", "10.99.0.2", 16, "10.99.0.1")
        netlink.add_endpoint("br9", "vethr2b", ns, "eth1", "02:42:0a:63:00:03", "10.99.0.3", 16, None, mtu=1400)
        return {"host": _ip("-d", "link", "show", "vethr2a"), "host_b": _ip("link", "show", "vethr2b"),
                "addr": _ip("addr", ns=ns), "route": _ip("route", ns=ns)}

    got = in_child(body)
    host = got["host"][0]
    assert host["master"] == "br9" and "UP" in host["flags"]
    assert got["host_b"][0]["mtu"] == 1400
    links = {a["ifname"]: a for a in got["addr"]}
    assert set(links) == {"lo", "eth0", "eth1"}
    eth0, eth1 = links["eth0"], links["eth1"]
    assert "UP" in eth0["flags"] and "LOWER_UP" in eth0["flags"]
    assert eth0["address"] == "02:42:0a:63:00:02" and eth1["address"] == "02:42:0a:63:00:03"
    assert eth0["mtu"] == 1500 and eth1["mtu"] == 1400
    v4 = [a for a in eth0["addr_info"] if a["family"] == "inet"]
    assert v4 == [{**v4[0], "local": "10.99.0.2", "prefixlen": 16, "broadcast": "10.99.255.255"}]
    default = [r for r in got["route"] if r["dst"] == "default"]
    assert default == [{**default[0], "gateway": "10.99.0.1", "dev": "eth0"}]


def test_missing_bridge_stale_host_end_and_failures_inside() -> None:
    def body() -> dict[str, Any]:
        _private_bridge()
        ns = _container_ns()
        out: dict[str, Any] = {}
        try:
            netlink.add_endpoint("nobridge", "vethr2c", ns, "eth0", "02:42:0a:63:00:04", "10.99.0.4", 16, None)
        except OSError as e:
            out["no_bridge"] = e.errno
        # A host end left behind (a berthd killed before its namespace went) is replaced.
        subprocess.run(["ip", "link", "add", "vethr2d", "type", "veth", "peer", "name", "left"], check=True)
        netlink.add_endpoint("br9", "vethr2d", ns, "eth0", "02:42:0a:63:00:05", "10.99.0.5", 16, "10.99.0.1")
        out["replaced"] = _ip("link", "show", "vethr2d")[0].get("master")
        # The route exists already: the inside step fails, and the host end is taken back.
        try:
            netlink.add_endpoint("br9", "vethr2e", ns, "eth1", "02:42:0a:63:00:06", "10.99.0.6", 16, "10.99.0.1")
        except OSError as e:
            out["inside"] = e.errno
        out["left"] = [x["ifname"] for x in _ip("link")]
        netlink.remove_endpoint("vethr2d")
        out["after_remove"] = [x["ifname"] for x in _ip("link", ns=ns)]
        with rtnl.Rtnl() as sock:
            out["remove_again"] = sock.delete_link("vethr2d")
        return out

    got = in_child(body)
    assert got["no_bridge"] == errno.ENODEV
    assert got["replaced"] == "br9"
    assert got["inside"] == errno.EEXIST
    assert "vethr2e" not in got["left"] and "left" not in got["left"]
    assert got["after_remove"] == ["lo"]
    assert got["remove_again"] is False


def test_pyroute2_debug_records_are_off_after_its_import() -> None:
    """pyroute2's import sets its logger to level 0: with a debug root logger every netlink
    message it sends was formatted and logged (~9 % of berthd's CPU per start)."""
    code = ("import logging; logging.basicConfig(level=logging.DEBUG)\n"
            "from berth.network import netlink\n"
            "netlink.link_exists('lo')\n"
            "print(logging.getLogger('pyroute2').isEnabledFor(logging.DEBUG),"
            " logging.getLogger('pyroute2.netlink').isEnabledFor(logging.INFO))\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.split() == ["False", "False"], out.stderr[-2000:]
