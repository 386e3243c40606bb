"""berthd's side of the fork server and the shims (asyncio clients of their sockets)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path

import msgspec

from berth.errors import Unavailable
from berth.runtime.shim.protocol import ExitStatus, SpawnRequest

log = logging.getLogger("berth.shims")

_enc = msgspec.json.Encoder()
_exit_dec = msgspec.json.Decoder(ExitStatus)


class ShimGone(Unavailable):
    """The shim's socket does not answer: the container's shim has exited."""


class ForkServer:
    def __init__(self, socket_path: Path):
        self.path = socket_path
        self.proc: asyncio.subprocess.Process | None = None
        self._ready: asyncio.Future[None] | None = None

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
        """Fork a shim; its report is ``.reply``: {"pid", "shim_pid"} or {"error"}.

        Keep the returned connection open until the container was started, then close() it:
        a shim whose connection hangs up before "start" (berthd died) aborts its container.
        """
        assert self._ready is not None
        await asyncio.shield(self._ready)
        reader, writer = await asyncio.open_unix_connection(str(self.path))
        try:
            writer.write(_enc.encode(req) + b"\n")
            await writer.drain()
            line = await reader.readline()
        except BaseException:
            writer.close()
            raise
        reply = json.loads(line) if line else {"error": "shim exited before reporting"}
        return Spawned(reply, writer)

    async def stop(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        self.path.unlink(missing_ok=True)


class Spawned:
    def __init__(self, reply: dict, writer: asyncio.StreamWriter):
        self.reply = reply
        self._writer = writer

    def close(self) -> None:
        self._writer.close()


async def call(sock: Path, req: dict, timeout: float | None = 30) -> dict:
    """One request/one reply on a shim's control socket."""
    try:
        reader, writer = await asyncio.open_unix_connection(str(sock))
    except (FileNotFoundError, ConnectionRefusedError) as e:
        raise ShimGone(f"shim at {sock} is gone: {e.strerror}") from None
    try:
        writer.write(json.dumps(req).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
    except ConnectionError:  # the shim left while we asked (its container exited)
        line = b""
    finally:
        writer.close()
    if not line:
        raise ShimGone(f"shim at {sock} closed the connection")
    return json.loads(line)


async def wait_exit(sock: Path) -> ExitStatus | None:
    """Block until the container exits; None when the shim vanished without telling."""
    try:
        reader, writer = await asyncio.open_unix_connection(str(sock))
    except (FileNotFoundError, ConnectionRefusedError):
        return None
    try:
        writer.write(b'{"op":"wait"}\n')
        await writer.drain()
        line = await reader.readline()
    except ConnectionError:
        return None
    finally:
        writer.close()
    if not line:
        return None
    return _exit_dec.decode(line)


async def attach(sock: Path, stdin: bool, stdout: bool, stderr: bool
                 ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Subscribe to a shim's output; returns once the shim has registered the subscriber."""
    try:
        reader, writer = await asyncio.open_unix_connection(str(sock), limit=1 << 20)
    except (FileNotFoundError, ConnectionRefusedError) as e:
        raise ShimGone(f"shim at {sock} is gone: {e.strerror}") from None
    writer.write(json.dumps({"op": "attach", "stdin": stdin, "stdout": stdout, "stderr": stderr}).encode() + b"\n")
    await writer.drain()
    line = await reader.readline()
    if not line:
        writer.close()
        raise ShimGone(f"shim at {sock} closed the connection")
    return reader, writer


def read_exit_file(path: Path) -> ExitStatus | None:
    try:
        return _exit_dec.decode(path.read_bytes())
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
