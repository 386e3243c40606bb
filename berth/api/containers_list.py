"""``GET /containers/json``: each container's list entry kept as encoded JSON, rebuilt only
when something it shows has changed.

An entry shows the container record (name, state, config, host config), its network
sandbox (endpoints, published ports), whether its network is up, the network records and
its mounts. Rather than trusting every writer to announce a change, each request compares a
fingerprint of exactly those inputs with the one the entry was built from: the record's
objects by identity (a config is replaced, never edited), name and state by value, the
sandbox and mounts by their msgspec encoding (a few µs), the network records once per
request. Only the "Status" text ("Up 3 minutes", the health) is made per request and
spliced between the entry's two encoded halves, so the JSON keeps Docker's key order.
"""

from __future__ import annotations

from typing import Any

import msgspec

from berth.api.app import App
from berth.api.containers_shape import status_text, summary
from berth.engine.model import Container, Status

_enc = msgspec.json.Encoder()
_STATUS = b',"Status":'


class _Entry:
    __slots__ = ("c", "config", "host_config", "key", "head", "tail")

    def __init__(self, c: Container, key: tuple[object, ...], head: bytes, tail: bytes) -> None:
        # compared by identity (and kept alive, so an id is never reused): replaced, not edited
        self.c, self.config, self.host_config = c, c.config, c.host_config
        self.key = key    # compared by value
        self.head = head  # the entry's JSON up to and including ``"Status":``
        self.tail = tail  # from the comma after the status to the closing brace


class ContainerList:
    """The entries of one App's container list, by container ID."""

    def __init__(self) -> None:
        self.entries: dict[str, _Entry] = {}
        self.networks: tuple[object, ...] = ()

    def begin(self, app: App) -> None:
        """Once per request: a changed network record (name, subnet, gateway) rebuilds all."""
        token = tuple((n, n.name, n.subnet, n.subnet6, n.gateway, n.gateway6, n.user_defined)
                      for n in app.networks.nets.values())
        if token != self.networks:
            self.entries.clear()
            self.networks = token
        if len(self.entries) > len(app.containers.by_id):
            for cid in [cid for cid in self.entries if cid not in app.containers.by_id]:
                del self.entries[cid]

    def entry(self, app: App, c: Container, now: float, out: list[bytes]) -> None:
        """Append the container's entry to ``out`` as JSON pieces (its Status made now)."""
        s = app.networks.sandbox(c.id)
        points = app.volumes.of(c.id)
        key = (c.name, c.state.status, c.id in app.networks.running,
               _enc.encode(s) if s is not None else b"", _enc.encode(points) if points else b"")
        e = self.entries.get(c.id)
        if e is None or e.key != key or e.c is not c or e.config is not c.config or e.host_config is not c.host_config:
            e = self.entries[c.id] = _build(app, c, now, key)
        out += (e.head, _enc.encode(_status(app, c, now)), e.tail)


def _build(app: App, c: Container, now: float, key: tuple[object, ...]) -> _Entry:
    d = summary(app, c, now, False)
    keys = list(d)
    at = keys.index("Status")
    head: dict[str, Any] = {k: d[k] for k in keys[:at]}
    tail: dict[str, Any] = {k: d[k] for k in keys[at + 1:]}
    return _Entry(c, key, _enc.encode(head)[:-1] + _STATUS, b"," + _enc.encode(tail)[1:])


def _status(app: App, c: Container, now: float) -> str:
    text = status_text(c, now)
    h = app.health.get(c.id)
    if h is not None and c.state.status == Status.RUNNING:
        text = f"{text} ({'health: starting' if h.status == 'starting' else h.status})"
    return text


def of(app: App) -> ContainerList:
    """The App's container list cache (made on first use)."""
    cache = app.shaped.get("containers")
    if not isinstance(cache, ContainerList):
        cache = app.shaped["containers"] = ContainerList()
    return cache
