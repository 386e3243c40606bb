"""Docker JSON shared by several resources: a ``Config`` (container config) as containers and
images show it, and the JSON response."""

from __future__ import annotations

import functools

import msgspec

from berth.api.http import Response
from berth.engine.logs import parse_time
from berth.schema.containers import ContainerConfig

_enc = msgspec.json.Encoder()


def json_response(obj: object, status: int = 200) -> Response:
    return Response(status, _enc.encode(obj) + b"\n")


@functools.lru_cache(maxsize=16384)
def record_time(v: str) -> float:
    """A record's own RFC 3339 time (created, started, finished) in unix seconds, 0 if unset.

    Cached: these strings never change once written, and parsing them was a fifth of the
    time of ``GET /containers/json``."""
    return parse_time(v) or 0.0


def config_json(cfg: ContainerConfig | None) -> dict[str, object]:
    """``Config`` in Docker's key order; optional keys only when set (Go's omitempty)."""
    cfg = cfg or ContainerConfig()
    d: dict[str, object] = {
        "Hostname": cfg.Hostname, "Domainname": cfg.Domainname, "User": cfg.User,
        "AttachStdin": cfg.AttachStdin, "AttachStdout": cfg.AttachStdout, "AttachStderr": cfg.AttachStderr,
    }
    if cfg.ExposedPorts:
        d["ExposedPorts"] = cfg.ExposedPorts
    d.update({"Tty": cfg.Tty, "OpenStdin": cfg.OpenStdin, "StdinOnce": cfg.StdinOnce, "Env": cfg.Env,
              "Cmd": cfg.Cmd})
    if cfg.Healthcheck:
        d["Healthcheck"] = cfg.Healthcheck
    d.update({"Image": cfg.Image, "Volumes": cfg.Volumes, "WorkingDir": cfg.WorkingDir,
              "Entrypoint": cfg.Entrypoint, "OnBuild": cfg.OnBuild, "Labels": cfg.Labels})
    if cfg.StopSignal:
        d["StopSignal"] = cfg.StopSignal
    if cfg.StopTimeout is not None:
        d["StopTimeout"] = cfg.StopTimeout
    return d
