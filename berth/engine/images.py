"""Image operations that involve more than the store: import (stdin or URL), tag, remove
(with the containers that use an image) and history. ``image_files`` has the operations that
move whole images or file systems around (commit, save, load, export, prune, disk usage)."""

from __future__ import annotations

import asyncio
import builtins
from pathlib import Path
from typing import AsyncIterator, Callable

from berth.engine.containers import Containers
from berth.engine.image_changes import apply_changes
from berth.engine.image_records import HistoryEntry, ImageRecord, Removal
from berth.errors import Conflict, InvalidArgument

from berth.image.store import Image, ImageStore, Layer, NoSuchImage, media_type_for, now_rfc3339
from berth.oci import reference
from berth.oci.image import History, ImageConfig, RootFS
from berth.schema.containers import ContainerConfig




class Images:
    def __init__(self, store: ImageStore, containers: Containers, tmp_dir: str):
        self.store = store
        self.containers = containers
        self.tmp_dir = tmp_dir
        self.on_event: Callable[[str, str, dict[str, str]], None] = lambda *a: None

    # -- the read side: what the API lists and inspects -------------------------------------

    def list(self) -> list[Image]:
        return self.store.list()

    def resolve(self, name: str) -> Image:
        """Raises NoSuchImage."""
        return self.store.resolve(name)

    def records(self) -> builtins.list[ImageRecord]:
        """Every image with its tags, repo digests and parent (newest first), in a few queries."""
        tags, digests, parents = self.store.names_by_image()
        return [ImageRecord(img, tags.get(img.id, []), digests.get(img.id, []), parents.get(img.id, ""))
                for img in self.store.list()]

    def record(self, img: Image, layers: bool = False) -> ImageRecord:
        """``img`` with its tags, repo digests, parent and (``layers``) unpacked layer dirs."""
        return ImageRecord(img, self.store.tags_of(img.id), self.store.repo_digests_of(img.id),
                           self.store.parent_of(img.id), list(self.store.lower_dirs(img)) if layers else [])

    async def layer_from_blob(self, blob: str, parent: str | None) -> Layer:
        """Unpack a stored blob (tar, gzip or zstd) as a new layer on ``parent``."""
        def stage() -> tuple[Path, str, int, str | None]:
            st, w = self.store.begin_layer()
            try:
                with self.store.content.open(blob) as f:
                    while b := f.read(1 << 20):
                        w.write(b)
                kind = w.dec.kind
                diff_id, size = w.close()
            except BaseException:
                w.abort()
                self.store.discard_stage(st)
                raise
            return st, diff_id, size, kind
        try:
            st, diff_id, size, kind = await asyncio.to_thread(stage)
        except BaseException:
            if not self.store.blobs_of_digest(blob):
                self.store.content.delete(blob)
            raise
        layer = self.store.commit_layer(st, diff_id, size, parent)
        self.store.record_blob(blob, diff_id, media_type_for(kind), self.store.content.size(blob))
        return layer

    async def import_url(self, url: str, repo: str, tag: str, changes: builtins.list[str], message: str) -> Image:
        if not url.startswith(("http://", "https://")):
            url = "http://" + url
        import urllib.request

        def fetch() -> str:
            ing = self.store.content.ingest()
            try:
                with urllib.request.urlopen(url, timeout=60) as r:
                    while b := r.read(1 << 20):
                        ing.write(b)
            except BaseException as e:
                ing.abort()
                if isinstance(e, OSError):
                    raise InvalidArgument(f"Get \"{url}\": {e}") from None
                raise
            return ing.commit()
        blob = await asyncio.to_thread(fetch)

        async def body() -> AsyncIterator[bytes]:
            with self.store.content.open(blob) as f:
                while b := f.read(1 << 20):
                    yield b
        return await self.import_tar(body(), repo, tag, changes, message, source=url)

    async def import_tar(self, body: AsyncIterator[bytes], repo: str, tag: str, changes: builtins.list[str],
                         message: str, source: str = "-") -> Image:
        ref = None
        if repo:
            ref = reference.parse(f"{repo}:{tag}" if tag else repo)
        cfg = ContainerConfig()
        apply_changes(cfg, changes)
        ing = self.store.content.ingest()
        try:
            async for chunk in body:
                ing.write(chunk)
        except BaseException:
            ing.abort()
            raise
        blob = ing.commit()
        layer = await self.layer_from_blob(blob, None)
        created = now_rfc3339()
        config = ImageConfig(
            created=created, comment=message or None, config=cfg, docker_version="berth",
            rootfs=RootFS(diff_ids=[layer.diff_id]),
            history=[History(created=created, comment=message or f"Imported from {source}")])
        img = self.store.create_image(config, [str(ref)] if ref else [])
        self.on_event("import", img.id, {})
        return img

    def tag(self, name: str, repo: str, tag: str | None) -> None:
        if not repo:
            raise InvalidArgument("repository name must have at least one component")
        self.store.tag(name, repo, tag)
        img = self.store.resolve(name)
        self.on_event("tag", img.id, {"name": reference.parse(f"{repo}:{tag}" if tag else repo).familiar})

    def remove(self, name: str, force: bool) -> builtins.list[Removal]:
        img = self.store.resolve(name)
        tags = self.store.tags_of(img.id)
        by_id = reference.is_image_id(name) or img.id.removeprefix("sha256:").startswith(name.removeprefix("sha256:"))
        named_ref = None
        if not by_id or name in tags:
            try:
                named_ref = reference.parse(name)
            except InvalidArgument:
                named_ref = None
            if named_ref is not None and named_ref.familiar not in tags:
                named_ref = None
        users = self.containers.using_image(img.id)
        out: list[Removal] = []
        if named_ref is not None and len(tags) > 1:
            self.store.untag(str(named_ref))
            self.on_event("untag", img.id, {"name": named_ref.familiar})
            return [Removal(untagged=named_ref.familiar)]
        if named_ref is None and len(tags) > 1 and not force:
            raise Conflict(f"conflict: unable to delete {img.short_id} (must be forced) - image is "
                           "referenced in multiple repositories")
        if users:
            running = [c for c in users if c.running]
            if named_ref is not None and not force:
                raise Conflict(f'conflict: unable to remove repository reference "{name}" '
                               f"(must force) - container {users[0].short_id} is using its referenced image {img.short_id}")
            if named_ref is None and not force:
                raise Conflict(f"conflict: unable to delete {img.short_id} (must be forced) - image is being used "
                               f"by stopped container {users[0].short_id}" if not running else
                               f"conflict: unable to delete {img.short_id} (cannot be forced) - image is being used "
                               f"by running container {running[0].short_id}")
            if running and named_ref is None:
                raise Conflict(f"conflict: unable to delete {img.short_id} (cannot be forced) - image is being "
                               f"used by running container {running[0].short_id}")
            for t in tags:
                self.store.untag(str(reference.parse(t)))
                out.append(Removal(untagged=t))
                self.on_event("untag", img.id, {"name": t})
            return out
        for t in tags:
            out.append(Removal(untagged=t))
            self.on_event("untag", img.id, {"name": t})
        self.store.delete_image(img.id)
        out.append(Removal(deleted=img.id))
        self.on_event("delete", img.id, {})
        return out

    def history(self, name: str) -> builtins.list[HistoryEntry]:
        img = self.store.resolve(name)
        diff_ids = list(img.config.rootfs.diff_ids)
        from berth.oci.image import chain_ids
        chains = chain_ids(diff_ids)
        sizes = []
        for c in chains:
            layer = self.store.layer(c)
            sizes.append(layer.size if layer else 0)
        out: list[HistoryEntry] = []
        layer_i = len(sizes) - 1
        hist = img.config.history or [History(created=img.created)]
        for i, h in enumerate(reversed(hist)):
            size = 0
            if not h.empty_layer and layer_i >= 0:
                size = sizes[layer_i]
                layer_i -= 1
            out.append(HistoryEntry(img.id if i == 0 else "<missing>", _unix(h.created or img.created),
                                    h.created_by or "", self.store.tags_of(img.id) if i == 0 else [], size,
                                    h.comment or ""))
        return out


def _unix(t: str) -> int:
    from berth.engine.logs import parse_time
    try:
        return int(parse_time(t) or 0)
    except InvalidArgument:
        return 0


_ = NoSuchImage
