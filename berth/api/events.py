"""GET /events: past events (``since``) then live ones, until ``until`` or the client leaves."""

from __future__ import annotations

import asyncio
import re
import time

import msgspec

from berth.api.app import App, Routes
from berth.api.http import Request, StreamResponse
from berth.api.filters import parse_filters
from berth.engine.events import VALID_FILTERS, Event, matches
from berth.engine.logs import parse_time
from berth.errors import InvalidArgument

_enc = msgspec.json.Encoder()
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)$")
_UNIT = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def event_time(v: str | None, now: float) -> float | None:
    """Docker's since/until: unix seconds, RFC 3339, or a Go duration before now ("10m")."""
    if v is None or v == "":
        return None
    if v == "0":  # the Unix epoch: every buffered event (logs read "0" as "no since")
        return 0.0
    m = _DURATION.match(v)
    if m:
        return now - float(m.group(1)) * _UNIT[m.group(2)]
    return parse_time(v)


def event_json(ev: Event) -> dict[str, object]:
    """Docker's event (API >= 1.22): ``Type``, ``Action``, ``Actor{ID,Attributes}``, ``scope``,
    ``time``, ``timeNano``, plus the legacy ``status``/``id``/``from`` fields for container and
    image events, as dockerd still sends them."""
    d: dict[str, object] = {}
    if ev.type in ("container", "image"):
        d["status"] = ev.action
        if ev.id:  # omitempty: a prune's event has no actor
            d["id"] = ev.id
        if ev.type == "container" and "image" in ev.attributes:
            d["from"] = ev.attributes["image"]
    d.update({"Type": ev.type, "Action": ev.action, "Actor": {"ID": ev.id, "Attributes": dict(ev.attributes)},
              "scope": "local", "time": ev.time_nano // 10**9, "timeNano": ev.time_nano})
    return d


def encode_event(ev: Event) -> bytes:
    return _enc.encode(event_json(ev)) + b"\n"


async def events(app: App, req: Request) -> StreamResponse:
    bus = app.events
    filters = parse_filters(req)
    for k in filters:
        if k not in VALID_FILTERS:
            raise InvalidArgument(f"invalid filter '{k}'")
    now = time.time()
    since = event_time(req.query.get("since"), now)
    until = event_time(req.query.get("until"), now)
    if since is not None and until is not None and until < since:
        raise InvalidArgument("`since` time must be before `until` time")
    sub = bus.subscribe()
    try:
        resp = StreamResponse(req)
        await resp.prepare()
        until_ns = int(until * 1e9) if until is not None else None
        if since is not None:
            for ev in bus.history(int(since * 1e9), until_ns):
                if matches(ev, filters):
                    await resp.write(encode_event(ev))
        if until is not None and until <= time.time():
            await resp.finish()
            return resp
        gone = asyncio.ensure_future(req.reader.read(1))  # EOF: the client left
        try:
            while True:
                timeout = None if until is None else max(0.0, until - time.time())
                get = asyncio.ensure_future(sub.get())
                done, _ = await asyncio.wait({get, gone}, timeout=timeout,
                                             return_when=asyncio.FIRST_COMPLETED)
                if get not in done:
                    get.cancel()
                    break
                ev = get.result()
                if until_ns is not None and ev.time_nano > until_ns:
                    break
                if matches(ev, filters):
                    await resp.write(encode_event(ev))
        finally:
            gone.cancel()
        try:
            await resp.finish()
        except (ConnectionError, OSError):
            pass
        return resp
    finally:
        bus.unsubscribe(sub)


ROUTES: Routes = [("GET", "/events", events)]
