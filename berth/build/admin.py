"""Looking after the build cache: ``/build/prune`` (``builder prune``), its rows in
``/system/df``, and which images are intermediate (a cached step's untagged result that
another image was built on: hidden from ``docker images`` as Docker hides them)."""

from __future__ import annotations

import time
from typing import Any

from berth.build.cache import BuildCache, Record
from berth.engine.containers import Containers
from berth.engine.logs import parse_time
from berth.image.store import ImageStore, NoSuchImage


def _rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def _until(filters: dict[str, list[str]]) -> float | None:
    vals = filters.get("until")
    if not vals:
        return None
    v = vals[0]
    mult = {"s": 1, "m": 60, "h": 3600}
    try:
        if v[-1] in mult and v[:-1].replace(".", "", 1).isdigit():
            return time.time() - float(v[:-1]) * mult[v[-1]]
        return float(v)
    except (ValueError, IndexError):
        return parse_time(v)


class BuildAdmin:
    def __init__(self, store: ImageStore, containers: Containers, cache: BuildCache):
        self.store = store
        self.containers = containers
        self.cache = cache

    def intermediate(self) -> set[str]:
        """Untagged images that are the parent of a cached step's result."""
        out = set()
        for iid in self.cache.parents():
            if not self.store.tags_of(iid):
                out.add(iid)
        return out

    def _exists(self, iid: str) -> bool:
        try:
            self.store.get_by_id(iid)
            return True
        except NoSuchImage:
            return False

    def rows(self) -> list[dict[str, Any]]:
        """BuildCache entries of /system/df (Docker's BuildCache shape)."""
        out = []
        used = {c.image_id for c in self.containers.list()}
        for r in self.cache.records():
            if not self._exists(r.image_id):
                continue
            out.append({"ID": r.key[:25], "Parent": r.parent or None, "Parents": [r.parent] if r.parent else None,
                        "Type": "regular", "Description": r.created_by, "InUse": r.image_id in used,
                        "Shared": bool(self.store.tags_of(r.image_id)), "Size": r.size,
                        "CreatedAt": _rfc3339(r.created), "LastUsedAt": _rfc3339(r.last_used),
                        "UsageCount": r.uses})
        return out

    def prune(self, all_: bool, keep: int, filters: dict[str, list[str]]) -> dict[str, Any]:
        until = _until(filters)
        records = sorted(self.cache.records(), key=lambda r: r.last_used)
        total = sum(r.size for r in records)
        used = {c.image_id for c in self.containers.list()}
        deleted: list[str] = []
        reclaimed = 0
        before = self._layers_size()
        inter = self.intermediate()
        for r in records:
            if keep and total <= keep:
                break
            if until is not None and r.last_used >= until:
                continue
            if r.image_id in used or (not all_ and self._in_use(r)):
                continue
            self._drop(r, inter)
            deleted.append(r.key[:25])
            total -= r.size
        reclaimed = max(before - self._layers_size(), 0)
        return {"CachesDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    def _in_use(self, r: Record) -> bool:
        return False

    def _drop(self, r: Record, inter: set[str]) -> None:
        self.cache.drop(r.key)
        if r.image_id not in inter:
            return  # a build's final image: an image like any other, not cache
        if r.image_id in self.cache.images():
            return  # another step (another parent or Dockerfile) still gives this image
        if self.store.tags_of(r.image_id) or not self._exists(r.image_id):
            return
        if any(c.image_id == r.image_id for c in self.containers.list()):
            return
        self.store.delete_image(r.image_id)

    def _layers_size(self) -> int:
        return sum(row[0] for row in self.store.db.query("SELECT size FROM layers"))
