"""Integration fixtures: a real berthd (session-wide) with the busybox image imported."""

from __future__ import annotations

import os
import subprocess
from typing import Iterator

import pytest

from tests.integration.daemon import Daemon, suite_args

DOCKER = "/usr/local/bin/docker"


@pytest.fixture(scope="session", autouse=True)
def no_leaks() -> Iterator[None]:
    """Every daemon a test started must leave nothing behind on the host."""
    yield
    assert not Daemon.leaks, f"left behind on the host: {Daemon.leaks}"


@pytest.fixture(scope="session")
def berthd() -> Iterator[Daemon]:
    if os.geteuid() != 0:
        pytest.skip("needs uid 0")
    # BERTH_TEST_DAEMON_ARGS="--userns-default auto" runs the suite with user namespaces.
    d = Daemon(args=suite_args())
    d.start()
    try:
        yield d
    finally:
        d.cleanup()


@pytest.fixture(scope="session")
def busybox(berthd: Daemon) -> str:
    berthd.import_busybox("busybox:latest")
    return "busybox:latest"


@pytest.fixture
def client(berthd: Daemon, busybox: str) -> Iterator[object]:
    """docker-py 7's DockerClient on berthd (the test files that drive berthd through the SDK)."""
    import docker as dockerpy
    c = dockerpy.DockerClient(base_url=berthd.host, timeout=60)
    yield c
    c.close()


@pytest.fixture
def docker(berthd: Daemon, busybox: str):
    """Run the real docker CLI against berthd: docker("run", "--rm", busybox, "echo", "hi")."""
    def run(*args: str, input: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([DOCKER, *args], env=berthd.env, input=input.decode() if input else None,
                              capture_output=True, text=True, timeout=timeout)
    return run
