"""/containers/{id}/exec and /exec/{id}/*: create, start (hijacked stream), resize, inspect
(and the exec's inspect JSON)."""

from __future__ import annotations

import asyncio
from typing import TypeVar

import msgspec

from berth.api.app import App, Routes
from berth.api.http import Request, Response
from berth.api.shape import json_response
from berth.engine.exec import Exec, ExecCreate, Execs, ExecSession
from berth.errors import BerthError, InvalidArgument
from berth.schema import detachkeys
from berth.schema.fold import decode_folded
from berth.schema.stdcopy import frame

_S = TypeVar("_S", bound=msgspec.Struct)


class ExecStart(msgspec.Struct):
    Detach: bool = False
    Tty: bool = False
    ConsoleSize: list[int] | None = None


def _decode(body: bytes, typ: type[_S]) -> _S:
    if not body.strip():
        return typ()
    try:
        return decode_folded(body, typ)
    except msgspec.ValidationError as e:
        raise InvalidArgument(f"json: cannot unmarshal: {e}") from None
    except msgspec.DecodeError as e:
        raise InvalidArgument(f"invalid character in JSON: {e}") from None


def inspect_json(ex: Exec) -> dict[str, object]:
    return {
        "ID": ex.id, "Running": ex.running, "ExitCode": ex.exit_code, "ProcessConfig": {
            "tty": ex.tty, "entrypoint": ex.args[0], "arguments": ex.args[1:], "privileged": ex.privileged,
            "user": ex.user},
        "OpenStdin": ex.attach_stdin, "OpenStderr": ex.attach_stderr, "OpenStdout": ex.attach_stdout,
        "CanRemove": False, "ContainerID": ex.container_id, "DetachKeys": ex.detach_keys, "Pid": ex.pid,
    }


async def create(app: App, req: Request) -> Response:
    body = _decode(await req.read(), ExecCreate)
    if body.DetachKeys:
        try:
            detachkeys.parse(body.DetachKeys)
        except ValueError:  # ContainerExecCreate's words ("detach" is attach's)
            raise InvalidArgument(f"Invalid escape keys ({body.DetachKeys}) provided") from None
    ex = app.execs.create(req.match["id"], body)
    return json_response({"Id": ex.id}, 201)


async def start(app: App, req: Request) -> Response | None:
    execs = app.execs
    body = _decode(await req.read(), ExecStart)
    if body.Detach:
        await execs.start(req.match["id"], True, body.Tty, body.ConsoleSize)
        return Response(200, b"", content_type="application/json")
    ex = execs.check_startable(req.match["id"])
    # The start request's Tty decides the framing (create's decides only whether there is
    # a pty): Docker multiplexes unless *this* body says "Tty": true.
    ctype = "application/vnd.docker.raw-stream" if body.Tty or not req.version_at_least("1.42") \
        else "application/vnd.docker.multiplexed-stream"
    # 101 first, then the process: a client reading the headers with a buffered reader
    # (docker-py) would swallow output that arrived with them
    req.hijack(ctype, common=True)
    await req.head_read()
    try:
        session = await execs.start(req.match["id"], False, body.Tty, body.ConsoleSize)
    except BerthError as e:
        msg = f"{e}\r\n".encode()
        req.writer.write(msg if body.Tty else frame(1, msg))
        req.writer.close()
        return None
    await _pump(execs, ex, session, req)
    return None


async def _pump(execs: Execs, ex: Exec, session: ExecSession, req: Request) -> None:
    """The client's bytes to the process's stdin (until the detach keys), its output back."""
    keys = detachkeys.parse(ex.detach_keys or detachkeys.DEFAULT) if ex.tty and ex.attach_stdin else b""
    matcher = detachkeys.Matcher(keys)

    async def upstream() -> None:
        try:
            while True:
                data = await req.reader.read(65536)
                if not data:
                    break
                data, detached = matcher.feed(data)
                if data:
                    await session.write_stdin(data)
                if detached:
                    execs.detached(ex)
                    req.writer.close()
                    return
        except (ConnectionError, OSError):
            pass
        session.close_stdin()

    up = asyncio.ensure_future(upstream())
    client_gone = False
    try:
        async for chunk in session.output():
            if client_gone:
                continue  # keep draining: the exit code comes at the end
            try:
                req.writer.write(chunk)
                await req.writer.drain()
            except (ConnectionError, OSError):
                client_gone = True
    finally:
        up.cancel()
        try:
            req.writer.close()
        except Exception:
            pass


async def resize(app: App, req: Request) -> Response:
    h, w = req.int_arg("h", 0) or 0, req.int_arg("w", 0) or 0
    await app.execs.resize(req.match["id"], h, w)
    return Response(200, b"", content_type="text/plain; charset=utf-8")


async def inspect(app: App, req: Request) -> Response:
    return json_response(inspect_json(app.execs.get(req.match["id"])))


ROUTES: Routes = [
    ("POST", "/containers/{id}/exec", create),
    ("POST", "/exec/{id}/start", start),
    ("POST", "/exec/{id}/resize", resize),
    ("GET", "/exec/{id}/json", inspect),
]
