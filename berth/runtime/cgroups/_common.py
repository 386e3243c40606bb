"""Shared by v1 and v2: the Cgroup base class, the resources accessor, conversions, file I/O.

Every kernel file is reached as `<dir>/<name>` under a root that tests point at tmp_path.
Writes open the file O_WRONLY|O_TRUNC without O_CREAT (a missing file is a missing feature,
not something to create) and raise OSError naming the file.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import time
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


@lru_cache(maxsize=256)
def _snake(name: str) -> str:
    return _CAMEL.sub("_", name).lower()


def res(obj: Any, *path: str) -> Any:
    """Walk `path` through OCI linux.resources given as a dict or as an object.

    Accepts the JSON names (``disableOOMKiller``) and their snake_case forms
    (``disable_oom_killer``); a missing step gives None.
    """
    for name in path:
        if obj is None:
            return None
        if isinstance(obj, Mapping):
            v = obj.get(name)
            if v is None:
                v = obj.get(_snake(name))
        else:
            v = getattr(obj, name, None)
            if v is None:
                v = getattr(obj, _snake(name), None)
        obj = v
    return obj


def shares_to_weight(shares: int) -> int:
    """cgroup v1 cpu.shares [2, 262144] -> v2 cpu.weight [1, 10000] (runc, crun)."""
    if shares == 0:
        return 0
    return 1 + ((shares - 2) * 9999) // 262142


def blkio_weight_to_io_weight(weight: int) -> int:
    """v1 blkio.weight [10, 1000] -> v2 io.weight [1, 10000] (runc)."""
    if weight == 0:
        return 0
    return 1 + (weight - 10) * 9999 // 990


def v2_swap_max(swap: int | None, limit: int | None) -> int | None:
    """OCI memory.swap (memory+swap total) -> v2 memory.swap.max (swap only).

    None means "do not write"; -1 means "max". Same rules as runc's
    ConvertMemorySwapToCgroupV2Value.
    """
    swap = swap or 0
    limit = limit or 0
    if limit == -1 and swap == 0:
        return -1
    if swap in (-1, 0):
        return None if swap == 0 else -1
    if limit in (0, -1):
        raise ValueError("unable to set swap limit without memory limit")
    if limit < 0:
        raise ValueError(f"invalid memory value: {limit}")
    if swap < limit:
        raise ValueError("memory+swap limit should be >= memory limit")
    return swap - limit


def device_rule_line(dev: Any) -> str:
    """An OCI linux.resources.devices[] entry -> the v1 devices.allow/deny line."""
    typ = res(dev, "type") or "a"
    major, minor = res(dev, "major"), res(dev, "minor")
    maj = "*" if major is None or major < 0 else str(major)
    mnr = "*" if minor is None or minor < 0 else str(minor)
    return f"{typ} {maj}:{mnr} {res(dev, 'access') or 'rwm'}"


def write(d: str, name: str, value: str) -> None:
    path = f"{d}/{name}"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
    except OSError as e:
        code = e.errno or errno.EIO
        raise OSError(code, f"write {value!r} to {name}: {os.strerror(code)}", path) from None


def read(d: str, name: str) -> str:
    path = f"{d}/{name}"
    try:
        with open(path, "rb", buffering=0) as f:
            return f.read().decode()
    except OSError as e:
        code = e.errno or errno.EIO
        raise OSError(code, f"read {name}: {os.strerror(code)}", path) from None


def read_opt(d: str, name: str) -> str | None:
    try:
        with open(f"{d}/{name}", "rb", buffering=0) as f:
            return f.read().decode()
    except (FileNotFoundError, NotADirectoryError):
        return None


def read_int(d: str, name: str) -> int | None:
    """An integer file; "max" (or v1's near-2^63 "unlimited") gives None."""
    s = read_opt(d, name)
    if s is None:
        return None
    s = s.strip()
    if s == "max" or not s:
        return None
    v = int(s)
    return None if v >= 0x7FFFFFFFFFFFF000 else v


def read_keyed(d: str, name: str) -> dict[str, int]:
    """A flat-keyed file ("key value" per line), e.g. memory.stat, cpu.stat, memory.events."""
    s = read_opt(d, name)
    out: dict[str, int] = {}
    if s:
        for line in s.splitlines():
            k, _, v = line.partition(" ")
            if v.strip().lstrip("-").isdigit():
                out[k] = int(v)
    return out


def exists(d: str, name: str) -> bool:
    return os.path.exists(f"{d}/{name}")


def parse_procs(text: str | None) -> list[int]:
    return [int(x) for x in text.split()] if text else []


def mkdirs(d: str) -> bool:
    """mkdir -p; True if the last component was created now."""
    try:
        os.mkdir(d, 0o755)
        return True
    except FileExistsError:
        return False
    except FileNotFoundError:
        os.makedirs(os.path.dirname(d), 0o755, exist_ok=True)
        try:
            os.mkdir(d, 0o755)
            return True
        except FileExistsError:
            return False


_RMDIR_DELAYS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)


def rmdir_tree(d: str) -> None:
    """Remove cgroup dir d and any child cgroups below it (deepest first); missing is fine.

    Retries EBUSY briefly: a cgroup stays busy until its last task has been reaped. The
    rmdir is tried first: a container's cgroup has no children, and listing its ~30 files
    costs as much as removing it.
    """
    try:
        os.rmdir(d)
        return
    except FileNotFoundError:
        return
    except OSError as first:
        if first.errno not in (errno.EBUSY, errno.ENOTEMPTY):
            raise OSError(first.errno, f"rmdir cgroup: {os.strerror(first.errno or 0)}", d) from None
    try:
        entries = list(os.scandir(d))
    except FileNotFoundError:
        return
    for e in entries:
        if e.is_dir(follow_symlinks=False):
            rmdir_tree(e.path)
    for delay in (*_RMDIR_DELAYS, None):
        try:
            os.rmdir(d)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY or delay is None:
                raise OSError(e.errno, f"rmdir cgroup: {os.strerror(e.errno or 0)}", d) from None
            time.sleep(delay)


def wait_until(check: Any, timeout: float, what: str, path: str) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.0002
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(errno.ETIMEDOUT, f"{what}: timed out after {timeout}s", path)
        time.sleep(delay)
        delay = min(delay * 2, 0.01)


def signal_pids(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


class Cgroup:
    """One container's cgroup, on v1 (a dir per hierarchy) or v2 (one dir).

    Lifecycle, as the runtime uses it::

        cg = open_cgroup("/berth/<id>")   # nothing touched yet
        cg.create(spec.linux.resources)   # mkdir, enable controllers (v2), write limits
        cg.add(pid)                       # before the container's init execs
        cg.stats(); cg.freeze(); cg.thaw(); cg.update(new_resources)
        cg.kill_all(signal.SIGKILL); cg.destroy()
    """

    version: int
    path: str  # the OCI cgroupsPath this was opened with

    def create(self, resources: Any = None) -> None:
        raise NotImplementedError

    def update(self, resources: Any) -> None:
        """Write limits into an existing cgroup (`docker update`)."""
        raise NotImplementedError

    def add(self, pid: int) -> None:
        raise NotImplementedError

    def pids(self) -> list[int]:
        raise NotImplementedError

    def paths(self) -> dict[str, Path]:
        """Controller (v1; "name=systemd" for named ones) or "" (v2) -> this cgroup's dir."""
        raise NotImplementedError

    def oom_killed(self) -> bool:
        raise NotImplementedError

    def freeze(self, timeout: float = 10.0) -> None:
        raise NotImplementedError

    def thaw(self) -> None:
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:
        raise NotImplementedError

    def counters(self) -> dict[str, Any]:
        """The few counters a metrics scrape shows (fewer files than ``stats``): memory usage
        and limit, CPU usage/user/system ns, pids, per-device I/O bytes (``stats``' shapes)."""
        raise NotImplementedError

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        raise NotImplementedError

    def destroy(self) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} v{self.version} {self.path}>"
