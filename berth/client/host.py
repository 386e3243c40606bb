"""Daemon address resolution: the -H flag, then BERTH_HOST, then DOCKER_HOST, then the default
(root's socket; a rootless berthd's ``$XDG_RUNTIME_DIR/berth.sock`` when root's cannot be
reached and that one exists); and the TLS settings, as the docker CLI reads them (``--tls``,
``--tlsverify``, ``--tlscacert``, ``--tlscert``, ``--tlskey``, then DOCKER_TLS,
DOCKER_TLS_VERIFY and DOCKER_CERT_PATH)::

    tls = resolve_tls(TLSFlags(verify=True), os.environ)   # None: plain HTTP
    tls.ca, tls.cert, tls.key, tls.verify
"""

from __future__ import annotations

import os
from collections import namedtuple

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


class TLSFlags:
    """The global TLS flags as given (None: not given). Plain classes here, not dataclasses:
    importing those costs the CLI's start ~10 ms."""

    __slots__ = ("tls", "verify", "ca", "cert", "key")

    def __init__(self, tls: bool | None = None, verify: bool | None = None, ca: str | None = None,
                 cert: str | None = None, key: str | None = None) -> None:
        self.tls, self.verify, self.ca, self.cert, self.key = tls, verify, ca, cert, key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TLSFlags) and all(getattr(self, k) == getattr(other, k) for k in self.__slots__)

    def __repr__(self) -> str:
        return "TLSFlags(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__) + ")"


# What a TLS connection uses: the CA file, the client certificate and key ("" = none), and
# whether the server's certificate is checked (false: ``--tls`` alone; the CA file must
# still be readable, as for the docker CLI).
TLSOptions = namedtuple("TLSOptions", ["ca", "cert", "key", "verify"])


def resolve_tls(flags: TLSFlags, environ: Mapping[str, str] | None = None) -> TLSOptions | None:
    """The docker CLI's rules: --tlsverify (or a non-empty DOCKER_TLS_VERIFY) implies TLS; the
    files default to DOCKER_CERT_PATH (else ~/.docker)'s ca.pem, cert.pem and key.pem, and a
    default cert or key that does not exist is left out."""
    env = os.environ if environ is None else environ
    verify = flags.verify if flags.verify is not None else bool(env.get("DOCKER_TLS_VERIFY"))
    tls = verify or (flags.tls if flags.tls is not None else bool(env.get("DOCKER_TLS")))
    if not tls:
        return None
    base = env.get("DOCKER_CERT_PATH") or os.path.join(env.get("DOCKER_CONFIG") or _home_docker(env), "")
    cert = flags.cert if flags.cert is not None else _existing(os.path.join(base, "cert.pem"))
    key = flags.key if flags.key is not None else _existing(os.path.join(base, "key.pem"))
    return TLSOptions(flags.ca if flags.ca is not None else os.path.join(base, "ca.pem"), cert, key, verify)


def _home_docker(env: Mapping[str, str]) -> str:
    return os.path.join(env.get("HOME") or os.path.expanduser("~"), ".docker")


def _existing(path: str) -> str:
    return path if os.path.exists(path) else ""


def parse_host(host: str, default_port: int = 2375) -> tuple[str, str | tuple[str, int]]:
    """Split an address into ("unix", path) or ("tcp", (host, port)); a tcp address without
    a port gets ``default_port`` (the docker CLI's: 2375, 2376 with TLS).

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
            if not name or not port.isdigit():
                name, port = rest, str(default_port)
            return "tcp", (name.strip("[]") or "127.0.0.1", int(port))
    raise ValueError(f"Invalid bind address format: {host}")
