"""Docker's JSON for images: the list summary, inspect, history, removals and prune, by API
version. The engine hands over records (``engine.image_records``); every key is written here."""

from __future__ import annotations

from typing import Any

import msgspec

from berth.api.http import Request
from berth.api.shape import config_json, record_time
from berth.engine.image_records import HistoryEntry, ImageRecord, PruneReport, Removal
from berth.schema.containers import ContainerConfig

# Image configs carry only what a build sets; API 1.50 stops echoing the container-only fields.
_CONTAINER_ONLY = ("Hostname", "Domainname", "AttachStdin", "AttachStdout", "AttachStderr", "Tty",
                   "OpenStdin", "StdinOnce", "Image", "NetworkDisabled", "MacAddress", "StopTimeout")


def summary(r: ImageRecord, req: Request | None = None) -> dict[str, object]:
    """One entry of ``GET /images/json``."""
    img = r.image
    cfg = img.config.config
    new = req is None or req.version_at_least("1.43")  # untagged: [] rather than "<none>:<none>"
    d: dict[str, object] = {
        "Containers": -1, "Created": int(record_time(img.created)), "Id": img.id,
        "Labels": (cfg.Labels if cfg else None) or None, "ParentId": r.parent,
        "RepoDigests": r.digests or ([] if r.tags or new else ["<none>@<none>"]),
        "RepoTags": r.tags or ([] if new else ["<none>:<none>"]), "SharedSize": -1, "Size": img.size}
    if req is not None and not req.version_at_least("1.44"):
        d["VirtualSize"] = img.size  # dropped in 1.44
    return d


def _container_config(raw: dict[str, Any] | None) -> dict[str, object]:
    """A commit's ContainerConfig (the container's Config then), in the shape Config has."""
    try:
        cfg = msgspec.convert(raw, ContainerConfig) if raw else None
    except msgspec.ValidationError:
        cfg = None
    return config_json(cfg)


def inspect(r: ImageRecord, req: Request | None = None) -> dict[str, object]:
    """``GET /images/{name}/json``; ``r`` must carry its layer dirs."""
    img = r.image
    c = img.config
    layers = [str(p) for p in r.layer_dirs]
    config = config_json(c.config) if c.config else None
    if config is not None and (req is None or req.version_at_least("1.50")):
        for k in _CONTAINER_ONLY:
            config.pop(k, None)
    d: dict[str, object] = {
        "Id": img.id, "RepoTags": r.tags, "RepoDigests": r.digests, "Parent": r.parent,
        "Comment": c.comment or (c.history[-1].comment if c.history else "") or "",
        "Created": img.created, "Container": c.container or "",
        "ContainerConfig": _container_config(c.container_config), "DockerVersion": c.docker_version or "",
        "Author": c.author or "", "Config": config,
        "Architecture": c.architecture, "Os": c.os, "Size": img.size, "VirtualSize": img.size,
        "GraphDriver": {"Data": {"LowerDir": ":".join(layers[1:]) or None, "MergedDir": None,
                                 "UpperDir": layers[0] if layers else None, "WorkDir": None} if layers else {},
                        "Name": "overlay2"},
        "RootFS": {"Type": "layers", "Layers": list(c.rootfs.diff_ids)},
        "Metadata": {"LastTagTime": img.tagged or "0001-01-01T00:00:00Z"},
    }
    if c.variant:
        d["Variant"] = c.variant
    if req is None or req.version_at_least("1.44"):
        del d["VirtualSize"]
        if not img.created:
            del d["Created"]
    if req is None or req.version_at_least("1.45"):
        del d["Container"], d["ContainerConfig"]
    return d


def history(entries: list[HistoryEntry]) -> list[dict[str, object]]:
    return [{"Id": h.id, "Created": h.created, "CreatedBy": h.created_by, "Tags": h.tags, "Size": h.size,
             "Comment": h.comment} for h in entries]


def removals(items: list[Removal]) -> list[dict[str, str]]:
    """``DELETE /images/{name}`` and prune's ``ImagesDeleted``: one key per item."""
    return [{"Untagged": r.untagged} if r.untagged else {"Deleted": r.deleted} for r in items]


def prune(report: PruneReport) -> dict[str, object]:
    return {"ImagesDeleted": removals(report.removed), "SpaceReclaimed": report.space_reclaimed}
