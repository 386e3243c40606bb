"""CRI objects among the engine's containers: a sandbox or a pod container is an engine
container whose ``io.kubernetes.docker.type`` label says which (meta.SANDBOX, meta.CONTAINER).

    sb = records.get(containers, sid, meta.SANDBOX, "pod sandbox")   # NOT_FOUND otherwise
    pods = records.of_kind(containers, meta.SANDBOX)
    [c for c in pods if records.selected(c, request.filter, state_of(c))]
"""

from __future__ import annotations

from typing import Any

from berth.cri import meta
from berth.engine.containers import Containers
from berth.engine.model import Container
from berth.errors import InvalidArgument, NotFound


def kind_of(c: Container) -> str:
    return (c.config.Labels or {}).get(meta.TYPE, "")


def of_kind(containers: Containers, kind: str) -> list[Container]:
    return [c for c in containers.list() if kind_of(c) == kind]


def get(containers: Containers, ref: str, kind: str, what: str) -> Container:
    """The ``kind`` object by ID or unique ID prefix; ``what`` names it in errors."""
    if not ref:
        raise InvalidArgument(f"{what} ID must not be empty")
    try:
        c = containers.get(ref)
    except NotFound:
        c = None
    if c is None or kind_of(c) != kind:
        raise NotFound(f"{what} {ref} not found")
    return c


def selected(c: Container, f: Any, state: int | None = None) -> bool:
    """Whether a CRI list filter (containers, sandboxes, stats) keeps ``c``: its ID prefix, its
    sandbox's ID prefix, its ``state`` (when the filter has one), its label selector."""
    if f is None:
        return True
    labels = c.config.Labels or {}
    if f.id and not c.id.startswith(f.id):
        return False
    sid = getattr(f, "pod_sandbox_id", "")
    if sid and not labels.get(meta.SANDBOX_ID, "").startswith(sid):
        return False
    if state is not None and f.HasField("state") and f.state.state != state:
        return False
    return meta.selected(labels, f.label_selector)
