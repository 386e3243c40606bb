"""engine.network_bridges over a recording kernel (the kernel seam is the edge faked here): which
bridges and rules it asks for, and that a network created while it awaits the kernel does not
break berthd's start."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Network
from pathlib import Path

from berth.engine.network_bridges import Bridges
from berth.engine.network_records import Network, NetworkTable, now
from berth.state.db import Database


class RecordingKernel:
    """Records the calls ``Bridges`` makes; ``on_bridge_up`` runs during the first bridge_up."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []
        self.on_bridge_up: list[object] = []

    async def sweep_stale(self) -> None:
        self.calls.append(("sweep",))

    async def host_networks(self, exclude: set[str]) -> list[IPv4Network]:
        return [IPv4Network("172.17.0.0/16")]

    async def bridge_up(self, bridge: str, gateway: str, prefixlen: int, mtu: int | None) -> None:
        self.calls.append(("up", bridge, gateway, prefixlen, mtu))
        while self.on_bridge_up:
            fn = self.on_bridge_up.pop()
            assert callable(fn)
            fn()
        await asyncio.sleep(0)

    async def bridge_down(self, bridge: str) -> None:
        self.calls.append(("down", bridge))

    def enable_forwarding(self) -> None:
        self.calls.append(("forwarding",))

    async def apply_nat(self, ruleset: str) -> None:
        self.calls.append(("nat", ruleset))

    async def sync_forward(self, tag: str, bridges: list[str]) -> None:
        self.calls.append(("forward", tag, tuple(bridges)))


def _bridges(tmp_path: Path) -> tuple[NetworkTable, RecordingKernel, Bridges]:
    table = NetworkTable(Database(tmp_path / "db"), "berthtest0")
    kernel = RecordingKernel()
    return table, kernel, Bridges(table, kernel, "test")  # type: ignore[arg-type]


def test_setup_picks_a_free_subnet_and_brings_every_bridge_up(tmp_path: Path) -> None:
    table, kernel, bridges = _bridges(tmp_path)
    asyncio.run(bridges.setup())
    default = table.get("bridge")
    assert IPv4Network(default.subnet) != IPv4Network("172.17.0.0/16")   # the host's route is avoided
    ups = [c for c in kernel.calls if c[0] == "up"]
    assert ups == [("up", "berthtest0", default.gateway, IPv4Network(default.subnet).prefixlen, 1500)]
    nat = [c for c in kernel.calls if c[0] == "nat"]
    assert len(nat) == 1 and "berth_test" in str(nat[0][1]) and default.subnet in str(nat[0][1])
    forward = [c for c in kernel.calls if c[0] == "forward"]
    assert len(forward) == 1 and forward[0][2] == ("berthtest0",)


def test_a_network_created_while_setup_awaits_the_kernel(tmp_path: Path) -> None:
    table, kernel, bridges = _bridges(tmp_path)
    late = Network(id="f" * 64, name="late", driver="bridge", created=now(), bridge="br-late",
                   subnet="10.99.0.0/24", gateway="10.99.0.1")
    kernel.on_bridge_up.append(lambda: table.save_net(late))
    asyncio.run(bridges.setup())   # raised "dictionary changed size during iteration"
    assert bridges.ready and "late" in {n.name for n in table.list()}


def test_teardown_takes_every_bridge_down(tmp_path: Path) -> None:
    table, kernel, bridges = _bridges(tmp_path)
    asyncio.run(bridges.setup())
    asyncio.run(bridges.teardown())
    assert ("down", "berthtest0") in kernel.calls
    assert kernel.calls[-2][0] == "forward" and kernel.calls[-2][2] == ()
