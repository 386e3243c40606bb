"""The container's filesystem, applied by the init inside its new mount namespace.

Order (as runc): make / a slave so nothing propagates back to the host (or shared, when a
bidirectional bind asks: then the rootfs's parent mount is made private), mount the overlay (or
bind the rootfs onto itself: pivot_root needs a mount point), the spec's mounts in order,
device nodes and /dev symlinks, pivot_root; then, inside the new root, masked and read-only
paths and the read-only root. ``linux`` is the kernel seam (``berth.linux`` modules).
"""

from __future__ import annotations

import os
import stat
from collections import deque

from berth.linux import idmap as lidmap
from berth.linux import mount as lmount
from berth.linux.mount import MountFlags as MF
from berth.linux.mount import UmountFlags
from berth.runtime import mountinfo
from berth.runtime.plan import CgroupHierarchy, DeviceNode, MountKind, MountStep, Plan

_O_DIR = os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC
_MAX_LINKS = 255


def secure_join(root: str, unsafe: str) -> str:
    """``root`` + ``unsafe`` with symlinks resolved as if ``root`` were ``/``.

    ``..`` and absolute link targets never climb out of ``root`` (filepath-securejoin's rule).
    Components that do not exist yet are kept as they are, to be created by the caller.
    """
    parts = deque(unsafe.split("/"))
    stack: list[str] = []
    links = 0
    while parts:
        p = parts.popleft()
        if p in ("", "."):
            continue
        if p == "..":
            if stack:
                stack.pop()
            continue
        candidate = os.path.join(root, *stack, p)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            stack.append(p)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > _MAX_LINKS:
                raise OSError(40, "too many levels of symbolic links", unsafe)
            target = os.readlink(candidate)
            if target.startswith("/"):
                stack = []
            parts.extendleft(reversed(target.split("/")))
            continue
        stack.append(p)
    return os.path.join(root, *stack)


def _mount_point(path: str, is_dir: bool) -> None:
    if is_dir:
        os.makedirs(path, 0o755, exist_ok=True)
        return
    os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
    if not os.path.lexists(path):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))


def _bind(source: str, target: str, flags: int, data: str | None = None) -> None:
    lmount.mount(source, target, None, flags & (MF.BIND | MF.REC))
    _bind_flags(target, flags)


def _bind_flags(target: str, flags: int) -> None:
    rest = flags & ~(MF.BIND | MF.REC | MF.REMOUNT)
    if rest:
        # Bind mounts ignore flags like ro: they take effect only on a remount of the bind.
        lmount.mount(None, target, None, rest | MF.BIND | MF.REMOUNT | (flags & MF.REC))


def _mount_cgroup(step: MountStep, target: str, plan: Plan, cg_paths: dict[str, str]) -> None:
    base = step.flags & ~MF.RDONLY
    if plan.cgroup2_root:
        if plan.cgroupns:
            lmount.mount("cgroup2", target, "cgroup2", step.flags)
            return
        h = plan.cgroups[0]
        _bind(_host_dir(h, cg_paths.get(h.key, "/")), target, step.flags | MF.BIND | MF.REC)
        return
    # cgroup v1 (as runc): a tmpfs with one bind per hierarchy of the container's own cgroup;
    # their flags (ro, nosuid...) set on the whole tree at once by mount_setattr: 1 call where
    # each bind, and the tmpfs, took a remount (10 on a host with 9 hierarchies).
    lmount.mount("tmpfs", target, "tmpfs", base, "mode=755")
    binds = []
    for h in plan.cgroups:
        path = cg_paths.get(h.key)
        if path is None:
            continue
        src = _host_dir(h, path)
        if not os.path.isdir(src):
            continue
        dst = os.path.join(target, os.path.basename(h.mountpoint))
        os.makedirs(dst, 0o755, exist_ok=True)
        lmount.mount(src, dst, None, MF.BIND | MF.REC)
        binds.append(dst)
    if not step.flags & ~(lmount.SETATTR_FLAGS | MF.RELATIME):  # (relatime: the default)
        try:
            lmount.set_tree_flags(target, step.flags)
            return
        except OSError:  # before Linux 5.12 (ENOSYS): a remount each, as runc does
            pass
    for dst in binds:
        _bind_flags(dst, MF.BIND | MF.REC | step.flags)
    if step.flags & MF.RDONLY:
        lmount.mount("tmpfs", target, "tmpfs", step.flags | MF.REMOUNT, "mode=755")


def _host_dir(h: CgroupHierarchy, path: str) -> str:
    root = h.root.rstrip("/")
    rel = path[len(root):] if root and (path == root or path.startswith(root + "/")) else path
    return h.mountpoint + rel.rstrip("/") if rel not in ("", "/") else h.mountpoint


def _attach(tree: int, target: str, flags: int) -> None:
    """A bind in a user namespace: the detached tree the parent opened (idmapped or not),
    then its flags as _bind (keeping the source's nosuid/nodev/noexec, which may be locked)."""
    lidmap.move_mount(tree, target)
    os.close(tree)
    rest = flags & ~(MF.BIND | MF.REC | MF.REMOUNT)
    if rest:
        lmount.mount(None, target, None, rest | MF.BIND | MF.REMOUNT | _kept_flags(target))


def _fs(step: MountStep, target: str, plan: Plan, sysfs: int) -> None:
    if step.fstype == "sysfs" and sysfs >= 0:
        lidmap.move_mount(sysfs, target)
        return
    try:
        lmount.mount(step.source, target, step.fstype, step.flags, step.data)
    except PermissionError:
        # sysfs in a user namespace needs the network namespace to be the user namespace's
        # too; with berthd's (the host's) one and no detached sysfs, bind the host's /sys
        # read-only instead, as runc.
        if step.fstype != "sysfs" or plan.userns is None:
            raise
        _bind("/sys", target, step.flags | MF.BIND | MF.REC | MF.RDONLY)


def apply_mounts(plan: Plan, cg_paths: dict[str, str], trees: list[int] | None = None, sysfs: int = -1) -> None:
    """The spec's mounts in order; ``trees``: in a user namespace, the binds' detached mounts;
    ``sysfs``: a detached sysfs the init made in the network namespace as the host's root."""
    for step in plan.mounts:
        target = secure_join(plan.rootfs, step.dest)
        _mount_point(target, step.kind is not MountKind.BIND or step.source_is_dir)
        if step.kind is MountKind.CGROUP:
            _mount_cgroup(step, target, plan, cg_paths)
        elif step.kind is MountKind.BIND and plan.userns is not None and trees:
            _attach(trees.pop(0), target, step.flags)
        elif step.kind is MountKind.BIND:
            _bind(step.source or "", target, step.flags, step.data)
        else:
            _fs(step, target, plan, sysfs)
        if step.propagation:
            lmount.mount(None, target, None, step.propagation)


def _device(rootfs: str, node: DeviceNode, userns: bool) -> None:
    path = secure_join(rootfs, node.path)
    os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
    if os.path.lexists(path):
        os.unlink(path)
    kind = {"c": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[node.kind]
    try:
        if userns:  # mknod(2) of a device needs CAP_MKNOD in the host's user namespace
            raise PermissionError
        os.mknod(path, kind | node.mode, os.makedev(node.major, node.minor))
    except PermissionError:
        # No CAP_MKNOD here (e.g. a user namespace): bind the host's node instead.
        _mount_point(path, False)
        _bind(_host_node(node), path, MF.BIND)
        return
    os.chown(path, node.uid, node.gid)


def _host_node(node: DeviceNode) -> str:
    """The host's node of ``node``'s device: its own path when that is the device (the spec
    names the container's path: ``--device /dev/null:/dev/mynull``), else the one in /dev."""
    kind = {"c": stat.S_IFCHR, "b": stat.S_IFBLK}.get(node.kind)
    rdev = os.makedev(node.major, node.minor)

    def same(p: str) -> bool:
        try:
            st = os.stat(p)
        except OSError:
            return False
        return stat.S_IFMT(st.st_mode) == kind and st.st_rdev == rdev
    if kind is None or same(node.path):
        return node.path
    for d in ("/dev", *(e.path for e in os.scandir("/dev") if e.is_dir(follow_symlinks=False))):
        for e in os.scandir(d):
            if not e.is_symlink() and same(e.path):
                return e.path
    return node.path


def apply_dev(plan: Plan) -> None:
    old = os.umask(0)
    links = {link for _, link in plan.symlinks}
    try:
        for node in plan.devices:
            if node.path not in links:  # /dev/ptmx of --privileged: the link to pts/ptmx wins
                _device(plan.rootfs, node, plan.userns is not None and node.kind != "p")
    finally:
        os.umask(old)
    for target, link in plan.symlinks:
        path = secure_join(plan.rootfs, link)
        if link == "/dev/ptmx" and os.path.lexists(path):
            os.unlink(path)
        try:
            os.symlink(target, path)
        except FileExistsError:
            pass
    if plan.console:
        path = secure_join(plan.rootfs, "/dev/console")
        _mount_point(path, False)
        _bind(plan.console, path, MF.BIND)


def bind_console(slave: str, target: str) -> None:
    """Bind the container's pty slave over /dev/console (after pivot_root)."""
    _bind(slave, target, MF.BIND)


def enter_rootfs(plan: Plan, trees: list[int] | None = None) -> None:
    """Everything before pivot_root: propagation, the rootfs mount, the spec's mounts, /dev.
    In a user namespace the image's idmapped tree (the first of ``trees``) is attached at
    ``plan.idmap_lower`` first: the overlay's lower dirs are under it."""
    lmount.mount(None, "/", None, plan.root_propagation)
    if plan.root_propagation & MF.SHARED:
        _parent_private(plan.rootfs)
    if plan.idmap_lower and trees:
        tree = trees.pop(0)
        lidmap.move_mount(tree, plan.idmap_lower)
        os.close(tree)
    if plan.overlay:
        lmount.mount("overlay", plan.rootfs, "overlay", 0, plan.overlay)
    else:
        lmount.mount(plan.rootfs, plan.rootfs, None, MF.BIND | MF.REC)


def _parent_private(rootfs: str) -> None:
    """Under a shared root (a bidirectional bind asked for it, as runc's rootfsParentMountPrivate):
    the mount the rootfs is on becomes private, so the rootfs and what is mounted on it do not
    propagate to the host, and pivot_root(2) accepts it (it refuses a shared parent: EINVAL)."""
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        parent = mountinfo.mount_of(os.path.realpath(rootfs), f.read())
    if parent.shared:
        lmount.mount(None, parent.mountpoint, None, MF.PRIVATE)


def pivot(rootfs: str) -> None:
    """pivot_root(".", "."): the new root and the old one stacked on the same directory.

    This needs no put_old directory inside the rootfs (which may be read-only). The old root
    then sits on top of ".", reachable through a fd; we make it a slave so that detaching it
    cannot propagate an unmount to the host, then detach it (MNT_DETACH: it may be busy).
    See pivot_root(2), "pivot_root(".", ".")".
    """
    oldroot = os.open("/", _O_DIR)
    newroot = os.open(rootfs, _O_DIR)
    try:
        os.fchdir(newroot)
        lmount.pivot_root(".", ".")
        os.fchdir(oldroot)
        lmount.mount(None, ".", None, MF.SLAVE | MF.REC)
        lmount.umount2(".", UmountFlags.DETACH)
        os.fchdir(newroot)
    finally:
        os.close(oldroot)
        os.close(newroot)
    os.chdir("/")


def _kept_flags(path: str) -> int:
    # Remounting must keep nosuid/nodev/noexec (locked flags would make it fail in a userns).
    f = os.statvfs(path).f_flag
    return f & (MF.NOSUID | MF.NODEV | MF.NOEXEC)


def readonly_path(path: str) -> None:
    try:
        lmount.mount(path, path, None, MF.BIND | MF.REC)
    except FileNotFoundError:
        return
    lmount.mount(path, path, None, MF.BIND | MF.REMOUNT | MF.RDONLY | MF.REC | _kept_flags(path))


def mask_path(path: str) -> None:
    try:
        lmount.mount("/dev/null", path, None, MF.BIND)
    except FileNotFoundError:
        return
    except NotADirectoryError:  # a directory: hide it under an empty read-only tmpfs
        lmount.mount("tmpfs", path, "tmpfs", MF.RDONLY)


def finalize(plan: Plan) -> None:
    """After pivot_root: masked and read-only paths, then the read-only root."""
    for path in plan.readonly:
        readonly_path(path)
    for path in plan.masked:
        mask_path(path)
    if plan.root_readonly:
        lmount.mount(None, "/", None, MF.BIND | MF.REMOUNT | MF.RDONLY | _kept_flags("/"))
