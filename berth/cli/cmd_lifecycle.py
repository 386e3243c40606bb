"""Commands acting on existing containers: stop, kill, rm, restart, wait, rename, prune.

Like docker, the multi-container ones try every argument, print each one that succeeded as the
user typed it, print each failure on stderr, and exit 1 if anything failed.
"""

from __future__ import annotations

import sys

from berth.cli._common import confirm, filters_json, print_error
from berth.cli._flags import Flag, Spec
from berth.cli._units import human_size
from berth.client.api import APIError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def _each(names: list[str], action: Callable[[str], Any], ignore_missing: bool = False) -> int:
    failed = False
    for name in names:
        try:
            result = action(name)
        except APIError as exc:
            if ignore_missing and exc.status == 404:
                continue
            print_error(f"Error response from daemon: {exc.message}")
            failed = True
            continue
        sys.stdout.write(f"{name if result is None else result}\n")
        sys.stdout.flush()
    return 1 if failed else 0


def _timeout_flags() -> list[Flag]:
    return [
        Flag("signal", "s", "string", "Signal to send to the container"),
        Flag("timeout", "t", "int", "Seconds to wait before killing the container"),
    ]


def _stop_params(opts: dict[str, Any]) -> dict[str, object]:
    params: dict[str, object] = {}
    if "timeout" in opts["_changed"]:
        params["t"] = opts["timeout"]
    if opts["signal"]:
        params["signal"] = opts["signal"]
    return params


def spec_stop() -> Spec:
    return Spec("stop [OPTIONS] CONTAINER [CONTAINER...]", "Stop one or more running containers",
                _timeout_flags(), aliases=("container stop", "stop"), min_args=1)


def _stop_like(action: str) -> Callable[[Any, dict[str, Any], list[str]], int]:
    """``stop`` and ``restart``: the same flags, one POST per container."""
    def run(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
        params = _stop_params(opts)
        return _each(args, lambda n: cli.client.call("POST", f"/containers/{n}/{action}", params))
    return run


run_stop = _stop_like("stop")


def spec_restart() -> Spec:
    return Spec("restart [OPTIONS] CONTAINER [CONTAINER...]", "Restart one or more containers",
                _timeout_flags(), aliases=("container restart", "restart"), min_args=1)


run_restart = _stop_like("restart")


def spec_kill() -> Spec:
    return Spec("kill [OPTIONS] CONTAINER [CONTAINER...]", "Kill one or more running containers",
                [Flag("signal", "s", "string", "Signal to send to the container")],
                aliases=("container kill", "kill"), min_args=1)


def run_kill(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    params = {"signal": opts["signal"]} if opts["signal"] else None
    return _each(args, lambda n: cli.client.call("POST", f"/containers/{n}/kill", params))


def spec_rm() -> Spec:
    return Spec("rm [OPTIONS] CONTAINER [CONTAINER...]", "Remove one or more containers", [
        Flag("force", "f", "bool", "Force the removal of a running container (uses SIGKILL)"),
        Flag("link", "l", "bool", "Remove the specified link"),
        Flag("volumes", "v", "bool", "Remove anonymous volumes associated with the container"),
    ], aliases=("container rm", "container remove", "rm"), min_args=1)


def run_rm(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    params = {"force": opts["force"], "link": opts["link"], "v": opts["volumes"]}
    return _each(args, lambda n: cli.client.call("DELETE", f"/containers/{n}", params))


def spec_wait() -> Spec:
    return Spec("wait CONTAINER [CONTAINER...]",
                "Block until one or more containers stop, then print their exit codes",
                aliases=("container wait", "wait"), min_args=1)


def run_wait(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    def wait(name: str) -> int:
        result = cli.client.json("POST", f"/containers/{name}/wait") or {}
        error = result.get("Error")
        if error and error.get("Message"):
            raise APIError(500, error["Message"])
        return int(result.get("StatusCode", 0))

    return _each(args, wait)


def spec_rename() -> Spec:
    return Spec("rename CONTAINER NEW_NAME", "Rename a container",
                aliases=("container rename", "rename"), min_args=2, max_args=2)


def run_rename(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    old, new = (a.strip() for a in args)
    if not old or not new:
        print_error("Error: Neither old nor new names may be empty")
        return 1
    cli.client.call("POST", f"/containers/{old}/rename", {"name": new})
    return 0


def spec_container_prune() -> Spec:
    return Spec("container prune [OPTIONS]", "Remove all stopped containers", [
        Flag("filter", "", "list", 'Provide filter values (e.g. "until=<timestamp>")'),
        Flag("force", "f", "bool", "Do not prompt for confirmation"),
    ], max_args=0)


def run_container_prune(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    if not opts["force"]:
        if not confirm("WARNING! This will remove all stopped containers.\n"):
            print_error("Error: container prune has been cancelled")
            return 1
    filters = filters_json(opts["filter"])
    report = cli.client.json("POST", "/containers/prune",
                             {"filters": filters} if filters else None) or {}
    deleted = report.get("ContainersDeleted") or []
    if deleted:
        sys.stdout.write("Deleted Containers:\n" + "".join(f"{d}\n" for d in deleted) + "\n")
    reclaimed = report.get("SpaceReclaimed") or 0 if deleted else 0
    sys.stdout.write(f"Total reclaimed space: {human_size(reclaimed)}\n")
    return 0
