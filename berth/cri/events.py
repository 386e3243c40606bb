"""GetContainerEvents: the engine's container events as the CRI's server stream (the kubelet's
evented PLEG), for pod containers and sandboxes alike.

    create -> CONTAINER_CREATED_EVENT    start -> CONTAINER_STARTED_EVENT
    die    -> CONTAINER_STOPPED_EVENT    destroy -> CONTAINER_DELETED_EVENT

Each event carries the pod's status and its containers' statuses as they are when it is sent
(none once the pod is gone).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from cri_api.v1 import api_pb2 as pb

from berth.cri import meta
from berth.cri.containers import PodContainers
from berth.cri.sandboxes import Sandboxes
from berth.engine.events import Event, Events
from berth.errors import NotFound

KINDS = {"create": pb.ContainerEventType.CONTAINER_CREATED_EVENT,
         "start": pb.ContainerEventType.CONTAINER_STARTED_EVENT,
         "die": pb.ContainerEventType.CONTAINER_STOPPED_EVENT,
         "destroy": pb.ContainerEventType.CONTAINER_DELETED_EVENT}


class ContainerEvents:
    def __init__(self, bus: Events, sandboxes: Sandboxes, pods: PodContainers):
        self.bus = bus
        self.sandboxes = sandboxes
        self.pods = pods

    async def stream(self) -> AsyncIterator[Any]:
        """The CRI events from now on, until the client goes away."""
        q = self.bus.subscribe()
        try:
            while True:
                ev = await q.get()
                out = self._response(ev)
                if out is not None:
                    yield out
        finally:
            self.bus.unsubscribe(q)

    def _response(self, ev: Event) -> Any | None:
        kind = ev.attributes.get(meta.TYPE)
        if ev.type != "container" or ev.action not in KINDS or kind not in (meta.SANDBOX, meta.CONTAINER):
            return None
        sid = ev.id if kind == meta.SANDBOX else ev.attributes.get(meta.SANDBOX_ID, "")
        out = pb.ContainerEventResponse(container_id=ev.id, container_event_type=KINDS[ev.action],
                                        created_at=ev.time_nano)
        try:
            out.pod_sandbox_status.CopyFrom(self.sandboxes.status(sid))
        except NotFound:
            return out
        for c in self.sandboxes.members(sid):
            try:
                out.containers_statuses.append(self.pods.status(c.id))
            except NotFound:
                pass
        return out
