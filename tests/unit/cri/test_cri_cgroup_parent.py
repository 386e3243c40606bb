"""A pod's cgroup parent: slice names expanded as runc's ExpandSlice, cgroupfs paths as given."""

from __future__ import annotations

import pytest

from berth.cri import cgroups
from berth.errors import InvalidArgument


@pytest.mark.parametrize("given,want", [
    ("kubepods-burstable-pod1_2.slice", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1_2.slice"),
    ("kubepods.slice", "/kubepods.slice"),
    ("-.slice", "/"),
    ("/kubepods/besteffort/pod1", "/kubepods/besteffort/pod1"),
    ("/a/b.slice", "/a/b.slice"),
    ("", "")])
def test_parent(given: str, want: str) -> None:
    assert cgroups.parent(given) == want


@pytest.mark.parametrize("bad", ["a--b.slice", "-a.slice", "a-.slice", "/kubepods/../x"])
def test_invalid(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        cgroups.parent(bad)
