"""The build context: received as a tar stream (identity, gzip, bzip2 or xz) and written to
disk, extracted safely, or fetched from a remote URL (a tarball, a Dockerfile, or a git
repository cloned with the ``git`` binary).

Extraction never writes outside the context directory: absolute names and ``..`` are
refused, devices and FIFOs are refused, a member is never written through a symlink (every
parent must be a real directory), hard links must point at an earlier regular file. Symlinks
are kept as symlinks; reading them later goes through ``fsview.RootView``, which resolves
them inside the context, so a link that points outside never reaches a host file.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tarfile
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from berth.build.fsview import RootView
from berth.errors import InvalidArgument

_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"))


class ContextError(InvalidArgument):
    pass


def compression(head: bytes) -> str | None:
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    return None


def is_tar(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(512)
    if compression(head):
        return True
    return len(head) >= 262 and head[257:262] == b"ustar"


def _clean(name: str) -> str | None:
    """A member name as a relative path inside the context; None for the root itself."""
    if name.startswith("/"):
        raise ContextError(f"invalid build context: absolute path in archive: {name}")
    parts = []
    for p in name.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            raise ContextError(f"invalid build context: path escapes the context: {name}")
        parts.append(p)
    return "/".join(parts) or None


def _parents(dest: Path, rel: str) -> Path:
    """Create the parent dirs of ``rel`` (real directories only, never through a symlink)."""
    cur = dest
    for p in rel.split("/")[:-1]:
        cur = cur / p
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            os.mkdir(cur, 0o755)
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise ContextError(f"invalid build context: {rel} goes through a non-directory")
    return cur


def _replace(path: Path) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def extract(archive: Path, dest: Path) -> None:
    """Extract a (compressed) context tar into ``dest`` (sync; run it in a thread)."""
    dest.mkdir(parents=True, exist_ok=True)
    dirs: list[tuple[Path, int, float]] = []
    try:
        tar = tarfile.open(archive, "r:*")
    except (tarfile.TarError, EOFError) as e:
        raise ContextError(f"failed to read build context: {e}") from None
    with tar:
        try:
            for m in tar:
                _extract_one(tar, m, dest, dirs)
        except (tarfile.TarError, EOFError, OSError) as e:
            raise ContextError(f"failed to extract build context: {e}") from None
    for path, mode, mtime in reversed(dirs):
        os.chmod(path, mode | 0o700)
        os.utime(path, (mtime, mtime))


def _extract_one(tar: tarfile.TarFile, m: tarfile.TarInfo, dest: Path, dirs: list[tuple[Path, int, float]]) -> None:
    rel = _clean(m.name)
    if rel is None:
        return
    _parents(dest, rel)
    target = dest / rel
    if m.isdir():
        try:
            st = os.lstat(target)
            if not stat.S_ISDIR(st.st_mode):
                _replace(target)
                os.mkdir(target, 0o755)
        except FileNotFoundError:
            os.mkdir(target, 0o755)
        dirs.append((target, m.mode & 0o7777, m.mtime))
        return
    if m.isreg():
        _replace(target)
        src = tar.extractfile(m)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out:
            if src is not None:
                shutil.copyfileobj(src, out, 1 << 20)
        os.chmod(target, m.mode & 0o7777)
        os.utime(target, (m.mtime, m.mtime))
    elif m.issym():
        _replace(target)
        os.symlink(m.linkname, target)
        os.utime(target, (m.mtime, m.mtime), follow_symlinks=False)
    elif m.islnk():
        link = _clean(m.linkname)
        if link is None:
            raise ContextError(f"invalid build context: bad hard link {m.name}")
        src_path = dest / link
        try:
            _parents(dest, link)
            st = os.lstat(src_path)
        except (FileNotFoundError, ContextError):
            raise ContextError(f"invalid build context: hard link {m.name} to a missing file") from None
        if not stat.S_ISREG(st.st_mode):
            raise ContextError(f"invalid build context: hard link {m.name} to a non-regular file")
        _replace(target)
        os.link(src_path, target)
    else:
        raise ContextError(f"invalid build context: {m.name} is a device or special file")


# -- remote contexts -----------------------------------------------------------------------------


def is_git_url(url: str) -> bool:
    if url.startswith(("git://", "git@", "github.com/")):
        return True
    u = urllib.parse.urlsplit(url)
    if u.scheme == "file":
        return u.path.endswith(".git") or os.path.isdir(u.path)
    return u.scheme in ("http", "https") and u.path.endswith(".git")


def git_clone(url: str, dest: Path) -> Path:
    """``git clone --depth 1`` of ``url[#ref[:subdir]]``; returns the context dir."""
    repo, _, frag = url.partition("#")
    ref, _, subdir = frag.partition(":")
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    cmd = ["git", "-c", "protocol.file.allow=always", "clone", "--depth", "1", "--recurse-submodules", "-q"]
    if ref:
        cmd += ["--branch", ref]
    r = subprocess.run([*cmd, "--", repo, str(dest)], capture_output=True, text=True, env=env, timeout=600)
    if r.returncode != 0 and ref:
        # a commit id is not a branch: clone everything, then check it out
        shutil.rmtree(dest, ignore_errors=True)
        r = subprocess.run(["git", "-c", "protocol.file.allow=always", "clone", "-q", "--", repo, str(dest)], capture_output=True, text=True, env=env,
                           timeout=600)
        if r.returncode == 0:
            r = subprocess.run(["git", "-C", str(dest), "checkout", "-q", ref], capture_output=True, text=True,
                               env=env, timeout=600)
    if r.returncode != 0:
        raise ContextError(f"unable to prepare context: unable to 'git clone' to temporary context directory: "
                           f"error fetching: {r.stderr.strip()}: exit status {r.returncode}")
    shutil.rmtree(dest / ".git", ignore_errors=True)
    root = dest
    if subdir:
        sub = _clean(subdir)
        root = dest / sub if sub else dest
        if not root.is_dir() or root.is_symlink():
            raise ContextError(f"unable to prepare context: subdirectory {subdir} not found")
    return root


def fetch(url: str, out: Path, timeout: float = 600) -> None:
    """Download ``url`` to ``out`` (remote contexts, ADD <url>)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, open(out, "wb") as f:
            shutil.copyfileobj(r, f, 1 << 20)
    except OSError as e:
        raise ContextError(f"unable to prepare context: error downloading remote context {url}: {e}") from None


@dataclass
class BuildContext:
    """A context on disk: ``root`` holds the files; ``dockerfile`` is the Dockerfile's text."""
    root: Path
    dockerfile: bytes
    dockerfile_name: str
    ignore_patterns: list[str]


def _load_dockerfile(root: Path, name: str) -> tuple[bytes, str]:
    view = RootView([root], layered=False)
    names = [name] if name not in ("", "Dockerfile") else ["Dockerfile", "dockerfile"]
    for n in names:
        node = view.lookup(n)
        if node is not None and stat.S_ISREG(node.st.st_mode):
            if node.st.st_size > 16 << 20:
                raise ContextError(f"Dockerfile {n} is too large")
            return node.host.read_bytes(), n
    raise ContextError(f"Cannot locate specified Dockerfile: {name or 'Dockerfile'}")


def load(work: Path, archive: Path | None, remote: str, dockerfile: str) -> BuildContext:
    """The context of one build, under ``work`` (sync; run it in a thread)."""
    root = work / "context"
    if remote and remote != "context":
        if is_git_url(remote):
            root = git_clone(remote, root)
        elif remote.startswith(("http://", "https://")):
            got = work / "remote"
            fetch(remote, got)
            if is_tar(got):
                extract(got, root)
            else:
                root.mkdir()
                shutil.move(str(got), root / (dockerfile or "Dockerfile"))
        else:
            raise ContextError(f"unable to prepare context: remote URL {remote!r} is not a git repository or "
                               "http(s) URL")
    elif archive is not None and archive.stat().st_size > 0 and not is_tar(archive):
        root.mkdir()  # the body is a bare Dockerfile (``docker build - < Dockerfile``)
        shutil.move(str(archive), root / (dockerfile or "Dockerfile"))
    elif archive is not None and archive.stat().st_size > 0:
        extract(archive, root)
        archive.unlink()
    else:
        root.mkdir(exist_ok=True)
    text, name = _load_dockerfile(root, dockerfile)
    patterns: list[str] = []
    ign = root / ".dockerignore"
    if ign.is_file() and not ign.is_symlink():
        from berth.build import dockerignore
        patterns = dockerignore.parse(ign.read_bytes())
    return BuildContext(root, text, name, patterns)
