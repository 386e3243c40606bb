"""A container's files as tar, both ways (``docker cp``), in a throwaway helper process.

berthd runs ``python -m berth.runtime.archive MODE PATH (--root DIR | --overlay OPTS --mnt DIR)``:

- ``--root /proc/<init pid>/root`` for a running container (its mounts included);
- ``--overlay lowerdir=..,upperdir=..,workdir=..`` for a stopped one: the helper mounts the
  overlay in a private mount namespace of its own, so the host never sees the mount.

Then it imports everything it needs and chroots into the container's root, so every path and
every symlink (``/etc/x -> /``, ``../../..``) resolves inside the container: nothing read or
written can be outside it. Modes:

    stat PATH  -> stdout: {"name","size","mode","mtime","linkTarget"} (Docker's PathStat)
    get PATH   -> stdout: a tar of PATH named by its base name (directories recursively)
    put PATH   <- stdin: a tar extracted into the directory PATH
                  (--no-overwrite-dir-non-dir, --copy-uidgid)

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


def do_put(path: str, no_overwrite_dir_non_dir: bool, copy_uidgid: bool) -> None:
    full = _resolve(path + "/")
    st = _lstat(full)
    if not stat.S_ISDIR(st.st_mode):
        raise _Fail("notdir", f"extraction point is not a directory: {path}")
    if not os.access(full, os.W_OK) or _readonly(full):
        raise _Fail("denied", "container rootfs is marked read-only")

    def member_filter(m: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
        m = tarfile.tar_filter(m, dest)
        if not copy_uidgid:
            m = m.replace(uid=0, gid=0, uname="root", gname="root", deep=False)
        target = os.path.join(dest, m.name)
        if no_overwrite_dir_non_dir and os.path.lexists(target):
            is_dir = os.path.isdir(target) and not os.path.islink(target)
            if is_dir != m.isdir():
                raise _Fail("invalid", f"cannot overwrite {'directory' if is_dir else 'non-directory'} "
                                       f"{target} with {'non-directory' if is_dir else 'directory'} {m.name}")
        return m

    with tarfile.open(fileobj=sys.stdin.buffer, mode="r|*") as tar:
        tar.extractall(full, filter=member_filter)  # type: ignore[arg-type]


def _readonly(path: str) -> bool:
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)


def _enter(root: str | None, overlay: str | None, mnt: str | None) -> None:
    if overlay is not None:
        from berth.linux import mount as lmount
        from berth.linux import sched
        from berth.linux.mount import MountFlags as MF
        from berth.linux.sched import CloneFlags

        sched.unshare(CloneFlags.NEWNS)
        lmount.mount(None, "/", None, MF.PRIVATE | MF.REC)
        root = mnt
        lmount.mount("overlay", root, "overlay", 0, overlay)
    assert root is not None
    os.chroot(root)
    os.chdir("/")


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
    try:
        # every module used after chroot is imported above (nothing can be imported after)
        import encodings.idna  # noqa: F401
        import grp, pwd  # noqa: F401,E401
        _enter(root, overlay, mnt)
        if mode == "stat":
            do_stat(path)
        elif mode == "get":
            do_get(path)
        elif mode == "put":
            do_put(path, "--no-overwrite-dir-non-dir" in opts, "--copy-uidgid" in opts)
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
