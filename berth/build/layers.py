"""COPY and ADD: the files a step adds, planned as a list of entries and written as one layer
tar, without a container.

A plan is computed first (sources resolved in the context or in another image, wildcards
expanded, ownership and modes decided); its checksum (names, types, modes, owners, link
targets and content digests, not mtimes) is the cache input of the step. On a miss the same
plan is written as a tar. ``SOURCE_DATE_EPOCH`` clamps every mtime in it.
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable

from berth.build.fsview import Node, RootView
from berth.errors import InvalidArgument


class CopyError(InvalidArgument):
    pass


@dataclass
class Entry:
    path: str                 # inside the image, without the leading "/"
    kind: str                 # "dir" | "file" | "symlink" | "hardlink"
    mode: int
    uid: int = 0
    gid: int = 0
    mtime: float = 0
    source: Path | None = None    # host file with the content
    data: bytes | None = None     # or the content itself (heredocs)
    linkname: str = ""
    size: int = 0
    digest: str = ""              # sha256 of the content, filled by checksum()


@dataclass
class Plan:
    entries: list[Entry] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)   # per source: "file:<sha>" / "dir:<sha>"

    def add(self, e: Entry) -> None:
        self.entries.append(e)


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(1 << 20):
            h.update(b)
    return h.hexdigest()


def checksum(entries: list[Entry]) -> str:
    h = hashlib.sha256()
    for e in entries:
        if e.kind == "file" and not e.digest:
            e.digest = hashlib.sha256(e.data).hexdigest() if e.data is not None else file_digest(e.source)  # type: ignore[arg-type]
        h.update(f"{e.path}\0{e.kind}\0{e.mode:o}\0{e.uid}\0{e.gid}\0{e.linkname}\0{e.digest}\n".encode())
    return h.hexdigest()


# -- ownership -----------------------------------------------------------------------------------


def _lookup_id(text: str | None, name: str, kind: str) -> int:
    for line in (text or "").splitlines():
        f = line.split(":")
        if len(f) >= 3 and f[0] == name:
            try:
                return int(f[2])
            except ValueError:
                break
    raise CopyError(f"unable to convert uid/gid chown string to host mapping: can't find {kind} for "
                    f"{'user' if kind == 'uid' else 'group'} {name}: no such "
                    f"{'user' if kind == 'uid' else 'group'}: {name}")


def parse_chown(spec: str, image: RootView | None) -> tuple[int, int]:
    """``user[:group]`` by name or number; names come from the image's /etc/passwd, /etc/group."""
    user, sep, group = spec.partition(":")
    passwd = image.read_text("/etc/passwd") if image else None
    groups = image.read_text("/etc/group") if image else None
    uid = int(user) if user.isdigit() else _lookup_id(passwd, user, "uid")
    if not sep:
        if user.isdigit():
            return uid, uid
        for line in (passwd or "").splitlines():
            f = line.split(":")
            if len(f) >= 4 and f[0] == user and f[3].isdigit():
                return uid, int(f[3])
        return uid, uid
    gid = int(group) if group.isdigit() else _lookup_id(groups, group, "gid")
    return uid, gid


def parse_chown_link(spec: str) -> tuple[int, int]:
    """``COPY --link --chown``: numbers (or ``root``) only, as BuildKit: the layer is made
    without the parent's filesystem, so there is no /etc/passwd to look names up in."""
    user, sep, group = spec.partition(":")

    def one(v: str) -> int:
        if v == "root":
            return 0
        if v.isdigit():
            return int(v)
        raise CopyError(f"invalid --chown={spec} with --link: user and group names cannot be resolved "
                        "without the parent's /etc/passwd and /etc/group; use numeric IDs")
    uid = one(user)
    return uid, (one(group) if sep else uid)


def parse_chmod(spec: str | None) -> int | None:
    if not spec:
        return None
    try:
        m = int(spec, 8)
    except ValueError:
        raise CopyError(f"invalid chmod parameter: {spec}") from None
    if m < 0 or m > 0o7777:
        raise CopyError(f"invalid chmod parameter: {spec}")
    return m


# -- destinations --------------------------------------------------------------------------------


def normalize_dest(workdir: str, dest: str) -> str:
    """Docker's normalizeDest: relative to WORKDIR, trailing slash kept."""
    slash = dest.endswith("/") or dest in (".", "./") or dest.endswith("/.")
    if not dest.startswith("/"):
        dest = posixpath.join("/", workdir or "/", dest)
    dest = posixpath.normpath(dest)
    if dest.startswith("//"):
        dest = dest[1:]
    return dest + ("/" if slash and dest != "/" else "")


def resolve_dest(image: RootView | None, dest: str) -> str:
    """The destination with symlinks of the image's existing directories resolved (inside
    the image root), so files land where the running container would see them."""
    slash = dest.endswith("/")
    parts = [p for p in dest.split("/") if p]
    done: list[str] = []
    for i, p in enumerate(parts):
        node = image.lookup("/" + "/".join(done + [p])) if image else None
        if node is None:
            done = done + parts[i:]
            break
        done = [q for q in node.path.split("/") if q]
    return "/" + "/".join(done) + ("/" if slash and done else "")


def parent_entries(image: RootView | None, path: str, now: float, existing: set[str]) -> list[Entry]:
    """Directory entries for every parent of ``path``: the image's own metadata when the
    directory exists there (so the layer does not change it), else a new 0755 root dir."""
    out: list[Entry] = []
    parts = [p for p in path.split("/") if p][:-1]
    for i in range(len(parts)):
        rel = "/".join(parts[: i + 1])
        if rel in existing:
            continue
        existing.add(rel)
        node = image.lookup("/" + rel) if image else None
        if node is not None and node.is_dir:
            st = node.st
            out.append(Entry(rel, "dir", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime))
        else:
            out.append(Entry(rel, "dir", 0o755, 0, 0, now))
    return out


# -- planning a COPY -----------------------------------------------------------------------------


@dataclass
class Source:
    """One resolved source: a node in a view (context or image), or heredoc bytes."""
    name: str                  # basename used when copying into a directory
    node: Node | None = None
    view: RootView | None = None
    data: bytes | None = None
    from_context: bool = True
    keep_path: str = ""        # COPY --parents: the path (from the root or a "/./" pivot) kept under dest
    pivot: str = ""            # the part of a "a/./b" argument that --parents drops


def _entry_for(node: Node, rel: str, uid: int | None, gid: int | None, chmod: int | None,
               inodes: dict[tuple[int, int], str]) -> Entry:
    st = node.st
    o_uid = st.st_uid if uid is None else uid
    o_gid = st.st_gid if gid is None else gid
    if stat.S_ISDIR(st.st_mode):
        return Entry(rel, "dir", chmod if chmod is not None else stat.S_IMODE(st.st_mode), o_uid, o_gid, st.st_mtime)
    if stat.S_ISLNK(st.st_mode):
        return Entry(rel, "symlink", 0o777, o_uid, o_gid, st.st_mtime, linkname=os.readlink(node.host))
    if stat.S_ISREG(st.st_mode):
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in inodes:
            return Entry(rel, "hardlink", 0, o_uid, o_gid, st.st_mtime, linkname=inodes[key])
        if st.st_nlink > 1:
            inodes[key] = rel
        return Entry(rel, "file", chmod if chmod is not None else stat.S_IMODE(st.st_mode), o_uid, o_gid,
                     st.st_mtime, source=node.host, size=st.st_size)
    raise CopyError(f"cannot copy {node.path}: not a regular file, directory or symlink")


def plan_copy(sources: list[Source], dest: str, image: RootView | None, owner: tuple[int, int] | None,
              chmod: int | None, now: float, excluded: Callable[[str, bool], bool] | None = None,
              skip: Callable[[str, bool], bool] | None = None) -> Plan:
    """Files for ``COPY <sources> <dest>`` (``dest`` absolute, normalized). ``excluded`` is
    .dockerignore (context paths), ``skip`` is ``--exclude`` (paths inside each source)."""
    plan = Plan()
    multi = len(sources) > 1 or any(s.keep_path for s in sources)
    dest_is_dir = dest.endswith("/") or multi
    if not dest_is_dir and image is not None:
        node = image.lookup(dest)
        dest_is_dir = node is not None and node.is_dir
    if len(sources) == 1 and sources[0].node is not None and sources[0].node.is_dir:
        dest_is_dir = True
    base = resolve_dest(image, dest).rstrip("/") or "/"
    existing: set[str] = set()
    inodes: dict[tuple[int, int], str] = {}
    uid, gid = owner if owner is not None else (None, None)
    # Files from the context belong to root unless --chown; from images they keep their owner.
    for src in sources:
        s_uid = uid if uid is not None or not src.from_context else 0
        s_gid = gid if gid is not None or not src.from_context else 0
        if src.data is not None:
            target = f"{base}/{src.name}" if dest_is_dir else base
            rel = target.lstrip("/")
            plan.entries += parent_entries(image, "/" + rel, now, existing)
            plan.add(Entry(rel, "file", chmod if chmod is not None else 0o644, s_uid or 0, s_gid or 0, now,
                           data=src.data, size=len(src.data)))
            plan.sources.append("file:" + hashlib.sha256(src.data).hexdigest())
            continue
        node = src.node
        assert node is not None and src.view is not None
        if node.is_dir:
            target_dir = (f"{base}/{src.keep_path}" if src.keep_path else base).strip("/")
            if target_dir:
                plan.entries += parent_entries(image, "/" + target_dir + "/x", now, existing)
                d = _entry_for(node, target_dir, s_uid, s_gid, chmod, inodes)
                if target_dir not in existing:
                    existing.add(target_dir)
                    plan.add(d)
            start = len(plan.entries)
            for child in src.view.walk(node):
                relsrc = child.path[len(node.path.rstrip("/")) + 1:]
                if excluded is not None and src.from_context and excluded(child.path.lstrip("/"), child.is_dir):
                    continue
                if skip is not None and skip(relsrc, child.is_dir):
                    continue
                rel = f"{target_dir}/{relsrc}" if target_dir else relsrc
                plan.add(_entry_for(child, rel, s_uid, s_gid, chmod, inodes))
            plan.sources.append("dir:" + checksum(plan.entries[start:]))
        else:
            target = f"{base.rstrip('/')}/{src.keep_path or src.name}" if dest_is_dir else base
            rel = target.lstrip("/")
            if not rel:
                raise CopyError("cannot copy a file to /")
            plan.entries += parent_entries(image, "/" + rel, now, existing)
            e = _entry_for(node, rel, s_uid, s_gid, chmod, inodes)
            plan.add(e)
            plan.sources.append("file:" + checksum([e]))
    return plan


def source_hash(plan: Plan) -> str:
    if len(plan.sources) == 1:
        return plan.sources[0]
    return "multi:" + hashlib.sha256(",".join(plan.sources).encode()).hexdigest()


# -- ADD of a local archive ----------------------------------------------------------------------


def plan_archive(archive: Path, dest: str, image: RootView | None, now: float) -> Plan:
    """``ADD x.tar /dest/``: the archive's members under dest (safe names only)."""
    plan = Plan()
    base = resolve_dest(image, dest if dest.endswith("/") else dest + "/").strip("/")
    existing: set[str] = set()
    if base:
        plan.entries += parent_entries(image, "/" + base + "/x", now, existing)
        if base not in existing:
            node = image.lookup("/" + base) if image else None
            st_mode = stat.S_IMODE(node.st.st_mode) if node is not None and node.is_dir else 0o755
            plan.add(Entry(base, "dir", st_mode, 0, 0, node.st.st_mtime if node is not None else now))
    with tarfile.open(archive, "r:*") as tar:
        for m in tar:
            name = "/".join(p for p in m.name.split("/") if p not in ("", "."))
            if not name:
                continue
            if name.startswith("/") or ".." in name.split("/"):
                raise CopyError(f"refusing to extract {m.name!r}: path outside the destination")
            rel = f"{base}/{name}" if base else name
            if m.isdir():
                plan.add(Entry(rel, "dir", m.mode & 0o7777, m.uid, m.gid, m.mtime))
            elif m.isreg():
                data = tar.extractfile(m)
                content = data.read() if data is not None else b""
                plan.add(Entry(rel, "file", m.mode & 0o7777, m.uid, m.gid, m.mtime, data=content, size=len(content)))
            elif m.issym():
                plan.add(Entry(rel, "symlink", 0o777, m.uid, m.gid, m.mtime, linkname=m.linkname))
            elif m.islnk():
                ln = "/".join(p for p in m.linkname.split("/") if p not in ("", "."))
                if ".." in ln.split("/"):
                    raise CopyError(f"refusing to extract {m.name!r}: hard link outside the destination")
                plan.add(Entry(rel, "hardlink", 0, m.uid, m.gid, m.mtime, linkname=f"{base}/{ln}" if base else ln))
    plan.sources.append("file:" + file_digest(archive))
    return plan


# -- writing -------------------------------------------------------------------------------------


def write_tar(entries: list[Entry], out: BinaryIO, clamp: float | None = None) -> None:
    """The plan as a layer tar (sync; run it in a thread)."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            mtime = e.mtime if clamp is None else min(e.mtime, clamp)
            ti = tarfile.TarInfo(e.path + ("/" if e.kind == "dir" else ""))
            ti.uid, ti.gid, ti.uname, ti.gname = e.uid, e.gid, "", ""
            ti.mtime = int(mtime)
            ti.mode = e.mode
            if e.kind == "dir":
                ti.type = tarfile.DIRTYPE
                tar.addfile(ti)
            elif e.kind == "symlink":
                ti.type = tarfile.SYMTYPE
                ti.linkname = e.linkname
                tar.addfile(ti)
            elif e.kind == "hardlink":
                ti.type = tarfile.LNKTYPE
                ti.linkname = e.linkname
                tar.addfile(ti)
            elif e.data is not None:
                ti.size = len(e.data)
                tar.addfile(ti, io.BytesIO(e.data))
            else:
                assert e.source is not None
                with open(e.source, "rb") as f:
                    ti.size = os.fstat(f.fileno()).st_size
                    tar.addfile(ti, f)
