"""A read-only view of a root file system made of directories: the build context (one
directory), or an image (its unpacked layers, top first, with overlay whiteouts and opaque
directories). Paths are resolved inside the root the way the kernel resolves them under
chroot: ``..`` stops at the root and an absolute symlink starts again at the root, so a
symlink that points "outside" never reaches a host file.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from berth.state import rootless

_MAX_LINKS = 40


@dataclass(frozen=True)
class Node:
    path: str              # the resolved path inside the root, "/a/b"
    hosts: tuple[Path, ...]  # where it lives: one host path, or every layer's dir for a directory
    st: os.stat_result

    @property
    def host(self) -> Path:
        return self.hosts[0]

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.st.st_mode)

    @property
    def is_link(self) -> bool:
        return stat.S_ISLNK(self.st.st_mode)


def _whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _opaque(p: Path) -> bool:
    try:
        return os.getxattr(p, rootless.overlay_prefix() + "opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


class RootView:
    def __init__(self, dirs: list[Path], layered: bool = True):
        self.dirs = [Path(d) for d in dirs]
        self.layered = layered and len(self.dirs) > 1

    def _child(self, parents: tuple[Path, ...], name: str) -> tuple[tuple[Path, ...], os.stat_result] | None:
        hosts: list[Path] = []
        first: os.stat_result | None = None
        for d in parents:
            p = d / name
            try:
                st = os.lstat(p)
            except (FileNotFoundError, NotADirectoryError):
                continue
            if self.layered and _whiteout(st):
                break
            if first is None:
                first = st
                hosts.append(p)
                if not stat.S_ISDIR(st.st_mode) or (self.layered and _opaque(p)):
                    break
                continue
            if not stat.S_ISDIR(st.st_mode):
                break
            hosts.append(p)
            if self.layered and _opaque(p):
                break
        if first is None:
            return None
        return tuple(hosts), first

    def lookup(self, path: str, follow: bool = True) -> Node | None:
        """The entry at ``path``, symlinks resolved inside the root (the last one only if
        ``follow``); None when it does not exist."""
        parts = [p for p in path.split("/") if p not in ("", ".")]
        stack: list[tuple[str, tuple[Path, ...]]] = []
        roots = tuple(self.dirs)
        links = 0
        root_st = os.stat(self.dirs[0]) if self.dirs else None
        while parts:
            name = parts.pop(0)
            if name in ("", "."):
                continue
            if name == "..":
                if stack:
                    stack.pop()
                continue
            cur = stack[-1][1] if stack else roots
            found = self._child(cur, name)
            if found is None:
                return None
            hosts, st = found
            if stat.S_ISLNK(st.st_mode) and (parts or follow):
                links += 1
                if links > _MAX_LINKS:
                    return None
                target = os.readlink(hosts[0])
                if target.startswith("/"):
                    stack = []
                parts = [p for p in target.split("/") if p not in ("", ".")] + parts
                continue
            if parts and not stat.S_ISDIR(st.st_mode):
                return None
            stack.append((name, hosts))
        if not stack:
            if root_st is None:
                return None
            return Node("/", roots, root_st)
        name, hosts = stack[-1]
        return Node("/" + "/".join(n for n, _ in stack), hosts, os.lstat(hosts[0]))

    def listdir(self, node: Node) -> list[str]:
        """Names in a directory, merged over the layers (whiteouts hide lower names)."""
        seen: dict[str, bool] = {}
        for d in node.hosts:
            try:
                names = os.listdir(d)
            except OSError:
                continue
            for n in names:
                if n in seen:
                    continue
                if self.layered:
                    try:
                        st = os.lstat(d / n)
                    except OSError:
                        continue
                    seen[n] = not _whiteout(st)
                else:
                    seen[n] = True
        return sorted(n for n, visible in seen.items() if visible)

    def child(self, node: Node, name: str) -> Node | None:
        found = self._child(node.hosts, name)
        if found is None:
            return None
        hosts, st = found
        base = node.path.rstrip("/")
        return Node(f"{base}/{name}", hosts, st)

    def walk(self, node: Node) -> list[Node]:
        """Every entry under a directory (not the directory itself), parents first."""
        out: list[Node] = []
        for n in self.listdir(node):
            c = self.child(node, n)
            if c is None:
                continue
            out.append(c)
            if c.is_dir:
                out.extend(self.walk(c))
        return out

    def glob(self, pattern: str) -> list[Node]:
        """Entries matching a path pattern (Go's filepath.Match per component)."""
        parts = [p for p in pattern.split("/") if p not in ("", ".")]
        root = self.lookup("/")
        if root is None:
            return []
        current = [root]
        for i, part in enumerate(parts):
            nxt: list[Node] = []
            last = i == len(parts) - 1
            for node in current:
                if not node.is_dir:
                    continue
                if not has_magic(part):
                    c = self.lookup(f"{node.path.rstrip('/')}/{part}", follow=not last)
                    if c is not None:
                        nxt.append(c)
                    continue
                for n in self.listdir(node):
                    if fnmatch.fnmatchcase(n, _go_class(part)):
                        c = self.lookup(f"{node.path.rstrip('/')}/{n}", follow=not last)
                        if c is not None:
                            nxt.append(c)
            current = nxt
        return current

    def read_text(self, path: str, limit: int = 1 << 20) -> str | None:
        node = self.lookup(path)
        if node is None or not stat.S_ISREG(node.st.st_mode):
            return None
        with open(node.host, "rb") as f:
            return f.read(limit).decode("utf-8", "replace")


def has_magic(s: str) -> bool:
    return any(c in s for c in "*?[")


def _go_class(p: str) -> str:
    return p.replace("[^", "[!")
