"""The rootless engine's way out when pasta is absent (or ``BERTH_ROOTLESS_NET=slirp4netns``):
``slirp4netns`` (Debian's package of that name), run on the host side like pasta
(``daemon/rootless_net.py`` chooses).

slirp4netns gives the engine's network namespace a tap device (``tap0``, 10.0.2.100/24, the
gateway 10.0.2.2, DNS at 10.0.2.3) and moves its traffic through a user-mode TCP/IP stack. It has
no automatic port forwarding: its API socket (``slirp4netns.sock`` under the exec root) takes
``add_hostfwd``/``remove_hostfwd``. The host-side watcher that outlives berthd (``rootless_tool.py``,
as pasta's) is also the port driver: twice a second it reads the sockets listening in the engine's namespace
(``/proc/<holder>/net/{tcp,udp}``, where berthd's reserved published-port sockets listen, as for
pasta) and forwards the same host port, on 127.0.0.1 or every address as the socket is bound,
to 10.0.2.100, where the engine's DNAT takes it to the container. The host's loopback is
10.0.2.2 to slirp: ``loopback_rules`` (applied in the namespace before berthd starts) DNAT the
namespace's connections to 127.0.0.1 there, so a pull from a registry on the host's 127.0.0.1
works as with pasta's ``-T auto``.
"""

from __future__ import annotations

import json
import select
import shutil
import socket
import subprocess
import time
from pathlib import Path

from berth.daemon.rootless_tool import HostTool

GUEST = "10.0.2.100"
HOST_LOOPBACK = "10.0.2.2"
TAP = "tap0"
POLL = 0.5


def loopback_rules() -> str:
    """nft rules for the engine's namespace: its connections to 127.0.0.1 go to the host's
    loopback (slirp's 10.0.2.2), their loopback source masqueraded (``route_localnet``)."""
    return (f"table ip berth-rootless {{\n"
            f"  chain output {{ type nat hook output priority -110; policy accept;\n"
            f"    ip daddr 127.0.0.1 meta l4proto {{ tcp, udp }} dnat to {HOST_LOOPBACK}\n  }}\n"
            f"  chain postrouting {{ type nat hook postrouting priority 110; policy accept;\n"
            f"    oifname \"{TAP}\" ip saddr 127.0.0.0/8 masquerade\n  }}\n}}\n")


def route_to_host_loopback() -> None:
    """In the engine's namespace (root there): the rules above, and ``route_localnet``."""
    Path("/proc/sys/net/ipv4/conf/all/route_localnet").write_text("1")
    subprocess.run([shutil.which("nft") or "nft", "-f", "-"], input=loopback_rules().encode(), check=True,
                   capture_output=True)


class Slirp(HostTool):
    """slirp4netns on the engine's namespaces; its watcher is also the port driver."""

    def __init__(self, proc: subprocess.Popen[bytes], api: Path):
        super().__init__(proc)
        self.api = api

    def watch(self, holder: int, held: int, tool: int) -> None:
        """Forward what listens in the namespace until the holder (or slirp4netns) exits."""
        _watch(self.api, holder, held, tool)


def connect(pid: int, exec_root: Path, binary: str) -> Slirp:
    """Plug the network namespace of ``pid`` into the host with slirp4netns. Raises OSError."""
    api = exec_root / "slirp4netns.sock"
    api.unlink(missing_ok=True)
    logfile = exec_root / "slirp4netns.log"
    cmd = [binary, "--configure", "--mtu=65520", "--api-socket", str(api), f"--userns-path=/proc/{pid}/ns/user",
           "--netns-type=path", f"/proc/{pid}/ns/net", TAP]
    with open(logfile, "ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if api.exists() and TAP in Path(f"/proc/{pid}/net/dev").read_text():
            return Slirp(proc, api)
        time.sleep(0.02)
    code = proc.poll()
    Slirp(proc, api).stop()
    raise OSError(f"slirp4netns could not connect the engine's network namespace (exit {code}); see {logfile}")


def call(api: Path, execute: str, arguments: dict[str, object]) -> dict[str, object]:
    """One request on slirp4netns's API socket; its ``return`` (raises OSError on an error)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as s:
        s.settimeout(5)
        s.connect(str(api))
        s.sendall(json.dumps({"execute": execute, "arguments": arguments}).encode())
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    answer = json.loads(data or b"{}")
    if "error" in answer or "return" not in answer:
        raise OSError(f"slirp4netns {execute}: {answer.get('error', answer)}")
    return dict(answer["return"])


def listening(holder: int) -> set[tuple[str, str, int]]:
    """(proto, host address, port) for each IPv4 socket listening in the holder's network
    namespace: a TCP socket in LISTEN, an unconnected UDP one; 127.0.0.1 or 0.0.0.0."""
    out = set()
    for proto, state in (("tcp", "0A"), ("udp", "07")):
        try:
            lines = Path(f"/proc/{holder}/net/{proto}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 4 or fields[3] != state:
                continue
            addr, port = fields[1].split(":")
            host = "127.0.0.1" if addr == "0100007F" else "0.0.0.0" if addr == "00000000" else ""
            if host:
                out.add((proto, host, int(port, 16)))
    return out


def _watch(api: Path, holder: int, held: int, slirp: int) -> None:
    """Forward what listens in the namespace until the holder (or slirp4netns) exits."""
    forwarded: dict[tuple[str, str, int], int] = {}
    while not select.select([held, slirp], [], [], POLL)[0]:
        want = listening(holder)
        for key in [k for k in forwarded if k not in want]:
            try:
                call(api, "remove_hostfwd", {"id": forwarded.pop(key)})
            except (OSError, ValueError):
                pass
        for key in want - forwarded.keys():
            proto, host, port = key
            try:
                forwarded[key] = int(str(call(api, "add_hostfwd", {
                    "proto": proto, "host_addr": host, "host_port": port, "guest_addr": GUEST,
                    "guest_port": port})["id"]))
            except (OSError, ValueError, KeyError):
                pass   # the host port is taken there: tried again next round
