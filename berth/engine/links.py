"""Legacy container links (``--link name:alias``) on the default bridge, as dockerd keeps them.

A link is stored in the parent's ``HostConfig.Links`` in the form inspect shows,
``/<child>:/<parent>/<alias>`` (dockerd's ``/db:/web/db``); the parent's /etc/hosts entries come
from ``engine.networks`` and the environment variables from ``env`` below (moby's
daemon/links): ``ALIAS_NAME``, ``ALIAS_PORT``, ``ALIAS_PORT_<n>_<PROTO>[_ADDR|_PORT|_PROTO]``,
port-range ``_START``/``_END`` variables, and ``ALIAS_ENV_<var>`` for the child's Config.Env.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from berth.engine.model import Container
from berth.errors import Conflict, InvalidArgument, NotFound


class _Attachments(Protocol):
    def bridge_ip(self, c: Container) -> str: ...


class _Engine(Protocol):
    @property
    def attachments(self) -> _Attachments | None: ...

    def get(self, ref: str) -> Container: ...

    def save(self, c: Container) -> None: ...


def parse(link: str) -> tuple[str, str]:
    """moby opts.ParseLink: ``name``, ``name:alias`` or the stored ``/name:/parent/alias``."""
    if not link:
        raise InvalidArgument("empty string specified for links")
    parts = link.split(":")
    if len(parts) > 2:
        raise InvalidArgument(f"bad format for links: {link}")
    if len(parts) == 1:
        return link.lstrip("/"), link.lstrip("/")
    name, alias = parts
    if name.startswith("/"):
        return name[1:], alias.rsplit("/", 1)[-1]
    return name, alias


def _user_defined(mode: str) -> bool:
    return mode not in ("", "default", "bridge", "host", "none") and not mode.startswith("container:")


def normalize(engine: _Engine, parent: str, links: list[str], network_mode: str) -> list[str]:
    """At create: each link's child must exist (dockerd's registerLinks) -> the stored form.

    Raises:
        InvalidArgument: ``could not get container for x: No such container: x``, host network.
    """
    if _user_defined(network_mode):
        return list(links)  # libnetwork's links on a user network: names only, kept as given
    out: list[str] = []
    for link in links:
        name, alias = parse(link)
        try:
            child = engine.get(name)
        except NotFound as e:
            raise InvalidArgument(f"could not get container for {name}: {e}") from None
        while child.host_config.NetworkMode.startswith("container:"):
            child = engine.get(child.host_config.NetworkMode.split(":", 1)[1])
        if child.host_config.NetworkMode == "host":
            raise InvalidArgument("conflicting options: host type networking can't be used with links. "
                                  "This would result in undefined behavior")
        stored = f"/{child.name}:/{parent}/{alias}"
        if stored not in out:
            out.append(stored)
    return out


def _ports(exposed: dict[str, Any] | None) -> list[tuple[int, str]]:
    """Exposed ports as (number, proto), TCP first, then by number (moby's withTCPPriority)."""
    out = []
    for key in exposed or {}:
        num, _, proto = key.partition("/")
        if num.isdigit():
            out.append((int(num), (proto or "tcp").lower()))
    return sorted(set(out), key=lambda p: (p[1] != "tcp", p[1], p[0]))


def link_env(name: str, child_ip: str, child_env: list[str], exposed: dict[str, Any] | None) -> list[str]:
    """moby's Link.ToEnv for the link named ``/<parent>/<alias>``."""
    alias = name.rsplit("/", 1)[-1].upper().replace("-", "_")
    ports = _ports(exposed)
    env: list[str] = []
    if ports:
        env.append(f"{alias}_PORT={ports[0][1]}://{child_ip}:{ports[0][0]}")
    start = end = ports[0] if ports else (0, "")
    for i, (num, proto) in enumerate(ports):
        prefix = f"{alias}_PORT_{num}_{proto.upper()}"
        env += [f"{prefix}={proto}://{child_ip}:{num}", f"{prefix}_ADDR={child_ip}",
                f"{prefix}_PORT={num}", f"{prefix}_PROTO={proto}"]
        if i and num == end[0] + 1 and proto == end[1]:
            end = (num, proto)
            if i < len(ports) - 1:
                continue
        if end != start:
            prefix = f"{alias}_PORT_{start[0]}_{start[1].upper()}"
            env += [f"{prefix}_START={start[1]}://{child_ip}:{start[0]}", f"{prefix}_PORT_START={start[0]}",
                    f"{prefix}_END={end[1]}://{child_ip}:{end[0]}", f"{prefix}_PORT_END={end[0]}"]
        start = end = (num, proto)
    env.append(f"{alias}_NAME={name}")
    for item in child_env:
        key, sep, val = item.partition("=")
        if sep and key not in ("HOME", "PATH"):
            env.append(f"{alias}_ENV_{key}={val}")
    return env


def _bridge_ip(engine: _Engine, c: Container) -> str:
    return engine.attachments.bridge_ip(c) if engine.attachments is not None else ""


def env(engine: _Engine, c: Container) -> list[str]:
    """At start: the link variables of every child (dockerd's setupLinkedContainers).

    Raises:
        Conflict: ``Cannot link to a non running container: /db AS /web/db``.
    """
    hc = c.host_config
    if not hc.Links or hc.NetworkMode not in ("default", "bridge", ""):
        return []
    out: list[str] = []
    for link in hc.Links:
        child_name, alias = parse(link)
        name = f"/{c.name}/{alias}"
        try:
            child = engine.get(child_name)
        except NotFound:
            continue  # removed since: dockerd drops the link with the child
        if not child.running:
            raise Conflict(f"Cannot link to a non running container: /{child.name} AS {name}")
        out += link_env(name, _bridge_ip(engine, child), list(child.config.Env or []), child.config.ExposedPorts)
    return out


def renamed(containers: Iterable[Container], old: str, new: str) -> list[Container]:
    """After ``docker rename old new``: the stored links that name ``old``, as child or as
    parent, name ``new`` (dockerd derives HostConfig.Links from its link graph, so inspect and
    the parent's next /etc/hosts show the current names). Returns the containers changed."""
    changed = []
    for c in containers:
        links = c.host_config.Links
        if not links or _user_defined(c.host_config.NetworkMode):
            continue
        fixed = [_renamed_link(ln, old, new) for ln in links]
        if fixed != links:
            c.host_config.Links = fixed
            changed.append(c)
    return changed


def _renamed_link(link: str, old: str, new: str) -> str:
    child, sep, path = link.partition(":")
    if child == f"/{old}":
        child = f"/{new}"
    parent, _, alias = path.rpartition("/")
    if sep and parent == f"/{old}":
        path = f"/{new}/{alias}"
    return f"{child}{sep}{path}"


def remove(engine: _Engine, parent_ref: str, alias: str) -> None:
    """``DELETE /containers/<parent>/<alias>?link=1`` (``docker rm --link``): the link goes
    from the parent's HostConfig.Links (its /etc/hosts keeps the entry until a restart, as
    dockerd's does).

    Raises:
        NotFound: ``No such container: web/db`` when the parent has no such link.
    """
    parent = engine.get(parent_ref)
    kept = [ln for ln in parent.host_config.Links or [] if parse(ln)[1] != alias]
    if len(kept) == len(parent.host_config.Links or []):
        raise NotFound(f"No such container: {parent_ref}/{alias}")
    parent.host_config.Links = kept or None
    engine.save(parent)
