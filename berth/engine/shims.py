"""berthd's side of the fork server and the shims (asyncio clients of their sockets).

Every line on those sockets is a ``berth.runtime.shim.protocol`` message: requests go out
stamped with this berthd's protocol version, replies are decoded leniently (a shim started by
an older berthd answers in its own version; live restore keeps talking to it)."""

from __future__ import annotations

import asyncio
import errno
import itertools
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec

from berth.errors import Unavailable, os_text
from berth.state.sockaddr import address
from berth.runtime.shim import protocol
from berth.runtime.shim.protocol import ExecReply, ExitStatus, Reply, SpawnReply, SpawnRequest
from berth.runtime.shim.protocol import Kill as Kill, ReopenLog as ReopenLog, Resize as Resize  # for call()
from berth.runtime.shim.protocol import Start as Start  # for call()

log = logging.getLogger("berth.shims")

RESOURCE_ERRNOS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class ShimGone(Unavailable):
    """The shim's socket does not answer: the container's shim has exited."""


# Spawns in flight at the fork server at once. It accepts one connection at a time (its listen
# backlog is 128): past the backlog a non-blocking connect() on a Unix socket fails with EAGAIN,
# which asyncio takes for a connect in progress and reports as connected, so the request's
# write meets a socket that never connected ("Connection lost", a 500 on start). Found by
# bench/load.py: 200 clients starting containers.
SPAWNS_IN_FLIGHT = 64


class ForkServer:
    """The fork server's supervisor: launches it, and launches it again whenever it dies
    (``kill -9``, OOM) while berthd runs; a spawn cut off by its death is retried on the new one.
    Running containers do not notice: their shims are reparented, still running."""

    RELAUNCH_DELAYS = (0.0, 0.05, 0.2, 1.0, 5.0)  # after quick successive deaths, wait longer

    def __init__(self, socket_path: Path, in_flight: int = SPAWNS_IN_FLIGHT, seccomp_cache: Path | None = None):
        self.path = socket_path
        self.seccomp_cache = seccomp_cache  # the fork server reads Docker's default program from it
        self.proc: asyncio.subprocess.Process | None = None
        self._ready: asyncio.Future[None] | None = None
        self._slots = asyncio.Semaphore(in_flight)
        self._stopping = False
        self._supervisor: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Launch the fork server in the background; spawn() waits until it is ready."""
        self._ready = asyncio.get_running_loop().create_future()
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    async def _supervise(self) -> None:
        quick = 0  # deaths in a row, each within 10 s of its launch
        while not self._stopping:
            t0 = time.monotonic()
            await self._launch()
            if self.proc is not None:
                await self.proc.wait()
            if self._stopping:
                return
            quick = quick + 1 if time.monotonic() - t0 < 10 else 0
            rc = self.proc.returncode if self.proc is not None else None
            log.warning("the fork server exited (%s); starting it again", rc)
            self._ready = asyncio.get_running_loop().create_future()
            await asyncio.sleep(self.RELAUNCH_DELAYS[min(quick, len(self.RELAUNCH_DELAYS) - 1)])

    async def _launch(self) -> None:
        assert self._ready is not None
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "berth.runtime.forkserver", str(self.path),
                *([str(self.seccomp_cache)] if self.seccomp_cache is not None else []),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE)
            assert self.proc.stdout is not None
            line = await self.proc.stdout.readline()
            if line.strip() != b"ready":
                raise Unavailable(f"fork server did not start: {line!r}")
            self._ready.set_result(None)
        except Exception as e:
            log.error("starting the fork server: %s", e)
            if not self._ready.done():
                self._ready.set_exception(e)
                self._ready.exception()  # retrieved: spawn() raises it if it waits on this one

    async def spawn(self, req: SpawnRequest, early: Early | None = None) -> "Spawned":
        """Fork a shim; its report is ``.reply``: a SpawnReply (pid and shim_pid, or error).

        ``early``: when it answers True, the init is released as soon as it is set up (Start
        sent on the spawn connection meanwhile), without waiting for ``Spawned.start``.
        Keep the returned connection open until the container was started (``start``), then
        close() it: a shim whose connection hangs up before Start (berthd died) aborts its
        container.
        """
        async with self._slots:
            return await self._spawn(req, early)

    async def _spawn(self, req: SpawnRequest, early: Early | None) -> "Spawned":
        for attempt in range(3):
            ready = self._ready
            assert ready is not None
            await asyncio.shield(ready)
            try:
                reader, writer = await _connect(self.path, limit=1 << 20 if req.attach else 1 << 16)
            except (FileNotFoundError, ConnectionRefusedError):
                await self._relaunched(ready)  # it died: wait for the next one
                continue
            go = None
            try:
                writer.write(protocol.encode(req))
                await writer.drain()
                go = asyncio.ensure_future(_go_early(writer, early)) if early is not None else None
                line = await reader.readline()
            except ConnectionError:
                line = b""
            except BaseException:
                _cancel(go)
                writer.close()
                raise
            if not line and (ready is not self._ready or self.proc is not None and self.proc.returncode is not None):
                # The fork server died with our request (no shim holds the connection):
                # nothing was forked for it, ask the next one.
                _cancel(go)
                writer.close()
                await self._relaunched(ready)
                continue
            return Spawned(_decode(line, SpawnReply, SpawnReply(error="shim exited before reporting")),
                           reader, writer, go)
        raise Unavailable("the fork server is not running")

    async def _relaunched(self, old: asyncio.Future[None]) -> None:
        """Wait (10 s at most) until the supervisor has begun launching a fork server after ``old``'s."""
        deadline = time.monotonic() + 10
        while self._ready is old and not self._stopping and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self._stopping = True
        if self.proc and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self._supervisor is not None:
            self._supervisor.cancel()
        self.path.unlink(missing_ok=True)


Early = Callable[[], Awaitable[bool]]


async def _go_early(writer: asyncio.StreamWriter, early: Early) -> bool:
    """Send Start as soon as ``early`` says nothing is left to do before the init runs."""
    if not await early():
        return False
    writer.write(protocol.encode(protocol.Start()))
    return True


def _cancel(task: asyncio.Future[bool] | None) -> None:
    if task is not None:
        task.cancel()


class Spawned:
    """A shim that reported its container set up, and berthd's connection to it (the spawn
    connection: Start and its Reply go over it)."""

    def __init__(self, reply: SpawnReply, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 go: asyncio.Future[bool] | None = None):
        self.reply = reply
        self._reader = reader
        self._writer = writer
        self._go = go
        self._kept = False

    async def start(self, timeout: float = 30) -> Reply:
        """Release the init (unless the early Start did) and return the start's Reply.
        Raises ShimGone when the shim closed the connection instead."""
        try:
            sent = self._go is not None and await self._go
        except Exception:  # the check failed: the init was not released
            sent = False
        if not sent:
            self._writer.write(protocol.encode(protocol.Start()))
        try:
            await self._writer.drain()
            line = await asyncio.wait_for(self._reader.readline(), timeout)
        except ConnectionError:
            line = b""
        if not line:
            raise ShimGone("the shim closed the spawn connection")
        return _decode(line, Reply, Reply(error="the shim sent no start reply"))

    def stream(self) -> Stream:
        """The connection, an attach stream after a start that carried one (``SpawnRequest.attach``);
        close() leaves it open from now on."""
        self._kept = True
        return self._reader, self._writer

    def close(self) -> None:
        _cancel(self._go)
        if not self._kept:
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
    """One request (Start, Kill, Resize, ReopenLog), one reply on a shim's control socket."""
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


# How long the exit watch waits before it tries again to connect when berthd is out of
# descriptors (or memory), doubling up to the last.
WATCH_RETRY = (0.05, 0.1, 0.2, 0.5, 1.0)


async def wait_exit(sock: Path, released: asyncio.Future[None] | None = None) -> ExitStatus | None:
    """Block until the container exits; None when the shim vanished without telling.

    ``released`` is set once the shim is done with the container after its exit (it closes
    the connection after removing the cgroup), or at once when there is no connection.

    A connect that fails for want of descriptors (EMFILE, ENFILE) or memory is tried again
    until it succeeds: the exit must not be missed (a missed one leaves the container "running"
    with its process gone, its stop a 500 and its ``run --rm`` client waiting for ever)."""
    for attempt in itertools.count():
        try:
            reader, writer = await _connect(sock)
            break
        except (FileNotFoundError, ConnectionRefusedError):
            _set(released)
            return None
        except OSError as e:
            if e.errno not in RESOURCE_ERRNOS:
                raise
            if attempt == 0:
                log.warning("watching the exit of %s: %s; trying again", sock.stem[:12], os_text(e))
            await asyncio.sleep(WATCH_RETRY[min(attempt, len(WATCH_RETRY) - 1)])
    try:
        writer.write(protocol.encode(protocol.Wait()))
        await writer.drain()
        line = await reader.readline()
    except ConnectionError:
        line = b""
    if not line or released is None:
        writer.close()
        _set(released)
        return None if not line else protocol.decode(line, ExitStatus)
    task = asyncio.ensure_future(_until_eof(reader, writer, released))
    _eof_tasks.add(task)
    task.add_done_callback(_eof_tasks.discard)
    return protocol.decode(line, ExitStatus)


_eof_tasks: set[asyncio.Future[None]] = set()  # the loop keeps only weak references to tasks


async def _until_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, released: asyncio.Future[None],
                     timeout: float = 10) -> None:
    try:
        await asyncio.wait_for(reader.read(), timeout)
    except (ConnectionError, asyncio.TimeoutError):
        pass
    finally:
        writer.close()
        _set(released)


def _set(fut: asyncio.Future[None] | None) -> None:
    if fut is not None and not fut.done():
        fut.set_result(None)


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


Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class PendingAttach:
    """An attach client waiting for the container's next start (``docker run`` attaches
    first): subscribed on a connection of its own before the init is released (``subscribe``),
    or carried by the spawn request, whose connection becomes its stream (``deliver``)."""

    def __init__(self, sock: Path, stdin: bool, stdout: bool, stderr: bool):
        self.sock = sock
        self.request = protocol.Attach(stdin=stdin, stdout=stdout, stderr=stderr)
        self.fut: asyncio.Future[Stream] = asyncio.get_running_loop().create_future()

    async def subscribe(self) -> None:
        try:
            pair = await attach(self.sock, self.request.stdin, self.request.stdout, self.request.stderr)
        except Exception as e:
            if not self.fut.done():
                self.fut.set_exception(e)
            return
        self.deliver(pair)

    def deliver(self, pair: Stream) -> None:
        if self.fut.done():  # the client went away meanwhile
            pair[1].close()
        else:
            self.fut.set_result(pair)

    def cancel(self) -> None:
        self.fut.cancel()


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
    """The exit a shim recorded; None if there is none, or none readable (a corrupt file is
    renamed ``exit.json.corrupt``, with an error in the log)."""
    try:
        return protocol.decode(path.read_bytes(), ExitStatus)
    except FileNotFoundError:
        return None
    except (msgspec.DecodeError, OSError) as e:
        log.error("%s is unreadable (%s): moved to %s.corrupt", path, e, path.name)
        try:
            os.replace(path, path.with_name(path.name + ".corrupt"))
        except OSError:
            pass
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

