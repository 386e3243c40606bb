"""``attach`` and ``exec``: interactive streams into a running container.

``attach`` (reference/wire/32-attach-tty.md, 33-attach-nontty.md): inspect, attach, wait (no
condition), and for a tty resize to h+1,w+1 then h,w to force a redraw; exits with the
container's code, or 1 after a detach ("read escape sequence").
``exec`` (37-exec-it.md, 38-exec.md): create, start (hijacked), resize, then the exit code from
``GET /exec/{id}/json``.
"""

from __future__ import annotations

import json
import sys

from berth.cli._common import print_error
from berth.cli._flags import Flag, Spec
from berth.client.api import APIError
from berth.schema import detachkeys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def spec_attach() -> Spec:
    return Spec("attach [OPTIONS] CONTAINER",
                "Attach local standard input, output, and error streams to a running container", [
                    Flag("detach-keys", "", "string", "Override the key sequence for detaching a container"),
                    Flag("no-stdin", "", "bool", "Do not attach STDIN"),
                    Flag("sig-proxy", "", "bool", "Proxy all received signals to the process", True),
                ], aliases=("container attach", "attach"), min_args=1, max_args=1)


def run_attach(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    from berth.cli import _attach

    client = cli.client
    info = client.get_json(f"/containers/{args[0]}/json")
    state = info.get("State") or {}
    if not state.get("Running"):
        print_error("You cannot attach to a stopped container, start it first")
        return 1
    if state.get("Paused"):
        print_error("You cannot attach to a paused container, unpause it first")
        return 1
    if state.get("Restarting"):
        print_error("You cannot attach to a restarting container, wait until it is running")
        return 1
    cid = info["Id"]
    config = info.get("Config") or {}
    tty = bool(config.get("Tty"))
    with_stdin = bool(config.get("OpenStdin")) and not opts["no_stdin"]
    streams = ["stdout", "stderr", *(["stdin"] if with_stdin else [])]
    conn, session = _attach.attach(client, cid, streams, tty, opts["detach_keys"])
    wait = client.request("POST", f"/containers/{cid}/wait", fresh=True)
    session.start(with_stdin)
    if tty and with_stdin:
        session.raw()
    try:
        if tty:
            size = _attach.terminal_size()
            if size:  # one size off and back: the program redraws (as docker attach does)
                try:
                    client.call("POST", f"/containers/{cid}/resize", {"h": size[0] + 1, "w": size[1] + 1})
                except APIError:
                    pass
            _attach.monitor_size(lambda h, w: client.call("POST", f"/containers/{cid}/resize", {"h": h, "w": w}))
        elif opts["sig_proxy"]:
            _attach.proxy_signals(lambda sig: client.call("POST", f"/containers/{cid}/kill", {"signal": sig}))
        session.copy_output()
    finally:
        session.restore()
    if session.detached:
        wait.close()
        print_error("read escape sequence")
        return 1
    from berth.cli.cmd_run import _wait_status
    return _wait_status(wait)


def spec_exec() -> Spec:
    return Spec("exec [OPTIONS] CONTAINER COMMAND [ARG...]",
                "Execute a command in a running container", [
                    Flag("detach", "d", "bool", "Detached mode: run command in the background"),
                    Flag("detach-keys", "", "string", "Override the key sequence for detaching a container"),
                    Flag("env", "e", "list", "Set environment variables"),
                    Flag("env-file", "", "list", "Read in a file of environment variables"),
                    Flag("interactive", "i", "bool", "Keep STDIN open even if not attached"),
                    Flag("privileged", "", "bool", "Give extended privileges to the command"),
                    Flag("tty", "t", "bool", "Allocate a pseudo-TTY"),
                    Flag("user", "u", "string", "Username or UID (format: \"<name|uid>[:<group|gid>]\")"),
                    Flag("workdir", "w", "string", "Working directory inside the container"),
                ], aliases=("container exec", "exec"), min_args=2, interspersed=False)


def _exec_env(opts: dict[str, Any]) -> list[str] | None:
    from berth.cli._containeropts import _env_value, _read_kv_file
    env: list[str] = []
    for path in opts["env_file"]:
        env += _read_kv_file(path, "env")
    for item in opts["env"]:
        v = _env_value(item)
        if v is not None:
            env.append(v)
    return env or None


def run_exec(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    from berth.cli import _attach

    client = cli.client
    name, cmd = args[0], args[1:]
    info = client.get_json(f"/containers/{name}/json")
    cid = info["Id"]
    tty, interactive, detach = opts["tty"], opts["interactive"], opts["detach"]
    if opts["detach_keys"]:
        try:
            detachkeys.parse(opts["detach_keys"])
        except ValueError as e:
            print_error(str(e))
            return 125
    body: dict[str, Any] = {
        "User": opts["user"], "Privileged": opts["privileged"], "Tty": tty,
        "AttachStdin": interactive and not detach, "AttachStderr": not detach, "AttachStdout": not detach,
        "Detach": detach, "DetachKeys": opts["detach_keys"], "Env": _exec_env(opts),
        "WorkingDir": opts["workdir"], "Cmd": cmd,
    }
    size = _attach.terminal_size() if tty else None
    if size:
        body["ConsoleSize"] = list(size)
    exec_id = client.json("POST", f"/containers/{cid}/exec", json_body=body)["Id"]
    if detach:
        client.request("POST", f"/exec/{exec_id}/start", json_body={"Detach": True, "Tty": tty}).read()
        return 0
    conn = client.hijack(f"/exec/{exec_id}/start", body=json.dumps({"Detach": False, "Tty": tty}).encode(),
                         content_type="application/json")
    session = _attach.Session(conn, tty, opts["detach_keys"])
    session.start(interactive)
    if tty and interactive:
        session.raw()
    try:
        if tty:
            _attach.monitor_size(lambda h, w: client.call("POST", f"/exec/{exec_id}/resize", {"h": h, "w": w}))
        session.copy_output()
    finally:
        session.restore()
    if session.detached:
        return 0
    result = client.get_json(f"/exec/{exec_id}/json")
    code = result.get("ExitCode")
    return int(code) if code is not None else 0


_ = sys
