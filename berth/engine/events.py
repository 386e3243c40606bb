"""The events bus: what ``GET /events`` (``docker events``) streams.

Every engine module reports through one ``emit(type, action, id, attributes)``; the bus stamps
the time, keeps a bounded history (for ``since``) and fans each event out to live subscribers.
Nothing here blocks: a subscriber that does not keep up loses its oldest queued events.

    bus = Events()
    bus.emit("container", "start", cid, {"name": "web", "image": "busybox"})
    sub = bus.subscribe()            # an asyncio.Queue[Event]
    ...                              # await sub.get()
    bus.unsubscribe(sub)

Docker's event JSON is written by ``api/events.py`` (``event_json``).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from berth.engine.model import Container

HISTORY = 1024
QUEUE = 4096


@dataclass(frozen=True)
class Event:
    type: str
    action: str
    id: str
    attributes: dict[str, str] = field(default_factory=dict)
    time_nano: int = 0


class Events:
    """The bus: emit, history, subscribe."""

    def __init__(self, history: int = HISTORY) -> None:
        self._history: collections.deque[Event] = collections.deque(maxlen=history)
        self._subs: list[asyncio.Queue[Event]] = []
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()  # (type, action): /metrics

    def emit(self, type: str, action: str, id: str, attributes: dict[str, str] | None = None) -> Event:
        ev = Event(type, action, id, dict(attributes or {}), time.time_ns())
        self.counts[type, action] += 1
        self._history.append(ev)
        for q in self._subs:
            if q.full():
                try:
                    q.get_nowait()
                except asyncio.QueueEmpty:
                    pass
            q.put_nowait(ev)
        return ev

    def history(self, since_ns: int | None = None, until_ns: int | None = None) -> list[Event]:
        return [e for e in self._history
                if (since_ns is None or e.time_nano >= since_ns) and (until_ns is None or e.time_nano <= until_ns)]

    def subscribe(self) -> asyncio.Queue[Event]:
        q: asyncio.Queue[Event] = asyncio.Queue(QUEUE)
        self._subs.append(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[Event]) -> None:
        try:
            self._subs.remove(q)
        except ValueError:
            pass


# -- filters (pure) ---------------------------------------------------------------------------

_ACTOR_KEYS = {"container": "container", "image": "image", "network": "network", "volume": "volume",
               "daemon": "daemon", "plugin": "plugin", "node": "node", "service": "service",
               "secret": "secret", "config": "config"}
VALID_FILTERS = {"type", "event", "label", "scope", *_ACTOR_KEYS}


def matches(ev: Event, filters: dict[str, list[str]]) -> bool:
    """Docker's event filter: OR within one key, AND across keys."""
    for key, vals in filters.items():
        if not vals:
            continue
        if key == "type":
            if ev.type not in vals:
                return False
        elif key == "event":
            # "exec_start: sh -c ..." matches the filter "exec_start"
            if not any(ev.action == v or ev.action.split(":", 1)[0] == v for v in vals):
                return False
        elif key == "label":
            if not any(_label_ok(ev.attributes, v) for v in vals):
                return False
        elif key == "scope":
            if "local" not in vals:
                return False
        elif key in _ACTOR_KEYS:
            if ev.type != _ACTOR_KEYS[key]:
                return False
            names = _actor_names(ev)
            if not any(v in names or (len(v) >= 1 and ev.id.startswith(v) and key != "image") for v in vals):
                return False
    return True


def _label_ok(attrs: dict[str, str], v: str) -> bool:
    k, eq, val = v.partition("=")
    return k in attrs if not eq else attrs.get(k) == val


def _actor_names(ev: Event) -> set[str]:
    names = {ev.id}
    for k in ("name", "image"):
        if k in ev.attributes:
            names.add(ev.attributes[k])
    if ev.type == "image":
        n = ev.attributes.get("name", "")
        if n:
            names.add(n.rsplit(":", 1)[0] if ":" in n.rsplit("/", 1)[-1] else n)
    return names


def filter_events(events: Iterable[Event], filters: dict[str, list[str]]) -> list[Event]:
    return [e for e in events if matches(e, filters)]


# -- adapters for the engine's on_event hooks ---------------------------------------------------

ContainerHook = Callable[[str, Container, dict[str, str]], None]
IdHook = Callable[[str, str, dict[str, str]], None]


def container_hook(bus: Events) -> ContainerHook:
    """``Containers.on_event(action, container, attrs)`` -> a container event with Docker's
    attributes (image, name, the labels, then the action's own)."""
    def hook(action: str, c: Container, attrs: dict[str, str]) -> None:
        a = dict((c.config.Labels or {}) if c.config else {})
        a["image"] = (c.config.Image if c.config else "") or c.image_id
        a["name"] = c.name
        a.update(attrs)
        bus.emit("container", action, c.id, a)
    return hook


def image_hook(bus: Events) -> IdHook:
    """``Images.on_event(action, image_id, attrs)`` -> an image event."""
    def hook(action: str, image_id: str, attrs: dict[str, str]) -> None:
        bus.emit("image", action, image_id, attrs)
    return hook


class _HasContainers(Protocol):
    @property
    def by_id(self) -> Mapping[str, Container]: ...


def exec_hook(bus: Events, containers: _HasContainers) -> IdHook:
    """``Execs.on_event(action, container id, attrs)`` -> a container event (Docker reports
    exec_create/exec_start/exec_die on the container)."""
    chook = container_hook(bus)

    def hook(action: str, cid: str, attrs: dict[str, str]) -> None:
        c = containers.by_id.get(cid)
        if c is not None:
            chook(action, c, attrs)
        else:
            bus.emit("container", action, cid, attrs)
    return hook
