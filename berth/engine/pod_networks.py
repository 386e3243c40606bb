"""Pod networks through CNI: the engine's side of ``network.cni``. A pod's sandbox container is
started in a namespace of its own (``NetworkMode: none``); this hands that namespace's path
(``/proc/<pause pid>/ns/net``) to the CNI plugins, and tells the pod's address from the
cached result (which survives berthd's restarts, as the container does).

    pods = PodNetworks(Cni(conf_dir, bin_dirs, data.cni_cache))
    if pods.configured():
        await pods.setup(sandbox, Pod("web", "default", uid), [{"hostPort": 8080, ...}])
    pods.ip(sandbox)               # "10.88.0.2"
    await pods.teardown(sandbox)   # DEL (idempotent); the namespace itself goes with the pause
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from berth.engine.model import Container
from berth.errors import RuntimeFailure
from berth.network.cni import Attachment, Cni, CniError, first_ip


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str
    uid: str


class PodNetworks:
    def __init__(self, cni: Cni):
        self.cni = cni

    def configured(self) -> bool:
        """Whether a CNI network is configured (else pods get berth's built-in bridge)."""
        return self.cni.network() is not None

    @staticmethod
    def netns(c: Container) -> str:
        return f"/proc/{c.state.pid}/ns/net" if c.running and c.state.pid else ""

    async def setup(self, c: Container, pod: Pod, port_mappings: list[dict[str, Any]]) -> str:
        """ADD the running sandbox to the network -> its address. Raises RuntimeFailure with
        the plugin's message (the plugins that ran are undone)."""
        net = self.cni.network()
        if net is None:
            raise RuntimeFailure(f"no CNI network config in {self.cni.conf_dir}")
        args = [("IgnoreUnknown", "1"), ("K8S_POD_NAMESPACE", pod.namespace), ("K8S_POD_NAME", pod.name),
                ("K8S_POD_INFRA_CONTAINER_ID", c.id), ("K8S_POD_UID", pod.uid)]
        caps: dict[str, Any] = {"portMappings": port_mappings} if port_mappings else {}
        try:
            result = await self.cni.add(net, Attachment(c.id, self.netns(c), args=args, capabilities=caps))
        except CniError as e:
            raise RuntimeFailure(f"failed to set up network for sandbox {c.id[:12]}: {e}") from None
        return first_ip(result)

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
