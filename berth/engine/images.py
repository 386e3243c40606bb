"""Image operations that involve more than the store: import (stdin or URL), tag, remove
(with the containers that use an image), history, commit, save/load (docker-save tars with
OCI layout), export, prune, disk usage, and the ``--change`` instructions."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import os
import shlex
import shutil
import tempfile
from pathlib import Path
from typing import Any, AsyncGenerator, AsyncIterator, BinaryIO, Callable, Iterator

from berth.engine.containers import Containers
from berth.engine.image_records import DiskUsage, HistoryEntry, ImageRecord, ImageUsage, PruneReport, Removal
from berth.errors import Conflict, InvalidArgument, NotFound

from berth.image.store import Image, ImageStore, Layer, NoSuchImage, media_type_for, now_rfc3339
from berth.oci import reference
from berth.oci.image import History, ImageConfig, RootFS
from berth.schema.containers import ContainerConfig


def apply_changes(cfg: ContainerConfig, changes: list[str]) -> None:
    """Dockerfile instructions allowed by ``import --change`` / ``commit --change``."""
    for change in changes:
        change = change.strip()
        if not change:
            continue
        word, _, rest = change.partition(" ")
        word = word.upper()
        rest = rest.strip()
        if word in ("CMD", "ENTRYPOINT", "SHELL"):
            if rest.startswith("["):
                try:
                    val = json.loads(rest)
                except ValueError:
                    val = ["/bin/sh", "-c", rest]
            else:
                val = ["/bin/sh", "-c", rest]
            if word == "CMD":
                cfg.Cmd = val
            elif word == "ENTRYPOINT":
                cfg.Entrypoint = val
            else:
                cfg.Shell = val
        elif word == "ENV":
            env = {e.split("=", 1)[0]: e for e in (cfg.Env or [])}
            if "=" in rest.split(" ", 1)[0]:
                for part in shlex.split(rest):
                    k, _, v = part.partition("=")
                    env[k] = f"{k}={v}"
            else:
                k, _, v = rest.partition(" ")
                env[k] = f"{k}={v.strip()}"
            cfg.Env = list(env.values())
        elif word == "LABEL":
            labels = dict(cfg.Labels or {})
            for part in shlex.split(rest):
                k, _, v = part.partition("=")
                labels[k] = v
            cfg.Labels = labels
        elif word == "EXPOSE":
            ports = dict(cfg.ExposedPorts or {})
            for p in rest.split():
                ports[p if "/" in p else f"{p}/tcp"] = {}
            cfg.ExposedPorts = ports
        elif word == "VOLUME":
            vols = dict(cfg.Volumes or {})
            for v in (json.loads(rest) if rest.startswith("[") else rest.split()):
                vols[v] = {}
            cfg.Volumes = vols
        elif word == "USER":
            cfg.User = rest
        elif word == "WORKDIR":
            cfg.WorkingDir = rest
        elif word == "STOPSIGNAL":
            cfg.StopSignal = rest
        elif word == "ONBUILD":
            cfg.OnBuild = (cfg.OnBuild or []) + [rest]
        else:
            raise InvalidArgument(f"{word} is not a valid change command")


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
                raise Conflict(f'conflict: unable to remove repository reference "{named_ref.familiar}" '
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


class ImageFiles:
    """commit, save, load, export, prune and disk usage: the parts of ``Images`` that move
    whole images or file systems around."""

    def __init__(self, images: Images):
        self.images = images
        self.store = images.store
        self.containers = images.containers

    # -- commit -----------------------------------------------------------------------------

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
                    diff_tar(upper, ing)  # type: ignore[arg-type]
                except BaseException:
                    ing.abort()
                    raise
                return ing.commit()
            blob = await asyncio.to_thread(write)
        finally:
            if paused:
                await self.containers.unpause(c.id)  # type: ignore[attr-defined]
        top = base.top
        layer = await self.images.layer_from_blob(blob, top)
        cfg = msgspec_copy(config) if config is not None else msgspec_copy(c.config)
        if config is not None:
            _fill_from(cfg, c.config)
        cfg.Hostname = cfg.Hostname if config is not None else c.config.Hostname
        apply_changes(cfg, changes)
        created = now_rfc3339()
        old = base.config
        created_by = " ".join([c.path, *c.args])
        hist = list(old.history) + [History(created=created, created_by=created_by, author=author or None,
                                            comment=comment or None)]
        new = ImageConfig(architecture=old.architecture, os=old.os, created=created, author=author or None,
                          comment=comment or None, config=cfg, docker_version="berth", variant=old.variant,
                          container=c.id, container_config=_container_config(c.config),
                          rootfs=RootFS(diff_ids=list(old.rootfs.diff_ids) + [layer.diff_id]), history=hist)
        img = self.store.create_image(new, [str(ref)] if ref else [])
        self.store.set_parent(img.id, base.id)  # dockerd: the container's image is the parent
        self.images.on_event("commit", img.id, {"comment": comment})
        return img

    # -- save / load ------------------------------------------------------------------------

    def save(self, names: list[str], out: BinaryIO) -> None:
        """Write a docker-save tar of the images ``names`` to ``out`` (sync)."""
        from berth.image.archive import SaveImage, write_save
        from berth.image.unpack import Decompressor

        wanted: dict[str, SaveImage] = {}
        for n in names:
            img = self.store.resolve(n)
            tags: list[str] = []
            by_id = reference.is_image_id(n) or (
                all(ch in "0123456789abcdef" for ch in n.removeprefix("sha256:"))
                and img.id.removeprefix("sha256:").startswith(n.removeprefix("sha256:"))
                and n not in self.store.tags_of(img.id) and f"{n}:latest" not in self.store.tags_of(img.id))
            if not by_id:
                r = reference.parse(n)
                if r.tag and r.familiar in self.store.tags_of(img.id):
                    tags = [str(r)]
            e = wanted.get(img.id)
            if e is None:
                wanted[img.id] = SaveImage(img.config_bytes, img.id, list(img.config.rootfs.diff_ids), tags,
                                           self._open_layer)
            else:
                e.tags += [t for t in tags if t not in e.tags]
        write_save(out, list(wanted.values()), lambda t: reference.parse(t).familiar)
        _ = Decompressor

    def _open_layer(self, diff_id: str) -> tuple[BinaryIO, int]:
        """The layer's exact uncompressed tar, from its stored blob, in a temp file."""
        import hashlib
        from berth.image.unpack import Decompressor

        blobs = self.store.blobs_of(diff_id)
        if not blobs:
            raise NotFound(f"layer {diff_id} has no stored blob; it cannot be saved")
        tmp = tempfile.TemporaryFile(dir=self.images.tmp_dir)
        dec = Decompressor()
        h = hashlib.sha256()
        with self.store.content.open(blobs[0][0]) as f:
            while b := f.read(1 << 20):
                raw = dec.feed(b)
                h.update(raw)
                tmp.write(raw)
        raw = dec.close()
        h.update(raw)
        tmp.write(raw)
        if "sha256:" + h.hexdigest() != diff_id:
            tmp.close()
            raise InvalidArgument(f"layer {diff_id}: stored blob does not match its diff ID")
        size = tmp.tell()
        tmp.seek(0)
        return tmp, size  # type: ignore[return-value]

    async def load(self, path: str, emit: Callable[[dict[str, object]], None]) -> list[str]:
        """Load a docker-save tar (a file); returns the messages' image names."""
        import tarfile

        from berth.image.archive import read_save
        from berth.oci.image import chain_ids, decode_config, digest

        try:
            tar = await asyncio.to_thread(tarfile.open, path, "r:*")
        except tarfile.TarError:
            raise InvalidArgument(_untar_error(path)) from None
        loaded: list[str] = []
        try:
            try:
                entries = await asyncio.to_thread(read_save, tar)
            except tarfile.TarError:
                raise InvalidArgument(_untar_error(path)) from None
            for e in entries:
                cfg = decode_config(e.config)
                diff_ids = list(cfg.rootfs.diff_ids)
                if len(diff_ids) != len(e.layers):
                    raise InvalidArgument("invalid archive: layers do not match the image config's diff IDs")
                chains = chain_ids(diff_ids)
                for i, member in enumerate(e.layers):
                    if self.store.layer(chains[i]) is not None:
                        continue

                    def spool(member: str = member) -> str:
                        try:
                            f = tar.extractfile(member.removeprefix("./"))
                        except KeyError:
                            f = None
                        if f is None:
                            raise InvalidArgument(f"invalid archive: layer {member} is missing")
                        return self.store.content.put_file(f)  # type: ignore[arg-type]
                    blob = await asyncio.to_thread(spool)
                    layer = await self.images.layer_from_blob(blob, chains[i - 1] if i else None)
                    if layer.diff_id != diff_ids[i]:
                        raise InvalidArgument(f"invalid archive: layer {member} has diff ID {layer.diff_id}, "
                                              f"the config says {diff_ids[i]}")
                tags = []
                for t in e.tags:
                    try:
                        tags.append(str(reference.parse(t)))
                    except InvalidArgument:
                        raise InvalidArgument(f"invalid reference {t!r} in archive") from None
                before = {t: self.store.db.one("SELECT image_id FROM tags WHERE name=?", (t,)) for t in tags}
                img = self.store.create_image(cfg, tags, raw=e.config)
                assert img.id == digest(e.config)
                for t in tags:
                    prev = before[t]
                    fam = reference.parse(t).familiar
                    if prev and prev[0] != img.id:
                        emit({"stream": f"The image {fam} already exists, renaming the old one with ID "
                                        f"{prev[0]} to empty string\n"})
                    emit({"stream": f"Loaded image: {fam}\n"})
                    loaded.append(fam)
                if not tags:
                    emit({"stream": f"Loaded image ID: {img.id}\n"})
                    loaded.append(img.id)
                self.images.on_event("load", img.id, {})
        finally:
            tar.close()
        return loaded

    # -- export -----------------------------------------------------------------------------

    def export_command(self, container: str, mnt: str) -> list[str]:
        """argv that writes the container's merged file system as a tar to stdout.

        The overlay is mounted read-only in a private mount namespace of a child process
        (the writable layer as the top lower dir), so nothing is left mounted."""
        c = self.containers.get(container)
        img = self.store.get_by_id(c.image_id)
        lowers = [str(self.containers.data.container(c.id).upper)] + [str(p) for p in self.store.lower_dirs(img)]
        script = ('set -e; if [ "$#" -gt 1 ]; then mount -t overlay overlay -o "ro,lowerdir=$2" "$1"; '
                  'else mount --bind -o ro "$3" "$1"; fi; '
                  'exec tar --numeric-owner --xattrs --xattrs-include="*" --xattrs-exclude="trusted.overlay.*" '
                  '-C "$1" -cf - .')
        if len(lowers) == 1:
            return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                    script.replace('if [ "$#" -gt 1 ]', 'if false'), "sh", mnt, "", lowers[0]]
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", mnt,
                ":".join(lowers)]

    async def export(self, container: str) -> AsyncGenerator[bytes, None]:
        """The container's whole file system as a tar, in chunks. The first chunk comes only
        once tar has written something, so a failure raises (InvalidArgument) before any byte."""
        mnt = tempfile.mkdtemp(prefix="export-", dir=self.images.tmp_dir)
        try:
            proc = await asyncio.create_subprocess_exec(*self.export_command(container, mnt),
                                                        stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.PIPE)
            assert proc.stdout is not None and proc.stderr is not None
            try:
                first = await proc.stdout.read(1 << 16)
                if not first:
                    err = (await proc.stderr.read()).decode(errors="replace").strip()
                    raise InvalidArgument(f"export: {err or 'tar failed'}")
                yield first
                while chunk := await proc.stdout.read(1 << 20):
                    yield chunk
            finally:
                if proc.returncode is None:
                    try:
                        proc.kill()
                    except ProcessLookupError:
                        pass
                await proc.wait()
        finally:
            shutil.rmtree(mnt, ignore_errors=True)

    # -- scratch files ----------------------------------------------------------------------

    @contextlib.contextmanager
    def scratch(self, prefix: str) -> Iterator[str]:
        """A temporary file in the image tmp dir (a load's body, a save's tar), removed after."""
        fd, path = tempfile.mkstemp(dir=self.images.tmp_dir, prefix=prefix)
        os.close(fd)
        try:
            yield path
        finally:
            os.unlink(path)

    async def save_chunks(self, names: list[str]) -> AsyncGenerator[bytes, None]:
        """``save``'s tar in chunks: written whole to a scratch file first, so a failure raises
        before the first chunk."""
        with self.scratch("save-") as path:
            with open(path, "wb") as f:
                await asyncio.to_thread(self.save, names, f)
            with open(path, "rb") as f:
                while b := await asyncio.to_thread(f.read, 1 << 20):
                    yield b

    # -- prune / df ---------------------------------------------------------------------------

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


def _untar_error(path: str) -> str:
    """dockerd's words for a load body that is not a tar: its untar helper's exit, then Go's
    archive/tar error (a short body ends inside the first 512-byte header)."""
    why = "unexpected EOF" if os.path.getsize(path) < 512 else "archive/tar: invalid tar header"
    return f"Error processing tar file(exit status 1): {why}"


def _label_ok(labels: dict[str, str] | None, f: str, want: bool) -> bool:
    k, eq, v = f.partition("=")
    has = k in (labels or {}) and (not eq or (labels or {}).get(k) == v)
    return has == want


# Go's container.Config leaves these out when empty (omitempty).
_OMIT_EMPTY = ("ExposedPorts", "Healthcheck", "ArgsEscaped", "NetworkDisabled", "MacAddress", "StopSignal",
               "StopTimeout", "Shell")


def _container_config(cfg: ContainerConfig) -> dict[str, Any]:
    """A commit's ContainerConfig: the container's own Config, as dockerd records it."""
    import msgspec
    d = msgspec.to_builtins(cfg)
    for k in list(d):
        if k in _OMIT_EMPTY and not d[k]:
            del d[k]
    return d


def msgspec_copy(cfg: ContainerConfig) -> ContainerConfig:
    import msgspec
    return msgspec.json.decode(msgspec.json.encode(cfg), type=ContainerConfig)


def _fill_from(cfg: ContainerConfig, src: ContainerConfig) -> None:
    """``commit``'s config body overrides the container's config field by field (Docker merges)."""
    import msgspec
    for f in msgspec.structs.fields(ContainerConfig):
        if getattr(cfg, f.name) in (None, "", [], {}) and getattr(src, f.name) not in (None, "", [], {}):
            setattr(cfg, f.name, getattr(src, f.name))
