"""The start without a round trip through berthd (docs/performance.md, "The start path"): berthd
sends Start on the spawn connection as soon as nothing is left to do first (``run -d``: no
attach waits, the veth is plugged), maybe before the shim has reported the init; the shim
releases the init once it is set up and answers the start there. A shim whose berthd died
after such an early Start, before it heard of the container, must still abort it.

Driven here at the fork server's socket of a real berthd, with a container berthd created
and ran once (its bundle is on disk; the container has exited, so its shim socket is free)."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from berth.runtime.shim import protocol
from berth.runtime.shim.protocol import Reply, SpawnReply, SpawnRequest
from berth.state.paths import DataRoot, ExecRoot
from berth.state.sockaddr import address
from tests.integration.conftest import DOCKER
from tests.integration.daemon import Daemon

pytestmark = pytest.mark.root


@pytest.fixture
def ran_once(berthd: Daemon, busybox: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A container that appends a line to ``ran`` (on the host) each time its process runs."""
    marks = tmp_path / "marks"
    marks.mkdir()
    cid = subprocess.run([DOCKER, "create", "--network", "none", "-v", f"{marks}:/m", busybox, "sh", "-c",
                          "echo x >> /m/ran"], env=berthd.env, check=True, capture_output=True,
                         text=True).stdout.strip()
    try:
        subprocess.run([DOCKER, "start", "-a", cid], env=berthd.env, check=True, capture_output=True, timeout=60)
        yield cid, marks / "ran"
    finally:
        subprocess.run([DOCKER, "rm", "-f", cid], env=berthd.env, capture_output=True)


def _spawn(d: Daemon, cid: str) -> socket.socket:
    """berthd's spawn request for ``cid``, and an early Start right behind it."""
    data, run = DataRoot(d.data_root), ExecRoot(d.exec_root)
    c = data.container(cid)
    req = SpawnRequest(id=cid, bundle=str(c.root), socket=str(run.shim_socket(cid)), log="",
                       exit_file=str(c.exit))
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with address(run.forkserver) as name:
        s.connect(name)
    s.sendall(protocol.encode(req) + protocol.encode(protocol.Start()))
    return s


def _gone(path: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while path.exists():
        assert time.monotonic() < deadline, f"{path} is still there"
        time.sleep(0.05)


def _lines(f: socket.socket) -> Iterator[bytes]:
    with f.makefile("rb") as r:
        while line := r.readline():
            yield line


def test_an_early_start_runs_the_container_and_answers_on_the_spawn_connection(
        berthd: Daemon, ran_once: tuple[str, Path]) -> None:
    cid, ran = ran_once
    s = _spawn(berthd, cid)
    s.settimeout(30)
    try:
        lines = _lines(s)
        spawned = protocol.decode(next(lines), SpawnReply)
        assert spawned.error is None and spawned.pid > 0
        assert protocol.decode(next(lines), Reply).ok  # an old shim never answered the Start here
    finally:
        s.close()
    _gone(ExecRoot(berthd.exec_root).shim_socket(cid))
    assert ran.read_text() == "x\nx\n"


def test_an_early_start_then_berthd_gone_aborts_the_container(berthd: Daemon, ran_once: tuple[str, Path]) -> None:
    cid, ran = ran_once
    _spawn(berthd, cid).close()  # berthd "died" right after it sent the request and Start
    time.sleep(0.5)
    _gone(ExecRoot(berthd.exec_root).shim_socket(cid))
    exit_file = DataRoot(berthd.data_root).container(cid).exit
    assert protocol.decode(exit_file.read_bytes(), protocol.ExitStatus).exit_code == 137
    assert ran.read_text() == "x\n"  # the process never ran


def _frames(data: bytes) -> dict[int, bytes]:
    """Docker's stdcopy frames -> the bytes of each stream."""
    out: dict[int, bytes] = {1: b"", 2: b""}
    while data:
        assert len(data) >= 8, data
        stream, size = data[0], int.from_bytes(data[4:8], "big")
        out[stream] += data[8:8 + size]
        data = data[8 + size:]
    return out


def test_a_start_that_carries_an_attach_streams_all_output_on_the_spawn_connection(
        berthd: Daemon, busybox: str) -> None:
    """A foreground ``docker run``'s attach rides on the spawn request: the shim subscribes the
    spawn connection before the init runs, so an early Start loses none of its output (the
    first bytes come right behind the start's Reply, then the exit's EOF)."""
    cid = subprocess.run([DOCKER, "create", "--network", "none", busybox, "sh", "-c", "seq 1 3000; echo err >&2"],
                         env=berthd.env, check=True, capture_output=True, text=True).stdout.strip()
    try:
        subprocess.run([DOCKER, "start", "-a", cid], env=berthd.env, check=True, capture_output=True, timeout=60)
        data, run = DataRoot(berthd.data_root), ExecRoot(berthd.exec_root)
        c = data.container(cid)
        req = SpawnRequest(id=cid, bundle=str(c.root), socket=str(run.shim_socket(cid)), log="",
                           exit_file=str(c.exit), attach=protocol.Attach(stdout=True, stderr=True))
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        with address(run.forkserver) as name:
            s.connect(name)
        s.sendall(protocol.encode(req) + protocol.encode(protocol.Start()))
        with s, s.makefile("rb") as r:
            assert protocol.decode(r.readline(), SpawnReply).pid > 0
            assert protocol.decode(r.readline(), Reply).ok
            streams = _frames(r.read())
        assert streams[1] == "".join(f"{i}\n" for i in range(1, 3001)).encode()
        assert streams[2] == b"err\n"
        _gone(run.shim_socket(cid))
    finally:
        subprocess.run([DOCKER, "rm", "-f", cid], env=berthd.env, capture_output=True)
