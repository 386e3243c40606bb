"""Pull, push and login: the image store on one side, a registry on the other.

The progress stream repeats Docker's messages (reference/wire/13-pull.md, 17-pull-layers.md,
11-push.md) so the docker CLI draws its bars. Transfers run in threads (the registry client
is synchronous); each thread posts its progress through ``Progress.emit``, which is safe to
call from any thread.

Pull: manifest (an index picks this host's platform) -> config -> every missing layer is
downloaded in parallel and, as its bytes arrive, written to the content store, hashed,
checked and unpacked into staging (content.py, unpack.py). Layers are committed in order,
then the image row and its tag in one transaction: a crash leaves at most unused layers,
never a half-visible image.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from berth.errors import InvalidArgument, NotFound, PermissionDenied, Unavailable
from berth.image.content import DigestMismatch
from berth.engine.shared_pull import SharedFlights
from berth.image.store import Image, ImageStore
from berth.oci import manifest as mf
from berth.oci import reference
from berth.oci.image import chain_ids, decode_config, digest
from berth.registry.client.auth import Credentials as Credentials  # re-exported: the API builds them
from berth.registry.client.auth import decode_registry_auth
from berth.registry.client.options import Options, api_host

TYPE_CHECKING = False
if TYPE_CHECKING:
    from berth.registry.client.session import Registry

log = logging.getLogger("berth.distribution")

CONFIG_LIMIT = 8 << 20


# -- progress -------------------------------------------------------------------------------------


def _human(n: float) -> str:
    units = ("B", "kB", "MB", "GB", "TB", "PB")
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n /= 1000
        i += 1
    return "%.4g%s" % (n, units[i])


def progress_bar(current: int, total: int) -> str:
    """Docker's JSONProgress.String() at the daemon's width (200 columns, no time left)."""
    if current <= 0 and total <= 0:
        return ""
    if total <= 0:
        return "%8s" % _human(current)
    pct = min(int(current / total * 100) // 2, 50)
    bar = "[" + "=" * pct + ">" + " " * max(50 - pct, 0) + "] "
    nums = "%8s/%s" % (_human(current), _human(total)) if current <= total else "%8s" % _human(current)
    return bar + nums


def credentials(registry_auth: str | None) -> Credentials:
    """The credentials an ``X-Registry-Auth`` header carries (base64url JSON; none if absent).
    Raises InvalidArgument."""
    return decode_registry_auth(registry_auth)


class Progress:
    """Collects JSON messages from any thread for one streaming response."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sink: Callable[[dict[str, Any]], None]):
        self.loop = loop
        self.sink = sink
        self._last: dict[str, float] = {}

    def emit(self, msg: dict[str, Any]) -> None:
        if threading.current_thread() is threading.main_thread():
            self.sink(msg)
        else:
            self.loop.call_soon_threadsafe(self.sink, msg)

    def status(self, status: str, ident: str | None = None, detail: bool = False) -> None:
        m: dict[str, Any] = {"status": status}
        if detail:
            m["progressDetail"] = {}
        if ident:
            m["id"] = ident
        self.emit(m)

    def bar(self, status: str, ident: str, current: int, total: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last.get(ident, 0) < 0.1:
            return
        self._last[ident] = now
        self.emit({"status": status, "progressDetail": {"current": current, "total": total},
                   "progress": progress_bar(current, total), "id": ident})


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


# -- endpoints ------------------------------------------------------------------------------------


@dataclass
class Endpoint:
    registry: Registry
    mirror: bool


class Distribution:
    def __init__(self, store: ImageStore, opts: Options | None = None):
        self.store = store
        self.opts = opts or Options()
        self.on_event: Callable[[str, str, dict[str, str]], None] = lambda *a: None
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

    # -- pull -------------------------------------------------------------------------------

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

                    def write(b: bytes) -> None:
                        if abort.is_set():
                            raise _Aborted()
                        ing.write(b)
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

    # -- push -------------------------------------------------------------------------------

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
        doc = {"schemaVersion": 2,
               "mediaType": mf.MT_OCI_MANIFEST if oci else mf.MT_DOCKER_MANIFEST,
               "config": {"mediaType": mf.MT_OCI_CONFIG if oci else mf.MT_DOCKER_CONFIG,
                          "size": len(cfg), "digest": img.id},
               "layers": [{"mediaType": mt, "size": n, "digest": dg} for dg, mt, n in blobs]}
        body = json.dumps(doc, indent=3, separators=(",", ": ")).encode()
        mdigest = await asyncio.to_thread(reg.put_manifest, repo, tag, body, doc["mediaType"])  # type: ignore[arg-type]
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
                while b := f.read(1 << 20):
                    ing.write(comp.compress(b))
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

        def chunks():  # type: ignore[no-untyped-def]
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

    # -- login ------------------------------------------------------------------------------

    def login(self, creds: Credentials) -> dict[str, str]:
        server = creds.serveraddress or "docker.io"
        host = server.removeprefix("https://").removeprefix("http://").split("/", 1)[0]
        if host in ("index.docker.io", "docker.io", ""):
            host = "registry-1.docker.io"
        from berth.registry.client.session import Registry, RegistryDenied, RegistryError
        reg = Registry(host, creds, self.opts)
        try:
            reg.ping()
        except RegistryDenied:
            raise LoginFailed(f"login attempt to {reg.base()}/v2/ failed with status: 401 Unauthorized") from None
        except RegistryError as e:
            raise Unavailable(f"Get \"{reg.base() if reg.scheme else 'https://' + host}/v2/\": {e}") from None
        finally:
            reg.close()
        return {"Status": "Login Succeeded", "IdentityToken": ""}


def platform_strict(want: mf.Platform) -> bool:
    return False


class _Aborted(Exception):
    pass


class ManifestNotFound(NotFound):
    pass


class PullDenied(NotFound):
    """Docker answers 404 for ``pull access denied``."""


class PushDenied(PermissionDenied):
    pass


class LoginFailed(PermissionDenied):
    pass


_ = hashlib
