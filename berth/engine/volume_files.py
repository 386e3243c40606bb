"""The files of volumes: the first-use copy of the image's content into a volume (through
overlay whiteouts), and the sizes ``system df`` and ``volume prune`` report."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable, Sequence
from pathlib import Path

from berth.state import rootless

Ids = Callable[[int, int], tuple[int, int]]  # a file's (uid, gid) in a layer -> the volume's


def _same(uid: int, gid: int) -> tuple[int, int]:
    return uid, gid


def copy_up(layers_top_first: list[Path], dest: str, target: Path, ids: Sequence[Ids] = ()) -> None:
    """Copy the image's content at ``dest`` into an empty volume, as Docker does on first use:
    layers bottom-up, honouring overlay whiteouts and opaque directories. ``ids``: per layer,
    how its owners become the volume's (a user namespace container's image layers hold its own
    ids, its writable layer the host's); owners are kept as they are without."""
    rel = dest.lstrip("/")
    found = False
    for i, layer in reversed(list(enumerate(layers_top_first))):
        fix = ids[i] if i < len(ids) else _same
        src = layer / rel
        try:
            st = os.lstat(src)
        except OSError:
            continue
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True, exist_ok=True)
            found = False
            continue
        if not stat.S_ISDIR(st.st_mode):
            continue
        try:
            if os.getxattr(src, rootless.overlay_prefix() + "opaque") == b"y":
                for child in list(target.iterdir()):
                    _rm(child)
        except OSError:
            pass
        _merge(src, target, fix)
        if not found:
            os.chmod(target, stat.S_IMODE(st.st_mode))
            os.chown(target, *fix(st.st_uid, st.st_gid))
            found = True


def _rm(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def _merge(src: Path, dst: Path, fix: Ids) -> None:
    for entry in os.scandir(src):
        s, d = Path(entry.path), dst / entry.name
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            if d.exists() or d.is_symlink():
                _rm(d)
            continue
        if entry.is_dir(follow_symlinks=False):
            if d.exists() and not d.is_dir():
                _rm(d)
            d.mkdir(exist_ok=True)
            shutil.copystat(s, d, follow_symlinks=False)
            os.chown(d, *fix(st.st_uid, st.st_gid))
            _merge(s, d, fix)
        else:
            if d.exists() or d.is_symlink():
                _rm(d)
            if entry.is_symlink():
                os.symlink(os.readlink(s), d)
            else:
                shutil.copy2(s, d, follow_symlinks=False)
            os.lchown(d, *fix(st.st_uid, st.st_gid))


def du(path: Path) -> int:
    """Bytes of the files under ``path`` (their lstat sizes; hard links counted each time)."""
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def tree_size(root: Path) -> int:
    """Bytes of the regular files under root, each inode once (dockerd's directory.Size)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            try:
                st = os.lstat(os.path.join(dirpath, f))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total
