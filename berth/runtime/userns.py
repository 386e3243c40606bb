"""A container's user namespace: the parent's half (maps, idmapped trees) and the probe.

The init is cloned into a new user namespace (container._clone_init, runc's order): the parent
(the shim's setup helper, host root) opens the trees the container needs before the clone
(``open_trees``: the image's layers, binds asked with ``idmap``; detached mounts the init
inherits), then writes the new namespace's uid and gid maps from outside and idmaps the trees
through it (the init's fds are the same detached mounts) before it lets the init go on: it
becomes the namespace's root and unshares the rest, which are therefore owned by it: root in
the container has every capability over them, none over the host. The init attaches the trees
with move_mount once it is inside its own mount namespace.

    trees = open_trees([("/var/lib/berth/image", True), ("/srv/data", False)])
    ... clone the init into a new user namespace ...
    ns = UserNamespace.of_process(init_pid, maps)    # maps written
    ns.idmap(trees, sources); ns.close()
    ... the init goes on; close(trees) ...

Joining another container's user namespace opens it (``UserNamespace(fd)``); a helper that
needs one of its own before it forks (archive.py, the probe) uses ``UserNamespace.create``: a
short-lived holder process.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from berth.linux import idmap
from berth.linux import sched
from berth.linux.sched import CloneFlags


@dataclass(frozen=True)
class IdMaps:
    """(container id, host id, size) lines of the uid and gid maps."""

    uid: tuple[tuple[int, int, int], ...]
    gid: tuple[tuple[int, int, int], ...]

    @staticmethod
    def text(lines: Iterable[tuple[int, int, int]]) -> str:
        return "".join(f"{c} {h} {n}\n" for c, h, n in lines)

    def host_uid(self, uid: int) -> int:
        return _to_host(self.uid, uid)

    def host_gid(self, gid: int) -> int:
        return _to_host(self.gid, gid)

    def container_ids(self, uid: int, gid: int) -> tuple[int, int]:
        """A host file's owner as the container sees it (65534, the overflow id, when unmapped)."""
        return _to_container(self.uid, uid), _to_container(self.gid, gid)

    def encode(self) -> str:
        """One command-line word: ``u:0:100000:65536,g:0:100000:65536``."""
        return ",".join(f"{k}:{c}:{h}:{n}" for k, lines in (("u", self.uid), ("g", self.gid))
                        for c, h, n in lines)

    @staticmethod
    def decode(word: str) -> IdMaps:
        lines: dict[str, list[tuple[int, int, int]]] = {"u": [], "g": []}
        for item in filter(None, word.split(",")):
            k, c, h, n = item.split(":")
            lines[k].append((int(c), int(h), int(n)))
        return IdMaps(uid=tuple(lines["u"]), gid=tuple(lines["g"]))


def _to_host(lines: Sequence[tuple[int, int, int]], cid: int) -> int:
    for c, h, n in lines:
        if c <= cid < c + n:
            return h + cid - c
    return -1


def _to_container(lines: Sequence[tuple[int, int, int]], hid: int) -> int:
    for c, h, n in lines:
        if h <= hid < h + n:
            return c + hid - h
    return OVERFLOW_ID


OVERFLOW_ID = 65534


def open_trees(sources: Sequence[tuple[str, bool]]) -> list[int]:
    """A detached mount of each ``(source, idmapped)``, not idmapped yet (recursive: the
    submounts of a source come along, as with rbind)."""
    trees: list[int] = []
    try:
        for src, _ in sources:
            trees.append(idmap.open_tree(src, recursive=True))
    except BaseException:
        for t in trees:
            os.close(t)
        raise
    return trees


class UserNamespace:
    """An open user namespace (its fd), with its maps written."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    @classmethod
    def create(cls, maps: IdMaps) -> UserNamespace:
        """Fork a holder that unshares CLONE_NEWUSER, write its maps, keep a fd of its
        namespace, and let it go. Raises OSError (e.g. EPERM, EINVAL for a bad map, ENOSPC
        past user.max_user_namespaces)."""
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        done_r, done_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:  # pragma: no cover (the holder)
            code = 1
            try:
                os.close(ready_r)
                os.close(done_w)
                sched.unshare(CloneFlags.NEWUSER)
                os.write(ready_w, b"u")
                os.read(done_r, 1)
                code = 0
            except BaseException:  # noqa: BLE001 - the parent sees EOF and reports
                pass
            finally:
                os._exit(code)
        os.close(ready_w)
        os.close(done_r)
        try:
            if os.read(ready_r, 1) != b"u":
                raise OSError(1, "unshare", "user namespace")
            idmap.write_id_maps(pid, IdMaps.text(maps.uid), IdMaps.text(maps.gid))
            fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        finally:
            os.close(ready_r)
            os.close(done_w)
            os.waitpid(pid, 0)
        return cls(fd)

    @classmethod
    def of_process(cls, pid: int, maps: IdMaps) -> UserNamespace:
        """Write the maps of the user namespace process ``pid`` was just cloned into; open it.
        Raises OSError (EINVAL for a bad map)."""
        idmap.write_id_maps(pid, IdMaps.text(maps.uid), IdMaps.text(maps.gid))
        return cls(os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC))

    def trees(self, sources: Sequence[tuple[str, bool]]) -> list[int]:
        """A detached mount of each ``(source, idmapped)``, idmapped through this namespace when
        asked (recursive: the submounts of a source come along, as with rbind)."""
        trees = open_trees(sources)
        try:
            self.idmap(trees, sources)
        except BaseException:
            for t in trees:
                os.close(t)
            raise
        return trees

    def idmap(self, trees: Sequence[int], sources: Sequence[tuple[str, bool]]) -> None:
        """Idmap through this namespace each tree of ``open_trees(sources)`` asked to be."""
        for tree, (_, idmapped) in zip(trees, sources):
            if idmapped:
                idmap.set_idmap(tree, self.fd, recursive=True)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


# overlayfs takes idmapped lower layers from Linux 5.19 on (idmapped mounts themselves: 5.12)
_IDMAPPED_OVERLAY = (5, 19)


def idmapped_overlay(path: str, release: str | None = None) -> bool:
    """Whether the layers under ``path`` can be idmapped lower dirs of an overlay: a kernel
    recent enough, and a file system that takes MOUNT_ATTR_IDMAP (tried on a detached tree).
    Forks (the holder): run it in a helper process, never in berthd."""
    rel = release if release is not None else os.uname().release
    try:
        version = tuple(int(x) for x in rel.split("-")[0].split(".")[:2])
    except ValueError:
        return False
    if version < _IDMAPPED_OVERLAY:
        return False
    try:
        ns = UserNamespace.create(IdMaps(uid=((0, 0, 1),), gid=((0, 0, 1),)))
        try:
            for tree in ns.trees([(path, True)]):
                os.close(tree)
        finally:
            ns.close()
    except OSError:
        return False
    return True


if __name__ == "__main__":  # python -m berth.runtime.userns probe PATH: exit 0 when idmapped overlay works
    import sys
    sys.exit(0 if sys.argv[1:2] == ["probe"] and idmapped_overlay(sys.argv[2]) else 1)
