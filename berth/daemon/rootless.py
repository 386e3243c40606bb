"""Rootless berthd: an ordinary user's engine, inside a user namespace of its own.

berthd started by a non-root user (or with ``--rootless``) does not serve itself. Its host
side (``daemon/rootless_boot.py``) makes user, mount, network and pid namespaces whose ids
``newuidmap``/``newgidmap`` map from the user's ``/etc/subuid`` and ``/etc/subgid`` ranges (the
subordinate range is 0..N-1 inside, so root in a container is a subordinate id on the host,
and the user's own id is N, the owner of its socket), plugs the network namespace into the
host with pasta (``daemon/rootless_net.py``), and forks berthd into them with
``BERTH_ROOTLESS=1``; the namespaces outlive that berthd while its containers run, and the next
one joins them. Inside, berthd runs as it would as root, one level down: its data root is
``~/.local/share/berth``, its exec root ``$XDG_RUNTIME_DIR/berth``, its socket
``$XDG_RUNTIME_DIR/berth.sock`` and its configuration ``~/.config/berth/daemon.json``
(``defaults``). The host side forwards signals to berthd and exits with its status.

Without subordinate ranges the child gets a single-id map (the user is root, nothing else
exists) and berthd says what that limits.

    if rootless.wanted(argv):
        raise SystemExit(rootless_boot.start(argv))   # the host side: the child's status

This module is on every berthd's start-up path and stays light; the host side's work is
``daemon/rootless_boot.py``.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

ENV = "BERTH_ROOTLESS"  # "1" in the berthd that runs inside the user namespace
SINGLE_ID = ("running with a single-id map (only uid 0 and gid 0 exist in containers: --user other than "
             "root and images whose files belong to other ids fail); add a range for the rest, e.g. "
             "usermod --add-subuids 100000-165535 --add-subgids 100000-165535 USER")


class RootlessError(Exception):
    """What stops a rootless start, with the fix in the message."""


def wanted(argv: list[str]) -> bool:
    """True on the host side of a rootless start: not root (or ``--rootless``), not inside yet."""
    if os.environ.get(ENV) == "1":
        return False
    return os.geteuid() != 0 or "--rootless" in argv or "--rootless=true" in argv


def inside() -> bool:
    """True in the berthd that runs inside the rootless user namespace."""
    return os.environ.get(ENV) == "1"


class Paths(NamedTuple):
    """Where a rootless berthd keeps its state (XDG's directories, as Docker rootless)."""

    data_root: Path
    exec_root: Path
    socket: Path
    config_file: Path

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Paths:
        env = os.environ if environ is None else environ
        home = Path(env.get("HOME") or pwd.getpwuid(os.getuid()).pw_dir)
        runtime = env.get("XDG_RUNTIME_DIR", "")
        if not runtime:
            raise RootlessError("$XDG_RUNTIME_DIR needs to be set for rootless berthd "
                                "(a directory of your own, e.g. /run/user/$(id -u), as systemd --user sets)")
        data = Path(env.get("XDG_DATA_HOME") or home / ".local" / "share")
        config = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
        return cls(data / "berth", Path(runtime) / "berth", Path(runtime) / "berth.sock",
                   config / "berth" / "daemon.json")


def defaults(paths: Paths) -> dict[str, object]:
    """The daemon keys whose defaults differ inside: what ``config.load`` takes as defaults."""
    return {"data-root": str(paths.data_root), "exec-root": str(paths.exec_root),
            "hosts": [f"unix://{paths.socket}"], "group": "", "rootless": True,
            "cri": False}
