"""berthd's side of the fork server under a burst of starts (issue 16, found by bench/load.py):
the fork server accepts one connection at a time, and past its listen backlog a non-blocking
Unix connect() fails with EAGAIN, which asyncio reports as connected; the spawn's write then
meets "Connection lost" (a 500 on start). Spawns in flight are bounded below the backlog.

The fork server here is a stand-in on a real Unix socket (backlog 2, 5 ms per request): what
is tested is berthd's client, ForkServer.spawn."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path

import pytest

from berth.engine.shims import ForkServer
from berth.runtime.shim import protocol
from berth.runtime.shim.protocol import SpawnReply, SpawnRequest

BURST = 40


def _slow_server(path: Path, stop: threading.Event) -> tuple[socket.socket, threading.Thread]:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(2)
    listener.settimeout(0.1)

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                time.sleep(0.005)
                if data:
                    conn.sendall(protocol.encode(SpawnReply(pid=1, shim_pid=2)))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


async def _burst(path: Path, in_flight: int) -> list[BaseException | int]:
    fs = ForkServer(path, in_flight=in_flight)
    fs._ready = asyncio.get_running_loop().create_future()
    fs._ready.set_result(None)

    async def one(i: int) -> int:
        spawned = await fs.spawn(SpawnRequest(id=f"c{i}", bundle="/b", socket="/s", log="", exit_file="/e"))
        spawned.close()
        return spawned.reply.pid

    return await asyncio.gather(*(one(i) for i in range(BURST)), return_exceptions=True)


@pytest.mark.parametrize("in_flight,lost", [(2, False), (BURST, True)])
def test_a_burst_of_spawns_waits_its_turn_instead_of_losing_connections(tmp_path: Path, in_flight: int,
                                                                        lost: bool) -> None:
    stop = threading.Event()
    listener, thread = _slow_server(tmp_path / "fs.sock", stop)
    try:
        results = asyncio.run(_burst(tmp_path / "fs.sock", in_flight))
    finally:
        stop.set()
        thread.join()
        listener.close()
    if lost:  # the mechanism, shown: without the bound, spawns fail (a lost connection, or
        # since the fork server is supervised, an empty answer read as "shim exited before reporting")
        failed = [r for r in results if r != 1]
        assert failed and all(isinstance(r, ConnectionError) or r == 0 for r in failed), results
    else:
        assert results == [1] * BURST
