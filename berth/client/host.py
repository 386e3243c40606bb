"""Daemon address resolution: the -H flag, then BERTH_HOST, then DOCKER_HOST, then the default."""

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
    return DEFAULT_HOST


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
