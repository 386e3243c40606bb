"""Health checks (HEALTHCHECK in the image, ``--health-*`` on create).

While a container with a check runs, a task runs the test as an exec every ``Interval``
(default 30 s), with a ``Timeout`` (30 s); ``Retries`` (3) failures in a row make it
``unhealthy``, one success ``healthy``; failures inside ``StartPeriod`` do not count. The
state is Docker's ``State.Health`` in inspect, ``(healthy)`` in ``ps``, and a
``health_status: healthy`` event on each change.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from berth.engine.containers import Containers, now
from berth.engine.exec import ExecCreate, Execs

log = logging.getLogger("berth.health")

NS = 1_000_000_000
DEFAULT_INTERVAL = 30.0
DEFAULT_START_INTERVAL = 5.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 3
MAX_LOG = 5
MAX_OUTPUT = 4096


@dataclass(frozen=True)
class Probe:
    """One run of the check (the last MAX_LOG are kept)."""

    start: str
    end: str
    exit_code: int
    output: str


@dataclass
class Health:
    status: str = "starting"
    failing_streak: int = 0
    log: list[Probe] = field(default_factory=list)


def test_argv(test: list[str] | None) -> list[str] | None:
    """["CMD", a, b] -> [a, b]; ["CMD-SHELL", s] -> ["/bin/sh", "-c", s]; NONE/empty -> None."""
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD":
        return list(test[1:]) or None
    if test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(test[1:])]
    return ["/bin/sh", "-c", " ".join(test)]


class HealthMonitor:
    def __init__(self, containers: Containers, execs: Execs,
                 on_event: Callable[[str, str, dict[str, str]], None] | None = None) -> None:
        self.containers = containers
        self.execs = execs
        self.on_event = on_event or (lambda *a: None)
        self.state: dict[str, Health] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        containers.start_hooks.append(self._started)
        containers.exit_hooks.append(self._exited)

    def get(self, cid: str) -> Health | None:
        return self.state.get(cid)

    def _started(self, cid: str) -> None:
        c = self.containers.by_id.get(cid)
        hc = (c.config.Healthcheck if c else None) or {}
        argv = test_argv(hc.get("Test"))
        if c is None or argv is None:
            return
        self._exited(cid)
        self.state[cid] = Health()
        self.tasks[cid] = asyncio.get_running_loop().create_task(self._run(cid, argv, hc))

    def _exited(self, cid: str) -> None:
        task = self.tasks.pop(cid, None)
        if task is not None:
            task.cancel()
        h = self.state.get(cid)
        if h is not None and h.status == "starting":
            h.status = "unhealthy"

    async def _run(self, cid: str, argv: list[str], hc: dict[str, Any]) -> None:
        interval = (hc.get("Interval") or 0) / NS or DEFAULT_INTERVAL
        timeout = (hc.get("Timeout") or 0) / NS or DEFAULT_TIMEOUT
        retries = hc.get("Retries") or DEFAULT_RETRIES
        start_period = (hc.get("StartPeriod") or 0) / NS
        # API 1.44: inside the start period, a still-starting container is probed every
        # StartInterval (dockerd's default 5s) rather than every Interval.
        start_interval = (hc.get("StartInterval") or 0) / NS or DEFAULT_START_INTERVAL
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            h = self.state.get(cid)
            starting = h is not None and h.status == "starting" and loop.time() - started < start_period
            await asyncio.sleep(start_interval if starting else interval)
            try:
                code, output, start, end = await self._probe(cid, argv, timeout)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the container is stopping, paused...
                log.debug("health check of %s: %s", cid[:12], e)
                continue
            h = self.state.get(cid)
            if h is None:
                return
            h.log = (h.log + [Probe(start, end, code, output)])[-MAX_LOG:]
            old = h.status
            if code == 0:
                h.failing_streak = 0
                h.status = "healthy"
            elif loop.time() - started >= start_period or h.status != "starting":
                h.failing_streak += 1
                if h.failing_streak >= retries:
                    h.status = "unhealthy"
            if h.status != old:
                self.on_event("health_status: " + h.status, cid, {})

    async def _probe(self, cid: str, argv: list[str], timeout: float) -> tuple[int, str, str, str]:
        start = now()
        ex = self.execs.create(cid, ExecCreate(Cmd=argv, AttachStdout=True, AttachStderr=True))
        out = bytearray()
        session = await self.execs.start(ex.id, detach=False)
        session.close_stdin()

        async def collect() -> None:
            async for chunk in session.output():
                if len(out) < MAX_OUTPUT:
                    out.extend(chunk[8:] if not ex.tty else chunk)

        try:
            await asyncio.wait_for(collect(), timeout)
            code = ex.exit_code if ex.exit_code is not None else -1
        except asyncio.TimeoutError:
            code = -1
            out.extend(f"Health check exceeded timeout ({timeout:g}s)".encode())
        finally:
            self.execs.by_id.pop(ex.id, None)
        return code, out.decode(errors="replace")[:MAX_OUTPUT], start, now()
