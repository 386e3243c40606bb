"""Docker JSON shared by several resources: a ``Config`` (container config) as containers and
images show it, and the JSON response."""

from __future__ import annotations

import msgspec

from berth.api.http import Response
from berth.schema.containers import ContainerConfig

_enc = msgspec.json.Encoder()


def json_response(obj: object, status: int = 200) -> Response:
    return Response(status, _enc.encode(obj) + b"\n")


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
