"""berthd's listeners: the -H addresses (unix://, tcp:// with TLS, fd:// from systemd), the TLS
flags and their policy, and the readiness notice to systemd.

The order, as dockerd does it: the flags are checked and the addresses parsed before anything
is created (``prepare``: a plain-TCP listener without an explicit ``--tls=false`` stops berthd
here, before it takes the data root); after the data-root lock the Unix sockets are bound
with the TCP ones (``bind``: ``api.early`` answers /_ping on the Unix ones while asyncio is
imported), and ``listen`` hands them all to the event loop's server.

TLS follows dockerd's flags: ``--tlsverify`` (implies ``--tls``) asks every client for a
certificate signed by ``--tlscacert``; ``--tls`` alone is server TLS only. The files default to
``$DOCKER_CERT_PATH`` or ``~/.docker`` (``ca.pem``, ``cert.pem``, ``key.pem``), as dockerd's do.
TLS applies to TCP listeners only; a Unix socket is guarded by its mode and group.

Socket activation follows sd_listen_fds(3): ``LISTEN_PID`` must be ours, ``LISTEN_FDS`` sockets
start at fd 3, ``LISTEN_FDNAMES`` names them; the variables are removed so no child sees them.
``fd://`` takes every socket, ``fd://N`` the one at fd N (the others are closed, as dockerd does),
``fd://NAME`` the ones a socket unit named with ``FileDescriptorName=``.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, MutableMapping, NamedTuple

if TYPE_CHECKING:
    import ssl

    from berth.api.http import Server

log = logging.getLogger("berthd")

SD_LISTEN_FDS_START = 3
API_SECURITY_URL = "https://docs.docker.com/go/api-security/"


class Endpoint(NamedTuple):
    """One -H address: ``unix`` (a path), ``tcp`` (host and port) or ``fd`` (a selector)."""

    scheme: str
    address: str
    port: int = 0

    def __str__(self) -> str:
        if self.scheme == "tcp":
            host = f"[{self.address}]" if ":" in self.address else self.address
            return f"tcp://{host}:{self.port}"
        return f"{self.scheme}://{self.address}"


class Plan:
    """What ``prepare`` decided: the endpoints, the TLS context, the activated sockets taken.
    (Plain classes on the path to listening: dataclasses imports inspect, ast and dis.)"""

    def __init__(self, endpoints: list[Endpoint], tls: ssl.SSLContext | None):
        self.endpoints = endpoints
        self.tls = tls
        self.activated: dict[Endpoint, list[socket.socket]] = {}


def parse_endpoint(host: str, tls: bool) -> Endpoint:
    """A -H value as dockerd reads it; a bare ``host:port`` is TCP."""
    scheme, sep, rest = host.partition("://")
    if not sep:
        scheme, rest = ("unix", host) if host.startswith("/") else ("tcp", host)
    if scheme == "unix":
        if not rest:
            raise SystemExit(f"berthd: invalid bind address {host!r}: empty unix socket path")
        return Endpoint("unix", rest)
    if scheme == "fd":
        return Endpoint("fd", rest)
    if scheme != "tcp":
        raise SystemExit(f"berthd: invalid bind address protocol: {host!r} (use unix://, tcp:// or fd://)")
    rest = rest.split("/", 1)[0]
    name, colon, port = rest.rpartition(":")
    if not colon or name.endswith(":") or (":" in name and not name.startswith("[")):
        name, port = rest, ""
    name = name.strip("[]") or "127.0.0.1"
    try:
        number = int(port) if port else (2376 if tls else 2375)
    except ValueError:
        raise SystemExit(f"berthd: invalid bind address {host!r}: invalid port {port!r}") from None
    return Endpoint("tcp", name, number)


def tls_enabled(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "tlsverify", None)) or bool(getattr(args, "tls", None))


def _cert_file(args: argparse.Namespace, dest: str, default_name: str) -> str:
    given = getattr(args, dest, None)
    if given:
        return str(given)
    base = os.environ.get("DOCKER_CERT_PATH") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(base, default_name)


def tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The server context the flags ask for (None: no TLS). TLS 1.2 at least; with
    --tlsverify a client without a certificate from the CA fails the handshake."""
    if not tls_enabled(args):
        return None
    import ssl  # only with TLS: not on the path to listening otherwise
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    cert, key = _cert_file(args, "tlscert", "cert.pem"), _cert_file(args, "tlskey", "key.pem")
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        raise SystemExit(f"berthd: could not load X509 key pair ({cert}, {key}): {_reason(e)}") from None
    if getattr(args, "tlsverify", None):
        ca = _cert_file(args, "tlscacert", "ca.pem")
        try:
            ctx.load_verify_locations(cafile=ca)
        except (OSError, ssl.SSLError) as e:
            raise SystemExit(f"berthd: could not read CA certificate {ca!r}: {_reason(e)}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _reason(e: BaseException) -> str:
    import ssl
    return e.strerror if isinstance(e, OSError) and e.strerror and not isinstance(e, ssl.SSLError) else str(e)


def check_plain_tcp(listeners: list[str], args: argparse.Namespace) -> None:
    """A TCP listener without TLS gives root to anyone who reaches it: refused unless the
    operator said --tls=false (or --tlsverify=false), and then warned about as dockerd does.
    ``listeners`` names the TCP ones (-H tcp://, and TCP sockets systemd passed in)."""
    if getattr(args, "tlsverify", None):
        return
    tls = tls_enabled(args)  # server TLS only: nobody is authenticated, dockerd warns the same
    consent = tls or getattr(args, "tls", None) is False or getattr(args, "tlsverify", None) is False
    for e in listeners:
        if not consent:
            raise SystemExit(
                f"berthd: refusing to listen on {e} without TLS: anyone who can reach it gets root on this "
                "machine. Use --tlsverify with --tlscacert, --tlscert and --tlskey, or give --tls=false "
                f"explicitly to accept unauthenticated access (see {API_SECURITY_URL})")
        log.warning("Binding to IP address without --tlsverify is insecure and gives root access on this "
                    "machine to everyone who has access to your network. host=%s", e)
        log.warning("Binding to an IP address, even on localhost, can also give access to scripts run in a "
                    "browser. Be safe out there! host=%s", e)
        log.warning("[DEPRECATION NOTICE] Unauthenticated TCP access is allowed only because %s was given "
                    "explicitly; learn more at: %s host=%s", "--tls" if tls else "--tls=false", API_SECURITY_URL, e)


def activated_sockets(environ: MutableMapping[str, str] | None = None) -> list[tuple[str, socket.socket]]:
    """The sockets systemd passed (sd_listen_fds(3)), with their names; the variables are unset."""
    env = os.environ if environ is None else environ
    pid, count = env.pop("LISTEN_PID", ""), env.pop("LISTEN_FDS", "")
    names = env.pop("LISTEN_FDNAMES", "").split(":")
    if not pid or not count or pid != str(os.getpid()):
        return []
    out = []
    for i in range(int(count)):
        fd = SD_LISTEN_FDS_START + i
        try:
            os.set_inheritable(fd, False)  # never into the fork server or a shim
            sock = socket.socket(fileno=fd)
        except OSError as e:
            raise SystemExit(f"berthd: socket activation: fd {fd} is not a socket: {e.strerror}") from None
        out.append((names[i] if i < len(names) else "", sock))
    return out


def select_activated(selector: str, sockets: list[tuple[str, socket.socket]]) -> list[socket.socket]:
    """The activated sockets one ``fd://SELECTOR`` names: all, the one at fd N, or by name."""
    if not sockets:
        raise SystemExit("berthd: no sockets found via socket activation: make sure the service was "
                         "started by systemd")
    if selector in ("", "*"):
        return [s for _, s in sockets]
    if selector.isdigit():
        offset = int(selector) - SD_LISTEN_FDS_START
        if offset < 0 or offset >= len(sockets):
            raise SystemExit("berthd: too few socket activated files passed in by systemd "
                             f"(fd://{selector}; fds {SD_LISTEN_FDS_START}..{SD_LISTEN_FDS_START + len(sockets) - 1})")
        return [sockets[offset][1]]
    named = [s for name, s in sockets if name == selector]
    if not named:
        raise SystemExit(f"berthd: no socket named {selector!r} was passed in by systemd "
                         f"(names: {', '.join(n for n, _ in sockets) or 'none'})")
    return named


def prepare(hosts: list[str], args: argparse.Namespace) -> Plan:
    """Parse and check every address, load TLS, take the activated sockets: before any state."""
    tls = tls_enabled(args)
    endpoints = [parse_endpoint(h, tls) for h in hosts]
    plan = Plan(endpoints, None)
    fds = [e for e in endpoints if e.scheme == "fd"]
    if fds:
        sockets = activated_sockets()
        for e in fds:
            plan.activated[e] = select_activated(e.address, sockets)
        taken = {id(s) for chosen in plan.activated.values() for s in chosen}
        for _, s in sockets:
            if id(s) not in taken:
                s.close()
    tcp = [str(e) for e in endpoints if e.scheme == "tcp"]
    tcp += [f"{e} (tcp {_sockname(s)})" for e, chosen in plan.activated.items() for s in chosen
            if s.family != socket.AF_UNIX]
    check_plain_tcp(tcp, args)
    plan.tls = tls_context(args)
    return plan


def _sockname(s: socket.socket) -> str:
    host, port = s.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Bound:
    """The listening sockets ``bind`` made or took, by endpoint, and the paths to remove at exit."""

    def __init__(self) -> None:
        self.sockets: dict[Endpoint, list[socket.socket]] = {}
        self.paths: list[Path] = []

    def unix(self) -> list[socket.socket]:
        """Every listening Unix socket: the early /_ping thread's (TCP ones wait for the loop)."""
        return [s for chosen in self.sockets.values() for s in chosen if s.family == socket.AF_UNIX]


def bind(plan: Plan, gid: int, dir_owner: bool = False) -> Bound:
    """Listen on every endpoint now (and take the activated sockets, systemd's): when /_ping
    answers on one, every listener listens, and a busy address stops berthd before that.
    ``dir_owner``: a Unix socket belongs to its directory's owner (a rootless engine's root is
    a subordinate id on the host; the user, who owns the runtime dir, is another id inside)."""
    bound = Bound()
    for e in plan.endpoints:
        if e.scheme == "unix":
            path = Path(e.address)
            bound.sockets[e] = [_bind_unix(path, gid, dir_owner)]
            bound.paths.append(path)
        elif e.scheme == "tcp":
            bound.sockets[e] = _bind_tcp(e)
        else:
            bound.sockets[e] = plan.activated[e]
        for s in bound.sockets[e]:
            s.setblocking(False)
    return bound


def _bind_tcp(e: Endpoint) -> list[socket.socket]:
    """One listening socket per address the host resolves to, as asyncio's create_server makes
    them (SO_REUSEADDR; IPv6 sockets IPv6 only)."""
    try:
        infos = socket.getaddrinfo(e.address, e.port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise SystemExit(f"berthd: failed to listen on {e}: {err.strerror}") from None
    made: list[socket.socket] = []
    try:
        for family, kind, proto, _, addr in dict.fromkeys(infos):
            s = socket.socket(family, kind, proto)
            made.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind(addr)
            s.listen(512)
    except OSError as err:
        for s in made:
            s.close()
        raise SystemExit(f"berthd: failed to listen on {e}: {err.strerror or err}") from None
    return made


def _bind_unix(path: Path, gid: int, dir_owner: bool) -> socket.socket:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o117)
    try:
        sock.bind(str(path))
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old)
    sock.listen(512)
    sock.setblocking(False)
    os.chmod(path, 0o660)
    if dir_owner:
        st = path.parent.stat()
        os.chown(path, st.st_uid, st.st_gid)
    elif gid >= 0:
        os.chown(path, 0, gid)
    return sock


async def listen(server: Server, plan: Plan, bound: Bound) -> None:
    """Serve every listener ``bind`` made or took (TLS on the TCP ones when the flags ask)."""
    for e in plan.endpoints:
        for s in bound.sockets[e]:
            await server.serve_socket(s, plan.tls)


def notify_ready(environ: MutableMapping[str, str] | None = None) -> None:
    """sd_notify(3) READY=1 when systemd asked for it (Type=notify); a no-op otherwise."""
    env = os.environ if environ is None else environ
    addr = env.pop("NOTIFY_SOCKET", "")
    if not addr:
        return
    target = "\0" + addr[1:] if addr.startswith("@") else addr
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            # A rootless berthd's pid is its own namespace's: systemd's main pid (the host
            # side, daemon/rootless_boot.py) stays the one it started.
            main = "" if env.get("BERTH_ROOTLESS") == "1" else f"MAINPID={os.getpid()}\n"
            s.sendto(f"READY=1\n{main}".encode(), target)
    except OSError as e:
        log.warning("could not notify systemd at %s: %s", addr, e)
