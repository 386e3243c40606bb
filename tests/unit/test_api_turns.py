"""berth.api.turns: a burst of requests begins a few per turn of the event loop, in order."""

from __future__ import annotations

import asyncio

from berth.api.turns import Turns


async def _burst(per_turn: int, n: int, cancel: int | None = None) -> list[tuple[int, int]]:
    """(turn, request) for each request of a burst of ``n`` that began."""
    turn = 0
    done = asyncio.Event()

    def tick() -> None:
        nonlocal turn
        turn += 1
        if not done.is_set():
            asyncio.get_running_loop().call_soon(tick)
    asyncio.get_running_loop().call_soon(tick)
    turns = Turns(per_turn)
    began: list[tuple[int, int]] = []

    async def request(i: int) -> None:
        await turns.begin()
        began.append((turn, i))
    tasks = [asyncio.create_task(request(i)) for i in range(n)]
    await asyncio.sleep(0)
    if cancel is not None:
        tasks[cancel].cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    done.set()
    return began


def test_a_burst_begins_a_few_per_turn_first_come_first_served() -> None:
    began = asyncio.run(_burst(3, 20))
    assert [i for _, i in began] == list(range(20))
    per_turn: dict[int, int] = {}
    for t, _ in began:
        per_turn[t] = per_turn.get(t, 0) + 1
    assert max(per_turn.values()) <= 3 and len(per_turn) >= 7


def test_without_a_bound_all_begin_in_one_turn() -> None:
    began = asyncio.run(_burst(0, 20))
    assert len({t for t, _ in began}) == 1 and len(began) == 20


def test_a_request_that_left_while_waiting_takes_no_turn() -> None:
    began = asyncio.run(_burst(2, 10, cancel=5))
    assert [i for _, i in began] == [0, 1, 2, 3, 4, 6, 7, 8, 9]
