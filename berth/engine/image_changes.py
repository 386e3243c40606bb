"""What ``import --change`` and ``commit --change`` do to a ContainerConfig, and the config
copies a commit records (the merged config, and the container's own as dockerd stores it)."""

from __future__ import annotations

import json
import shlex
from typing import Any

import msgspec

from berth.errors import InvalidArgument
from berth.schema.containers import ContainerConfig


def apply_changes(cfg: ContainerConfig, changes: list[str]) -> None:
    """Dockerfile instructions allowed by ``import --change`` / ``commit --change``."""
    for change in changes:
        change = change.strip()
        if not change:
            continue
        word, _, rest = change.partition(" ")
        word = word.upper()
        rest = rest.strip()
        if word in ("CMD", "ENTRYPOINT", "SHELL"):
            if rest.startswith("["):
                try:
                    val = json.loads(rest)
                except ValueError:
                    val = ["/bin/sh", "-c", rest]
            else:
                val = ["/bin/sh", "-c", rest]
            if word == "CMD":
                cfg.Cmd = val
            elif word == "ENTRYPOINT":
                cfg.Entrypoint = val
            else:
                cfg.Shell = val
        elif word == "ENV":
            env = {e.split("=", 1)[0]: e for e in (cfg.Env or [])}
            if "=" in rest.split(" ", 1)[0]:
                for part in shlex.split(rest):
                    k, _, v = part.partition("=")
                    env[k] = f"{k}={v}"
            else:
                k, _, v = rest.partition(" ")
                env[k] = f"{k}={v.strip()}"
            cfg.Env = list(env.values())
        elif word == "LABEL":
            labels = dict(cfg.Labels or {})
            for part in shlex.split(rest):
                k, _, v = part.partition("=")
                labels[k] = v
            cfg.Labels = labels
        elif word == "EXPOSE":
            ports = dict(cfg.ExposedPorts or {})
            for p in rest.split():
                ports[p if "/" in p else f"{p}/tcp"] = {}
            cfg.ExposedPorts = ports
        elif word == "VOLUME":
            vols = dict(cfg.Volumes or {})
            for v in (json.loads(rest) if rest.startswith("[") else rest.split()):
                vols[v] = {}
            cfg.Volumes = vols
        elif word == "USER":
            cfg.User = rest
        elif word == "WORKDIR":
            cfg.WorkingDir = rest
        elif word == "STOPSIGNAL":
            cfg.StopSignal = rest
        elif word == "ONBUILD":
            cfg.OnBuild = (cfg.OnBuild or []) + [rest]
        else:
            raise InvalidArgument(f"{word} is not a valid change command")


_OMIT_EMPTY = ("ExposedPorts", "Healthcheck", "ArgsEscaped", "NetworkDisabled", "MacAddress", "StopSignal",
               "StopTimeout", "Shell")


def container_config(cfg: ContainerConfig) -> dict[str, Any]:
    """A commit's ContainerConfig: the container's own Config, as dockerd records it."""
    d: dict[str, Any] = msgspec.to_builtins(cfg)
    for k in list(d):
        if k in _OMIT_EMPTY and not d[k]:
            del d[k]
    return d


def copy_config(cfg: ContainerConfig) -> ContainerConfig:
    return msgspec.json.decode(msgspec.json.encode(cfg), type=ContainerConfig)


def fill_from(cfg: ContainerConfig, src: ContainerConfig) -> None:
    """``commit``'s config body overrides the container's config field by field (Docker merges)."""
    for f in msgspec.structs.fields(ContainerConfig):
        if getattr(cfg, f.name) in (None, "", [], {}) and getattr(src, f.name) not in (None, "", [], {}):
            setattr(cfg, f.name, getattr(src, f.name))
