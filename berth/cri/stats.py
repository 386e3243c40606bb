"""Container and pod stats for the kubelet: ContainerStats, ListContainerStats, PodSandboxStats
and ListPodSandboxStats, from the cgroup counters ``docker stats`` reads (engine/stats.py).

- CPU: cumulative usage, and the rate (``usage_nano_cores``) against the previous reading of
  the same container, as containerd computes it (0 on the first reading).
- Memory: usage, the working set (usage minus inactive file pages, what the kubelet evicts
  on), RSS, page faults, and what is left below the limit when there is one.
- The writable layer: its bytes and inodes.
- A pod: the CPU and memory of its cgroup (the kubelet's cgroup_parent, holding the pause and
  the containers), or without one its containers' added to the pause's; its network
  interfaces (from the pause's namespace) and its process count.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
import time
from typing import Any

from cri_api.v1 import api_pb2 as pb

from berth.cri import meta, records
from berth.cri.containers import PodContainers, container_metadata
from berth.cri.sandboxes import Sandboxes, pod_metadata
from berth.engine import stats as engine_stats
from berth.engine.model import Container

MAX_TRACKED = 4096  # containers whose last CPU reading is kept (for the rate)


class Stats:
    def __init__(self, sandboxes: Sandboxes, pods: PodContainers):
        self.sandboxes = sandboxes
        self.pods = pods
        self._last: dict[str, tuple[int, int]] = {}  # container id -> (time ns, cpu usage ns)

    # -- containers -------------------------------------------------------------------------

    async def one_container(self, cid: str) -> Any:
        return await asyncio.to_thread(self._container, self.pods.get(cid))

    async def list_containers(self, f: Any) -> list[Any]:
        chosen = [c for c in self.pods.all() if records.selected(c, f)]
        return await asyncio.to_thread(lambda: [self._container(c) for c in chosen])

    def _container(self, c: Container) -> Any:
        labels = c.config.Labels or {}
        now = time.time_ns()
        raw = engine_stats.raw_stats(c) or {}
        return pb.ContainerStats(
            attributes=pb.ContainerAttributes(id=c.id, metadata=container_metadata(labels), labels=meta.user_labels(labels),
                                              annotations=meta.annotations_of(labels)),
            cpu=self._cpu(c.id, now, raw), memory=_memory(now, raw), writable_layer=self._layer(c, now))

    def _cpu(self, cid: str, now: int, raw: dict[str, Any]) -> Any:
        usage = int((raw.get("cpu") or {}).get("usage_ns") or 0)
        prev = self._last.get(cid)
        if len(self._last) > MAX_TRACKED:
            self._last.clear()  # removed containers' readings: a rate is 0 once more
        self._last[cid] = (now, usage)
        rate = 0
        if prev is not None and now > prev[0] and usage >= prev[1]:
            rate = (usage - prev[1]) * 1_000_000_000 // (now - prev[0])
        return pb.CpuUsage(timestamp=now, usage_core_nano_seconds=pb.UInt64Value(value=usage),
                           usage_nano_cores=pb.UInt64Value(value=rate))

    def _layer(self, c: Container, now: int) -> Any:
        upper = str(self.pods.containers.data.container(c.id).upper)
        used, inodes = _du(upper)
        return pb.FilesystemUsage(timestamp=now, fs_id=pb.FilesystemIdentifier(mountpoint=upper),
                                  used_bytes=pb.UInt64Value(value=used), inodes_used=pb.UInt64Value(value=inodes))

    # -- pods -------------------------------------------------------------------------------

    async def one_pod(self, sid: str) -> Any:
        return await asyncio.to_thread(self._pod, self.sandboxes.get(sid))

    async def list_pods(self, f: Any) -> list[Any]:
        chosen = [c for c in self.sandboxes.all() if records.selected(c, f)]
        return await asyncio.to_thread(lambda: [self._pod(c) for c in chosen])

    def _pod(self, sb: Container) -> Any:
        labels = sb.config.Labels or {}
        now = time.time_ns()
        members = [self._container(c) for c in self.sandboxes.members(sb.id)]
        pod = engine_stats.cgroup_stats(posixpath.dirname(sb.cgroups_path)) \
            if sb.running and sb.host_config.CgroupParent else None
        if pod is not None:
            cpu, mem = self._cpu("pod:" + sb.id, now, pod), _memory(now, pod)
        else:
            cpu, mem = self._summed(sb, now, members)
        pids = self.pods.containers.pids(sb) if sb.running else []
        pids += [p for c in self.sandboxes.members(sb.id) if c.running for p in self.pods.containers.pids(c)]
        linux = pb.LinuxPodSandboxStats(cpu=cpu, memory=mem, network=_network(sb, now),
                                        process=pb.ProcessUsage(timestamp=now,
                                                                process_count=pb.UInt64Value(value=len(set(pids)))),
                                        containers=members)
        return pb.PodSandboxStats(
            attributes=pb.PodSandboxAttributes(id=sb.id, metadata=pod_metadata(labels),
                                               labels=meta.user_labels(labels), annotations=meta.annotations_of(labels)),
            linux=linux)


    def _summed(self, sb: Container, now: int, members: list[Any]) -> tuple[Any, Any]:
        """A pod without a cgroup of its own: its containers' CPU and memory added to the pause's."""
        pause = engine_stats.raw_stats(sb) or {}
        cpu = self._cpu(sb.id, now, pause)
        mem = _memory(now, pause)
        for m in members:
            cpu.usage_core_nano_seconds.value += m.cpu.usage_core_nano_seconds.value
            cpu.usage_nano_cores.value += m.cpu.usage_nano_cores.value
            for name in ("working_set_bytes", "usage_bytes", "rss_bytes", "page_faults", "major_page_faults"):
                getattr(mem, name).value += getattr(m.memory, name).value
        return cpu, mem


def _memory(now: int, raw: dict[str, Any]) -> Any:
    mem = raw.get("memory") or {}
    st = mem.get("stats") or {}
    usage = int(mem.get("usage") or 0)
    inactive = int(st.get("inactive_file", st.get("total_inactive_file", 0)))
    working = max(usage - inactive, 0)
    out = pb.MemoryUsage(timestamp=now, working_set_bytes=pb.UInt64Value(value=working),
                         usage_bytes=pb.UInt64Value(value=usage),
                         rss_bytes=pb.UInt64Value(value=int(st.get("anon", st.get("total_rss", 0)))),
                         page_faults=pb.UInt64Value(value=int(st.get("pgfault", st.get("total_pgfault", 0)))),
                         major_page_faults=pb.UInt64Value(value=int(st.get("pgmajfault",
                                                                           st.get("total_pgmajfault", 0)))))
    limit = mem.get("limit")
    if limit and 0 < limit < engine_stats.host_memory():
        out.available_bytes.value = max(int(limit) - working, 0)
    return out


def _network(sb: Container, now: int) -> Any:
    if not sb.running or sb.host_config.NetworkMode == "host":
        return pb.NetworkUsage(timestamp=now)
    ifaces = [pb.NetworkInterfaceUsage(name=name, rx_bytes=pb.UInt64Value(value=n.rx_bytes),
                                       rx_errors=pb.UInt64Value(value=n.rx_errors),
                                       tx_bytes=pb.UInt64Value(value=n.tx_bytes),
                                       tx_errors=pb.UInt64Value(value=n.tx_errors))
              for name, n in sorted(engine_stats.net_dev(sb.state.pid).items())]
    default = next((i for i in ifaces if i.name == "eth0"), ifaces[0] if ifaces else None)
    return pb.NetworkUsage(timestamp=now, default_interface=default,
                           interfaces=[i for i in ifaces if i is not default])


def _du(root: str) -> tuple[int, int]:
    """Bytes and inodes under ``root`` (hard links counted once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total, len(seen)
