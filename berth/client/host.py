"""Daemon address resolution: the -H flag, then BERTH_HOST, then DOCKER_HOST, then the default
(root's socket; a rootless berthd's ``$XDG_RUNTIME_DIR/berth.sock`` when root's cannot be
reached and that one exists)."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_HOST = "unix:///run/berth/berth.sock"


def resolve_host(flag: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """Return the daemon address a command should use."""
    if flag:
        return flag
    env = os.environ if environ is None else environ
    for name in ("BERTH_HOST", "DOCKER_HOST"):
        value = env.get(name)
        if value:
            return value
    return rootless_host(env) or DEFAULT_HOST


def rootless_host(env: Mapping[str, str], root_sock: str = DEFAULT_HOST[len("unix://"):]) -> str | None:
    """This user's rootless berthd, when root's socket is not one this user may use."""
    runtime = env.get("XDG_RUNTIME_DIR")
    if not runtime:
        return None
    sock = os.path.join(runtime, "berth.sock")
    if os.path.exists(root_sock) and os.access(root_sock, os.R_OK | os.W_OK):
        return None
    return f"unix://{sock}" if os.path.exists(sock) else None


def parse_host(host: str) -> tuple[str, str | tuple[str, int]]:
    """Split an address into ("unix", path) or ("tcp", (host, port)).

    Raises:
        ValueError: the scheme is not unix://, tcp:// or http://.
    """
    if host.startswith("unix://"):
        return "unix", host[len("unix://"):]
    if host.startswith("/"):
        return "unix", host
    for scheme in ("tcp://", "http://"):
        if host.startswith(scheme):
            rest = host[len(scheme):].split("/", 1)[0]
            name, _, port = rest.rpartition(":")
            if not name:
                name, port = rest, "2375"
            return "tcp", (name.strip("[]") or "127.0.0.1", int(port))
    raise ValueError(f"Invalid bind address format: {host}")
