"""engine/container_defaults.py's discard_unsupported: a rootless engine's create drops each limit its delegated cgroup v2
tree has no controller for, with dockerd's warning, and refuses --cpus without cpu."""

from __future__ import annotations

import pytest

from berth.engine import container_defaults as cs
from berth.errors import InvalidArgument
from berth.schema.containers import HostConfig


def test_every_limit_is_dropped_with_its_warning_when_no_controller_is_there() -> None:
    hc = HostConfig(Memory=64 << 20, MemorySwap=128 << 20, MemoryReservation=32 << 20, PidsLimit=42,
                    CpuShares=512, CpuPeriod=100000, CpuQuota=50000, CpusetCpus="0", BlkioWeight=300)
    assert cs.discard_unsupported(hc, frozenset()) == [cs.MEMORY, cs.RESERVATION, cs.PIDS, cs.SHARES, cs.PERIOD,
                                                       cs.QUOTA, cs.CPUSET, cs.BLKIO]
    assert (hc.Memory, hc.MemorySwap, hc.MemoryReservation, hc.PidsLimit) == (0, -1, 0, None)
    assert (hc.CpuShares, hc.CpuPeriod, hc.CpuQuota, hc.CpusetCpus, hc.BlkioWeight) == (0, 0, 0, "", 0)


def test_limits_whose_controllers_are_there_stay() -> None:
    hc = HostConfig(Memory=64 << 20, PidsLimit=42, NanoCpus=500_000_000, CpusetCpus="0", BlkioWeight=300)
    assert cs.discard_unsupported(hc, frozenset({"memory", "pids", "cpu", "cpuset", "io"})) == []
    assert (hc.Memory, hc.PidsLimit, hc.NanoCpus, hc.CpusetCpus, hc.BlkioWeight) == (64 << 20, 42, 500_000_000,
                                                                                     "0", 300)


def test_an_unlimited_pids_limit_is_dropped_without_a_warning() -> None:
    hc = HostConfig(PidsLimit=-1)
    assert cs.discard_unsupported(hc, frozenset({"memory"})) == [] and hc.PidsLimit is None


def test_cpus_without_cpu_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="^NanoCPUs can not be set, as your kernel does not support CPU CFS"):
        cs.discard_unsupported(HostConfig(NanoCpus=500_000_000), frozenset({"memory", "pids"}))
