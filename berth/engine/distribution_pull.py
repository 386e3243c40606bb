"""Pull: manifest (an index picks this host's platform) -> config -> every missing layer is
downloaded in parallel and, as its bytes arrive, written to the content store, hashed,
checked and unpacked into staging (content.py, unpack.py). Layers are committed in order,
then the image row and its tag in one transaction: a crash leaves at most unused layers,
never a half-visible image. Mirrors (for Docker Hub) are tried first."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from berth.engine.progress import Progress
from berth.engine.shared_pull import SharedFlights
from berth.errors import InvalidArgument, NotFound
from berth.image.content import DigestMismatch
from berth.image.store import Image, ImageStore
from berth.oci import manifest as mf
from berth.oci import reference
from berth.oci.image import chain_ids, decode_config, digest
from berth.registry.client.auth import Credentials
from berth.registry.client.options import Options, api_host

TYPE_CHECKING = False
if TYPE_CHECKING:
    from berth.registry.client.session import Registry

log = logging.getLogger("berth.distribution")

CONFIG_LIMIT = 8 << 20


@dataclass
class Endpoint:
    registry: Registry
    mirror: bool


class Puller:
    def __init__(self, store: ImageStore, opts: Options, on_event: Callable[[str, str, dict[str, str]], None]):
        self.store = store
        self.opts = opts
        self.on_event = on_event
        self.pulls: SharedFlights[Image] = SharedFlights()

    def endpoints(self, domain: str, creds: Credentials | None, push: bool = False) -> list[Endpoint]:
        from berth.registry.client.session import Registry
        out: list[Endpoint] = []
        if domain == reference.DEFAULT_DOMAIN and not push:
            from urllib.parse import urlsplit
            for m in self.opts.mirrors:
                u = urlsplit(m if "://" in m else f"https://{m}")
                out.append(Endpoint(Registry(u.netloc, None, self.opts, u.scheme, u.path), True))
        out.append(Endpoint(Registry(api_host(domain), creds, self.opts), False))
        return out

    async def pull(self, name: str, tag: str, creds: Credentials | None, platform: str | None,
                   out: Progress) -> Image:
        """Pull an image, or join the pull of it already in flight; a pull no client waits
        for any more is cancelled (``shared_pull``)."""
        if tag and "@" not in name:
            name = f"{name}@{tag}" if tag.startswith("sha256:") else f"{name}:{tag}"
        ref = reference.parse(name)
        want = mf.parse_platform(platform) if platform else mf.host_platform()
        key = (str(ref), str(want), repr(creds))
        return await self.pulls.run(key, lambda emit: self._pull(ref, creds, want, Progress(out.loop, emit)),
                                    out.sink)

    async def _pull(self, ref: reference.Reference, creds: Credentials | None, want: mf.Platform,
                    out: Progress) -> Image:
        from berth.registry.client.session import RegistryDenied, RegistryNotFound, RegistryUnavailable
        eps = self.endpoints(ref.domain, creds)
        last: BaseException | None = None
        for i, ep in enumerate(eps):
            try:
                return await self._pull_from(ep.registry, ref, want, out)
            except (RegistryNotFound, RegistryUnavailable, RegistryDenied) as e:
                if not ep.mirror:
                    raise self._pull_error(ref, e) from None
                log.info("mirror %s failed for %s: %s", ep.registry.host, ref, e)
                last = e
            except asyncio.CancelledError:
                ep.registry.abort()  # nobody waits: hang up on the registry
                raise
            finally:
                ep.registry.close()
        raise self._pull_error(ref, last or NotFound("no endpoint"))

    @staticmethod
    def _pull_error(ref: reference.Reference, e: BaseException) -> BaseException:
        from berth.registry.client.session import RegistryDenied, RegistryNotFound
        if isinstance(e, RegistryNotFound) and e.code in ("MANIFEST_UNKNOWN", "NOT_FOUND", "NAME_UNKNOWN", ""):
            if e.code == "NAME_UNKNOWN":
                return PullDenied(f"pull access denied for {ref.familiar_repository}, repository does not exist "
                                  f"or may require 'docker login': {e}")
            return ManifestNotFound(f"manifest for {ref.familiar} not found: {e}")
        if isinstance(e, RegistryDenied):
            return PullDenied(f"pull access denied for {ref.familiar_repository}, repository does not exist or "
                              f"may require 'docker login': {e}")
        return e

    async def _pull_from(self, reg: Registry, ref: reference.Reference, want: mf.Platform,
                         out: Progress) -> Image:
        repo = ref.path
        mref = ref.digest or ref.tag or "latest"
        top, mt, header = await asyncio.to_thread(reg.get_manifest, repo, mref, mf.ACCEPT)
        top_digest = digest(top)
        if ref.digest and top_digest != ref.digest:
            raise DigestMismatch(f"manifest verification failed for digest {ref.digest}")
        verify_content_digest(top, header)
        kind = mf.kind_of(top, mt)
        body = top
        if kind in mf.INDEXES:
            desc = mf.choose(mf.decode_index(top), want)
            body, mt, header = await asyncio.to_thread(reg.get_manifest, repo, desc.digest, mf.ACCEPT)
            if digest(body) != desc.digest:
                raise DigestMismatch(f"manifest verification failed for digest {desc.digest}")
            verify_content_digest(body, header)
            kind = mf.kind_of(body, mt)
            if kind not in mf.IMAGE_MANIFESTS:
                raise InvalidArgument(f"manifest {desc.digest} of the list is not an image manifest")
        m = mf.decode_manifest(body)
        out.status(f"Pulling from {ref.path}", ref.digest or ref.tag)
        if m.config.size > CONFIG_LIMIT:
            raise InvalidArgument(f"image config {m.config.digest} is too large")
        iid = m.config.digest
        try:
            img: Image | None = self.store.get_by_id(iid)
        except NotFound:
            img = None
        tagged = str(ref) if ref.tag else None
        before = None
        if tagged:
            row = self.store.db.one("SELECT image_id FROM tags WHERE name=?", (tagged,))
            before = row[0] if row else None
        if img is None:
            for d in (m.config, *m.layers):
                mf.check_blob_media_type(d.mediaType)
            raw = await asyncio.to_thread(reg.get_blob, repo, iid, m.config.size)
            if digest(raw) != iid:
                raise DigestMismatch(f"image config verification failed for digest {iid}")
            config = decode_config(raw)
            if config.os and config.os != want.os or (platform_strict(want) and config.architecture != want.architecture):
                raise NotFound(f"image with reference {ref.familiar} was found but does not match the specified "
                               f"platform: wanted {want}, actual: {config.os}/{config.architecture}")
            layers = [d for d in m.layers if d.mediaType not in (mf.MT_DOCKER_FOREIGN,)]
            diff_ids = list(config.rootfs.diff_ids)
            if len(layers) != len(diff_ids):
                raise InvalidArgument(f"image {ref.familiar}: {len(layers)} layers in the manifest but "
                                      f"{len(diff_ids)} diff IDs in the config")
            await self._fetch_layers(reg, repo, layers, diff_ids, out)
            img = self.store.create_image(config, [tagged] if tagged else [], raw=raw)
            self.on_event("pull", img.id, {"name": ref.familiar})
        elif tagged:
            with self.store.db.tx() as c:
                self.store._tag_in(c, iid, tagged)
        self.store.add_repo_digest(iid, f"{ref.repository}@{top_digest}")
        out.status(f"Digest: {top_digest}")
        word = "Image is up to date for" if before == iid else "Downloaded newer image for"
        out.status(f"Status: {word} {ref.familiar}")
        return img

    async def _fetch_layers(self, reg: Registry, repo: str, layers: list[mf.Descriptor], diff_ids: list[str],
                            out: Progress) -> None:
        chains = chain_ids(diff_ids)
        todo: list[int] = []
        for i, d in enumerate(layers):
            if self.store.layer(chains[i]) is not None:
                out.status("Already exists", d.digest.removeprefix("sha256:")[:12], detail=True)
            else:
                out.status("Pulling fs layer", d.digest.removeprefix("sha256:")[:12], detail=True)
                todo.append(i)
        if not todo:
            return
        from concurrent.futures import ThreadPoolExecutor
        abort = threading.Event()
        loop = asyncio.get_running_loop()
        pool = ThreadPoolExecutor(max_workers=min(self.opts.max_downloads, len(todo)), thread_name_prefix="pull")
        futs = {i: loop.run_in_executor(pool, self._download, reg, repo, layers[i], diff_ids[i], out, abort)
                for i in todo}
        try:
            for i in todo:
                stage, diff_id, size = await asyncio.shield(futs[i])
                parent = chains[i - 1] if i else None
                try:
                    self.store.commit_layer(stage, diff_id, size, parent)
                finally:
                    self.store.discard_stage(stage)
                d = layers[i]
                self.store.record_blob(d.digest, diff_id, d.mediaType, d.size)
                self.store.add_source(d.digest, f"{reg.host}/{repo}")
                out.status("Pull complete", d.digest.removeprefix("sha256:")[:12], detail=True)
        except BaseException:
            abort.set()
            reg.abort()  # wake the downloads blocked on the registry
            for f in futs.values():
                try:
                    stage, _, _ = await asyncio.shield(f)
                    self.store.discard_stage(stage)
                except BaseException:
                    pass
            raise
        finally:
            pool.shutdown(wait=False)

    def _download(self, reg: Registry, repo: str, d: mf.Descriptor, diff_id: str, out: Progress,
                  abort: threading.Event) -> tuple[Path, str, int]:
        from berth.registry.client.session import copy_to
        ident = d.digest.removeprefix("sha256:")[:12]
        stage, writer = self.store.begin_layer()
        ok = False
        try:
            have = self.store.content.exists(d.digest)
            ing = None if have else self.store.content.ingest(d.digest, d.size)
            try:
                if have:
                    with self.store.content.open(d.digest) as f:
                        while b := f.read(1 << 20):
                            writer.write(b)
                    out.bar("Downloading", ident, d.size, d.size, force=True)
                else:
                    assert ing is not None
                    sink = ing

                    def write(b: bytes) -> None:
                        if abort.is_set():
                            raise _Aborted()
                        sink.write(b)
                        writer.write(b)
                    r = reg.open_blob(repo, d.digest)
                    try:
                        copy_to(r, write, d.size, progress=lambda n: out.bar("Downloading", ident, n, d.size))
                    finally:
                        r.close()
                    out.bar("Downloading", ident, ing.size, d.size, force=True)
                    out.status("Verifying Checksum", ident, detail=True)
                    try:
                        ing.commit()
                    except DigestMismatch:
                        ing = None
                        raise DigestMismatch(f"filesystem layer verification failed for digest {d.digest}") from None
                    ing = None
                out.status("Download complete", ident, detail=True)
                out.bar("Extracting", ident, d.size, d.size, force=True)
                got, size = writer.close()
            except BaseException:
                if ing is not None:
                    ing.abort()
                writer.abort()
                raise
            if got != diff_id:
                raise DigestMismatch(f"layer {d.digest}: diff ID {got} does not match the image config's {diff_id}")
            ok = True
            return stage, got, size
        finally:
            if not ok:
                self.store.discard_stage(stage)


def verify_content_digest(body: bytes, header: str) -> None:
    """A registry's ``Docker-Content-Digest`` must name the manifest bytes it sent.

    dockerd resolves a tag to that digest and then checks the fetched bytes against it; a
    mismatch fails the pull (containerd's content-store wording) before anything is stored.
    """
    if not header:
        return
    algo, _, hexd = header.partition(":")
    if algo not in ("sha256", "sha384", "sha512") or not hexd:
        raise DigestMismatch(f"invalid Docker-Content-Digest {header!r}: unsupported digest algorithm")
    actual = f"{algo}:{hashlib.new(algo, body).hexdigest()}"
    if actual != header:
        raise DigestMismatch(f'failed commit on ref "manifest-{header}": unexpected commit digest {actual}, '
                             f"expected {header}: failed precondition")


def platform_strict(want: mf.Platform) -> bool:
    return False


class _Aborted(Exception):
    pass


class ManifestNotFound(NotFound):
    pass


class PullDenied(NotFound):
    """Docker answers 404 for ``pull access denied``."""
