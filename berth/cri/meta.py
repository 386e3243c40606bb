"""What the CRI stores on an engine container: its kind, metadata, labels and annotations, all
as Docker labels, so ``docker ps -a`` shows them and a restarted berthd finds them again.

    io.kubernetes.docker.type        podsandbox | container (cri-dockerd's key)
    io.kubernetes.pod.{name,namespace,uid}, io.kubernetes.container.name
    io.kubernetes.sandbox.id         a container's sandbox
    io.berth.cri.attempt             the metadata's attempt
    io.berth.cri.log-directory       a sandbox's log directory
    io.berth.cri.network             "cni" on a sandbox whose network the CNI plugins made
    io.berth.cri.annotation.<key>    one annotation
    <key>                            one of the request's own labels, as given

Engine names follow cri-dockerd: ``k8s_POD_<pod>_<ns>_<uid>_<attempt>`` for a sandbox,
``k8s_<container>_<pod>_<ns>_<uid>_<attempt>`` for a container.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping

TYPE = "io.kubernetes.docker.type"
POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
POD_UID = "io.kubernetes.pod.uid"
CONTAINER_NAME = "io.kubernetes.container.name"
SANDBOX_ID = "io.kubernetes.sandbox.id"
ATTEMPT = "io.berth.cri.attempt"
LOG_DIRECTORY = "io.berth.cri.log-directory"
NETWORK = "io.berth.cri.network"
ANNOTATION = "io.berth.cri.annotation."
SANDBOX, CONTAINER = "podsandbox", "container"
_OURS = (TYPE, SANDBOX_ID, ATTEMPT, LOG_DIRECTORY, NETWORK)


def encode(kind: str, labels: Mapping[str, str], annotations: Mapping[str, str],
           extra: Mapping[str, str]) -> dict[str, str]:
    """The Docker labels of a CRI object."""
    out = dict(labels)
    out.update({ANNOTATION + k: v for k, v in annotations.items()})
    out.update(extra)
    out[TYPE] = kind
    return out


def pod_labels(name: str, namespace: str, uid: str, attempt: int) -> dict[str, str]:
    """The pod's identity, on its sandbox and on each of its containers (with its own attempt)."""
    return {POD_NAME: name, POD_NAMESPACE: namespace, POD_UID: uid, ATTEMPT: str(attempt)}


def user_labels(docker: Mapping[str, str]) -> dict[str, str]:
    """The labels the kubelet gave (and the io.kubernetes.* ones everyone sees)."""
    return {k: v for k, v in docker.items() if k not in _OURS and not k.startswith(ANNOTATION)}


def annotations_of(docker: Mapping[str, str]) -> dict[str, str]:
    return {k[len(ANNOTATION):]: v for k, v in docker.items() if k.startswith(ANNOTATION)}


def selected(docker: Mapping[str, str], selector: Mapping[str, str]) -> bool:
    """A CRI filter's label_selector: every pair must be there."""
    mine = user_labels(docker)
    return all(mine.get(k) == v for k, v in selector.items())


def nanos(rfc3339: str) -> int:
    """Unix nanoseconds of an engine timestamp (0 for Go's zero time or none)."""
    if not rfc3339 or rfc3339.startswith("0001-"):
        return 0
    s = rfc3339.rstrip("Z")
    whole, _, frac = s.partition(".")
    t = datetime.datetime.fromisoformat(whole).replace(tzinfo=datetime.timezone.utc)
    return int(t.timestamp()) * 1_000_000_000 + int((frac + "000000000")[:9])


def sandbox_name(name: str, namespace: str, uid: str, attempt: int) -> str:
    return f"k8s_POD_{name}_{namespace}_{uid}_{attempt}"


def container_name(name: str, pod: str, namespace: str, uid: str, attempt: int) -> str:
    return f"k8s_{name}_{pod}_{namespace}_{uid}_{attempt}"
