"""A container's files as tar, both ways (``docker cp``), in a throwaway helper process.

berthd runs ``python -m berth.runtime.archive MODE PATH (--root DIR | --overlay OPTS --mnt DIR)``:

- ``--root /proc/<init pid>/root`` for a running container (its mounts included);
- ``--overlay lowerdir=..,upperdir=..,workdir=..`` for a stopped one: the helper mounts the
  overlay in a private mount namespace of its own, so the host never sees the mount (nor can it
  leak: the namespace dies with the helper). ``--bind SRC:DEST:rw|ro`` (repeated) then binds
  the container's volumes and bind mounts, and its hostname/hosts/resolv.conf, over it, as
  dockerd mounts them for a copy.

A user namespace container (``--idmaps u:0:H:N,g:0:H:N``): once chrooted, the helper joins
the container's user namespace as its root (``--userns /proc/<pid>/ns/user`` while it runs;
one it makes with the maps while stopped), so the kernel maps every id both ways: a tar read
out carries the container's own ids (65534, the overflow id, for an unmapped one), and one
copied in is written with the host ids its ids map to (an id outside the map is refused with
dockerd's words). Stopped, the overlay's lower dirs are under an idmapped tree of
``--image-tree`` (with ``--image-copy``: a chown'd copy, not idmapped) attached at ``lower/``
of ``--chdir`` (the container's directory: the options are relative to it, as the init's
are), and a ``--bind`` whose mode has ``idmap`` is idmapped as well.

Then it imports everything it needs and chroots into the container's root, so every path and
every symlink (``/etc/x -> /``, ``../../..``) resolves inside the container: nothing read or
written can be outside it. Modes:

    stat PATH  -> stdout: {"name","size","mode","mtime","linkTarget"} (Docker's PathStat)
    get PATH   -> stdout: a tar of PATH named by its base name (directories recursively)
    put PATH   <- stdin: a tar extracted into the directory PATH, keeping the tar's numeric
                  uid/gid as dockerd does (--no-overwrite-dir-non-dir; --chown-user USER: with
                  copyUIDGID and a container User, everything belongs to that user)

Errors go to stderr as one JSON line {"kind": "notfound|notdir|invalid|denied", "message"},
with exit status 1.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import tarfile
import time

from berth.linux import idmap as lidmap
from berth.linux import mount as lmount
from berth.linux import sched
from berth.linux.mount import MountFlags as MF
from berth.linux.sched import CloneFlags
from berth.runtime import users
from berth.runtime.userns import IdMaps, UserNamespace

_maps: IdMaps | None = None  # the container's user namespace, if any (set by main)
_image_copy = False  # --image-copy: the image tree is a chown'd copy, attached as it is


class _Fail(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _go_mode(st: os.stat_result) -> int:
    """Go's os.FileMode bits, as Docker's PathStat carries them."""
    m = stat.S_IMODE(st.st_mode) & 0o777
    if stat.S_ISDIR(st.st_mode):
        m |= 1 << 31
    elif stat.S_ISLNK(st.st_mode):
        m |= 1 << 27
    elif stat.S_ISFIFO(st.st_mode):
        m |= 1 << 25
    elif stat.S_ISSOCK(st.st_mode):
        m |= 1 << 24
    elif stat.S_ISCHR(st.st_mode):
        m |= (1 << 26) | (1 << 21)
    elif stat.S_ISBLK(st.st_mode):
        m |= 1 << 26
    if st.st_mode & stat.S_ISUID:
        m |= 1 << 23
    if st.st_mode & stat.S_ISGID:
        m |= 1 << 22
    if st.st_mode & stat.S_ISVTX:
        m |= 1 << 20
    return m


def _lstat(path: str) -> os.stat_result:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        raise _Fail("notfound", f"Could not find the file {path} in container") from None
    except NotADirectoryError:
        raise _Fail("notdir", f"not a directory: {path}") from None


def _resolve(path: str) -> str:
    """Follow symlinks in the parent directories (inside the chroot); keep the last one unless
    the path ends with / or /. (Docker's rule)."""
    path = "/" + path.lstrip("/")
    follow_last = path.endswith("/") or path.endswith("/.")
    head, base = os.path.split(path.rstrip("/").removesuffix("/.") or "/")
    real_head = os.path.realpath(head)
    full = os.path.join(real_head, base) if base else real_head
    if follow_last:
        full = os.path.realpath(full)
    return full


def do_stat(path: str) -> None:
    full = _resolve(path)
    st = _lstat(full)
    link = os.readlink(full) if stat.S_ISLNK(st.st_mode) else ""
    name = os.path.basename(path.rstrip("/").removesuffix("/.")) or "/"
    mtime = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(st.st_mtime)) + "Z"
    sys.stdout.write(json.dumps({"name": name, "size": st.st_size, "mode": _go_mode(st), "mtime": mtime,
                                 "linkTarget": link}))


def do_get(path: str) -> None:
    full = _resolve(path)
    _lstat(full)
    trimmed = path.rstrip("/")
    name = os.path.basename(trimmed.removesuffix("/.")) or "."
    if trimmed.endswith("/."):
        name = "."
    with tarfile.open(fileobj=sys.stdout.buffer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        tar.add(full, arcname=name, recursive=True)


def _check_mapped(uid: int, gid: int) -> None:
    """dockerd's idtools wording for a container id its user namespace does not map."""
    if _maps is None:
        return
    for cid, host in ((uid, _maps.host_uid(uid)), (gid, _maps.host_gid(gid))):
        if host < 0:
            raise _Fail("invalid", f"Container ID {cid} cannot be mapped to a host ID")


def _owner(user: str) -> tuple[int, int] | None:
    """The container's ``User`` as ids, from its own /etc/passwd and /etc/group (chrooted)."""
    if not user:
        return None

    def read(p: str) -> str:
        try:
            with open(p) as f:
                return f.read()
        except OSError:
            return ""
    try:
        u = users.resolve(user, users.parse_passwd(read("/etc/passwd")), users.parse_group(read("/etc/group")))
    except users.UnknownUser as e:
        raise _Fail("invalid", str(e)) from None
    return u.uid, u.gid


def do_put(path: str, no_overwrite_dir_non_dir: bool, chown_user: str, readonly_rootfs: bool) -> None:
    full = _resolve(path + "/")
    st = _lstat(full)
    if not stat.S_ISDIR(st.st_mode):
        raise _Fail("notdir", f"extraction point is not a directory: {path}")
    in_volume = os.stat("/").st_dev != st.st_dev
    if readonly_rootfs and not in_volume or _readonly(full) and not in_volume:
        raise _Fail("denied", "container rootfs is marked read-only")
    if _readonly(full):
        raise _Fail("denied", "mounted volume is marked read-only")
    owner = _owner(chown_user)

    def member_filter(m: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
        mode = m.mode
        m = tarfile.tar_filter(m, dest)  # names stay inside dest (the chroot keeps links inside)
        if mode is not None and m.mode is not None:
            m = m.replace(mode=mode, deep=False)  # dockerd keeps setuid and group/other write bits
        # numeric ids only, as Go's archive/tar: names are not looked up in the container
        m = m.replace(uname="", gname="", deep=False)
        if owner is not None:
            m = m.replace(uid=owner[0], gid=owner[1], deep=False)
        _check_mapped(m.uid, m.gid)
        target = os.path.join(dest, m.name)
        if no_overwrite_dir_non_dir and os.path.lexists(target):
            is_dir = os.path.isdir(target) and not os.path.islink(target)
            if is_dir != m.isdir():
                # moby's pkg/archive wording: the existing path, then the extraction directory
                raise _Fail("invalid", f"cannot overwrite {'directory' if is_dir else 'non-directory'} "
                                       f"\"{target}\" with {'non-directory' if is_dir else 'directory'} \"{dest}\"")
        return m

    with tarfile.open(fileobj=sys.stdin.buffer, mode="r|*") as tar:
        tar.extractall(full, filter=member_filter, numeric_owner=True)


def _readonly(path: str) -> bool:
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)


def _in_root(root: str, path: str) -> str:
    """``path`` inside ``root``, its symlinks resolved as if ``root`` were / (never outside)."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    cur = ""
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            cur = os.path.dirname(cur)
            continue
        nxt = f"{cur}/{part}"
        full = root + nxt
        if os.path.islink(full):
            hops += 1
            if hops > 40:
                raise _Fail("invalid", f"too many levels of symbolic links: {path}")
            target = os.readlink(full)
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            if target.startswith("/"):
                cur = ""
            continue
        cur = nxt
    return root + cur


def _bind(root: str, spec: str, ns: UserNamespace | None) -> None:
    """Bind ``SRC:DEST:MODE`` (``rw`` or ``ro``, ``,idmap``: through the user namespace ``ns``)
    over the container's root, making the mount point as dockerd does."""

    src, dest, modes = spec.rsplit(":", 2)
    mode = modes.split(",")[0]
    if not os.path.exists(src):
        return
    target = _in_root(root, dest)
    if os.path.isdir(src):
        os.makedirs(target, exist_ok=True)
    elif not os.path.lexists(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "a").close()
    if ns is not None and "idmap" in modes.split(","):
        tree = ns.trees([(src, True)])[0]
        try:
            lidmap.move_mount(tree, target)
        finally:
            os.close(tree)
    else:
        lmount.mount(src, target, None, MF.BIND | MF.REC)
    if mode == "ro":
        lmount.mount(None, target, None, MF.REMOUNT | MF.BIND | MF.RDONLY)


def _enter(root: str | None, overlay: str | None, mnt: str | None, binds: list[str], image_tree: str | None,
           userns: str | None) -> None:
    ns = None
    if userns is not None:
        ns = UserNamespace(os.open(userns, os.O_RDONLY | os.O_CLOEXEC))
    elif _maps is not None:
        ns = UserNamespace.create(_maps)
    if overlay is not None:
        _mount_stopped(overlay, mnt, binds, image_tree, ns)
        root = mnt
    assert root is not None
    os.chroot(root)
    os.chdir("/")
    if ns is not None:  # setns(CLONE_NEWUSER) is allowed in a chroot (unshare is not)
        sched.setns(ns.fd, CloneFlags.NEWUSER)
        ns.close()
        os.setgroups([])
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)


def _mount_stopped(overlay: str, mnt: str | None, binds: list[str], image_tree: str | None,
                   ns: UserNamespace | None) -> None:
    """A stopped container's root at ``mnt``, in a mount namespace of the helper's own: in a
    user namespace, the image's tree idmapped at ``lower/`` first (the cwd is the container's
    directory, the overlay's options are relative to it)."""
    tree = ns.trees([(image_tree, not _image_copy)])[0] if ns is not None and image_tree else -1
    try:
        sched.unshare(CloneFlags.NEWNS)
        lmount.mount(None, "/", None, MF.PRIVATE | MF.REC)
        if tree >= 0:
            os.makedirs("lower", exist_ok=True)
            lidmap.move_mount(tree, "lower")
    finally:
        if tree >= 0:
            os.close(tree)
    assert mnt is not None
    lmount.mount("overlay", mnt, "overlay", 0, overlay)
    for spec in binds:
        _bind(mnt, spec, ns)


def main(argv: list[str]) -> int:
    mode, path = argv[0], argv[1]
    opts = argv[2:]
    root = overlay = mnt = None
    if "--mnt" in opts:
        mnt = opts[opts.index("--mnt") + 1]
    if "--root" in opts:
        root = opts[opts.index("--root") + 1]
    if "--overlay" in opts:
        overlay = opts[opts.index("--overlay") + 1]
    binds = [opts[i + 1] for i, o in enumerate(opts) if o == "--bind"]
    chown_user = opts[opts.index("--chown-user") + 1] if "--chown-user" in opts else ""
    image_tree = opts[opts.index("--image-tree") + 1] if "--image-tree" in opts else None
    global _maps, _image_copy
    _image_copy = "--image-copy" in opts
    if "--idmaps" in opts:
        _maps = IdMaps.decode(opts[opts.index("--idmaps") + 1])
    if "--chdir" in opts:
        os.chdir(opts[opts.index("--chdir") + 1])
    try:
        # every module used after chroot is imported above (nothing can be imported after)
        import encodings.idna  # noqa: F401
        import grp, pwd  # noqa: F401,E401
        userns = opts[opts.index("--userns") + 1] if "--userns" in opts else None
        _enter(root, overlay, mnt, binds, image_tree, userns)
        if mode == "stat":
            do_stat(path)
        elif mode == "get":
            do_get(path)
        elif mode == "put":
            do_put(path, "--no-overwrite-dir-non-dir" in opts, chown_user, "--readonly-rootfs" in opts)
        else:
            raise _Fail("invalid", f"unknown mode {mode}")
    except _Fail as e:
        sys.stderr.write(json.dumps({"kind": e.kind, "message": str(e)}) + "\n")
        return 1
    except (tarfile.TarError, OSError) as e:
        kind = "denied" if isinstance(e, PermissionError) or getattr(e, "errno", 0) == 30 else "invalid"
        sys.stderr.write(json.dumps({"kind": kind, "message": str(e)}) + "\n")
        return 1
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
