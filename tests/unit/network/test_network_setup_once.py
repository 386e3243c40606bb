"""The network setup runs in the background at berthd's start (``Bridges.setup_soon``): every
caller of ``ensure_ready`` (a container start, a network create) waits for that one run, and a
setup that failed is tried again by the next caller. The kernel side is replaced by a recorder:
what is under test is the scheduling, not the bridges."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from berth.engine.network_bridges import Bridges
from berth.engine.network_records import NetworkTable
from berth.network.sandbox import Kernel
from berth.state.db import Database


class Setup:
    """Stands in for Bridges.setup: counts runs, takes a while, fails when told to."""

    def __init__(self, nets: Bridges, fail: int = 0):
        self.nets = nets
        self.runs = 0
        self.fail = fail

    async def __call__(self) -> None:
        self.runs += 1
        await asyncio.sleep(0.02)
        if self.runs <= self.fail:
            raise OSError("bridge berth0: no such device")
        self.nets.ready = True


def _networks(tmp_path: Path) -> Bridges:
    table = NetworkTable(Database(tmp_path / "berth.db"), "bertht1")
    return Bridges(table, Kernel(tmp_path, lambda cid, name: (None, False)), "t1")


def test_concurrent_callers_share_one_background_setup(tmp_path: Path) -> None:
    nets = _networks(tmp_path)
    setup = Setup(nets)
    nets.setup = setup  # type: ignore[method-assign]

    async def run() -> None:
        nets.setup_soon()
        await asyncio.gather(*(nets.ensure_ready() for _ in range(5)))
        await nets.ensure_ready()
    asyncio.run(run())
    assert setup.runs == 1 and nets.ready


def test_a_failed_setup_is_tried_again_by_the_next_caller(tmp_path: Path) -> None:
    nets = _networks(tmp_path)
    setup = Setup(nets, fail=1)
    nets.setup = setup  # type: ignore[method-assign]

    async def run() -> None:
        nets.setup_soon()
        with pytest.raises(OSError):
            await nets.ensure_ready()  # waits for the background run, and sees it fail
        await nets.ensure_ready()
    asyncio.run(run())
    assert setup.runs == 2 and nets.ready
