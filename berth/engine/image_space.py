"""The space images take: ``image prune`` (what it frees) and the image and container part
of ``system df`` (with the layers images share)."""

from __future__ import annotations

from berth.engine.image_records import DiskUsage, ImageUsage, PruneReport, Removal
from berth.oci import reference

TYPE_CHECKING = False
if TYPE_CHECKING:
    from berth.engine.images import Images


class Space:
    def __init__(self, images: Images):
        self.images = images
        self.store = images.store
        self.containers = images.containers

    def prune(self, filters: dict[str, list[str]]) -> PruneReport:
        from berth.engine.logs import parse_time

        dangling_only = True
        if "dangling" in filters:
            dangling_only = filters["dangling"][0].lower() in ("true", "1")
        until = None
        if "until" in filters:
            until = parse_time(filters["until"][0])
        deleted: list[Removal] = []
        before = self._layers_size()
        used = {c.image_id for c in self.containers.list()}
        parents = {r[0] for r in self.store.db.query("SELECT DISTINCT parent FROM image_parents")}
        for img in self.store.list():
            tags = self.store.tags_of(img.id)
            if dangling_only and (tags or img.id in parents):
                continue  # dangling: no tag and no child (a build step's parent is not)
            if img.id in used:
                continue
            if until is not None and (parse_time(img.created) or 0) >= until:
                continue
            labels = (img.config.config.Labels if img.config.config else None) or {}
            if not all(_label_ok(labels, f, True) for f in filters.get("label", [])):
                continue
            if not all(_label_ok(labels, f, False) for f in filters.get("label!", [])):
                continue
            for t in tags:
                self.store.untag(str(reference.parse(t)))
                deleted.append(Removal(untagged=t))
                self.images.on_event("untag", img.id, {"name": t})
            for d in self.store.repo_digests_of(img.id):
                deleted.append(Removal(untagged=d))
            self.store.delete_image(img.id)
            deleted.append(Removal(deleted=img.id))
            self.images.on_event("delete", img.id, {})
        return PruneReport(deleted, max(before - self._layers_size(), 0))

    def _layers_size(self) -> int:
        return sum(r[0] for r in self.store.db.query("SELECT size FROM layers"))

    def disk_usage(self) -> DiskUsage:
        sizes = {r[0]: r[1] for r in self.store.db.query("SELECT chain_id, size FROM layers")}
        shared = self.shared_sizes()
        users: dict[str, int] = {}
        cs = self.containers.list()
        for c in cs:
            users[c.image_id] = users.get(c.image_id, 0) + 1
        images = [ImageUsage(r, shared.get(r.image.id, 0), users.get(r.image.id, 0)) for r in self.images.records()]
        return DiskUsage(sum(sizes.values()), images, cs)

    def shared_sizes(self) -> dict[str, int]:
        """image id -> bytes of its layers that other images use too (``SharedSize``)."""
        from berth.oci.image import chain_ids

        counts = self.store.refcounts()
        sizes = {r[0]: r[1] for r in self.store.db.query("SELECT chain_id, size FROM layers")}
        return {img.id: sum(sizes.get(cid, 0) for cid in chain_ids(img.config.rootfs.diff_ids)
                            if counts.get(cid, 0) > 1) for img in self.store.list()}


def _label_ok(labels: dict[str, str] | None, f: str, want: bool) -> bool:
    k, eq, v = f.partition("=")
    has = k in (labels or {}) and (not eq or (labels or {}).get(k) == v)
    return has == want
