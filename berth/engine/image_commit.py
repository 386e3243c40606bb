"""``docker commit``: a container's writable layer becomes a new image on top of its own,
with the container's config (merged with the request's, and ``--change`` applied)."""

from __future__ import annotations

import asyncio

from berth.engine import container_userns
from berth.engine.image_changes import apply_changes, container_config, copy_config, fill_from
from berth.errors import InvalidArgument
from berth.image.store import Image, now_rfc3339
from berth.oci import reference
from berth.oci.image import History, ImageConfig, RootFS
from berth.schema.containers import ContainerConfig

TYPE_CHECKING = False
if TYPE_CHECKING:
    from berth.engine.images import Images


class Committer:
    def __init__(self, images: Images):
        self.images = images
        self.store = images.store
        self.containers = images.containers

    async def commit(self, container: str, repo: str, tag: str, comment: str, author: str,
                     changes: list[str], config: ContainerConfig | None, pause: bool) -> Image:
        from berth.image.archive import diff_tar

        c = self.containers.get(container)
        base = self.store.get_by_id(c.image_id)
        ref = None
        if repo:
            ref = reference.parse(f"{repo}:{tag}" if tag else repo)
            if ref.digest:
                raise InvalidArgument("refusing to create a tag with a digest reference")
        upper = self.containers.data.container(c.id).upper
        maps = container_userns.maps_for(c.id, c.host_config, self.containers.userns)
        paused = False
        pause_fn = getattr(self.containers, "pause", None)
        if pause and c.running and pause_fn is not None and c.state.status.value == "running":
            try:
                await pause_fn(c.id)
                paused = True
            except Exception:  # pausing is best effort (no freezer in this cgroup setup)
                paused = False
        try:
            def write() -> str:
                ing = self.store.content.ingest()
                try:
                    diff_tar(upper, ing, maps.container_ids if maps else None)  # type: ignore[arg-type]
                except BaseException:
                    ing.abort()
                    raise
                return ing.commit()
            blob = await asyncio.to_thread(write)
        finally:
            if paused:
                await self.containers.unpause(c.id)
        top = base.top
        layer = await self.images.layer_from_blob(blob, top)
        cfg = copy_config(config) if config is not None else copy_config(c.config)
        if config is not None:
            fill_from(cfg, c.config)
        cfg.Hostname = cfg.Hostname if config is not None else c.config.Hostname
        apply_changes(cfg, changes)
        created = now_rfc3339()
        old = base.config
        created_by = " ".join([c.path, *c.args])
        hist = list(old.history) + [History(created=created, created_by=created_by, author=author or None,
                                            comment=comment or None)]
        new = ImageConfig(architecture=old.architecture, os=old.os, created=created, author=author or None,
                          comment=comment or None, config=cfg, docker_version="berth", variant=old.variant,
                          container=c.id, container_config=container_config(c.config),
                          rootfs=RootFS(diff_ids=list(old.rootfs.diff_ids) + [layer.diff_id]), history=hist)
        img = self.store.create_image(new, [str(ref)] if ref else [])
        self.store.set_parent(img.id, base.id)  # dockerd: the container's image is the parent
        self.images.on_event("commit", img.id, {"comment": comment})
        return img
