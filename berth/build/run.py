"""RUN: a container on the stage's image (same security defaults as ``docker run``, limits
and network from the build's query), its output streamed into the build, its overlay upper
dir committed as the step's layer. ``--mount`` (cache, bind, tmpfs, secret) and
``--network`` are BuildKit's syntax, served here by plain mounts of the container.

A step runs under the builder's pids limit and is watched while it runs (build_support.
StepWatch): one that fills the data root's filesystem or forks without end is killed and
fails the build; its container and partial layer go with it."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from berth.build import instructions as ins
from berth.build.output import BuildFailed
from berth.build.steps import shell
from berth.engine import build_support as bs
from berth.engine import container_userns
from berth.errors import InvalidArgument
from berth.schema.containers import CreateRequest, HostConfig

if TYPE_CHECKING:
    from berth.build.builder import Build, StageState


def command(st: StageState, cmd: ins.Run) -> list[str]:
    if not cmd.shell_form:
        return list(cmd.cmd)
    line = cmd.cmd[0] if cmd.cmd else ""
    if cmd.heredocs:
        if line.strip().startswith("<<") and len(cmd.heredocs) == 1 and len(line.split()) == 1:
            return shell(st) + [cmd.heredocs[0].content]
        body = line + "\n" + "".join(h.content + h.name + "\n" for h in cmd.heredocs)
        return shell(st) + [body]
    return shell(st) + [line]


def build_arg_env(b: Build, st: StageState) -> list[str]:
    """The stage's ARG values that ENV does not override (Docker's buildArgsWithoutConfigEnv)."""
    env = st.env()
    return sorted(f"{k}={v}" for k, v in st.args.items() if k not in env)


async def run(b: Build, st: StageState, cmd: ins.Run) -> None:
    argv = command(st, cmd)
    args_env = build_arg_env(b, st)
    save = ([f"|{len(args_env)}", *args_env] if args_env else []) + argv
    created_by = " ".join(save)
    mounts_key = [m.__dict__ for m in cmd.mounts] if cmd.mounts else []
    secret_ids = sorted(m.id or os.path.basename(m.target) for m in cmd.mounts if m.type == "secret")
    key = b.probe(st, ["run", save, mounts_key, cmd.network or "",
                       [hashlib.sha256(b.opts.secrets.get(i, b"")).hexdigest() for i in secret_ids]],
                  created_by if not cmd.mounts else None)  # a history line does not show the mounts
    if key is None:
        return
    if st.image is None:
        st.image = b.b.store.create_image(st.config)
    mounts, tmp = await prepare_mounts(b, st, cmd)
    try:
        await _run_container(b, st, cmd, argv, args_env, mounts, key, created_by)
    finally:
        if tmp is not None:  # the step's secrets: off the loop
            await asyncio.to_thread(shutil.rmtree, tmp, True)


async def _run_container(b: Build, st: StageState, cmd: ins.Run, argv: list[str], args_env: list[str],
                         mounts: list[dict[str, Any]], key: str, created_by: str) -> None:
    o = b.opts
    cc = st.cc
    hc = HostConfig(NetworkMode=_network(o.network_mode, cmd.network), ExtraHosts=list(o.extra_hosts) or None,
                    ShmSize=o.shmsize, Memory=o.memory, MemorySwap=o.memswap, CpuShares=o.cpushares,
                    CpusetCpus=o.cpusetcpus, CpuPeriod=o.cpuperiod, CpuQuota=o.cpuquota,
                    PidsLimit=b.b.pids_limit or None, Mounts=mounts or None)
    if container_userns.default_applies(hc, b.b.containers.userns):
        for m in mounts:  # cache dirs, secrets, context files: the build's own, the step's ids on disk
            if m["Type"] == "bind":
                m.setdefault("BindOptions", {})["Idmap"] = True
    req = CreateRequest(Image=st.image_id, Cmd=argv, Entrypoint=[""], Env=list(cc.Env or []) + args_env,
                        WorkingDir=cc.WorkingDir, User=cc.User, Labels={bs.BUILD_LABEL: b.id},
                        Healthcheck={"Test": ["NONE"]}, AttachStdout=True, AttachStderr=True, HostConfig=hc)
    decode = b.out.decoder()

    async def output(data: bytes) -> None:
        b.out.stream(decode(data))

    made: list[str] = []
    watches: list[bs.StepWatch] = []

    def created(cid: str) -> None:
        b.containers.append(cid)
        made.append(cid)
        b.out.arrow(f"Running in {cid[:12]}")
        watches.append(bs.StepWatch(b.b.containers, cid, b.b.containers.data.container(cid).upper, b.b.reserve))
        watches[0].start()
    try:
        code = await bs.run_container(b.b.containers, req, created, output)
    finally:
        for w in watches:
            await w.stop()
    cid = made[0]
    watch = watches[0]
    if watch.reason is not None or (code != 0 and watch.low_on_space()):
        b.b.reserve.release()
        await b.remove_container(cid)
        await b.b.containers.flush_removed()  # the step's files must be gone before the next step
        await asyncio.to_thread(b.b.reserve.take)
        raise BuildFailed(_stopped(argv, watch, b.b.pids_limit), code)
    if code != 0:
        # dockerd keeps a failed step's container unless forcerm. Here it goes with rm=1 too (the
        # issue asks that a failed build leave nothing behind); rm=0 keeps it, as dockerd does.
        if o.rm or o.forcerm:
            await b.remove_container(cid)
        else:
            b.keep_container(cid)
        raise BuildFailed(f"The command '{' '.join(argv)}' returned a non-zero code: {code}", code)
    view = b.b.view(st.image)
    upper = b.b.containers.data.container(cid).upper
    targets = [m["Target"] for m in mounts]
    layer = None
    try:
        await asyncio.to_thread(bs.tidy_upper, upper, lambda p: view.lookup(p, follow=False) is not None,
                                targets, b.epoch)
        # committing takes about twice the upper dir again (the layer blob, then its files)
        need = 2 * await asyncio.to_thread(bs.tree_size, upper)
        if bs.free_space(upper.parent)[0] - need < watch.floor:
            raise BuildFailed(f"failed to commit the layer of '{' '.join(argv)}': no space left on device "
                              f"({_size(need)} needed, less than {_size(watch.floor)} would remain free)")
        layer = await bs.commit_upper(b.b.images, upper, st.image, cid)
    finally:
        if o.rm or o.forcerm:
            b.out.stream(f"Removing intermediate container {cid[:12]}\n")
            await b.remove_container(cid)
        else:
            b.keep_container(cid)  # rm=0: the step's container stays, as dockerd leaves it
    b.commit(st, key, created_by, layer.diff_id, layer.size)


def _stopped(argv: list[str], watch: bs.StepWatch, pids_limit: int) -> str:
    cmd = " ".join(argv)
    if watch.reason == "pids":
        return (f"The command '{cmd}' was stopped: it ran into the build's limit of {pids_limit} "
                "processes (fork: resource temporarily unavailable)")
    return (f"The command '{cmd}' was stopped: no space left on device (less than {_size(watch.floor)} "
            "free on the filesystem of berthd's data root)")


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _network(query: str, step: str | None) -> str:
    if step and step != "default":
        return step
    return query if query not in ("", "default") else "default"


async def prepare_mounts(b: Build, st: StageState, cmd: ins.Run) -> tuple[list[dict[str, Any]], Path | None]:
    """HostConfig.Mounts for ``RUN --mount``, and a temp dir to remove after the step."""
    out: list[dict[str, Any]] = []
    tmp: Path | None = None
    for m in cmd.mounts:
        target = m.target
        if not target:
            if m.type == "secret":
                target = f"/run/secrets/{m.id}"
            else:
                raise BuildFailed("mount target is required")
        if not target.startswith("/"):
            target = os.path.join(st.cc.WorkingDir or "/", target)
        if m.type == "cache":
            out.append(_cache_mount(b, m, target))
        elif m.type == "tmpfs":
            opts: dict[str, Any] = {}
            if m.size:
                opts["SizeBytes"] = m.size
            out.append({"Type": "tmpfs", "Target": target, "TmpfsOptions": opts})
        elif m.type == "secret":
            if tmp is None:
                tmp = b.b.secrets_root / b.id
                tmp.mkdir(parents=True, exist_ok=True, mode=0o700)
            sid = m.id or os.path.basename(target)
            data = b.opts.secrets.get(sid)
            if data is None:
                if m.required:
                    raise BuildFailed(f"secret {sid} not found")
                continue
            p = tmp / hashlib.sha256(sid.encode()).hexdigest()[:16]
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o400 if m.mode is None else m.mode)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chown(p, m.uid or 0, m.gid or 0)
            out.append({"Type": "bind", "Source": str(p), "Target": target, "ReadOnly": True})
        elif m.type == "bind":
            out.append(await _bind_mount(b, st, m, target))
        else:
            raise BuildFailed(f"unsupported mount type {m.type!r} (RUN --mount type=ssh needs BuildKit)")
    return out, tmp


def _cache_mount(b: Build, m: ins.Mount, target: str) -> dict[str, Any]:
    cid = m.id or target
    d = b.b.mounts_root / hashlib.sha256(cid.encode()).hexdigest()[:32]
    if not d.exists():
        tmp = d.with_name(d.name + ".new")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(mode=0o755 if m.mode is None else m.mode)
        os.chown(tmp, m.uid or 0, m.gid or 0)
        if m.mode is not None:
            os.chmod(tmp, m.mode)
        os.rename(tmp, d)
    return {"Type": "bind", "Source": str(d), "Target": target, "ReadOnly": False}


async def _bind_mount(b: Build, st: StageState, m: ins.Mount, target: str) -> dict[str, Any]:
    """A context or stage/image path, read-only; the context's own files are bound directly
    (resolved inside the context), anything else is copied into the build's dir first."""
    src = m.source or "/"
    if m.from_:
        view = await b.source_view(m.from_, st.index)
        node = view.lookup(src)
        if node is None:
            raise BuildFailed(f"failed to mount {src} from {m.from_}: not found")
        dest = b.work / "mounts" / hashlib.sha256(f"{m.from_}:{src}".encode()).hexdigest()[:16]
        if not dest.exists():
            _copy_out(view, node, dest)
        return {"Type": "bind", "Source": str(dest), "Target": target, "ReadOnly": m.readonly}
    node = b.context_view.lookup(src)
    if node is None:
        raise BuildFailed(f"failed to mount {src}: not found in build context")
    if m.readonly:
        return {"Type": "bind", "Source": str(node.host), "Target": target, "ReadOnly": True}
    dest = b.work / "mounts" / hashlib.sha256(f"ctx:{src}".encode()).hexdigest()[:16]
    if not dest.exists():
        _copy_out(b.context_view, node, dest)
    return {"Type": "bind", "Source": str(dest), "Target": target, "ReadOnly": False}


def _copy_out(view, node, dest: Path) -> None:  # type: ignore[no-untyped-def]
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not node.is_dir:
        shutil.copy2(node.host, dest)
        return
    dest.mkdir()
    for child in view.walk(node):
        rel = child.path[len(node.path.rstrip("/")) + 1:]
        p = dest / rel
        if child.is_dir:
            p.mkdir(exist_ok=True)
        elif child.is_link:
            os.symlink(os.readlink(child.host), p)
        elif stat.S_ISREG(child.st.st_mode):
            shutil.copy2(child.host, p)


_ = InvalidArgument
