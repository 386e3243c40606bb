"""``berth system rootless-check``: what a rootless berthd needs from this host and this user,
each with the fix when it is missing. Local facts only (files, PATH, the kernel's version):
nothing is started and no daemon is asked.

    for c in checks(Host.this()):
        print(c.line())
"""

from __future__ import annotations

import os
import platform
import pwd
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True   # False: berthd starts without it, with less

    def lines(self) -> list[str]:
        mark = "ok" if self.ok else ("FAIL" if self.required else "WARN")
        out = [f"[{mark:>4}] {self.name}: {self.detail}"]
        if not self.ok and self.fix:
            out.append(f"       fix: {self.fix}")
        return out


@dataclass
class Host:
    """Where the facts come from (tests point them elsewhere)."""

    user: str
    uid: int
    env: dict[str, str]
    proc: str = "/proc"
    etc: str = "/etc"
    cgroup: str = "/sys/fs/cgroup"
    tun: str = "/dev/net/tun"
    kernel: str = field(default_factory=platform.release)
    which: Callable[[str], str | None] = shutil.which

    @classmethod
    def this(cls) -> Host:
        uid = os.getuid()
        return cls(pwd.getpwuid(uid).pw_name, uid, dict(os.environ))

    def read(self, path: str) -> str | None:
        try:
            with open(path) as f:
                return f.read()
        except OSError:
            return None


def _ranges(text: str | None, names: tuple[str, ...]) -> list[str]:
    out = []
    for line in (text or "").splitlines():
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] in names:
            out.append(f"{parts[1]}:{parts[2]}")
    return out


def subids(h: Host) -> Check:
    names = (h.user, str(h.uid))
    uids, gids = _ranges(h.read(f"{h.etc}/subuid"), names), _ranges(h.read(f"{h.etc}/subgid"), names)
    if uids and gids:
        return Check("subordinate ids", True, f"uids {', '.join(uids)}; gids {', '.join(gids)}")
    return Check("subordinate ids", False, f"no line for {h.user} in {h.etc}/subuid and {h.etc}/subgid: "
                 "a single-id map (containers have only root)",
                 f"sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {h.user}", required=False)


def idmap_tools(h: Host) -> Check:
    missing, unprivileged = [], []
    for tool in ("newuidmap", "newgidmap"):
        path = h.which(tool)
        if path is None:
            missing.append(tool)
        elif not os.stat(path).st_mode & stat.S_ISUID and not _has_file_caps(path):
            unprivileged.append(path)
    if missing:
        return Check("newuidmap/newgidmap", False, f"{' and '.join(missing)} not found", "sudo apt-get install uidmap")
    if unprivileged:
        return Check("newuidmap/newgidmap", False, f"{', '.join(unprivileged)} neither setuid nor with file "
                     "capabilities", "sudo apt-get install --reinstall uidmap")
    return Check("newuidmap/newgidmap", True, "installed")


def _has_file_caps(path: str) -> bool:
    try:
        return bool(os.getxattr(path, "security.capability"))
    except OSError:
        return False


def userns(h: Host) -> Check:
    clone = h.read(f"{h.proc}/sys/kernel/unprivileged_userns_clone")
    if clone is not None and clone.strip() != "1":
        return Check("user namespaces", False, "kernel.unprivileged_userns_clone is 0",
                     "sudo sysctl -w kernel.unprivileged_userns_clone=1 (and in /etc/sysctl.d/)")
    most = h.read(f"{h.proc}/sys/user/max_user_namespaces")
    if most is not None and most.strip() == "0":
        return Check("user namespaces", False, "user.max_user_namespaces is 0",
                     "sudo sysctl -w user.max_user_namespaces=28633 (and in /etc/sysctl.d/)")
    aa = h.read(f"{h.proc}/sys/kernel/apparmor_restrict_unprivileged_userns")
    if aa is not None and aa.strip() == "1":
        return Check("user namespaces", False, "AppArmor restricts unprivileged user namespaces",
                     "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or an AppArmor profile "
                     "for berthd with 'userns,'")
    return Check("user namespaces", True, "an ordinary user may create them")


def overlay(h: Host) -> Check:
    try:
        major, minor = (int(x) for x in h.kernel.split("-")[0].split(".")[:2])
    except ValueError:
        major, minor = 0, 0
    if (major, minor) >= (5, 11):
        return Check("storage", True, f"kernel overlayfs with userxattr (Linux {h.kernel})")
    fuse = h.which("fuse-overlayfs")
    if fuse is not None:
        return Check("storage", True, f"fuse-overlayfs ({fuse}): Linux {h.kernel} cannot mount overlayfs in a "
                     "user namespace (5.11 can); /dev/fuse must be open to users")
    return Check("storage", False, f"Linux {h.kernel} cannot mount overlayfs in a user namespace (5.11 can)",
                 "sudo apt-get install fuse-overlayfs, or a kernel >= 5.11")


def network(h: Host) -> Check:
    tool = h.which("pasta") or h.which("slirp4netns")
    if tool is None:
        return Check("network", False, "neither pasta nor slirp4netns: containers reach nothing outside the "
                     "engine, published ports are not forwarded", "sudo apt-get install passt", required=False)
    name = "pasta" if os.path.basename(tool).startswith("pasta") else "slirp4netns"
    if not os.access(h.tun, os.R_OK | os.W_OK):
        return Check("network", False, f"{h.tun} is not open to users ({name} needs it)",
                     f"sudo chmod 0666 {h.tun} (Debian's udev default)", required=False)
    return Check("network", True, f"{name} ({tool})")


def cgroups(h: Host) -> Check:
    own = h.read(f"{h.proc}/self/cgroup") or ""
    path = next((line[3:] for line in own.splitlines() if line.startswith("0::")), None)
    if h.read(f"{h.cgroup}/cgroup.controllers") is None:
        return Check("cgroups", False, "cgroup v1: resource limits are refused",
                     "boot with systemd.unified_cgroup_hierarchy=1 (cgroup v2) and start berthd from "
                     "systemd --user (Delegate=yes)", required=False)
    target = os.path.join(h.cgroup, (path or "/").lstrip("/"))
    if path is None or not os.access(os.path.join(target, "cgroup.procs"), os.W_OK):
        return Check("cgroups", False, f"cgroup v2, but {target} is not delegated to {h.user}: limits are refused",
                     "run berthd as a systemd --user service (contrib/systemd/user/berth.service) with "
                     "Delegate=yes", required=False)
    return Check("cgroups", True, f"cgroup v2, {target} delegated")


def runtime_dir(h: Host) -> Check:
    d = h.env.get("XDG_RUNTIME_DIR", "")
    if not d:
        return Check("XDG_RUNTIME_DIR", False, "not set", "export XDG_RUNTIME_DIR=/run/user/$(id -u) "
                     "(systemd's logind sets it; loginctl enable-linger keeps it)")
    if not os.access(d, os.W_OK | os.X_OK):
        return Check("XDG_RUNTIME_DIR", False, f"{d} is not writable", f"a directory of {h.user}'s, mode 700")
    return Check("XDG_RUNTIME_DIR", True, d)


CHECKS = (subids, idmap_tools, userns, overlay, network, cgroups, runtime_dir)


def checks(h: Host) -> list[Check]:
    out = [c(h) for c in CHECKS]
    if not out[0].ok:   # without ranges, newuidmap is not used
        out[1] = Check(out[1].name, out[1].ok, out[1].detail, out[1].fix, required=False)
    return out
