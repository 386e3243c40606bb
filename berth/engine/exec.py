"""Exec instances: ``docker exec`` (create, start, resize, inspect).

An exec is a record here (Docker keeps them in memory too) and, once started, a process the
container's shim runs in the container's namespaces and cgroup. Its stream to the shim is
always stdcopy-framed; the last frame (stream ``EXIT``) carries the exit code, so the code is
known before the client's stream ends and ``GET /exec/{id}/json`` right after sees it.

    ex = execs.create("web", ExecCreate(Cmd=["sh"], AttachStdout=True))
    session = await execs.start(ex.id, detach=False)
    async for chunk in session.output():   # raw if start said Tty, else stdcopy frames
        ...
    execs.get(ex.id).exit_code
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Callable

import msgspec

from berth.engine import shims
from berth.engine.containers import Containers
from berth.engine.model import Status
from berth.errors import Conflict, InvalidArgument, NotFound
from berth.runtime import users
from berth.runtime.shim import protocol
from berth.runtime.shim.protocol import EXIT, frame

log = logging.getLogger("berth.exec")

CWD_NOT_ABSOLUTE = "Cwd must be an absolute path"


class NoSuchExec(NotFound):
    pass


class ExecCreate(msgspec.Struct):
    """POST /containers/{id}/exec body."""

    Cmd: list[str] | str | None = None
    User: str = ""
    Privileged: bool = False
    Tty: bool = False
    AttachStdin: bool = False
    AttachStdout: bool = False
    AttachStderr: bool = False
    DetachKeys: str = ""
    Env: list[str] | None = None
    WorkingDir: str = ""
    ConsoleSize: list[int] | None = None


class Exec(msgspec.Struct):
    id: str
    container_id: str
    args: list[str]
    user: str
    env: list[str]
    working_dir: str
    tty: bool
    privileged: bool
    attach_stdin: bool
    attach_stdout: bool
    attach_stderr: bool
    detach_keys: str
    console_size: list[int] | None = None
    running: bool = False
    started: bool = False
    exit_code: int | None = None
    pid: int = 0


class ExecSession:
    """A started exec's stream: stdin in, output out (``output`` ends when the process did)."""

    def __init__(self, ex: Exec, execs: Execs, reader: asyncio.StreamReader | None,
                 writer: asyncio.StreamWriter | None, error: str = "", raw: bool = False) -> None:
        self.ex = ex
        self.raw = raw  # the start request said "Tty": true: no stdcopy frames
        self._execs = execs
        self.reader = reader
        self.writer = writer
        self.error = error

    async def write_stdin(self, data: bytes) -> None:
        if self.writer is not None and self.ex.attach_stdin:
            self.writer.write(data)
            await self.writer.drain()

    def close_stdin(self) -> None:
        if self.writer is not None:
            try:
                self.writer.write_eof()
            except (OSError, RuntimeError):
                pass

    async def output(self) -> AsyncIterator[bytes]:
        """The process's output as the client gets it; records the exit code at the end."""
        if self.error:
            # dockerd looks the user up itself (execSetPlatformOpt's getUser): that one comes bare
            if users.is_lookup_failure(self.error):
                msg = f"{self.error}\r\n"
            elif self.error == CWD_NOT_ABSOLUTE:  # runc's validateProcess, before it starts anything
                msg = f"OCI runtime exec failed: exec failed: {self.error}: unknown\r\n"
            else:
                msg = f"OCI runtime exec failed: exec failed: unable to start container process: {self.error}: unknown\r\n"
            yield msg.encode() if self.raw else frame(1, msg.encode())
            return
        assert self.reader is not None and self.writer is not None
        code = None
        try:
            while True:
                try:
                    head = await self.reader.readexactly(8)
                    body = await self.reader.readexactly(int.from_bytes(head[4:], "big"))
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                stream = head[0]
                if stream == EXIT:
                    code = _exit_code(body)
                    break
                if stream == 1 and not self.ex.attach_stdout or stream == 2 and not self.ex.attach_stderr:
                    continue
                yield body if self.raw else head + body
        finally:
            self.writer.close()
            self._execs._ended(self.ex, code)


class Execs:
    def __init__(self, containers: Containers, on_event: Callable[[str, str, dict[str, str]], None] | None = None):
        self.containers = containers
        self.by_id: dict[str, Exec] = {}
        # (action, container id, attributes): "exec_create: sh", "exec_start: sh", "exec_die"
        self.on_event = on_event or (lambda *a: None)
        self._bg: set[asyncio.Task[None]] = set()
        containers.exit_hooks.append(self._container_exited)

    def get(self, eid: str) -> Exec:
        ex = self.by_id.get(eid)
        if ex is None:
            raise NoSuchExec(f"No such exec instance: {eid}")
        return ex

    def ids_for(self, cid: str) -> list[str]:
        return [e.id for e in self.by_id.values() if e.container_id == cid]

    def create(self, ref: str, req: ExecCreate) -> Exec:
        c = self.containers.get(ref)
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        if c.state.status == Status.PAUSED:
            raise Conflict(f"Container {c.id} is paused, unpause the container before exec")
        if c.state.status == Status.RESTARTING:
            raise Conflict(f"Container {c.id} is restarting, wait until the container is running")
        cmd = [req.Cmd] if isinstance(req.Cmd, str) else list(req.Cmd or [])
        if not cmd:
            raise InvalidArgument("No exec command specified")
        for e in req.Env or []:
            if not e.partition("=")[0]:
                raise InvalidArgument(f"invalid environment variable: {e}")
        ex = Exec(id=secrets.token_hex(32), container_id=c.id, args=cmd, user=req.User or c.config.User or "",
                  env=list(req.Env or []), working_dir=req.WorkingDir, tty=req.Tty, privileged=req.Privileged,
                  attach_stdin=req.AttachStdin, attach_stdout=req.AttachStdout, attach_stderr=req.AttachStderr,
                  detach_keys=req.DetachKeys, console_size=req.ConsoleSize)
        self.by_id[ex.id] = ex
        self._event("exec_create: " + " ".join(cmd), ex)
        return ex

    def _event(self, action: str, ex: Exec, extra: dict[str, str] | None = None) -> None:
        attrs = {"execID": ex.id, **(extra or {})}
        try:
            self.on_event(action, ex.container_id, attrs)
        except Exception:
            log.exception("exec event %s", action)

    def check_startable(self, eid: str) -> Exec:
        """The errors ``start`` would raise before anything runs (answered as HTTP errors)."""
        ex = self.get(eid)
        if ex.running:
            raise Conflict(f"Error: Exec command {ex.id} is already running")
        if ex.started:
            raise Conflict(f"Error: Exec command {ex.id} has already run")
        c = self.containers.get(ex.container_id)
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        if c.state.status == Status.PAUSED:
            raise Conflict(f"Container {c.id} is paused, unpause the container before exec")
        return ex

    async def start(self, eid: str, detach: bool, tty: bool | None = None,
                    console_size: list[int] | None = None) -> ExecSession:
        ex = self.check_startable(eid)
        c = self.containers.get(ex.container_id)
        ex.started = True
        if ex.working_dir and not ex.working_dir.startswith("/"):
            self._event("exec_start: " + " ".join(ex.args), ex)
            self._ended(ex, 126)
            return ExecSession(ex, self, None, None, CWD_NOT_ABSOLUTE, raw=bool(tty))
        sock = self.containers.exec_root.shim_socket(c.id)
        req = protocol.Exec(id=ex.id, args=ex.args, env=ex.env, cwd=ex.working_dir, user=ex.user, tty=ex.tty,
                            privileged=ex.privileged, stdin=ex.attach_stdin and not detach)
        try:
            reader, writer, reply = await shims.open_exec(sock, req)
        except shims.ShimGone:
            ex.started = False
            raise Conflict(f"Container {c.id} is not running") from None
        self._event("exec_start: " + " ".join(ex.args), ex)
        if reply.error is not None:
            writer.close()
            self._ended(ex, reply.exit_code)
            if reply.error == "container is not running":
                raise Conflict(f"Container {c.id} is not running")
            return ExecSession(ex, self, None, None, reply.error, raw=bool(tty))
        ex.pid = reply.pid
        ex.running = True
        size = console_size or ex.console_size
        if ex.tty and size and len(size) == 2 and all(size):
            await self.resize(ex.id, size[0], size[1])
        session = ExecSession(ex, self, reader, writer, raw=bool(tty))
        if detach or not (ex.attach_stdout or ex.attach_stderr or ex.attach_stdin):
            session.close_stdin()
            task = asyncio.get_running_loop().create_task(_drain(session))
            self._bg.add(task)
            task.add_done_callback(self._bg.discard)
        return session

    def detached(self, ex: Exec) -> None:
        """The client typed the detach keys: its stream ends, the process runs on."""
        self._event("exec_detach", ex)

    def _ended(self, ex: Exec, code: int | None) -> None:
        if ex.exit_code is None:
            ex.exit_code = 137 if code is None else code
            ex.running = False
            ex.pid = 0
            self._event("exec_die", ex, {"exitCode": str(ex.exit_code)})

    async def resize(self, eid: str, h: int, w: int) -> None:
        ex = self.get(eid)
        if not ex.running:
            raise Conflict(f"Exec {eid} is not running") if ex.started else InvalidArgument("exec not started")
        if not ex.tty:
            return
        try:
            await shims.call(self.containers.exec_root.shim_socket(ex.container_id),
                             shims.Resize(exec=ex.id, h=h, w=w))
        except shims.ShimGone:
            pass

    def _container_exited(self, cid: str) -> None:
        for eid in self.ids_for(cid):
            ex = self.by_id[eid]
            if not ex.running:
                del self.by_id[eid]


async def _drain(session: ExecSession) -> None:
    async for _ in session.output():
        pass


def _exit_code(payload: bytes) -> int | None:
    """The exit code in an exec stream's EXIT frame (None: not one, the process was lost)."""
    try:
        return protocol.decode(payload, protocol.ExecExit).exit_code
    except msgspec.DecodeError:
        return None
