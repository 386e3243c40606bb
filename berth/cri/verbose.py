"""The ``verbose`` answers of ContainerStatus and PodSandboxStatus: an ``info`` map whose one
key, ``info``, holds a JSON document shaped like containerd's (``crictl inspect`` prints it):

    container: sandboxID, pid, removing, snapshotKey, snapshotter, runtimeType, logPath,
               runtimeSpec (the OCI spec berth ran it with)
    sandbox:   pid, processStatus, netNamespaceClosed, image, snapshotKey, snapshotter,
               runtimeHandler, runtimeType, runtimeSpec
"""

from __future__ import annotations

import json
from typing import Any

from berth.cri import meta
from berth.engine.containers import Containers
from berth.engine.model import Container, Status

SNAPSHOTTER = "overlayfs"


def _spec(containers: Containers, c: Container) -> Any:
    try:
        return json.loads(containers.data.container(c.id).spec.read_bytes())
    except (OSError, ValueError):
        return None  # not started yet, or its bundle is gone


def _runtime(c: Container) -> str:
    return f"io.berth.runtime.{c.host_config.Runtime or 'berth'}"


def container_info(containers: Containers, c: Container) -> dict[str, str]:
    doc = {"sandboxID": (c.config.Labels or {}).get(meta.SANDBOX_ID, ""), "pid": c.state.pid if c.running else 0,
           "removing": c.state.status == Status.REMOVING, "snapshotKey": c.id, "snapshotter": SNAPSHOTTER,
           "runtimeType": _runtime(c), "logPath": c.cri_log, "runtimeSpec": _spec(containers, c)}
    return {"info": json.dumps(doc)}


def sandbox_info(containers: Containers, c: Container) -> dict[str, str]:
    doc = {"pid": c.state.pid if c.running else 0, "processStatus": "running" if c.running else "stopped",
           "netNamespaceClosed": not c.running, "image": c.image_id, "snapshotKey": c.id,
           "snapshotter": SNAPSHOTTER, "runtimeHandler": "", "runtimeType": _runtime(c),
           "runtimeSpec": _spec(containers, c)}
    return {"info": json.dumps(doc)}
