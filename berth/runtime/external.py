"""External OCI runtimes (runc, crun) driven through their command line, on berth's bundle.

berth's own runtime reads three annotations of the spec (``defaults``): the overlay rootfs it
mounts inside the container's mount namespace, and a user or groups named by name, which it
resolves in the container's /etc. runc and crun know none of them, so ``prepare`` turns them
into standard OCI fields before the spec is written: the overlay is mounted on the host at
``root.path`` (``release`` unmounts it when the container is gone), names become numeric ids
read from the mounted rootfs, and a non-root user loses its effective and permitted
capabilities (Docker's rule). The shim then drives the runtime's CLI on the same bundle:

    OCIRuntime.create(id, bundle, stdio, console)  runc create --pid-file ... [--console-socket ...]
    OCIRuntime.state(id)                           runc state (pid and status, once created)
    OCIRuntime.start(id)                           runc start: the init execs the command
    OCIRuntime.kill(id, signal)                    runc kill
    OCIRuntime.exec(id, process.json, stdio, console)  runc exec -d --process ...
    OCIRuntime.delete(id)                          runc delete --force (cgroup and state gone)

``create`` and ``exec`` run detached (``-d``, the pid in a file): the runtime exits and the
container's processes are reparented to the shim, a child subreaper, which reaps them as it
reaps berth's own inits. With a terminal the runtime sends the pty master over a Unix socket
(``--console-socket``), which is forwarded to the shim on the socket it gave.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

import msgspec

from berth.errors import RuntimeFailure
from berth.linux import mount as lmount
from berth.oci import spec as oci
from berth.runtime import caps as capmod
from berth.runtime import users
from berth.runtime.host import host_info
from berth.runtime.defaults import ANNOTATION_GROUPS, ANNOTATION_OVERLAY, ANNOTATION_USER

OWN = "berth"  # the name of berth's own runtime in --runtime, /info and HostConfig.Runtime
_TIMEOUT = 60  # seconds a runtime command may take


class RuntimeCommandFailed(RuntimeFailure):
    """The runtime's command exited non-zero; str() is its own error message."""


@dataclass(frozen=True)
class OCIRuntime:
    """One configured runtime: ``path`` (``runc``), its ``runtimeArgs`` and its state root."""

    path: str
    root: str
    args: list[str] = field(default_factory=list)

    def argv(self, *cmd: str) -> list[str]:
        return [self.path, "--root", self.root, *self.args, *cmd]

    def run(self, *cmd: str, stdin: int | None = None, stdout: int | None = None,
            stderr: int | None = None) -> None:
        """Run one command; raises RuntimeCommandFailed with the runtime's error message.

        Its errors come through a log file (``--log``, JSON lines) rather than stderr: with
        ``create`` and ``exec`` its stderr is the container's."""
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        with tempfile.NamedTemporaryFile(prefix="log-", dir=self.root) as logf:
            argv = [self.path, "--root", self.root, "--log", logf.name, "--log-format", "json",
                    *self.args, *cmd]
            err = subprocess.DEVNULL if stderr is None else stderr
            try:
                code = subprocess.run(argv, stdin=subprocess.DEVNULL if stdin is None else stdin,
                                      stdout=subprocess.DEVNULL if stdout is None else stdout,
                                      stderr=err, timeout=_TIMEOUT, close_fds=True).returncode
            except (OSError, subprocess.TimeoutExpired) as e:
                raise RuntimeCommandFailed(f"{os.path.basename(self.path)} {cmd[0]}: {e}") from None
            if code != 0:
                raise RuntimeCommandFailed(_last_error(logf.read()) or f"{self.path} {cmd[0]} exited with {code}")

    def create(self, cid: str, bundle: str, stdio: tuple[int, int, int],
               console: socket.socket | None) -> int:
        """Create the container (its init waits for ``start``); -> the init's pid."""
        pidfile = os.path.join(bundle, "runtime.pid")
        cmd = ["create", "--bundle", bundle, "--pid-file", pidfile]
        self._with_console(cmd, [cid], stdio, console)
        return self.state(cid)[0]

    def state(self, cid: str) -> tuple[int, str]:
        """(pid, status) as the runtime reports them (``runc state``)."""
        r, w = os.pipe()
        try:
            with os.fdopen(r, "rb") as out:
                try:
                    self.run("state", cid, stdout=w)
                finally:
                    os.close(w)
                doc = json.loads(out.read() or b"{}")
        except ValueError:
            raise RuntimeCommandFailed(f"{self.path} state {cid}: not JSON") from None
        return int(doc.get("pid", 0)), str(doc.get("status", ""))

    def start(self, cid: str) -> None:
        self.run("start", cid)

    def kill(self, cid: str, signo: int) -> None:
        self.run("kill", cid, str(signo))

    def delete(self, cid: str) -> None:
        """Kill what is left and forget the container (idempotent)."""
        try:
            self.run("delete", "--force", cid)
        except RuntimeCommandFailed as e:
            if "not exist" not in str(e) and "not found" not in str(e):
                raise

    def exec(self, cid: str, process: oci.Process, stdio: tuple[int, int, int],
             console: socket.socket | None) -> int:
        """Start ``process`` in the running container; -> its pid (a child of the shim)."""
        fd, path = tempfile.mkstemp(prefix="exec-", suffix=".json", dir=self.root)
        pidfile = path[:-5] + ".pid"
        try:
            os.write(fd, msgspec.json.encode(process))
            os.close(fd)
            self._with_console(["exec", "-d", "--pid-file", pidfile, "--process", path], [cid], stdio, console)
            with open(pidfile) as f:
                return int(f.read().strip())
        finally:
            for p in (path, pidfile):
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    pass

    def _with_console(self, cmd: list[str], tail: list[str], stdio: tuple[int, int, int],
                      console: socket.socket | None) -> None:
        """Run ``cmd``; with ``console``, through a console socket whose pty master is sent on."""
        if console is None:
            self.run(*cmd, *tail, stdin=stdio[0], stdout=stdio[1], stderr=stdio[2])
            return
        tmp = tempfile.mkdtemp(prefix="berth-console-")  # short: a socket path fits in 108 bytes
        path = os.path.join(tmp, "c.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(path)
            listener.listen(1)
            proc = subprocess.Popen([*self.argv(*cmd, "--console-socket", path, *tail)],
                                    stdin=stdio[0], stdout=stdio[1], stderr=subprocess.PIPE, close_fds=True)
            master = _accept_master(listener, proc)
            _, err = proc.communicate(timeout=_TIMEOUT)
            if proc.returncode != 0 or master is None:
                if master is not None:
                    os.close(master)
                raise RuntimeCommandFailed(_last_error(err) or err.decode(errors="replace").strip()
                                           or f"{self.path} {cmd[0]}: no terminal")
            try:
                socket.send_fds(console, [b"m"], [master])
            finally:
                os.close(master)
        finally:
            listener.close()
            shutil.rmtree(tmp, ignore_errors=True)


def _accept_master(listener: socket.socket, proc: subprocess.Popen[bytes]) -> int | None:
    """The pty master the runtime sends on the console socket; None if it exited first."""
    listener.settimeout(0.05)
    deadline = time.monotonic() + _TIMEOUT
    while time.monotonic() < deadline:
        try:
            conn, _ = listener.accept()
        except socket.timeout:
            if proc.poll() is not None:
                return None
            continue
        with conn:
            conn.settimeout(_TIMEOUT)
            _, fds, _, _ = socket.recv_fds(conn, 4096, 1)
        return fds[0] if fds else None
    return None


def _last_error(log: bytes) -> str:
    """The last error a runtime wrote: runc's and crun's ``--log-format json`` lines, or text."""
    msg = ""
    for line in log.decode(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            msg = line.strip() or msg
            continue
        if isinstance(rec, dict) and rec.get("level") in ("error", "fatal"):
            msg = str(rec.get("msg", "")) or msg
    for prefix in ("exec failed: ", "unable to start container process: "):  # berth's own prefix says it
        msg = msg.removeprefix(prefix)
    return _runc_words(msg)


# crun's words for what runc (and so Docker, and the docker CLI's exit codes 127 and 126) says
_CRUN_WORDS = ((re.compile(r"executable file `(.*)` not found in \$PATH: No such file or directory"),
                r'exec: "\1": executable file not found in $PATH'),
               (re.compile(r"open executable: Operation not permitted"), "open executable: permission denied"))


def _runc_words(msg: str) -> str:
    for pattern, words in _CRUN_WORDS:
        msg = pattern.sub(words, msg)
    return msg


# -- the bundle ---------------------------------------------------------------------------------


def prepare(spec: oci.Spec) -> oci.Spec:
    """berth's annotations as standard OCI fields; mounts the overlay rootfs on the host.

    Raises:
        RuntimeFailure: the user or a group is not in the container's /etc files (nothing
        stays mounted then), or the overlay mount failed.
    """
    notes = dict(spec.annotations or {})
    overlay = notes.pop(ANNOTATION_OVERLAY, None)
    assert spec.root is not None and spec.process is not None  # build_spec sets both
    if overlay is not None:
        release(spec.root.path)  # a mount a crashed shim left
        lmount.mount("overlay", spec.root.path, "overlay", 0, overlay)
    try:
        process = resolve_process(spec.process, spec.root.path, notes)
    except BaseException:
        if overlay is not None:
            release(spec.root.path)
        raise
    notes.pop(ANNOTATION_USER, None)
    notes.pop(ANNOTATION_GROUPS, None)
    return msgspec.structs.replace(spec, process=process, annotations=notes or None)


def resolve_process(proc: oci.Process, rootfs: str, notes: dict[str, str]) -> oci.Process:
    """``proc`` with a named user (and --group-add names) resolved in ``rootfs``'s /etc files,
    and only the capabilities this host has (--privileged lists every one Docker knows; runc
    fails to apply one the host's bounding set lacks, berth's own runtime leaves it out)."""
    proc = _host_caps(proc)
    name, groups = notes.get(ANNOTATION_USER), [g for g in notes.get(ANNOTATION_GROUPS, "").split(",") if g]
    if name is None and not groups:
        return proc
    passwd = users.parse_passwd(_read(rootfs, "etc/passwd"))
    group = users.parse_group(_read(rootfs, "etc/group"))
    try:
        if name is not None:
            u = users.resolve(name, passwd, group)
            uid, gid, extra = u.uid, u.gid, list(u.additional_gids)
        else:
            uid, gid, extra = proc.user.uid, proc.user.gid, list(proc.user.additionalGids or [proc.user.gid])
        extra += users.additional_groups(groups, group)
    except users.UnknownUser as e:
        raise RuntimeFailure(str(e)) from None
    user = oci.User(uid=uid, gid=gid, umask=proc.user.umask, additionalGids=list(dict.fromkeys(extra)))
    caps = proc.capabilities
    if caps is not None and uid != 0:  # Docker: a non-root user keeps only the bounding set
        caps = msgspec.structs.replace(caps, effective=None, permitted=None)
    return msgspec.structs.replace(proc, user=user, capabilities=caps)


def _host_caps(proc: oci.Process) -> oci.Process:
    c = proc.capabilities
    if c is None:
        return proc
    have = host_info().bounding

    def keep(names: list[str] | None) -> list[str] | None:
        return None if names is None else [n for n in names if n in capmod.CAP_NUMBER and have >> capmod.CAP_NUMBER[n] & 1]
    caps = oci.Capabilities(bounding=keep(c.bounding), effective=keep(c.effective), permitted=keep(c.permitted),
                            inheritable=keep(c.inheritable), ambient=keep(c.ambient))
    return msgspec.structs.replace(proc, capabilities=caps)


def _read(rootfs: str, rel: str) -> str:
    """A file of the container's rootfs (never through a symlink out of it: /etc is the
    image's; a missing file reads as empty, as runc's user lookup)."""
    try:
        fd = os.open(os.path.join(rootfs, rel), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return ""
    with os.fdopen(fd) as f:
        return f.read()


def release(rootfs: str) -> None:
    """Unmount an overlay rootfs ``prepare`` mounted (nothing when none is there)."""
    try:
        lmount.umount2(rootfs, lmount.UmountFlags.DETACH)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOENT):
            raise
