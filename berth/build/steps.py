"""One dispatcher per Dockerfile instruction (after FROM): each probes the cache and, on a
miss, produces the stage's next image. ``created_by`` strings are the classic builder's, so
``docker history`` reads the same: ``/bin/sh -c #(nop)  CMD ["sh"]`` for metadata,
``/bin/sh -c echo hi`` (``|1 A=b /bin/sh -c ...`` with build args) for RUN,
``/bin/sh -c #(nop) COPY file:<sha> in /x `` for COPY and ADD.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import secrets
from typing import TYPE_CHECKING

import msgspec

from berth.build import instructions as ins
from berth.build.output import BuildFailed
from berth.errors import InvalidArgument

if TYPE_CHECKING:
    from berth.build.builder import Build, StageState


async def dispatch(b: Build, st: StageState, cmd: ins.Command) -> None:
    if isinstance(cmd, ins.Run):
        from berth.build.run import run
        await run(b, st, cmd)
    elif isinstance(cmd, ins.Copy):
        from berth.build.copy import copy
        await copy(b, st, cmd)
    elif isinstance(cmd, ins.Arg):
        arg(b, st, cmd)
    else:
        comment = metadata(b, st, cmd)
        if comment is not None:
            nop(b, st, comment)


def shell(st: StageState) -> list[str]:
    return list(st.cc.Shell or []) or ["/bin/sh", "-c"]


def go_quote_list(items: list[str] | tuple[str, ...]) -> str:
    """Go's ``%q`` of a []string: ``["a" "b"]``."""
    return "[" + " ".join(json.dumps(i, ensure_ascii=False) for i in items) + "]"


def nop(b: Build, st: StageState, comment: str, single: bool = False) -> None:
    """A metadata step: a cached config change with an empty-layer history entry. The
    classic builder ran (and removed) a container for it; so does the stream."""
    created_by = " ".join(shell(st) + ["#(nop) " + comment] if single else shell(st) + ["#(nop) ", comment])
    key = b.probe(st, ["nop", created_by, _config_digest(st)], created_by)
    if key is None:
        return
    fake = secrets.token_hex(6)
    b.out.arrow(f"Running in {fake}")
    b.commit(st, key, created_by, None)
    if b.opts.rm or b.opts.forcerm:
        b.out.stream(f"Removing intermediate container {fake}\n")


def _config_digest(st: StageState) -> str:
    return hashlib.sha256(msgspec.json.encode(st.cc)).hexdigest()


def arg(b: Build, st: StageState, cmd: ins.Arg) -> None:
    parts = []
    for k, v in cmd.pairs:
        if k in b.opts.build_args and b.opts.build_args[k] is not None:
            value = b.opts.build_args[k] or ""
            b.used_args.add(k)
        elif v is not None:
            value = v
        elif k in b.meta:
            value = b.meta[k]
        else:
            value = None
        if value is not None:
            st.args[k] = value
        else:
            st.args.pop(k, None)
        parts.append(f"{k}={v}" if v is not None else k)
    nop(b, st, "ARG " + " ".join(parts))


def metadata(b: Build, st: StageState, cmd: ins.Command) -> str | None:
    """Apply a config instruction to the stage; returns its history comment."""
    cc = st.cc
    if isinstance(cmd, ins.Env):
        env = list(cc.Env or [])
        for k, v in cmd.pairs:
            env = [e for e in env if e.partition("=")[0] != k] + [f"{k}={v}"]
        cc.Env = env
        return "ENV " + " ".join(f"{k}={v}" for k, v in cmd.pairs)
    if isinstance(cmd, ins.Label):
        labels = dict(cc.Labels or {})
        labels.update(dict(cmd.pairs))
        cc.Labels = labels
        return "LABEL " + " ".join(f"{k}={v}" for k, v in cmd.pairs)
    if isinstance(cmd, ins.Cmd):
        cc.Cmd = shell(st) + list(cmd.cmd) if cmd.shell_form else list(cmd.cmd)
        cc.ArgsEscaped = True if cmd.shell_form else None
        st.cmd_set = True
        return "CMD " + go_quote_list(cc.Cmd)
    if isinstance(cmd, ins.Entrypoint):
        cc.Entrypoint = shell(st) + list(cmd.cmd) if cmd.shell_form else list(cmd.cmd)
        if not st.cmd_set:
            cc.Cmd = None
        return "ENTRYPOINT " + go_quote_list(cc.Entrypoint)
    if isinstance(cmd, ins.Shell):
        cc.Shell = list(cmd.cmd)
        return "SHELL " + "[" + " ".join(cmd.cmd) + "]"
    if isinstance(cmd, ins.Expose):
        ports = dict(cc.ExposedPorts or {})
        for p in cmd.ports:
            ports[p] = {}
        cc.ExposedPorts = ports
        return "EXPOSE " + " ".join(cmd.raw or cmd.ports)
    if isinstance(cmd, ins.Volume):
        vols = dict(cc.Volumes or {})
        for p in cmd.paths:
            if not p.strip():
                raise InvalidArgument("VOLUME specified can not be an empty string")
            vols[p] = {}
        cc.Volumes = vols
        return "VOLUME [" + " ".join(cmd.paths) + "]"
    if isinstance(cmd, ins.Workdir):
        cc.WorkingDir = posixpath.normpath(posixpath.join(cc.WorkingDir or "/", cmd.path))
        nop(b, st, "WORKDIR " + cc.WorkingDir, single=True)
        return None
    if isinstance(cmd, ins.User):
        cc.User = cmd.user
        return "USER " + cmd.user
    if isinstance(cmd, ins.Stopsignal):
        cc.StopSignal = cmd.signal
        return "STOPSIGNAL " + cmd.signal
    if isinstance(cmd, ins.Maintainer):
        st.maintainer = cmd.name
        return "MAINTAINER " + cmd.name
    if isinstance(cmd, ins.Onbuild):
        cc.OnBuild = list(cc.OnBuild or []) + [cmd.expression]
        return "ONBUILD " + cmd.expression
    if isinstance(cmd, ins.Healthcheck):
        return healthcheck(b, st, cmd)
    raise BuildFailed(f"unsupported instruction: {cmd.inst.cmd.upper()}")


def healthcheck(b: Build, st: StageState, cmd: ins.Healthcheck) -> str:
    cc = st.cc
    test = list(cmd.test or [])
    if test == ["NONE"]:
        cc.Healthcheck = {"Test": ["NONE"]}
    else:
        old = (cc.Healthcheck or {}).get("Test") if isinstance(cc.Healthcheck, dict) else None
        if old and old[0] != "NONE":
            b.out.stream(f"Note: overriding previous HEALTHCHECK: [{' '.join(old)}]\n")
        hc: dict[str, object] = {"Test": test}
        for k, v in (("Interval", cmd.interval), ("Timeout", cmd.timeout), ("StartPeriod", cmd.start_period),
                     ("StartInterval", cmd.start_interval), ("Retries", cmd.retries)):
            if v:
                hc[k] = v
        cc.Healthcheck = hc
    return "HEALTHCHECK " + go_quote_list(test)
