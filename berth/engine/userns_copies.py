"""The fallback where the kernel cannot idmap overlay lower layers (issue 17): a chown'd copy of
each image layer per id range, ``<data-root>/image/userns/<range key>/l/<short>``, laid out as
``image/`` is (``l/<short>``, ``empty``) so the overlay options stay the same.

A copy is made once per range and layer, at the first start that needs it (``cp -a``, then every
owner moved to the host ids the range maps it to; 65534 when it maps none), renamed into place
when complete, and shared by every container of that range (``userns-remap``'s one range, or an
``auto`` range handed out again). Copies of a range go when the last container holding that
range is removed.

    copies = LayerCopies(data, trash)
    root = copies.ensure(maps, lowers)   # the tree the init attaches at lower/, as it is
    copies.release(maps)                 # no container holds the range any more
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import stat
import subprocess
from pathlib import Path

from berth.errors import RuntimeFailure
from berth.runtime.userns import OVERFLOW_ID, IdMaps
from berth.state.paths import DataRoot
from berth.state.trash import Trash


def range_key(maps: IdMaps) -> str:
    return hashlib.sha256(maps.encode().encode()).hexdigest()[:16]


class LayerCopies:
    """Chown'd copies of image layers, per id range."""

    def __init__(self, data: DataRoot, trash: Trash) -> None:
        self.image = data.root / "image"
        self.root = self.image / "userns"
        self.trash = trash

    def dir_for(self, maps: IdMaps) -> Path:
        return self.root / range_key(maps)

    def ensure(self, maps: IdMaps, lowers: list[Path]) -> Path:
        """The range's copy of ``lowers`` (dirs under image/), made where missing. Blocking:
        run it in a thread. Raises RuntimeFailure."""
        top = self.dir_for(maps)
        host_root = (maps.host_uid(0), maps.host_gid(0))
        for sub in (top, top / "l"):
            sub.mkdir(parents=True, exist_ok=True)
            os.chown(sub, *host_root)  # the container's root searches them (as image/ idmapped)
            os.chmod(sub, 0o700)
        for lower in lowers:
            rel = lower.relative_to(self.image)
            dest = top / rel
            if not dest.exists():
                self._copy(lower, dest, maps)
        return top

    def _copy(self, src: Path, dest: Path, maps: IdMaps) -> None:
        tmp = dest.parent / f".tmp-{dest.name}-{secrets.token_hex(4)}"
        try:
            r = subprocess.run(["cp", "-a", "--preserve=all", "--", f"{os.path.realpath(src)}/.", str(tmp)],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeFailure(f"copy layer {src} for a user namespace: {r.stderr.strip()}")
            _chown_tree(tmp, maps)
            try:
                os.rename(tmp, dest)
            except OSError:  # another start of the same range made it first
                if not dest.exists():
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def release(self, maps: IdMaps) -> None:
        top = self.dir_for(maps)
        if top.exists():
            self.trash.discard(top)

    def used(self) -> int:
        """How many ranges have copies (docker info says it)."""
        try:
            return sum(1 for p in self.root.iterdir() if not p.name.startswith("."))
        except FileNotFoundError:
            return 0


def _chown_tree(top: Path, maps: IdMaps) -> None:
    """Every owner under ``top`` -> the host ids ``maps`` gives it, each inode once (hard links);
    chown(2) clears setuid and setgid bits, so the mode is set again."""
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(top):
        for p in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            st = os.lstat(p)
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            uid, gid = maps.host_uid(st.st_uid), maps.host_gid(st.st_gid)
            os.lchown(p, uid if uid >= 0 else OVERFLOW_ID, gid if gid >= 0 else OVERFLOW_ID)
            if not stat.S_ISLNK(st.st_mode) and st.st_mode & (stat.S_ISUID | stat.S_ISGID):
                os.chmod(p, stat.S_IMODE(st.st_mode))
