"""``create``, ``run`` and ``start``.

``run`` follows the docker CLI's order exactly (reference/wire/34-run-echo.md): create (pulling
the image and retrying when create answers 404 "No such image"), attach on its own connection,
``wait?condition=next-exit`` (``removed`` with --rm) registered *before* start, then start; the
exit code is the wait's ``StatusCode``.
"""

from __future__ import annotations

import json
import os
import sys

from berth.cli._common import print_error
from berth.cli._containeropts import CONTAINER_FLAGS, RUN_ONLY_FLAGS, build_create_body
from berth.cli._flags import Flag, Spec, UsageError
from berth.client.api import APIError, DaemonUnavailable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

REGISTRY_AUTH = {"X-Registry-Auth": "e30="}


def spec_create() -> Spec:
    return Spec("create [OPTIONS] IMAGE [COMMAND] [ARG...]", "Create a new container",
                list(CONTAINER_FLAGS), aliases=("container create", "create"), min_args=1,
                interspersed=False)


def spec_run() -> Spec:
    flags = sorted(CONTAINER_FLAGS + RUN_ONLY_FLAGS, key=lambda f: f.long)
    return Spec("run [OPTIONS] IMAGE [COMMAND] [ARG...]",
                "Create and run a new container from an image", flags,
                aliases=("container run", "run"), min_args=1, interspersed=False)


def spec_start() -> Spec:
    return Spec("start [OPTIONS] CONTAINER [CONTAINER...]",
                "Start one or more stopped containers", [
                    Flag("attach", "a", "bool", "Attach STDOUT/STDERR and forward signals"),
                    Flag("detach-keys", "", "string",
                         "Override the key sequence for detaching a container"),
                    Flag("interactive", "i", "bool", "Attach container's STDIN"),
                ], aliases=("container start", "start"), min_args=1)


def exit_status(message: str) -> int:
    """docker's toStatusError: the daemon's wording decides 127 / 126 / 125."""
    if "executable file not found" in message or "no such file or directory" in message:
        return 127
    if "permission denied" in message or "is a directory" in message:
        return 126
    return 125


def familiar_ref(image: str) -> str:
    """The reference as docker shows it in "Unable to find image": tag latest when none."""
    if "@" in image:
        return image
    slash = image.rfind("/")
    if image.rfind(":") > slash:
        return image
    return f"{image}:latest"


def pull(cli: Any, image: str, quiet: bool) -> None:
    """POST /images/create?fromImage=..&tag=.., progress to stderr.

    Raises:
        APIError: the daemon refused the pull (before or inside the stream).
    """
    from berth.cli._progress import StreamFailed, display

    if "@" in image:
        name, _, tag = image.partition("@")
    else:
        ref = familiar_ref(image)
        name, tag = ref[:ref.rfind(":")], ref[ref.rfind(":") + 1:]
    resp = cli.client.request("POST", "/images/create", {"fromImage": name, "tag": tag},
                              headers=REGISTRY_AUTH)
    write = (lambda _text: None) if quiet else (lambda text: print_error(text.rstrip("\n")))
    try:
        display(resp.iter_lines(), write)
    except StreamFailed as exc:
        raise APIError(500, str(exc)) from None


def create_container(cli: Any, opts: dict[str, Any], body: dict[str, Any]) -> str:
    """Create (pulling first if needed); print warnings; return the new ID.

    Raises:
        APIError: create or pull failed.
    """
    params: dict[str, object] = {}
    if opts["name"]:
        params["name"] = opts["name"]
    if opts["platform"]:
        params["platform"] = opts["platform"]
    image = body["Image"]
    if opts["pull"] == "always":
        pull(cli, image, opts["quiet"])
    try:
        result = cli.client.json("POST", "/containers/create", params, json_body=body)
    except APIError as exc:
        if exc.status != 404 or opts["pull"] == "never" or "image" not in exc.message.lower():
            raise
        print_error(f"Unable to find image '{familiar_ref(image)}' locally")
        pull(cli, image, opts["quiet"])
        result = cli.client.json("POST", "/containers/create", params, json_body=body)
    for warning in result.get("Warnings") or []:
        print_error(f"WARNING: {warning}")
    if opts["cidfile"]:
        with open(opts["cidfile"], "w", encoding="utf-8") as fh:
            fh.write(result["Id"])
    return result["Id"]


def _console_size(tty: bool) -> tuple[int, int]:
    if not tty or not os.isatty(1):
        return (0, 0)
    try:
        size = os.get_terminal_size(1)
    except OSError:
        return (0, 0)
    return (size.lines, size.columns)


def _run_error(message: str, code: int) -> int:
    print_error(f"berth: {message}\n\nRun 'berth run --help' for more information")
    return code


# -- create ---------------------------------------------------------------------------------------


def run_create(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    body = build_create_body(opts, args, console_size=_console_size(opts["tty"]))
    container_id = create_container(cli, opts, body)
    sys.stdout.write(container_id + "\n")
    return 0


# -- run ------------------------------------------------------------------------------------------


def run_run(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    try:
        return _run(cli, opts, args)
    except UsageError as exc:
        return _run_error(exc.message, 125)
    except DaemonUnavailable as exc:
        return _run_error(str(exc), 125)
    except APIError as exc:
        message = f"Error response from daemon: {exc.message}"
        return _run_error(message, exit_status(exc.message))


def _run(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    from berth.cli import _attach

    detach = opts["detach"]
    body = build_create_body(opts, args, detach=detach,
                             console_size=_console_size(opts["tty"]))
    client = cli.client
    container_id = create_container(cli, opts, body)
    condition = "removed" if opts["rm"] else "next-exit"

    if detach:
        wait = client.request("POST", f"/containers/{container_id}/wait",
                              {"condition": condition}, fresh=True)
        try:
            client.call("POST", f"/containers/{container_id}/start")
        finally:
            wait.close()
        sys.stdout.write(container_id + "\n")
        return 0

    tty = bool(body["Tty"])
    streams = [s for s in ("stdin", "stdout", "stderr") if body[f"Attach{s.capitalize()}"]]
    conn, session = _attach.attach(client, container_id, streams, tty, opts["detach_keys"])
    session.start(bool(body["AttachStdin"]))
    wait = _wait_and_start(client, container_id, condition, conn)
    return _follow(cli, container_id, session, wait, tty, bool(body["AttachStdin"]), opts.get("sig_proxy", True),
                   detach_code=0)


def _wait_and_start(client: Any, container_id: str, condition: str, conn: Any) -> Any:
    """Ask to wait (as the docker CLI does, before start), then start; returns the wait response."""
    wait = client.request("POST", f"/containers/{container_id}/wait", {"condition": condition}, fresh=True)
    try:
        client.call("POST", f"/containers/{container_id}/start")
    except APIError:
        conn.close()
        wait.close()
        raise
    return wait


def _follow(cli: Any, container_id: str, session: Any, wait: Any, tty: bool, stdin: bool, sig_proxy: bool,
            detach_code: int) -> int:
    """After start: our terminal raw, sizes and signals forwarded, output copied; the exit code."""
    from berth.cli import _attach

    client = cli.client
    if tty and stdin:
        session.raw()
    try:
        if tty:
            _attach.monitor_size(lambda h, w: client.call(
                "POST", f"/containers/{container_id}/resize", {"h": h, "w": w}))
        elif sig_proxy:
            _attach.proxy_signals(lambda sig: client.call(
                "POST", f"/containers/{container_id}/kill", {"signal": sig}))
        session.copy_output()
    finally:
        session.restore()
    if session.detached:
        wait.close()
        return detach_code
    return _wait_status(wait)


def _wait_status(wait: Any) -> int:
    try:
        data = wait.read()
    except (OSError, ConnectionError) as exc:
        print_error(f"error waiting for container: {exc}")
        return 125
    try:
        result = json.loads(data)
    except ValueError:
        print_error(f"error waiting for container: {data.decode(errors='replace')}")
        return 125
    error = result.get("Error")
    if error and error.get("Message"):
        print_error(error["Message"])
        return 125
    return int(result.get("StatusCode", 0))


# -- start ----------------------------------------------------------------------------------------


def run_start(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    if opts["attach"] or opts["interactive"]:
        if len(args) > 1:
            print_error("you cannot start and attach multiple containers at once")
            return 1
        return _start_attached(cli, opts, args[0])
    failed = []
    for name in args:
        try:
            cli.client.call("POST", f"/containers/{name}/start")
        except APIError as exc:
            print_error(f"Error response from daemon: {exc.message}")
            failed.append(name)
            continue
        sys.stdout.write(name + "\n")
    if failed:
        print_error(f"Error: failed to start containers: {', '.join(failed)}")
        return 1
    return 0


def _start_attached(cli: Any, opts: dict[str, Any], name: str) -> int:
    from berth.cli import _attach

    client = cli.client
    info = client.get_json(f"/containers/{name}/json")
    container_id = info["Id"]
    config = info.get("Config") or {}
    tty = bool(config.get("Tty"))
    with_stdin = bool(opts["interactive"] and config.get("OpenStdin"))
    streams = ["stdout", "stderr", *(["stdin"] if with_stdin else [])]
    conn, session = _attach.attach(client, container_id, streams, tty, opts["detach_keys"])
    session.start(with_stdin)
    auto_remove = bool((info.get("HostConfig") or {}).get("AutoRemove"))
    wait = _wait_and_start(client, container_id, "removed" if auto_remove else "next-exit", conn)
    return _follow(cli, container_id, session, wait, tty, with_stdin, True, detach_code=0)
