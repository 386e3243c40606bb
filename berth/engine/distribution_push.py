"""Push: every layer's compressed blob (gzipped once and kept when only an uncompressed one is
stored) is uploaded in parallel, or cross-mounted from a repository of the same registry it
came from, then the config and a manifest for each tag."""

from __future__ import annotations

import asyncio
import json
from typing import Callable, Iterator

from berth.engine.progress import Progress
from berth.errors import InvalidArgument, NotFound, PermissionDenied
from berth.image.store import Image, ImageStore
from berth.oci import manifest as mf
from berth.oci import reference
from berth.oci.image import digest
from berth.registry.client.auth import Credentials
from berth.registry.client.options import Options, api_host

TYPE_CHECKING = False
if TYPE_CHECKING:
    from berth.registry.client.session import Registry



class Pusher:
    def __init__(self, store: ImageStore, opts: Options, on_event: Callable[[str, str, dict[str, str]], None]):
        self.store = store
        self.opts = opts
        self.on_event = on_event

    async def push(self, name: str, tag: str, creds: Credentials | None, out: Progress) -> None:
        ref = reference.parse(name, default_tag=False)
        if ref.digest:
            raise InvalidArgument("cannot push a digest reference")
        tags = [tag] if tag else ([ref.tag] if ref.tag else [])
        repo_ref = reference.Reference(ref.domain, ref.path)
        if not tags:
            prefix = f"{ref.repository}:"
            tags = sorted(r[0][len(prefix):] for r in
                          self.store.db.query("SELECT name FROM tags WHERE name LIKE ?", (prefix + "%",)))
            if not tags:
                raise NotFound(f"An image does not exist locally with the tag: {ref.familiar_repository}")
        from berth.registry.client.session import Registry, RegistryDenied
        images = []
        for t in tags:
            try:
                images.append((t, self.store.resolve(str(reference.Reference(ref.domain, ref.path, t)))))
            except NotFound:
                raise NotFound(f"An image does not exist locally with the tag: "
                               f"{reference.Reference(ref.domain, ref.path, t).familiar_repository}") from None
        reg = Registry(api_host(ref.domain), creds, self.opts)
        try:
            out.status(f"The push refers to repository [{repo_ref.repository}]")
            for t, img in images:
                await self._push_one(reg, ref, t, img, out)
        except RegistryDenied as e:
            raise PushDenied(f"{e}") from None
        finally:
            reg.close()

    async def _push_one(self, reg: Registry, ref: reference.Reference, tag: str, img: Image, out: Progress) -> None:
        repo = ref.path
        diff_ids = list(img.config.rootfs.diff_ids)
        for d in reversed(diff_ids):
            out.status("Preparing", d.removeprefix("sha256:")[:12], detail=True)
        from concurrent.futures import ThreadPoolExecutor
        blobs = [await asyncio.to_thread(self._push_blob_for, d) for d in diff_ids]
        loop = asyncio.get_running_loop()
        pool = ThreadPoolExecutor(max_workers=self.opts.max_uploads, thread_name_prefix="push")
        try:
            futs = [loop.run_in_executor(pool, self._upload_layer, reg, ref, d, b, out)
                    for d, b in zip(diff_ids, blobs)]
            await asyncio.gather(*futs)
        finally:
            pool.shutdown(wait=False)
        cfg = img.config_bytes
        await asyncio.to_thread(self._upload_bytes, reg, repo, img.id, cfg)
        oci = any(mt in (mf.MT_OCI_LAYER_ZSTD, mf.MT_OCI_LAYER) for _, mt, _ in blobs)
        media_type = mf.MT_OCI_MANIFEST if oci else mf.MT_DOCKER_MANIFEST
        doc = {"schemaVersion": 2,
               "mediaType": media_type,
               "config": {"mediaType": mf.MT_OCI_CONFIG if oci else mf.MT_DOCKER_CONFIG,
                          "size": len(cfg), "digest": img.id},
               "layers": [{"mediaType": mt, "size": n, "digest": dg} for dg, mt, n in blobs]}
        body = json.dumps(doc, indent=3, separators=(",", ": ")).encode()
        mdigest = await asyncio.to_thread(reg.put_manifest, repo, tag, body, media_type)
        mdigest = mdigest or digest(body)
        self.store.add_repo_digest(img.id, f"{ref.repository}@{mdigest}")
        out.status(f"{tag}: digest: {mdigest} size: {len(body)}")
        out.emit({"progressDetail": {}, "aux": {"Tag": tag, "Digest": mdigest, "Size": len(body)}})
        self.on_event("push", img.id, {"name": f"{ref.familiar_repository}:{tag}"})

    def _push_blob_for(self, diff_id: str) -> tuple[str, str, int]:
        """The compressed blob to push for a layer; an uncompressed one is gzipped once and kept."""
        blobs = self.store.blobs_of(diff_id)
        for pref in (mf.MT_DOCKER_LAYER, mf.MT_OCI_LAYER_GZIP, mf.MT_OCI_LAYER_ZSTD):
            for b in blobs:
                if b[1] == pref:
                    return b
        if not blobs:
            raise NotFound(f"layer {diff_id} has no stored blob to push")
        import zlib
        src = blobs[0][0]
        ing = self.store.content.ingest()
        comp = zlib.compressobj(6, zlib.DEFLATED, 31)
        try:
            with self.store.content.open(src) as f:
                while chunk := f.read(1 << 20):
                    ing.write(comp.compress(chunk))
            ing.write(comp.flush())
        except BaseException:
            ing.abort()
            raise
        size = ing.size
        d = ing.commit()
        self.store.record_blob(d, diff_id, mf.MT_DOCKER_LAYER, size)
        return d, mf.MT_DOCKER_LAYER, size

    def _upload_layer(self, reg: Registry, ref: reference.Reference, diff_id: str, blob: tuple[str, str, int],
                      out: Progress) -> None:
        repo = ref.path
        ident = diff_id.removeprefix("sha256:")[:12]
        d, _, size = blob
        if reg.blob_exists(repo, d):
            out.status("Layer already exists", ident, detail=True)
            self.store.add_source(d, f"{reg.host}/{repo}")
            return
        mount_from = None
        for src in self.store.sources_of(d):
            host, _, srepo = src.partition("/")
            if host == reg.host and srepo != repo:
                mount_from = srepo
                break
        loc = reg.start_upload(repo, d, mount_from)
        if loc is None:
            out.status(f"Mounted from {reference.Reference(ref.domain, mount_from or '').familiar_repository}",
                       ident, detail=True)
            self.store.add_source(d, f"{reg.host}/{repo}")
            return
        sent = 0

        def chunks() -> Iterator[bytes]:
            nonlocal sent
            with self.store.content.open(d) as f:
                while b := f.read(512 * 1024):
                    sent += len(b)
                    out.bar("Pushing", ident, sent, size)
                    yield b
        reg.upload(repo, loc, d, chunks())
        out.bar("Pushing", ident, sent, size, force=True)
        out.status("Pushed", ident, detail=True)
        self.store.add_source(d, f"{reg.host}/{repo}")

    @staticmethod
    def _upload_bytes(reg: Registry, repo: str, d: str, data: bytes) -> None:
        if reg.blob_exists(repo, d):
            return
        loc = reg.start_upload(repo, d, None)
        assert loc is not None
        reg.upload(repo, loc, d, [data])


class PushDenied(PermissionDenied):
    pass
