"""How many requests begin their handler in one turn of the event loop.

A handler runs on the loop until its first real wait, and some run long before it (create:
the name, the layer's directories, the store's commit). When 200 clients send a request at
once, the 200 heads arrive in one turn, their 200 tasks wake in the next, and that turn runs
200 handlers back to back: seconds on a loaded machine, during which nothing else is read,
/_ping included. ``Turns`` lets ``per_turn`` handlers begin in a turn and queues the others
(first come, first served) for the turns after, so a turn stays short and the loop keeps
reading its sockets; the work done per second stays the same.
"""

from __future__ import annotations

import asyncio
import collections


class Turns:
    def __init__(self, per_turn: int):
        self.per_turn = per_turn  # 0: no bound
        self.used = 0
        self.waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self.reset_due = False

    async def begin(self) -> None:
        """Returns once this request may begin in the current turn."""
        if not self.per_turn:
            return
        self._reset_next_turn()
        if self.used < self.per_turn and not self.waiting:
            self.used += 1
            return
        fut = asyncio.get_running_loop().create_future()
        self.waiting.append(fut)
        await fut  # cancelled (the client left): _release skips it

    def _reset_next_turn(self) -> None:
        if not self.reset_due:
            self.reset_due = True
            asyncio.get_running_loop().call_soon(self._release)

    def _release(self) -> None:
        """A new turn: up to ``per_turn`` of the waiting requests go on (they run in the next)."""
        self.reset_due = False
        self.used = 0
        while self.waiting and self.used < self.per_turn:
            fut = self.waiting.popleft()
            if not fut.done():
                fut.set_result(None)
                self.used += 1
        if self.waiting or self.used:
            self._reset_next_turn()
