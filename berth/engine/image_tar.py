"""Images and file systems as tars: ``save`` and ``load`` (docker-save tars with an OCI
layout), and ``export`` (a container's merged file system)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from typing import AsyncGenerator, BinaryIO, Callable, Iterator

from berth.errors import InvalidArgument, NotFound
from berth.oci import reference
from berth.state import rootless

TYPE_CHECKING = False
if TYPE_CHECKING:
    from berth.engine.images import Images


class ImageTars:
    def __init__(self, images: Images):
        self.images = images
        self.store = images.store
        self.containers = images.containers

    def save(self, names: list[str], out: BinaryIO) -> None:
        """Write a docker-save tar of the images ``names`` to ``out`` (sync)."""
        from berth.image.archive import SaveImage, write_save

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
        return tmp, size

    async def load(self, path: str, say: Callable[[str], None]) -> list[str]:
        """Load a docker-save tar (a file), telling ``say`` each line of its report; returns the
        loaded images' names."""
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
                        return self.store.content.put_file(f)
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
                        say(f"The image {fam} already exists, renaming the old one with ID {prev[0]} to empty "
                            "string\n")
                    say(f"Loaded image: {fam}\n")
                    loaded.append(fam)
                if not tags:
                    say(f"Loaded image ID: {img.id}\n")
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
        script = (f'set -e; if [ "$#" -gt 1 ]; then mount -t overlay overlay -o "ro,lowerdir=$2{rootless.overlay_options()}" "$1"; '
                  'else mount --bind -o ro "$3" "$1"; fi; '
                  f'exec tar --numeric-owner --xattrs --xattrs-include="*" --xattrs-exclude="{rootless.overlay_prefix()}*" '
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
            # tar's warnings (a socket ignored per socket file) are read as they come: a full
            # stderr pipe would stop tar, and the export with it
            errors = asyncio.ensure_future(_tail(proc.stderr))
            try:
                first = await proc.stdout.read(1 << 16)
                if not first:
                    err = (await errors).decode(errors="replace").strip()
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
                errors.cancel()
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


def _untar_error(path: str) -> str:
    """dockerd's words for a load body that is not a tar: its untar helper's exit, then Go's
    archive/tar error (a short body ends inside the first 512-byte header)."""
    why = "unexpected EOF" if os.path.getsize(path) < 512 else "archive/tar: invalid tar header"
    return f"Error processing tar file(exit status 1): {why}"


async def _tail(stream: asyncio.StreamReader, keep: int = 1 << 16) -> bytes:
    """Everything a child writes to stream until its end, keeping only the last keep bytes."""
    tail = b""
    while chunk := await stream.read(1 << 16):
        tail = (tail + chunk)[-keep:]
    return tail
