"""``docker cp`` (HEAD/GET/PUT /containers/{id}/archive) and ``docker diff`` (changes).

The file work runs in a helper process (``berth.runtime.archive``) chrooted into the
container's root: through ``/proc/<pid>/root`` while it runs, through a private overlay mount
while it is stopped. So a symlink in the container can never lead a copy out of it.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path

import msgspec

from berth.engine import container_userns
from berth.engine.containers import Containers
from berth.engine.model import Container
from berth.runtime.userns import IdMaps
from berth.errors import BerthError, Conflict, InvalidArgument, NotFound, PermissionDenied

_KINDS = {"notfound": NotFound, "notdir": InvalidArgument, "invalid": InvalidArgument, "denied": PermissionDenied}


class NoSuchPath(NotFound):
    pass


@dataclass(frozen=True)
class Change:
    path: str
    kind: int  # 0 modified, 1 added, 2 deleted (Docker's ChangeType)


class PathStat(msgspec.Struct, frozen=True):
    """A path in a container, as the archive helper reports it (Go's ``os.FileMode`` bits)."""

    name: str
    size: int
    mode: int
    mtime: str
    link_target: str = msgspec.field(name="linkTarget", default="")


class Archives:
    def __init__(self, containers: Containers) -> None:
        self.containers = containers

    async def _argv(self, c: Container, mode: str, path: str, extra: list[str]) -> list[str]:
        argv = [sys.executable, "-m", "berth.runtime.archive", mode, path, *extra]
        maps = container_userns.maps_for(c.id, c.host_config, self.containers.userns)
        if maps is not None:  # the tar carries the container's own ids
            argv += ["--idmaps", maps.encode()]
        if c.running and c.state.pid:
            own = ["--userns", f"/proc/{c.state.pid}/ns/user"] if maps is not None else []
            return argv + ["--root", f"/proc/{c.state.pid}/root", *own]
        return argv + await self._stopped_root(c, maps)

    async def _stopped_root(self, c: Container, maps: IdMaps | None) -> list[str]:
        """Helper arguments for a container that is not running: its overlay (in a user
        namespace: on the idmapped image/, as the init mounts it), then what dockerd mounts for
        a copy: volumes and binds, and the hostname/hosts/resolv.conf it was given. The
        fallback's copy of the layers for a range (``cp -a`` and a chown walk) runs in a thread."""
        d = self.containers.data.container(c.id)
        image = self.containers.images.get_by_id(c.image_id)
        lowers, opts = self.containers.overlay(c, image)
        out = ["--overlay", opts, "--mnt", str(d.rootfs)]
        if maps is not None:
            data = self.containers.data
            if self.containers.userns.copies is None:
                tree, idmapped = container_userns.image_tree(maps, lowers, self.containers.userns, data)
            else:
                tree, idmapped = await asyncio.to_thread(container_userns.image_tree, maps, lowers,
                                                         self.containers.userns, data)
            out = ["--overlay", container_userns.overlay_options(lowers, data), "--mnt", str(d.rootfs),
                   "--image-tree", str(tree), "--chdir", str(d.root), *([] if idmapped else ["--image-copy"])]
        for m in self._mounts(c, lowers, d.upper, maps):
            out += ["--bind", m]
        return out

    def _mounts(self, c: Container, lowers: list[Path], upper: Path, maps: IdMaps | None) -> list[str]:
        volumes = getattr(self.containers.attachments, "volumes", None)
        binds: list[str] = []
        d = self.containers.data.container(c.id)
        if not c.host_config.NetworkMode.startswith("container:"):
            binds += [f"{d.hostname}:/etc/hostname:rw", f"{d.hosts}:/etc/hosts:rw",
                      f"{d.resolv_conf}:/etc/resolv.conf:rw"]
        if volumes is None:
            return binds
        try:
            mounts = volumes.spec_mounts(c.id, lowers, upper, maps)
        except BerthError:
            return binds
        for m in mounts:
            if m.type == "bind":  # volumes (local driver) and binds; tmpfs holds nothing while stopped
                o = m.options or []
                binds.append(f"{m.source}:{m.destination}:{'ro' if 'ro' in o else 'rw'}{',idmap' if 'idmap' in o else ''}")
        return binds

    async def _spawn(self, c: Container, mode: str, path: str, extra: list[str] | None = None,
                     stdin: bool = False) -> asyncio.subprocess.Process:
        if not path:
            raise InvalidArgument("Path cannot be empty")
        return await asyncio.create_subprocess_exec(
            *await self._argv(c, mode, path, extra or []), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL)

    @staticmethod
    def _raise(err: bytes, ref: str) -> None:
        try:
            doc = json.loads(err.decode().strip().splitlines()[-1])
            kind, msg = doc["kind"], doc["message"]
        except (ValueError, IndexError, KeyError):
            raise Conflict(f"archive helper failed: {err.decode(errors='replace').strip()}") from None
        if kind == "notfound" and msg.endswith(" in container"):
            msg += f" {ref}"  # dockerd's containerFileNotFound names the container as the client did
        raise _KINDS.get(kind, InvalidArgument)(msg)

    async def stat(self, ref: str, path: str) -> PathStat:
        c = self.containers.get(ref)
        async with self._guard(c):
            proc = await self._spawn(c, "stat", path)
            out, err = await proc.communicate()
        if proc.returncode != 0:
            self._raise(err, ref)
        return msgspec.json.decode(out, type=PathStat)

    async def get(self, ref: str, path: str) -> tuple[PathStat, AsyncIterator[bytes]]:
        st = await self.stat(ref, path)
        c = self.containers.get(ref)

        async def body() -> AsyncIterator[bytes]:
            async with self._guard(c):
                proc = await self._spawn(c, "get", path)
                assert proc.stdout is not None
                try:
                    while chunk := await proc.stdout.read(1 << 20):
                        yield chunk
                finally:
                    if proc.returncode is None:
                        try:
                            proc.kill()
                        except ProcessLookupError:
                            pass
                    await proc.wait()
        return st, body()

    async def put(self, ref: str, path: str, body: AsyncIterator[bytes], no_overwrite_dir_non_dir: bool,
                  copy_uidgid: bool) -> None:
        c = self.containers.get(ref)
        extra = ["--no-overwrite-dir-non-dir"] if no_overwrite_dir_non_dir else []
        if c.host_config.ReadonlyRootfs:
            extra.append("--readonly-rootfs")  # a rw volume inside stays writable
        if copy_uidgid and c.config.User:  # dockerd: the container's user owns what is copied
            extra += ["--chown-user", c.config.User]
        async with self._guard(c):
            proc = await self._spawn(c, "put", path, extra, stdin=True)
            assert proc.stdin is not None and proc.stderr is not None
            err_task = asyncio.ensure_future(proc.stderr.read())
            try:
                async for chunk in body:
                    proc.stdin.write(chunk)
                    await proc.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                try:
                    proc.stdin.close()
                except (BrokenPipeError, ConnectionResetError):
                    pass
            err = await err_task
            await proc.wait()
        if proc.returncode != 0:
            self._raise(err, ref)

    def _guard(self, c: Container) -> AbstractAsyncContextManager[None]:
        """Stopped containers mount their overlay (one user of its workdir at a time)."""
        if c.running:
            return _nolock()
        return self.containers.lock(c.id)

    # -- changes (docker diff) ----------------------------------------------------------------

    def changes(self, ref: str) -> list[Change]:
        c = self.containers.get(ref)
        upper = str(self.containers.data.container(c.id).upper)
        lowers = [str(p) for p in self.containers.images.lower_dirs(self.containers.images.get_by_id(c.image_id))]
        out: list[Change] = []

        def in_lower(rel: str) -> bool:
            return any(os.path.lexists(os.path.join(lo, rel)) for lo in lowers)

        for root, dirs, files in os.walk(upper):
            for name in sorted(dirs + files):
                full = os.path.join(root, name)
                rel = os.path.relpath(full, upper)
                try:
                    st = os.lstat(full)
                except FileNotFoundError:
                    continue
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:  # an overlay whiteout
                    out.append(Change("/" + rel, 2))
                    continue
                out.append(Change("/" + rel, 0 if in_lower(rel) else 1))
        out = [ch for ch in out if ch.path not in _MOUNT_POINTS]
        keep = {os.path.dirname(ch.path) for ch in out}
        for _ in range(64):  # a "changed" dir only shows when something under it is listed
            parents = {os.path.dirname(p) for p in keep} | keep
            if parents == keep:
                break
            keep = parents
        out = [ch for ch in out if ch.kind != 0 or ch.path in keep or not os.path.isdir(
            os.path.join(upper, ch.path.lstrip("/")))]
        out.sort(key=lambda ch: ch.path)
        return out


# mount points berth itself creates in the writable layer (Docker keeps them in its init layer)
_MOUNT_POINTS = {"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/sbin/docker-init", "/dev", "/proc",
                 "/sys", "/dev/console"}


class _nolock:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *a: object) -> None:
        return None
