"""The network namespaces berthd makes ahead (``network.sandbox.SPARE_NETNS``): after runs on
the default network, berthd holds exactly that many namespaces by fd (bounded, refilled) and
none of the containers' (the init holds its own once it joined)."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from berth.network.sandbox import SPARE_NETNS
from tests.integration.conftest import DOCKER
from tests.integration.daemon import Daemon

pytestmark = pytest.mark.root


def _netns_fds(pid: int) -> set[str]:
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("net:["):
            out.add(target)
    return out


def test_spare_namespaces_are_bounded_and_not_the_containers(berthd: Daemon, busybox: str) -> None:
    assert berthd.proc is not None
    pid = berthd.proc.pid
    for _ in range(SPARE_NETNS + 2):
        subprocess.run([DOCKER, "run", "--rm", busybox, "true"], env=berthd.env, check=True, capture_output=True)
    cid = subprocess.run([DOCKER, "run", "-d", busybox, "sleep", "30"], env=berthd.env, check=True,
                         capture_output=True, text=True).stdout.strip()
    try:
        init = int(subprocess.run([DOCKER, "inspect", "-f", "{{.State.Pid}}", cid], env=berthd.env, check=True,
                                  capture_output=True, text=True).stdout)
        theirs = os.readlink(f"/proc/{init}/ns/net")
        deadline = time.monotonic() + 5
        while len(held := _netns_fds(pid)) != SPARE_NETNS and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(held) == SPARE_NETNS, held
        assert theirs not in held
        assert os.readlink(f"/proc/{pid}/ns/net") not in held
    finally:
        subprocess.run([DOCKER, "rm", "-f", cid], env=berthd.env, capture_output=True)
