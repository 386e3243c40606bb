"""engine.shared_pull: one flight per key, every waiter gets its result and its messages from
when it joined; the flight is cancelled when its last waiter leaves, not before."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from berth.engine.shared_pull import SharedFlights


def test_waiters_share_one_flight_and_its_result() -> None:
    async def main() -> None:
        flights: SharedFlights[str] = SharedFlights()
        gate = asyncio.Event()
        runs = 0
        seen: list[list[dict[str, Any]]] = [[], []]

        async def work(emit):  # type: ignore[no-untyped-def]
            nonlocal runs
            runs += 1
            emit({"status": "one"})
            await gate.wait()
            emit({"status": "two"})
            return "image"
        a = asyncio.ensure_future(flights.run("k", work, seen[0].append))
        await asyncio.sleep(0)
        b = asyncio.ensure_future(flights.run("k", work, seen[1].append))
        await asyncio.sleep(0)
        assert flights.waiters("k") == 2
        gate.set()
        assert await a == await b == "image"
        assert runs == 1
        assert seen == [[{"status": "one"}, {"status": "two"}], [{"status": "two"}]]
        assert flights.waiters("k") == 0
    asyncio.run(main())


def test_the_flight_is_cancelled_with_its_last_waiter_only() -> None:
    async def main() -> None:
        flights: SharedFlights[str] = SharedFlights()
        cancelled = asyncio.Event()

        async def work(emit):  # type: ignore[no-untyped-def]
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return "never"
        a = asyncio.ensure_future(flights.run("k", work, lambda m: None))
        b = asyncio.ensure_future(flights.run("k", work, lambda m: None))
        await asyncio.sleep(0.01)
        a.cancel()
        await asyncio.sleep(0.01)
        assert not cancelled.is_set() and flights.waiters("k") == 1
        b.cancel()
        await asyncio.wait_for(cancelled.wait(), 1)
        with pytest.raises(asyncio.CancelledError):
            await b
        await asyncio.sleep(0)
        assert flights.waiters("k") == 0
    asyncio.run(main())


def test_an_error_reaches_every_waiter() -> None:
    async def main() -> None:
        flights: SharedFlights[str] = SharedFlights()

        async def work(emit):  # type: ignore[no-untyped-def]
            await asyncio.sleep(0.01)
            raise LookupError("manifest unknown")
        rs = await asyncio.gather(*(flights.run("k", work, lambda m: None) for _ in range(3)),
                                  return_exceptions=True)
        assert [type(r) for r in rs] == [LookupError] * 3
    asyncio.run(main())
