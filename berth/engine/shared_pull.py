"""Pulls in flight, shared by the clients that wait for them.

A second client pulling what is already being pulled (same reference, platform and
credentials) joins that pull: it gets its progress from then on and its result. A client that
leaves (its request task is cancelled: it hung up) stops waiting; the pull itself is cancelled
once no client waits for it, as Docker's refcounted pulls are, and its cancellation hangs up
the registry (``Distribution`` aborts the transfers).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

T = TypeVar("T")
Sink = Callable[[dict[str, Any]], None]


class _Flight(Generic[T]):
    def __init__(self) -> None:
        self.sinks: list[Sink] = []
        self.task: asyncio.Future[T] | None = None

    def emit(self, msg: dict[str, Any]) -> None:
        for sink in list(self.sinks):
            sink(msg)


class SharedFlights(Generic[T]):
    """``run(key, work, sink)``: ``work(emit)`` once per key at a time, for every waiter."""

    def __init__(self) -> None:
        self._flights: dict[Hashable, _Flight[T]] = {}

    def waiters(self, key: Hashable) -> int:
        f = self._flights.get(key)
        return len(f.sinks) if f else 0

    async def run(self, key: Hashable, work: Callable[[Sink], Awaitable[T]], sink: Sink) -> T:
        flight = self._flights.get(key)
        if flight is None:
            flight = self._start(key, work)
        flight.sinks.append(sink)
        assert flight.task is not None
        try:
            return await asyncio.shield(flight.task)
        finally:
            flight.sinks.remove(sink)
            if not flight.sinks and not flight.task.done():
                flight.task.cancel()  # nobody waits any more

    def _start(self, key: Hashable, work: Callable[[Sink], Awaitable[T]]) -> _Flight[T]:
        flight: _Flight[T] = _Flight()
        flight.task = asyncio.ensure_future(work(flight.emit))
        self._flights[key] = flight

        def done(task: asyncio.Future[T]) -> None:
            if self._flights.get(key) is flight:
                del self._flights[key]
            if not task.cancelled():
                task.exception()  # retrieved: every waiter got it, or none was left
        flight.task.add_done_callback(done)
        return flight
