"""A rootless engine's way out: its network namespace (made with its user namespace, so the
bridges, veths, nftables rules and the embedded DNS work there as rootful berth's do on the
host) is plugged into the host by ``pasta`` (Debian's ``passt``), run on the host side.

pasta configures a tap interface in the namespace (10.0.2.100/24, default route via 10.0.2.2)
and moves connections between the two at layer 4 (no root needed). Its port forwarding follows
the namespace by itself (``-t auto``/``-u auto``): a port bound in the namespace is bound on
the host within a second. So a published port (``-p 8080:80``) is berthd's usual reserved
socket, listening in the engine's namespace (``network/ports.py``), and the kernel DNATs what
pasta delivers to it, as rootful. The reverse (``-T auto``) makes the host's loopback ports
reachable on the namespace's loopback: a pull from a registry on the host's 127.0.0.1 works.
That address, rather than pasta's default copy of the host's, lets a client on the host's own
address keep it too (pasta rewrites a source that is the namespace's own
to its gateway); only loopback clients, which pasta splices, are not kept.
Ports below the host's ``net.ipv4.ip_unprivileged_port_start`` cannot be bound by pasta:
berthd refuses them (``PORT_START_ENV`` carries the host's value inside).

Without pasta, slirp4netns does the same job (``daemon/rootless_slirp.py``); ``NET_ENV``
(``BERTH_ROOTLESS_NET=pasta|slirp4netns``) chooses one, and tells the berthd inside which is in
use (``docker info`` shows it). Without either the engine has no way out, and berthd says so.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

from berth.daemon import rootless_slirp
from berth.daemon.rootless_tool import HostTool
from berth.daemon.rootless_slirp import Slirp
from berth.state.rootless import NET_ENV

log = logging.getLogger("berthd")

PORT_START_ENV = "BERTH_ROOTLESS_PORT_START"
TOOLS = ("pasta", "slirp4netns")
NET_FILE = "rootless.net"   # under the exec root: the tool the namespaces were made with
# the namespace's address and gateway on pasta's tap, not the host's (pasta's default): a client
# on the host's own address is then not the namespace's own, and keeps it (as slirp4netns's)
ADDRESS, GATEWAY = "10.0.2.100", "10.0.2.2"


def choose() -> str:
    """The tool NET_ENV names (it must be installed), else pasta, else slirp4netns; "" for none."""
    forced = os.environ.get(NET_ENV, "")
    if forced:
        if forced not in TOOLS:
            raise ValueError(f"{NET_ENV}={forced}: not one of {', '.join(TOOLS)}")
        if shutil.which(forced) is None:
            raise ValueError(f"{NET_ENV}={forced}: {forced} not found (apt-get install "
                             f"{'passt' if forced == 'pasta' else forced})")
        return forced
    for tool in TOOLS:
        if shutil.which(tool):
            return tool
    return ""


def unprivileged_port_start() -> int:
    """The host's ``net.ipv4.ip_unprivileged_port_start`` (read on the host side), unless the
    environment already says (tests: a host whose value another test lowered)."""
    if os.environ.get(PORT_START_ENV, "").isdigit():
        return int(os.environ[PORT_START_ENV])
    try:
        return int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    except (OSError, ValueError):
        return 1024


class Pasta(HostTool):
    """pasta on the engine's namespaces: it follows their listening sockets by itself."""


def connect(pid: int, exec_root: Path, tool: str) -> Pasta | Slirp | None:
    """Plug the network namespace of ``pid`` (and its user namespace) into the host with
    ``tool``; None (with a warning) without one. Raises OSError when the tool fails."""
    binary = shutil.which(tool) if tool else None
    if binary is None:
        log.warning("neither pasta nor slirp4netns found (apt-get install passt): the rootless engine has "
                    "no network to the host, and published ports are not reachable")
        return None
    if tool == "slirp4netns":
        return rootless_slirp.connect(pid, exec_root, binary)
    pasta = binary
    logfile = exec_root / "pasta.log"
    cmd = [pasta, "--config-net", "--foreground", "--quiet", "--log-file", str(logfile),
           "-a", ADDRESS, "-n", "24", "-g", GATEWAY, "-t", "auto", "-u", "auto", "-T", "auto", "-U", "auto",
           "--userns", f"/proc/{pid}/ns/user", "--netns", f"/proc/{pid}/ns/net"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    if not _configured(pid, proc):
        code = proc.poll()
        Pasta(proc).stop()
        raise OSError(f"pasta could not connect the engine's network namespace (exit {code}); see {logfile}")
    return Pasta(proc)


def _configured(pid: int, proc: subprocess.Popen[bytes], timeout: float = 10) -> bool:
    """Wait until pasta's tap interface is in the namespace (or pasta died)."""
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            devs = Path(f"/proc/{pid}/net/dev").read_text()
        except OSError:
            return False
        if len(devs.splitlines()) > 3:  # two header lines, lo, and the tap
            return True
        time.sleep(0.02)
    return False
