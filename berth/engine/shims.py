"""berthd's side of the fork server and the shims (asyncio clients of their sockets).

Every line on those sockets is a ``berth.runtime.shim.protocol`` message: requests go out
stamped with this berthd's protocol version, replies are decoded leniently (a shim started by
an older berthd answers in its own version; live restore keeps talking to it)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

import msgspec

from berth.errors import Unavailable
from berth.state.sockaddr import address
from berth.runtime.shim import protocol
from berth.runtime.shim.protocol import ExecReply, ExitStatus, Reply, SpawnReply, SpawnRequest
from berth.runtime.shim.protocol import Kill as Kill, Resize as Resize, Start as Start  # for call()

log = logging.getLogger("berth.shims")



class ShimGone(Unavailable):
    """The shim's socket does not answer: the container's shim has exited."""


# Spawns in flight at the fork server at once. It accepts one connection at a time (its listen
# backlog is 128): past the backlog a non-blocking connect() on a Unix socket fails with EAGAIN,
# which asyncio takes for a connect in progress and reports as connected, so the request's
# write meets a socket that never connected ("Connection lost", a 500 on start). Found by
# bench/load.py: 200 clients starting containers.
SPAWNS_IN_FLIGHT = 64


class ForkServer:
    def __init__(self, socket_path: Path, in_flight: int = SPAWNS_IN_FLIGHT):
        self.path = socket_path
        self.proc: asyncio.subprocess.Process | None = None
        self._ready: asyncio.Future[None] | None = None
        self._slots = asyncio.Semaphore(in_flight)

    def start(self) -> None:
        """Launch the fork server in the background; spawn() waits until it is ready."""
        self._ready = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().create_task(self._launch())

    async def _launch(self) -> None:
        assert self._ready is not None
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "berth.runtime.forkserver", str(self.path),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE)
            assert self.proc.stdout is not None
            line = await self.proc.stdout.readline()
            if line.strip() != b"ready":
                raise Unavailable(f"fork server did not start: {line!r}")
            self._ready.set_result(None)
        except BaseException as e:
            if not self._ready.done():
                self._ready.set_exception(e)

    async def spawn(self, req: SpawnRequest) -> "Spawned":
        """Fork a shim; its report is ``.reply``: a SpawnReply (pid and shim_pid, or error).

        Keep the returned connection open until the container was started, then close() it:
        a shim whose connection hangs up before "start" (berthd died) aborts its container.
        """
        assert self._ready is not None
        await asyncio.shield(self._ready)
        async with self._slots:
            reader, writer = await _connect(self.path)
            try:
                writer.write(protocol.encode(req))
                await writer.drain()
                line = await reader.readline()
            except BaseException:
                writer.close()
                raise
        return Spawned(_decode(line, SpawnReply, SpawnReply(error="shim exited before reporting")), writer)

    async def stop(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        self.path.unlink(missing_ok=True)


class Spawned:
    def __init__(self, reply: SpawnReply, writer: asyncio.StreamWriter):
        self.reply = reply
        self._writer = writer

    def close(self) -> None:
        self._writer.close()


async def _connect(path: Path, limit: int = 1 << 16
                   ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to a Unix socket under the exec root, however long its path."""
    with address(path) as name:
        return await asyncio.open_unix_connection(name, limit=limit)


def _decode(line: bytes, kind: type[protocol._M], gone: protocol._M) -> protocol._M:
    """A reply line as ``kind``; ``gone`` when the line is empty or not a reply."""
    try:
        return protocol.decode(line, kind)
    except msgspec.DecodeError:
        return gone


async def call(sock: Path, req: protocol.Request, timeout: float | None = 30) -> Reply:
    """One request (Start, Kill, Resize), one reply on a shim's control socket."""
    try:
        reader, writer = await _connect(sock)
    except (FileNotFoundError, ConnectionRefusedError) as e:
        raise ShimGone(f"shim at {sock} is gone: {e.strerror}") from None
    try:
        writer.write(protocol.encode(req))
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
    except ConnectionError:  # the shim left while we asked (its container exited)
        line = b""
    finally:
        writer.close()
    if not line:
        raise ShimGone(f"shim at {sock} closed the connection")
    return _decode(line, Reply, Reply(error=f"shim at {sock} sent no reply"))


async def wait_exit(sock: Path) -> ExitStatus | None:
    """Block until the container exits; None when the shim vanished without telling."""
    try:
        reader, writer = await _connect(sock)
    except (FileNotFoundError, ConnectionRefusedError):
        return None
    try:
        writer.write(protocol.encode(protocol.Wait()))
        await writer.drain()
        line = await reader.readline()
    except ConnectionError:
        return None
    finally:
        writer.close()
    if not line:
        return None
    return protocol.decode(line, ExitStatus)


async def attach(sock: Path, stdin: bool, stdout: bool, stderr: bool
                 ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Subscribe to a shim's output; returns once the shim has registered the subscriber."""
    try:
        reader, writer = await _connect(sock, limit=1 << 20)
    except (FileNotFoundError, ConnectionRefusedError) as e:
        raise ShimGone(f"shim at {sock} is gone: {e.strerror}") from None
    writer.write(protocol.encode(protocol.Attach(stdin=stdin, stdout=stdout, stderr=stderr)))
    await writer.drain()
    line = await reader.readline()
    if not line:
        writer.close()
        raise ShimGone(f"shim at {sock} closed the connection")
    return reader, writer


async def open_exec(sock: Path, req: protocol.Exec
                    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, ExecReply]:
    """Ask the shim to start an exec; the connection becomes its stream when the reply has a
    pid (with an error the caller closes it). Raises ShimGone when the shim is not there."""
    try:
        reader, writer = await _connect(sock, limit=1 << 20)
    except (FileNotFoundError, ConnectionRefusedError) as e:
        raise ShimGone(f"shim at {sock} is gone: {e.strerror}") from None
    writer.write(protocol.encode(req))
    await writer.drain()
    line = await reader.readline()
    return reader, writer, _decode(line, ExecReply, ExecReply(error="container is not running"))


def read_exit_file(path: Path) -> ExitStatus | None:
    try:
        return protocol.decode(path.read_bytes(), ExitStatus)
    except (FileNotFoundError, msgspec.DecodeError):
        return None


def proc_start_time(pid: int) -> int:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks); 0 when the pid is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return 0
    return int(data[data.rindex(b")") + 2:].split()[19])


def alive(pid: int, start: int) -> bool:
    return pid > 0 and start > 0 and proc_start_time(pid) == start


_ = os
