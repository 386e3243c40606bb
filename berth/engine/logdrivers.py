"""Log drivers: which ones exist, their options, validated at create as dockerd does.

    json-file  the default; JSON lines; max-size / max-file / compress rotation (none by default)
    local      dockerd's "local" driver: same file format here, rotation 20m x 5, compressed
    syslog     each line to a syslog (``logremote``); ``docker logs`` is refused
    journald   each line to the journal with the container's fields (``logremote``);
               ``docker logs`` reads it back with journalctl
    none       no log file; ``docker logs`` is refused

The shim writes (and rotates) the file; ``engine.logs`` reads it, rotated files included.

    rotation("json-file", {"max-size": "10m", "max-file": "3"}) == Rotation(10485760, 3, False)
"""

from __future__ import annotations

import re
from typing import NamedTuple

from berth.engine import logremote
from berth.errors import InvalidArgument, Unsupported

DEFAULT = "json-file"
DRIVERS = ("json-file", "local", "none", *logremote.DRIVERS)
FILE_DRIVERS = ("json-file", "local")  # the shim writes a log file that ``docker logs`` reads
# options every driver takes (dockerd strips them before the driver's own validator)
_BUILTIN = {"mode", "max-buffer-size"}
_OPTS = {
    "json-file": {"max-file", "max-size", "compress", "labels", "labels-regex", "env", "env-regex", "tag"},
    "local": {"max-file", "max-size", "compress"},
    **logremote.OPTS,
}
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


class ReadNotSupported(Unsupported):
    """dockerd's logger.ErrReadLogsNotSupported (501)."""

    def __init__(self) -> None:
        super().__init__("configured logging driver does not support reading")


class Rotation(NamedTuple):
    max_size: int  # bytes; -1: never rotate
    max_file: int
    compress: bool


def ram_in_bytes(v: str) -> int:
    """go-units RAMInBytes: "10m", "1.5g", "512" (binary units)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?) ?([kmgtpKMGTP]?)[iI]?[bB]?", v.strip())
    if m is None:
        raise InvalidArgument(f"invalid size: '{v}'")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def _atoi(v: str) -> int:
    if not re.fullmatch(r"[+-]?\d+", v):
        raise InvalidArgument(f'strconv.Atoi: parsing "{v}": invalid syntax')
    return int(v)


def _parse_bool(v: str) -> bool:
    if v in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if v in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise InvalidArgument(f'strconv.ParseBool: parsing "{v}": invalid syntax')


def normalize(kind: str, config: dict[str, str] | None) -> tuple[str, dict[str, str]]:
    """The create request's LogConfig as dockerd records it; raises InvalidArgument (400)."""
    kind = kind or DEFAULT
    config = dict(config or {})
    if kind == "none":
        return kind, config
    mode = config.get("mode", "")
    if mode not in ("", "blocking", "non-blocking"):
        raise InvalidArgument("logger: logger option 'mode' must be one of \"blocking\", \"non-blocking\", or \"\"")
    if kind not in DRIVERS:
        raise InvalidArgument(f"logger: no log driver named '{kind}' is registered")
    for key in config:
        if key not in _OPTS[kind] and key not in _BUILTIN:
            raise InvalidArgument(f"unknown log opt '{key}' for {kind} log driver" if kind != "local"
                                  else f"unknown log opt '{key}' for log driver {kind}")
    if kind in logremote.DRIVERS:
        logremote.validate(kind, config)
    else:
        rotation(kind, config)  # the values too: a bad max-size is a 400 here, not a failed start
    return kind, config


def rotation(kind: str, config: dict[str, str]) -> Rotation:
    local = kind == "local"
    max_size = 20 << 20 if local else -1
    if "max-size" in config:
        max_size = ram_in_bytes(config["max-size"])
        if max_size <= 0 and not (local and max_size == 0):
            raise InvalidArgument("max-size must be a positive number")
    max_file = 5 if local else 1
    if "max-file" in config:
        max_file = _atoi(config["max-file"])
        if max_file < 1:
            raise InvalidArgument("max-file cannot be less than 1")
    compress = local
    if "compress" in config:
        compress = _parse_bool(config["compress"])
        if compress and not local and (max_file == 1 or max_size == -1):
            raise InvalidArgument("compress cannot be true when max-file is less than 2 or max-size is not set")
    if max_file < 2:
        compress = False
    return Rotation(max_size if max_size > 0 else -1, max_file, compress)
