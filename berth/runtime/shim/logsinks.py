"""Log drivers that send each line away instead of writing a file: ``syslog`` and ``journald``.

The shim owns them as it owns the json-file log (``stdio.LogWriter``): one message per line,
sent as the container writes it, a line of 16 KiB or more without its newline as a partial
message. berthd has already turned the container's options into a ``protocol.RemoteLog``
(address, format, facility, tag, journal fields), so nothing here knows about containers.

syslog, as dockerd's driver (srslog): ``<PRI>`` = facility * 8 + severity (6 info for stdout,
3 err for stderr); the formats, for ``syslog-format``:

    ""             <PRI>Jan  2 15:04:05 TAG[PID]: MSG                  (the local one)
    rfc3164        <PRI>Jan  2 15:04:05 HOST TAG[PID]: MSG
    rfc5424        <PRI>1 2006-01-02T15:04:05Z HOST TAG PID TAG - MSG
    rfc5424micro   as rfc5424, the time with microseconds

each ending in a newline (tcp frames by newline; udp and unix sockets one message a datagram).
``tcp+tls``: the same over TLS (the syslog-tls-* files; the system's CAs when no CA is given),
and rfc5424 messages framed by octet counting, ``LEN SP MSG`` (RFC 5425), as dockerd does.
A syslog that goes away is redialled once per message; a message that cannot be sent is
dropped (the container never blocks on its logger).

journald: the native protocol, one datagram of ``KEY=value`` lines per message on the journal
socket (a value with a newline is sent as ``KEY\\n``, its length as 64-bit little endian, the
bytes, ``\\n``). A message over the socket's datagram limit is cut to it (dockerd passes a memfd
instead).
"""

from __future__ import annotations

import os
import socket
import struct
import time

from berth.runtime.shim.protocol import STDERR, RemoteLog

_INFO, _ERR = 6, 3
_JOURNAL_MAX = 200 * 1024  # under the default net.core.wmem_default a datagram fits in


class SyslogSink:
    """One container's syslog connection."""

    def __init__(self, conf: RemoteLog):
        self.conf = conf
        self.hostname = socket.gethostname()
        self.pid = os.getpid()
        self.sock: socket.socket | None = None
        self.sock = self._dial()  # a failure here fails the container's start, as in dockerd

    def _dial(self) -> socket.socket:
        scheme, _, rest = self.conf.address.partition("://")
        if scheme == "tcp+tls":
            host, _, port = rest.rpartition(":")
            return _tls(self.conf, host.strip("[]"), int(port))
        if scheme in ("tcp", "udp"):
            host, _, port = rest.rpartition(":")
            kind = socket.SOCK_STREAM if scheme == "tcp" else socket.SOCK_DGRAM
            s = socket.create_connection((host.strip("[]"), int(port)), timeout=5) if kind == socket.SOCK_STREAM \
                else _udp(host.strip("[]"), int(port))
            s.setblocking(True)
            s.settimeout(2)
            return s
        paths = [rest] if scheme in ("unix", "unixgram") else ["/dev/log", "/var/run/syslog", "/var/run/log"]
        kinds = [socket.SOCK_STREAM] if scheme == "unix" else [socket.SOCK_DGRAM]
        if scheme == "":
            kinds = [socket.SOCK_DGRAM, socket.SOCK_STREAM]
        err: OSError = FileNotFoundError(f"unix syslog delivery error: no syslog socket at {', '.join(paths)}")
        for path in paths:
            for kind in kinds:
                s = socket.socket(socket.AF_UNIX, kind | socket.SOCK_CLOEXEC)
                try:
                    s.settimeout(2)
                    s.connect(path)
                    return s
                except OSError as e:
                    s.close()
                    err = e
        raise err

    def format(self, stream: int, line: bytes) -> bytes:
        c = self.conf
        pri = c.facility * 8 + (_ERR if stream == STDERR else _INFO)
        msg = line.decode("utf-8", "replace")
        if c.format in ("rfc5424", "rfc5424micro"):
            t = time.time()
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t))
            if c.format == "rfc5424micro":
                stamp += ".%06d" % int(t % 1 * 1e6)
            stamp += _zone(t)
            text = f"<{pri}>1 {stamp} {self.hostname} {c.tag} {self.pid} {c.tag} - {msg}"
        elif c.format == "rfc3164":
            text = f"<{pri}>{_stamp()} {self.hostname} {c.tag}[{self.pid}]: {msg}"
        else:
            text = f"<{pri}>{_stamp()} {c.tag}[{self.pid}]: {msg}"
        return (text if text.endswith("\n") else text + "\n").encode()

    def send(self, stream: int, line: bytes, partial: bool) -> None:
        data = self.format(stream, line)
        if self.conf.address.startswith("tcp+tls://") and self.conf.format in ("rfc5424", "rfc5424micro"):
            data = b"%d %s" % (len(data), data)
        for _ in range(2):
            try:
                if self.sock is None:
                    self.sock = self._dial()
                self.sock.sendall(data)
                return
            except OSError:
                self.close()
        # dropped: the syslog is gone and did not come back

    def close(self) -> None:
        if self.sock is not None:
            if hasattr(self.sock, "unwrap"):
                _tls_close(self.sock)
            self.sock.close()
            self.sock = None


def _tls_close(sock: socket.socket) -> None:
    """close_notify, and read the server's unread records (TLS 1.3 session tickets) while
    waiting for its own: closing with unread bytes sends a RST, and the server would drop the
    last messages it had not read yet."""
    try:
        sock.settimeout(1)
        sock.unwrap()  # type: ignore[attr-defined]
    except (OSError, ValueError):
        pass


def _tls(conf: RemoteLog, host: str, port: int) -> socket.socket:
    """A TLS connection to the syslog: its certificate checked against syslog-tls-ca-cert (the
    system's CAs without one) and ``host``, unless syslog-tls-skip-verify; our certificate when
    syslog-tls-cert is given. ssl is imported only here: most shims never need it."""
    import ssl

    ctx = ssl.create_default_context(cafile=conf.tls_ca or None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if conf.tls_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if conf.tls_cert:
        ctx.load_cert_chain(conf.tls_cert, conf.tls_key or None)
    raw = socket.create_connection((host, port), timeout=5)
    try:
        s = ctx.wrap_socket(raw, server_hostname=host)
    except BaseException:
        raw.close()
        raise
    s.settimeout(2)
    return s


def _udp(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    s.connect((host, port))
    return s


def _stamp() -> str:
    """Go's time.Stamp: "Jan  2 15:04:05" (the day padded with a space)."""
    t = time.localtime()
    return time.strftime("%b ", t) + f"{t.tm_mday:2d}" + time.strftime(" %H:%M:%S", t)


def _zone(t: float) -> str:
    off = time.localtime(t).tm_gmtoff
    if off == 0:
        return "Z"
    sign = "+" if off > 0 else "-"
    return f"{sign}{abs(off) // 3600:02d}:{abs(off) % 3600 // 60:02d}"


class JournalSink:
    """One container's messages to the journal socket, with its fields."""

    def __init__(self, conf: RemoteLog):
        self.path = conf.address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.settimeout(1)  # a journal that is slow to read: wait a little, then drop
        self.fixed = b"".join(_field(k, v.encode()) for k, v in conf.fields.items())
        os.stat(self.path)  # no journal: the start fails, as dockerd's "journald is not enabled on this host"

    def send(self, stream: int, line: bytes, partial: bool) -> None:
        msg = line[:-1] if line.endswith(b"\n") else line
        prio = b"3" if stream == STDERR else b"6"
        head = _field("PRIORITY", prio) + (_field("CONTAINER_PARTIAL_MESSAGE", b"true") if partial else b"")
        data = _field("MESSAGE", msg[:_JOURNAL_MAX]) + head + self.fixed
        try:
            self.sock.sendto(data, self.path)
        except OSError:
            pass  # journal gone or full: dropped, never blocking the container

    def close(self) -> None:
        self.sock.close()


def _field(key: str, value: bytes) -> bytes:
    if b"\n" in value:
        return key.encode() + b"\n" + struct.pack("<Q", len(value)) + value + b"\n"
    return key.encode() + b"=" + value + b"\n"


Sink = SyslogSink | JournalSink


def open_sink(conf: RemoteLog) -> Sink:
    """The sink for ``conf.driver`` (raises OSError when its syslog or journal is not there)."""
    return JournalSink(conf) if conf.driver == "journald" else SyslogSink(conf)
