"""Pod networks through CNI: the engine's side of ``network.cni``. A pod's sandbox container is
started (``NetworkMode: none``) in a namespace berthd made, and the CNI plugins ADD it while
the pause's shim is spawned (``plug``, a ``Containers.start`` argument); once the pause runs the
result is cached with the namespace's lasting path (``/proc/<pause pid>/ns/net``), so DEL and
CHECK find it after berthd's restarts, as the container does.

    pods = PodNetworks(Cni(conf_dir, bin_dirs, data.cni_cache))
    if pods.configured():
        await containers.start(sid, plug=pods.plug(sid, Pod("web", "default", uid), [{"hostPort": 8080, ...}]))
        pods.commit(sandbox)       # cached -> "10.88.0.2"  (a failed start: await pods.abort(sid))
    pods.ip(sandbox)               # "10.88.0.2"
    await pods.teardown(sandbox)   # DEL (idempotent); the namespace itself goes with the pause
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from berth.engine.model import Container
from berth.errors import RuntimeFailure
from berth.engine.container_table import NetnsPlug
from berth.network.cni import Attachment, Cni, CniError, Network, first_ip


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str
    uid: str


class PodNetworks:
    def __init__(self, cni: Cni):
        self.cni = cni
        self._added: dict[str, tuple[Network, Attachment, dict[str, Any]]] = {}  # ADDed, not yet cached

    def configured(self) -> bool:
        """Whether a CNI network is configured (else pods get berth's built-in bridge)."""
        return self.cni.network() is not None

    @staticmethod
    def netns(c: Container) -> str:
        return f"/proc/{c.state.pid}/ns/net" if c.running and c.state.pid else ""

    def plug(self, sid: str, pod: Pod, port_mappings: list[dict[str, Any]]) -> NetnsPlug:
        """The sandbox's ADD, for ``Containers.start``: given the namespace berthd made, it runs
        the plugins (raising RuntimeFailure with the plugin's message; the plugins that ran are
        undone) and keeps the result for ``commit``."""
        net = self.cni.network()
        if net is None:
            raise RuntimeFailure(f"no CNI network config in {self.cni.conf_dir}")
        args = [("IgnoreUnknown", "1"), ("K8S_POD_NAMESPACE", pod.namespace), ("K8S_POD_NAME", pod.name),
                ("K8S_POD_INFRA_CONTAINER_ID", sid), ("K8S_POD_UID", pod.uid)]
        caps: dict[str, Any] = {"portMappings": port_mappings} if port_mappings else {}

        async def add(netns: str) -> None:
            att = Attachment(sid, netns, args=args, capabilities=caps)
            try:
                result = await self.cni.add(net, att, cache=False)
            except CniError as e:
                raise RuntimeFailure(f"failed to set up network for sandbox {sid[:12]}: {e}") from None
            self._added[sid] = (net, att, result)
        return add

    def commit(self, c: Container) -> str:
        """The running sandbox's ADD cached, with its namespace's lasting path -> its address."""
        net, att, result = self._added.pop(c.id)
        lasting = self.netns(c)
        self.cni.save(net, replace(att, netns=lasting), renamed_sandbox(result, att.netns, lasting))
        return first_ip(result)

    async def abort(self, sid: str) -> None:
        """The sandbox did not start: DEL what its ADD made (its namespace is gone)."""
        added = self._added.pop(sid, None)
        if added is not None:
            net, att, result = added
            await self.cni.undo(net, replace(att, netns=""), result)

    async def check(self, c: Container) -> None:
        try:
            await self.cni.check(c.id)
        except CniError as e:
            raise RuntimeFailure(str(e)) from None

    async def teardown(self, c: Container) -> None:
        """DEL with the cached result (a stopped pause: no namespace, the plugins release the
        rest). Raises RuntimeFailure with the plugin's message."""
        try:
            await self.cni.delete(c.id, self.netns(c))
        except CniError as e:
            raise RuntimeFailure(f"failed to tear down network of sandbox {c.id[:12]}: {e}") from None

    def attached(self, c: Container) -> bool:
        return self.cni.cached(c.id) is not None

    def ip(self, c: Container) -> str:
        cached = self.cni.cached(c.id)
        return first_ip(cached.get("result") or {}) if cached else ""


def renamed_sandbox(result: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """The result with its interfaces' ``sandbox`` (the namespace's path at ADD) renamed: the
    same namespace by a lasting path, which CHECK (the bridge plugin compares it to
    ``CNI_NETNS``) is later called with."""
    ifaces = [{**i, "sandbox": new} if isinstance(i, dict) and i.get("sandbox") == old else i
              for i in result.get("interfaces") or []]
    return {**result, "interfaces": ifaces} if ifaces else result
