"""``GET /metrics`` on ``metrics-addr``: berthd's Prometheus metrics, read when scraped.

Three groups, written in the text format by ``promtext`` (no Go runtime, so no ``go_*``):

- per running container (labels ``id``, ``name``): CPU, memory, pids, network and block I/O,
  from its cgroup and its netns's /proc/<pid>/net/dev (``engine.stats.counters``);
- the engine: containers by state (dockerd's ``engine_daemon_container_states_containers``),
  images, pulls, builds, events, and API requests by route and status with latency histograms
  (``ApiMetrics.wrap`` wraps each route's handler when metrics are on; off, nothing is counted);
- the process, with ``prometheus_client``'s names: ``process_cpu_seconds_total``,
  ``process_resident_memory_bytes``, ``process_open_fds``, ``process_start_time_seconds`` ...

The metrics listener is its own ``Server`` with one route (dockerd's is the same: a separate
plain-HTTP address, meant for loopback or a trusted network).
"""

from __future__ import annotations

import asyncio
import collections
import os
import json
import logging
import resource
import time

from berth.api.app import App, Bound
from berth.api.errors import status_of
from berth.api.http import Request, Response, Router, Server, StreamResponse
from berth.api.promtext import CONTENT_TYPE, Family, Histogram, escape, label_text
from berth.engine.model import Status
from berth.engine.stats import Counters, counters

log = logging.getLogger("berth.api")

_NS = 1e9
_HZ = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")
Labels = tuple[tuple[str, str], ...]


class ApiMetrics:
    """API requests by method, route and status, and their latency per method and route."""

    def __init__(self) -> None:
        self.requests: collections.Counter[Labels] = collections.Counter()
        self.latency = Histogram("berth_api_request_duration_seconds",
                                 "Time from a request's head to its response (hijacked: to the stream's end)")

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests[("method", method), ("route", route), ("status", str(status))] += 1
        self.latency.observe((("method", method), ("route", route)), seconds)

    def wrap(self, method: str, route: str, handler: Bound) -> Bound:
        """``handler``, counted and timed (``app.register``'s ``wrap``). Its status is the
        response's, the error table's for an exception, 101/200 for a hijacked stream."""
        async def observed(req: Request) -> Response | StreamResponse | None:
            t0, status = time.monotonic(), 500
            try:
                resp = await handler(req)
                if resp is not None:
                    status = resp.status
                elif req.hijacked:
                    status = 101 if req.headers.get("upgrade") is not None else 200
                else:
                    status = 200
                return resp
            except asyncio.CancelledError:
                status = 499  # the client went away (nginx's code; Docker has none)
                raise
            except BaseException as e:
                status = status_of(e) or 500
                raise
            finally:
                self.observe(method, route, status, time.monotonic() - t0)
        return observed

    def families(self) -> list[Family]:
        f = Family("berth_api_requests_total", "counter", "API requests by method, route and status")
        for pairs, n in self.requests.items():
            f.add(n, pairs)
        return [f, self.latency.family()]


# -- the process ------------------------------------------------------------------------------


def _boot_time() -> float:
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("btime "):
                return float(line.split()[1])
    return 0.0


def process_families() -> list[Family]:
    """prometheus_client's process collector, read from /proc/self."""
    with open("/proc/self/stat") as f:
        stat = f.read().rpartition(")")[2].split()  # fields from 3 (state) on
    utime, stime, start, vsize, rss = int(stat[11]), int(stat[12]), int(stat[19]), int(stat[20]), int(stat[21])
    out = []
    for name, kind, help, value in (
            ("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.",
             (utime + stime) / _HZ),
            ("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", vsize),
            ("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", rss * _PAGE),
            ("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.",
             _boot_time() + start / _HZ),
            ("process_open_fds", "gauge", "Number of open file descriptors.", len(os.listdir("/proc/self/fd"))),
            ("process_max_fds", "gauge", "Maximum number of open file descriptors.",
             resource.getrlimit(resource.RLIMIT_NOFILE)[0])):
        fam = Family(name, kind, help)
        fam.add(value)
        out.append(fam)
    return out


# -- the containers -----------------------------------------------------------------------------

_CONTAINER = (
    ("cpu_usage_seconds_total", "counter", "CPU time used by the container's cgroup"),
    ("cpu_user_seconds_total", "counter", "User CPU time of the container's cgroup"),
    ("cpu_system_seconds_total", "counter", "System CPU time of the container's cgroup"),
    ("memory_usage_bytes", "gauge", "Memory used by the container's cgroup"),
    ("memory_limit_bytes", "gauge", "The container's memory limit (absent: unlimited)"),
    ("pids", "gauge", "Processes and threads in the container"),
)
_NET = (("receive_bytes", "rx_bytes"), ("receive_packets", "rx_packets"), ("receive_errors", "rx_errors"),
        ("receive_dropped", "rx_dropped"), ("transmit_bytes", "tx_bytes"), ("transmit_packets", "tx_packets"),
        ("transmit_errors", "tx_errors"), ("transmit_dropped", "tx_dropped"))


def container_families(samples: list[Counters]) -> list[Family]:
    fams = {k: Family(f"berth_container_{k}", t, h) for k, t, h in _CONTAINER}
    net = {k: Family(f"berth_container_network_{k}_total", "counter", f"Network {k.replace('_', ' ')} per interface")
           for k, _ in _NET}
    blk = {op: Family(f"berth_container_blkio_{op}_bytes_total", "counter", f"Bytes {op} per block device")
           for op in ("read", "write")}
    for s in samples:
        who = label_text((("id", s.id), ("name", s.name)))
        for key, value in (("cpu_usage_seconds_total", s.cpu_ns / _NS), ("cpu_user_seconds_total", s.user_ns / _NS),
                           ("cpu_system_seconds_total", s.system_ns / _NS), ("memory_usage_bytes", s.memory),
                           ("memory_limit_bytes", s.memory_limit), ("pids", s.pids)):
            if value is not None:
                fams[key].add_labelled(who, value)
        for iface, n in sorted(s.networks.items()):
            at = f'{who},interface="{escape(iface)}"'
            for key, attr in _NET:
                net[key].add_labelled(at, getattr(n, attr))
        for e in s.io:  # v1 says "Read", v2 "read"
            op = e.op.lower()
            if op in blk:
                blk[op].add_labelled(f'{who},device="{e.major}:{e.minor}"', e.value)
    return [*fams.values(), *net.values(), *blk.values()]


# -- the engine ---------------------------------------------------------------------------------

_STATES = {Status.RUNNING: "running", Status.RESTARTING: "running", Status.PAUSED: "paused"}


def engine_families(app: App) -> list[Family]:
    states = collections.Counter({"running": 0, "paused": 0, "stopped": 0})
    for c in app.containers.by_id.values():
        states[_STATES.get(c.state.status, "stopped")] += 1
    by_state = Family("engine_daemon_container_states_containers", "gauge", "The count of containers in various states")
    for state, n in states.items():
        by_state.add(n, (("state", state),))
    images = Family("berth_images", "gauge", "Images in the store")
    images.add(len(app.images.list()))
    pulls = Family("berth_image_pulls_total", "counter", "Images pulled")
    pulls.add(app.events.counts["image", "pull"])
    builds = Family("berth_builds_total", "counter", "Builds by outcome")
    for outcome in ("success", "failure", "cancelled"):
        builds.add(app.builder.outcomes[outcome], (("outcome", outcome),))
    events = Family("engine_daemon_events_total", "counter", "Events emitted, by type and action")
    for (kind, action), n in sorted(app.events.counts.items()):
        events.add(n, (("type", kind), ("action", action)))
    return [by_state, images, pulls, builds, events]


def _containers(app: App) -> list[Counters]:
    out = []
    for c in list(app.containers.by_id.values()):
        if c.running:
            s = counters(c)
            if s is not None:
                out.append(s)
    return out


async def render(app: App, api: ApiMetrics) -> str:
    """The whole scrape; the cgroup files are read in a thread, off the event loop."""
    samples = await asyncio.to_thread(_containers, app)
    fams = [*engine_families(app), *api.families(), *container_families(samples), *process_families()]
    return "".join(f.render() for f in fams)


def server(app: App, api: ApiMetrics) -> Server:
    """The metrics listener: ``GET /metrics`` and nothing else."""
    async def scrape(req: Request) -> Response:
        return Response(200, (await render(app, api)).encode(), CONTENT_TYPE)

    router = Router()
    router.add("GET", "/metrics", scrape)
    return Server(router, {}, _error)


def _error(req: Request | None, e: BaseException) -> Response:
    log.error("metrics scrape failed", exc_info=e)
    return Response(500, json.dumps({"message": str(e)}).encode() + b"\n")
