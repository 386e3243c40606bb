"""CNI: the standard plugins (``bridge``, ``host-local``, ``loopback``, ``portmap``...) called as
the CNI spec (v1.0) says. berth writes no plugin: it finds the network configuration, runs each
plugin binary with the ``CNI_*`` environment and the plugin's configuration on stdin, chains a
list's plugins through ``prevResult``, and caches the final result so DEL and CHECK get it,
even after berthd restarted.

    cni = Cni("/etc/cni/net.d", ["/usr/lib/cni"], data_root / "cni" / "results")
    net = cni.network()                           # the first config in the dir, or None
    result = await cni.add(net, Attachment(cid, "/proc/42/ns/net", args=..., capabilities=...))
    await cni.check(cid)                          # CniError if the network is not as set up
    await cni.delete(cid, "/proc/42/ns/net")      # the cached config, reverse order, cache gone

A plugin's failure is a ``CniError`` with the plugin's own message (its ``msg`` and
``details``, or its stderr when it printed no error document).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from berth.errors import os_text
from berth.state.atomic import write_atomic

log = logging.getLogger("berth.network.cni")

CONF_SUFFIXES = (".conf", ".conflist", ".json")
PLUGIN_TIMEOUT = 60.0
# The standard plugins are Go programs that live a few milliseconds. One P (unless berthd's
# environment names its own) spares them the Go runtime's thread hand-offs on a busy host:
# bridge (with host-local) + loopback ADD into a fresh netns, 2 runs of 24 on 2 loaded cores,
# 47.2/44.0 -> 41.3/37.6 ms of wall at the same CPU (18-20 ms). Non-Go plugins ignore it.
PLUGIN_GOMAXPROCS = "1"


class CniError(Exception):
    """A plugin failed (or could not be run)."""


@dataclass(frozen=True)
class Network:
    """One network configuration list (a ``.conf`` becomes a list of one plugin)."""

    name: str
    cni_version: str
    plugins: list[dict[str, Any]]
    source: str = ""

    def document(self) -> dict[str, Any]:
        return {"cniVersion": self.cni_version, "name": self.name, "plugins": self.plugins}


@dataclass(frozen=True)
class Attachment:
    """What a pod's attachment is called with: the container (the sandbox), its namespace, the
    interface name, ``CNI_ARGS`` pairs and the capability arguments (``portMappings``...)."""

    container_id: str
    netns: str
    ifname: str = "eth0"
    args: list[tuple[str, str]] = field(default_factory=list)
    capabilities: dict[str, Any] = field(default_factory=dict)


def parse(text: str, source: str = "") -> Network:
    """A ``.conflist`` or a single plugin's ``.conf``. Raises ValueError."""
    doc = json.loads(text)
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    if "plugins" in doc:
        plugins = doc["plugins"]
        if not isinstance(plugins, list) or not plugins or not all(isinstance(p, dict) for p in plugins):
            raise ValueError("plugins must be a non-empty list of objects")
    elif "type" in doc:
        plugins = [{k: v for k, v in doc.items() if k not in ("name", "cniVersion")}]
    else:
        raise ValueError("neither a plugin (type) nor a list (plugins)")
    if not all(isinstance(p.get("type"), str) and p["type"] for p in plugins):
        raise ValueError("every plugin needs a type")
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("the network needs a name")
    return Network(name, str(doc.get("cniVersion", "0.4.0")), plugins, source)


def load(conf_dir: str) -> Network | None:
    """The first valid configuration in ``conf_dir`` by file name, as the kubelet's runtimes
    take it (invalid files are logged and passed over); None when there is none."""
    try:
        names = sorted(n for n in os.listdir(conf_dir) if n.endswith(CONF_SUFFIXES))
    except FileNotFoundError:
        return None
    for n in names:
        path = os.path.join(conf_dir, n)
        try:
            with open(path, encoding="utf-8") as f:
                return parse(f.read(), path)
        except (OSError, ValueError) as e:
            log.warning("CNI config %s passed over: %s", path, e)
    return None


class Cni:
    def __init__(self, conf_dir: str, bin_dirs: list[str], cache_dir: Path):
        self.conf_dir = conf_dir
        self.bin_dirs = bin_dirs
        self.cache_dir = cache_dir

    def network(self) -> Network | None:
        return load(self.conf_dir)

    # -- the three commands -----------------------------------------------------------------

    async def add(self, net: Network, att: Attachment, cache: bool = True) -> dict[str, Any]:
        """ADD through the list, each plugin given the previous one's result; the last result
        is cached (unless ``cache`` is false: then ``save`` it, or ``undo`` it). On a failure the
        plugins that ran are called with DEL, and CniError raised; cancelled, the same DELs run
        (with the result so far) before the cancellation goes on.

        A plain ``loopback`` after the first plugin runs alongside the others: it only brings
        ``lo`` up, and passes its ``prevResult`` on unchanged, so the chain's result is the same."""
        prev: dict[str, Any] | None = None
        aside = [p for i, p in enumerate(net.plugins) if i > 0 and passes_through(p)]
        side = [asyncio.ensure_future(self._run("ADD", net, p, att, None)) for p in aside]
        try:
            for p in net.plugins:
                if not any(p is q for q in aside):
                    prev = await self._run("ADD", net, p, att, prev)
            await asyncio.gather(*side)
        except CniError:
            await asyncio.gather(*side, return_exceptions=True)
            await self._delete_list(net, att, None)
            raise
        except BaseException:  # cancelled (the client went, a deadline): undone as a failure is
            for t in side:
                t.cancel()
            await asyncio.gather(*side, return_exceptions=True)
            undo = asyncio.ensure_future(self.undo(net, att, prev))
            try:
                await asyncio.shield(undo)  # cancelled again: the DELs still run to their end
            except asyncio.CancelledError:
                pass
            raise
        result = prev or {}
        if cache:
            self.save(net, att, result)
        return result

    async def undo(self, net: Network, att: Attachment, result: dict[str, Any] | None) -> None:
        """DEL an ADD whose result was not cached (logged, not raised: this is cleanup)."""
        try:
            await self._delete_list(net, att, result)
        except CniError:
            pass

    async def check(self, container_id: str, ifname: str = "eth0") -> None:
        """CHECK the cached attachment (CniError if a plugin finds it changed, or none cached)."""
        cached = self.cached(container_id, ifname)
        if cached is None:
            raise CniError(f"no CNI attachment cached for {container_id} ({ifname})")
        net, att, result = _from_cache(cached)
        for p in net.plugins:
            await self._run("CHECK", net, p, att, result)

    async def delete(self, container_id: str, netns: str, ifname: str = "eth0") -> None:
        """DEL in reverse order with the cached result (the cached config too: the directory
        may have changed since ADD). Without a cache, the current config. Idempotent."""
        cached = self.cached(container_id, ifname)
        if cached is not None:
            net, att, result = _from_cache(cached)
            att = Attachment(att.container_id, netns, att.ifname, att.args, att.capabilities)
        else:
            found = self.network()
            if found is None:
                return
            net, att, result = found, Attachment(container_id, netns, ifname), None
        await self._delete_list(net, att, result)
        self._cache_path(container_id, ifname).unlink(missing_ok=True)

    async def _delete_list(self, net: Network, att: Attachment, result: dict[str, Any] | None) -> None:
        first: CniError | None = None
        for p in reversed(net.plugins):
            try:
                await self._run("DEL", net, p, att, result)
            except CniError as e:
                log.warning("CNI DEL of %s: %s", att.container_id[:12], e)
                first = first or e
        if first is not None and result is not None:
            raise first

    # -- the cache --------------------------------------------------------------------------

    def _cache_path(self, container_id: str, ifname: str) -> Path:
        return self.cache_dir / f"{container_id}-{ifname}.json"

    def cached(self, container_id: str, ifname: str = "eth0") -> dict[str, Any] | None:
        try:
            doc = json.loads(self._cache_path(container_id, ifname).read_bytes())
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def save(self, net: Network, att: Attachment, result: dict[str, Any]) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        doc = {"kind": "cniCacheV1", "containerId": att.container_id, "ifName": att.ifname,
               "networkName": net.name, "config": net.document(), "cniArgs": att.args,
               "capabilityArgs": att.capabilities, "netns": att.netns, "result": result}
        # atomic, not fsynced (libcni's cache is a plain write): a host crash takes the
        # namespaces and the pods with it; a berthd killed still finds a whole file
        write_atomic(self._cache_path(att.container_id, att.ifname), json.dumps(doc).encode(), sync=False)

    # -- one plugin -------------------------------------------------------------------------

    def find(self, kind: str) -> str:
        for d in self.bin_dirs:
            path = os.path.join(d, kind)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
        raise CniError(f'failed to find plugin "{kind}" in path {self.bin_dirs}')

    async def _run(self, command: str, net: Network, plugin: dict[str, Any], att: Attachment,
                   prev: dict[str, Any] | None) -> dict[str, Any]:
        exe = self.find(plugin["type"])
        stdin = json.dumps(plugin_config(net, plugin, att, prev)).encode()
        env = {"GOMAXPROCS": PLUGIN_GOMAXPROCS, **os.environ, "CNI_COMMAND": command, "CNI_CONTAINERID": att.container_id,
               "CNI_NETNS": att.netns, "CNI_IFNAME": att.ifname, "CNI_PATH": os.pathsep.join(self.bin_dirs),
               "CNI_ARGS": ";".join(f"{k}={v}" for k, v in att.args)}
        t = time.perf_counter()
        try:
            proc = await asyncio.create_subprocess_exec(exe, stdin=asyncio.subprocess.PIPE,
                                                        stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.PIPE, env=env)
        except OSError as e:  # not a program (ENOEXEC), out of descriptors...: the chain is undone
            raise CniError(f'plugin type="{plugin["type"]}" could not be run ({command.lower()}): {os_text(e)}') \
                from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), PLUGIN_TIMEOUT)
        except asyncio.TimeoutError:
            _kill(proc)
            await proc.wait()
            raise CniError(f'plugin type="{plugin["type"]}" timed out ({command.lower()})') from None
        except BaseException:  # cancelled: the plugin does not outlive its caller
            _kill(proc)
            raise
        log.debug("CNI %s %s %s: %.1f ms", command, plugin["type"], att.container_id[:12],
                  (time.perf_counter() - t) * 1000)
        if proc.returncode != 0:
            raise CniError(f'plugin type="{plugin["type"]}" failed ({command.lower()}): {_message(out, err)}')
        if command != "ADD":
            return prev or {}
        try:
            result = json.loads(out)
        except ValueError:
            raise CniError(f'plugin type="{plugin["type"]}" (add) printed no result: {out[:200]!r}') from None
        return result if isinstance(result, dict) else {}


def _kill(proc: asyncio.subprocess.Process) -> None:
    try:
        proc.kill()
    except ProcessLookupError:
        pass


def plugin_config(net: Network, plugin: dict[str, Any], att: Attachment,
                  prev: dict[str, Any] | None) -> dict[str, Any]:
    """What one plugin reads on stdin: its own config, the list's name and version, the
    previous result, and the capability arguments it declares (``runtimeConfig``)."""
    conf = dict(plugin)
    conf["name"], conf["cniVersion"] = net.name, net.cni_version
    conf.pop("capabilities", None)
    runtime = {k: v for k, v in att.capabilities.items() if (plugin.get("capabilities") or {}).get(k)}
    if runtime:
        conf["runtimeConfig"] = runtime
    if prev is not None:
        conf["prevResult"] = prev
    return conf


def passes_through(plugin: dict[str, Any]) -> bool:
    """The standard ``loopback`` plugin, configured with nothing: it sets ``lo`` up and prints
    the ``prevResult`` it was given (containernetworking/plugins' loopback)."""
    return plugin.get("type") == "loopback" and set(plugin) == {"type"}


def _message(out: bytes, err: bytes) -> str:
    """A plugin's error document (``msg: details``), else its stderr."""
    try:
        doc = json.loads(out)
        msg = doc.get("msg") or ""
        details = doc.get("details") or ""
        if msg:
            return f"{msg}: {details}" if details else msg
    except (ValueError, AttributeError):
        pass
    return (err or out).decode(errors="replace").strip() or "no message"


def _from_cache(doc: dict[str, Any]) -> tuple[Network, Attachment, dict[str, Any]]:
    cfg = doc.get("config") or {}
    net = Network(cfg.get("name", ""), cfg.get("cniVersion", "0.4.0"), list(cfg.get("plugins") or []))
    att = Attachment(doc.get("containerId", ""), doc.get("netns", ""), doc.get("ifName", "eth0"),
                     [tuple(a) for a in doc.get("cniArgs") or []], dict(doc.get("capabilityArgs") or {}))
    return net, att, doc.get("result") or {}


def first_ip(result: dict[str, Any]) -> str:
    """The address of a result (IPv4 first), without its prefix length."""
    ips = [str(i.get("address", "")).split("/")[0] for i in result.get("ips") or [] if isinstance(i, dict)]
    v4 = [a for a in ips if "." in a]
    return (v4 or ips or [""])[0]
