"""A container's user namespace, made before its init is forked (work before fork).

The parent (the shim's setup helper, host root) forks a short-lived holder that unshares a
user namespace, writes its uid and gid maps from outside, keeps a fd of it and lets the holder
exit. With that fd it makes the idmapped mounts the container needs (the image's layers, binds
asked with ``idmap``): detached trees that the init attaches with move_mount once it is inside
its own mount namespace. The init then joins the host-owned namespaces it is given (the
network namespace berthd made), setns()es into the user namespace and unshares the rest, which
are therefore owned by it: root in the container has every capability over them, none over
the host.

    ns = UserNamespace.create(maps)            # holder fork, maps written
    trees = ns.trees([("/var/lib/berth/image", True), ("/srv/data", False)])
    ... fork the init: it inherits ns.fd and the trees ...
    ns.close(); close(trees)
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

    def trees(self, sources: Sequence[tuple[str, bool]]) -> list[int]:
        """A detached mount of each ``(source, idmapped)``, idmapped through this namespace when
        asked (recursive: the submounts of a source come along, as with rbind)."""
        trees: list[int] = []
        try:
            for src, idmapped in sources:
                tree = idmap.open_tree(src, recursive=True)
                trees.append(tree)
                if idmapped:
                    idmap.set_idmap(tree, self.fd, recursive=True)
        except BaseException:
            for t in trees:
                os.close(t)
            raise
        return trees

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
