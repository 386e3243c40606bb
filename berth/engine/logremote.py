"""The options of the log drivers that send lines away (``syslog``, ``journald``), checked at
create and resolved at start into the shim's ``RemoteLog``, as dockerd's drivers read them.

    tag            a template over the container ({{.ID}} {{.FullID}} {{.Name}} {{.ImageID}}
                   {{.ImageFullID}} {{.ImageName}} {{.DaemonName}}); default {{.ID}}
    syslog-address tcp://HOST[:514] udp://HOST[:514] tcp+tls://HOST[:514] unix:///PATH
                   unixgram:///PATH, or none: the local syslog (/dev/log, /var/run/syslog, /var/run/log)
    syslog-tls-ca-cert, syslog-tls-cert, syslog-tls-key, syslog-tls-skip-verify  (tcp+tls only;
                   skip-verify counts when present, whatever its value, as in dockerd)
    syslog-facility a name (daemon, local0 ...) or 0..23; default daemon
    syslog-format  "" rfc3164 rfc5424 rfc5424micro

journald sends CONTAINER_ID, CONTAINER_ID_FULL, CONTAINER_NAME, CONTAINER_TAG, IMAGE_NAME and
SYSLOG_IDENTIFIER (the tag) with each message, to ``JOURNAL_SOCKET``.

    tag("{{.Name}}/{{.ID}}", Info("0123456789abcdef...", "web", ...)) == "web/0123456789ab"
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, NamedTuple

from berth.errors import InvalidArgument

if TYPE_CHECKING:  # at start only: berthd validates log-opts (daemon.json) before it listens,
    from berth.runtime.shim.protocol import RemoteLog  # and the protocol imports msgspec

JOURNAL_SOCKET = "/run/systemd/journal/socket"
DRIVERS = ("syslog", "journald")
OPTS = {
    "syslog": {"env", "env-regex", "labels", "labels-regex", "syslog-address", "syslog-facility", "syslog-format",
               "syslog-tls-ca-cert", "syslog-tls-cert", "syslog-tls-key", "syslog-tls-skip-verify", "tag"},
    "journald": {"env", "env-regex", "labels", "labels-regex", "tag"},
}
FACILITIES = {"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
              "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
              **{f"local{i}": 16 + i for i in range(8)}}
FORMATS = ("", "rfc3164", "rfc5424", "rfc5424micro")
_FIELD = re.compile(r"\{\{\s*\.(\w+)\s*\}\}")


class Info(NamedTuple):
    """What a tag template may name: the container and its image."""

    id: str
    name: str                 # without the leading "/"
    image_id: str             # sha256:...
    image_name: str           # as the container was created from
    daemon_name: str = "berth"


def tag(template: str, info: Info) -> str:
    """Go's template over logger.Info, for the fields dockerd documents; raises InvalidArgument."""
    hexid = info.image_id.removeprefix("sha256:")
    values = {"ID": info.id[:12], "FullID": info.id, "Name": info.name, "ImageID": hexid[:12],
              "ImageFullID": info.image_id, "ImageName": info.image_name, "DaemonName": info.daemon_name}

    def field(m: re.Match[str]) -> str:
        if m.group(1) not in values:
            raise InvalidArgument(f'template: log-tag:1:2: executing "log-tag" at <.{m.group(1)}>: '
                                  f"can't evaluate field {m.group(1)} in type *logger.Info")
        return values[m.group(1)]
    return _FIELD.sub(field, template or "{{.ID}}")


def facility(v: str) -> int:
    if v == "":
        return FACILITIES["daemon"]
    if v in FACILITIES:
        return FACILITIES[v]
    if re.fullmatch(r"\d+", v) and int(v) <= 23:
        return int(v)
    raise InvalidArgument("invalid syslog facility")


def address(v: str) -> str:
    """dockerd's parseAddress: the scheme checked, tcp and udp given port 514 when they have none."""
    if v == "":
        return ""
    scheme, sep, rest = v.partition("://")
    if not sep:
        raise InvalidArgument(f"unsupported scheme: '{'' if ':' not in v else v.split(':', 1)[0]}'")
    if scheme in ("unix", "unixgram"):
        if not os.path.exists(rest):
            raise InvalidArgument(f"stat {rest}: no such file or directory")
        return v
    if scheme not in ("tcp", "udp", "tcp+tls"):
        raise InvalidArgument(f"unsupported scheme: '{scheme}'")
    host = rest.rstrip("/")
    if not re.search(r"(\]|^[^:\[]*):\d+$", host):
        host = f"{host}:514"
    return f"{scheme}://{host}"


def validate(kind: str, config: dict[str, str]) -> None:
    """At create: each option's value (the names were checked against ``OPTS``)."""
    if kind == "syslog":
        address(config.get("syslog-address", ""))
        facility(config.get("syslog-facility", ""))
        if config.get("syslog-format", "") not in FORMATS:
            raise InvalidArgument("Invalid syslog format")
    tag(config.get("tag", ""), Info("0" * 64, "x", "sha256:" + "0" * 64, "x"))


def resolve(kind: str, config: dict[str, str], info: Info, journal: str = JOURNAL_SOCKET) -> RemoteLog:
    """The shim's RemoteLog for a container that starts now."""
    from berth.runtime.shim.protocol import RemoteLog
    t = tag(config.get("tag", ""), info)
    if kind == "journald":
        fields = {"CONTAINER_ID": info.id[:12], "CONTAINER_ID_FULL": info.id, "CONTAINER_NAME": info.name,
                  "CONTAINER_TAG": t, "IMAGE_NAME": info.image_name, "SYSLOG_IDENTIFIER": t}
        return RemoteLog(driver=kind, address=journal, tag=t, fields=fields)
    addr = address(config.get("syslog-address", ""))
    tls = addr.startswith("tcp+tls://")
    return RemoteLog(driver=kind, address=addr,
                     format=config.get("syslog-format", ""), facility=facility(config.get("syslog-facility", "")),
                     tag=t, tls_ca=config.get("syslog-tls-ca-cert", "") if tls else "",
                     tls_cert=config.get("syslog-tls-cert", "") if tls else "",
                     tls_key=config.get("syslog-tls-key", "") if tls else "",
                     tls_skip_verify=tls and "syslog-tls-skip-verify" in config)
