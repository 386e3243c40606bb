"""/containers endpoints. Each handler parses, calls the engine, and shapes Docker's JSON."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time

import msgspec

from berth.api import links as links_api
from berth.api.http import BadRequest, Request, Response, Router, StreamResponse
from berth.api.filters import labels_match, parse_filters
from berth.api.system import json_response
from berth.engine.containers import Containers, parse_signal
from berth.engine.logdrivers import ReadNotSupported
from berth.engine.logs import LogReader, parse_time
from berth.engine.model import Container, Status
from berth.errors import Conflict, InvalidArgument
from berth.schema import detachkeys, human
from berth.schema.containers import ContainerConfig, CreateRequest, HostConfig, decode_create

_enc = msgspec.json.Encoder()

MASKED_PATHS = ["/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware"]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def config_json(cfg: ContainerConfig | None) -> dict[str, object]:
    cfg = cfg or ContainerConfig()
    d: dict[str, object] = {
        "Hostname": cfg.Hostname, "Domainname": cfg.Domainname, "User": cfg.User,
        "AttachStdin": cfg.AttachStdin, "AttachStdout": cfg.AttachStdout, "AttachStderr": cfg.AttachStderr,
    }
    if cfg.ExposedPorts:
        d["ExposedPorts"] = cfg.ExposedPorts
    d.update({"Tty": cfg.Tty, "OpenStdin": cfg.OpenStdin, "StdinOnce": cfg.StdinOnce, "Env": cfg.Env,
              "Cmd": cfg.Cmd})
    if cfg.Healthcheck:
        d["Healthcheck"] = cfg.Healthcheck
    d.update({"Image": cfg.Image, "Volumes": cfg.Volumes, "WorkingDir": cfg.WorkingDir,
              "Entrypoint": cfg.Entrypoint, "OnBuild": cfg.OnBuild, "Labels": cfg.Labels})
    if cfg.StopSignal:
        d["StopSignal"] = cfg.StopSignal
    if cfg.StopTimeout is not None:
        d["StopTimeout"] = cfg.StopTimeout
    return d


def status_text(c: Container, now: float) -> str:
    st = c.state
    if st.status == Status.RUNNING:
        return "Up " + human.duration(now - (parse_time(st.started_at) or now))
    if st.status == Status.PAUSED:
        return "Up " + human.duration(now - (parse_time(st.started_at) or now)) + " (Paused)"
    if st.status == Status.RESTARTING:
        return f"Restarting ({st.exit_code}) " + human.duration(now - (parse_time(st.finished_at) or now)) + " ago"
    if st.status == Status.REMOVING:
        return "Removal In Progress"
    if st.status == Status.DEAD:
        return "Dead"
    if st.status == Status.EXITED:
        return f"Exited ({st.exit_code}) " + human.duration(now - (parse_time(st.finished_at) or now)) + " ago"
    return "Created"


def _command(c: Container) -> str:
    """As dockerd lists it: arguments containing a space are single-quoted."""
    return " ".join([c.path, *(f"'{a}'" if " " in a else a for a in c.args)])


def _network_settings_summary(c: Container) -> dict[str, object]:
    mode = c.host_config.NetworkMode
    net = "bridge" if mode == "default" else mode
    return {"Networks": {net: {"IPAMConfig": None, "Links": None, "Aliases": None, "NetworkID": "",
                               "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
                               "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
                               "MacAddress": "", "DriverOpts": None}}}


def summary(engine: Containers, c: Container, now: float, size: bool) -> dict[str, object]:
    d: dict[str, object] = {
        "Id": c.id, "Names": [f"/{c.name}"], "Image": c.config.Image or c.image_id, "ImageID": c.image_id,
        "Command": _command(c), "Created": int(parse_time(c.created) or 0), "Ports": [],
        "Labels": c.config.Labels or {}, "State": c.state.status.value, "Status": status_text(c, now),
        "HostConfig": {"NetworkMode": c.host_config.NetworkMode},
        "NetworkSettings": _network_settings_summary(c), "Mounts": [],
    }
    if engine.attachments is not None:  # networks and volumes (engine.attachments)
        d["Ports"] = engine.attachments.ports(c)
        d["Mounts"] = engine.attachments.mounts(c)
        d["NetworkSettings"] = {"Networks": engine.attachments.network_settings(c)["Networks"]}
    if size:
        rw = engine.size_rw(c)
        img = engine.images.get_by_id(c.image_id)
        d["SizeRw"] = rw
        d["SizeRootFs"] = rw + img.size
    return d


def inspect_json(engine: Containers, c: Container, size: bool = False) -> dict[str, object]:
    d = engine.data.container(c.id)
    st = c.state
    hc = msgspec.to_builtins(c.host_config)
    hc["MaskedPaths"] = c.host_config.MaskedPaths or ([] if c.host_config.Privileged else MASKED_PATHS)
    hc["ReadonlyPaths"] = c.host_config.ReadonlyPaths or ([] if c.host_config.Privileged else READONLY_PATHS)
    if hc.get("PortBindings") is None:
        hc["PortBindings"] = {}
    if hc.get("ConsoleSize") is None:
        hc["ConsoleSize"] = [0, 0]
    for k in ("Dns", "DnsOptions", "DnsSearch", "Devices", "Ulimits"):
        if hc.get(k) is None:
            hc[k] = []
    try:
        lowers = [str(p) for p in engine.images.lower_dirs(engine.images.get_by_id(c.image_id))]
    except Exception:
        lowers = []
    out: dict[str, object] = {
        "Id": c.id, "Created": c.created, "Path": c.path, "Args": c.args,
        "State": {"Status": st.status.value, "Running": st.status in (Status.RUNNING, Status.PAUSED),
                  "Paused": st.status == Status.PAUSED, "Restarting": st.status == Status.RESTARTING,
                  "OOMKilled": st.oom_killed, "Dead": st.status == Status.DEAD, "Pid": st.pid,
                  "ExitCode": st.exit_code, "Error": st.error, "StartedAt": st.started_at,
                  "FinishedAt": st.finished_at},
        "Image": c.image_id, "ResolvConfPath": str(d.resolv_conf), "HostnamePath": str(d.hostname),
        "HostsPath": str(d.hosts), "LogPath": str(d.log) if c.host_config.LogConfig.Type in ("json-file", "") else "", "Name": f"/{c.name}",
        "RestartCount": c.restart_count, "Driver": "overlay2", "Platform": "linux", "MountLabel": "",
        "ProcessLabel": "", "AppArmorProfile": "", "ExecIDs": None, "HostConfig": hc,
        "GraphDriver": {"Data": {"LowerDir": ":".join(lowers), "MergedDir": str(d.rootfs),
                                 "UpperDir": str(d.upper), "WorkDir": str(d.work)}, "Name": "overlay2"},
        "Mounts": [], "Config": config_json(c.config),
        "NetworkSettings": {"Bridge": "", "SandboxID": "", "HairpinMode": False, "LinkLocalIPv6Address": "",
                            "LinkLocalIPv6PrefixLen": 0, "Ports": {}, "SandboxKey": "",
                            "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None, "EndpointID": "",
                            "Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPAddress": "",
                            "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "",
                            **_network_settings_summary(c)},
    }
    if engine.attachments is not None:  # networks and volumes (engine.attachments)
        out["Mounts"] = engine.attachments.mounts(c)
        out["NetworkSettings"] = engine.attachments.network_settings(c)
    if size:
        rw = engine.size_rw(c)
        out["SizeRw"] = rw
        out["SizeRootFs"] = rw + engine.images.get_by_id(c.image_id).size
    return out


def _matches(engine: Containers, c: Container, filters: dict[str, list[str]]) -> bool:
    for key, vals in filters.items():
        if key == "id":
            if not any(c.id.startswith(v) for v in vals):
                return False
        elif key == "name":
            if not any(re.search(v.removeprefix("/"), c.name) for v in vals):
                return False
        elif key == "status":
            for v in vals:
                if v not in [s.value for s in Status]:
                    raise InvalidArgument(f"Invalid filter 'status={v}'")
            if c.state.status.value not in vals:
                return False
        elif key == "label":
            if not labels_match(c.config.Labels or {}, vals):
                return False
        elif key == "ancestor":
            ok = False
            for v in vals:
                try:
                    if engine.images.resolve(v).id == c.image_id:
                        ok = True
                except Exception:
                    pass
            if not ok:
                return False
        elif key == "exited":
            if c.state.status != Status.EXITED or str(c.state.exit_code) not in vals:
                return False
        elif key in ("before", "since"):
            other = engine.get(vals[0])
            if key == "before" and not c.created < other.created:
                return False
            if key == "since" and not c.created > other.created:
                return False
        elif key == "is-task":
            if vals and vals[0] in ("true", "1"):
                return False
        elif key in ("volume", "network", "health", "publish", "expose", "isolation"):
            continue
        else:
            raise InvalidArgument(f"invalid filter '{key}'")
    return True


_OPTIONS_OF = {"bind": "BindOptions", "volume": "VolumeOptions", "tmpfs": "TmpfsOptions"}


def adapt_create(req: Request, creq: CreateRequest) -> list[str]:
    """Bring a create request of the requested API version to berth's (1.50) shape, as dockerd's
    router does. -> warnings. Raises InvalidArgument."""
    hc = creq.HostConfig
    if hc is None:
        hc = creq.HostConfig = HostConfig()
    mounts = hc.Mounts or []
    if not req.version_at_least("1.42"):
        for m in mounts:  # options of another mount type were ignored; CreateMountpoint did not exist
            kind = str(m.get("Type") or "").lower()
            for t, key in _OPTIONS_OF.items():
                if t != kind:
                    m.pop(key, None)
            if isinstance(m.get("BindOptions"), dict):
                m["BindOptions"].pop("CreateMountpoint", None)
    if not req.version_at_least("1.43"):
        hc.Annotations = None
    if not req.version_at_least("1.44"):
        if creq.Healthcheck:
            creq.Healthcheck.pop("StartInterval", None)
        for m in mounts:
            bo = m.get("BindOptions")
            if isinstance(bo, dict):
                bo.pop("ReadOnlyNonRecursive", None)
                if bo.pop("ReadOnlyForceRecursive", None):
                    raise InvalidArgument("BindOptions.ReadOnlyForceRecursive needs API v1.44 or newer")
        eps = (creq.NetworkingConfig or {}).get("EndpointsConfig") or {}
        if len(eps) > 1:
            raise InvalidArgument("Container cannot be connected to network endpoints: " + ", ".join(eps))
    if not req.version_at_least("1.45"):
        for m in mounts:
            if isinstance(m.get("VolumeOptions"), dict):
                m["VolumeOptions"].pop("Subpath", None)
    if not req.version_at_least("1.46"):
        for m in mounts:
            if isinstance(m.get("TmpfsOptions"), dict):
                m["TmpfsOptions"].pop("Options", None)
    return _mac_address_bc(req, creq, hc)


def _mac_address_bc(req: Request, creq: CreateRequest, hc: HostConfig) -> list[str]:
    """Config.MacAddress was container-wide; since 1.44 a MAC belongs to an endpoint."""
    mac = creq.MacAddress
    if not mac:
        return []
    creq.MacAddress = None
    mode = hc.NetworkMode or "default"
    net = "bridge" if mode == "default" else mode
    per_net = mode not in ("host", "none") and not mode.startswith("container:")
    nc = creq.NetworkingConfig = dict(creq.NetworkingConfig or {})
    eps = nc["EndpointsConfig"] = dict(nc.get("EndpointsConfig") or {})
    key = next((k for k in (mode, net) if k in eps), None)
    if not req.version_at_least("1.44"):
        if not per_net:
            raise InvalidArgument("conflicting options: mac-address and the network mode")
        key = key or mode
        eps[key] = {**(eps.get(key) or {}), "MacAddress": mac}
        return []
    if per_net:
        if not eps:
            eps[mode] = {"MacAddress": mac}
            key = mode
        if key is None:
            raise InvalidArgument("if a container-wide MAC address is supplied, HostConfig.NetworkMode must "
                                  "match the identity of a network in NetworkSettings.Networks")
        if (eps[key] or {}).get("MacAddress") != mac:
            raise InvalidArgument("the container-wide MAC address must match the endpoint-specific MAC address "
                                  "for the main network, or be left empty")
    return ["The container-wide MacAddress field is now deprecated. It should be specified in EndpointsConfig instead."]


def inspect_for_version(req: Request, engine: Containers, c: Container, out: dict[str, object]) -> None:
    """Fields of GET /containers/{id}/json that older API versions shaped differently."""
    nets = (out.get("NetworkSettings") or {}).get("Networks") or {}  # type: ignore[union-attr]
    if not req.version_at_least("1.44"):
        cfg = out["Config"]
        mode = c.host_config.NetworkMode
        ep = nets.get("bridge" if mode == "default" else mode)
        sb = engine.attachments.networks.sandbox(c.id) if engine.attachments is not None else None
        wanted = sb.endpoints[0].mac_req if sb is not None and sb.endpoints else ""
        if wanted and ep is not None:
            cfg["MacAddress"] = wanted  # type: ignore[index]
    if not req.version_at_least("1.45"):  # Aliases then also held the short ID
        for name, ep in nets.items():
            if name not in ("bridge", "host", "none") and isinstance(ep, dict):
                ep["Aliases"] = list(dict.fromkeys([*(ep.get("Aliases") or []), c.id[:12]]))


def routes(router: Router, ctx: object) -> None:
    engine: Containers = ctx.containers  # type: ignore[attr-defined]

    async def create(req: Request) -> Response:
        body = await req.read()
        if not body.strip():
            raise InvalidArgument("config cannot be empty in order to create a container")
        try:
            creq = decode_create(body)
        except msgspec.ValidationError as e:
            raise InvalidArgument(f"json: cannot unmarshal: {e}") from None
        except msgspec.DecodeError as e:
            raise InvalidArgument(f"invalid character in JSON: {e}") from None
        early = adapt_create(req, creq)
        c, warnings = engine.create(creq, req.query.get("name") or None)
        return json_response({"Id": c.id, "Warnings": (early + list(warnings or [])) or warnings}, 201)

    async def list_containers(req: Request) -> Response:
        filters = parse_filters(req)
        all_ = req.flag("all")
        limit = req.int_arg("limit", -1) or -1
        if req.query.get("limit") is None:
            limit = req.int_arg("n", -1) or -1
        want_size = req.flag("size")
        now = time.time()
        out = []
        for c in engine.list():
            if not all_ and limit <= 0 and not c.running and "status" not in filters and "exited" not in filters:
                continue
            if filters and not _matches(engine, c, filters):
                continue
            d = summary(engine, c, now, want_size)
            if c.host_config.Annotations and req.version_at_least("1.46"):
                d["HostConfig"]["Annotations"] = dict(c.host_config.Annotations)  # type: ignore[index]
            h = ctx.health.get(c.id) if getattr(ctx, "health", None) is not None else None  # type: ignore[attr-defined]
            if h is not None and c.state.status == Status.RUNNING:
                d["Status"] = f"{d['Status']} ({'health: starting' if h.status == 'starting' else h.status})"
            out.append(d)
            if 0 < limit <= len(out):
                break
        return json_response(out)

    async def inspect(req: Request) -> Response:
        c = engine.get(req.match["id"])
        out = inspect_json(engine, c, req.flag("size"))
        inspect_for_version(req, engine, c, out)
        execs = getattr(ctx, "execs", None)
        if execs is not None:
            out["ExecIDs"] = execs.ids_for(c.id) or None
        health = getattr(ctx, "health", None)
        h = health.get(c.id) if health is not None else None
        if h is not None:
            out["State"]["Health"] = h.to_json()  # type: ignore[index]
        return json_response(out)

    async def start(req: Request) -> Response:
        await engine.start(req.match["id"])
        return Response(204, b"", content_type=None)

    async def stop(req: Request) -> Response:
        await engine.stop(req.match["id"], req.int_arg("t"), req.query.get("signal"))
        return Response(204, b"", content_type=None)

    async def restart(req: Request) -> Response:
        sig = req.query.get("signal") or None if req.version_at_least("1.42") else None
        await engine.restart(req.match["id"], req.int_arg("t"), sig)
        return Response(204, b"", content_type=None)

    async def kill(req: Request) -> Response:
        sig = req.query.get("signal") or "SIGKILL"
        parse_signal(sig)
        await engine.kill(req.match["id"], sig)
        return Response(204, b"", content_type=None)

    async def delete(req: Request) -> Response:
        links_api.default_link_name(req)
        await engine.remove(req.match["id"], req.flag("force"), volumes=req.flag("v"))
        return Response(204, b"", content_type=None)

    async def wait(req: Request) -> StreamResponse:
        fut = engine.wait_future(req.match["id"], req.query.get("condition", ""))
        resp = StreamResponse(req)
        await resp.prepare()
        st = await fut
        err = {"Message": st.error} if st.error else None
        await resp.write(_enc.encode({"Error": err, "StatusCode": st.exit_code}) + b"\n")
        await resp.finish()
        return resp

    async def rename(req: Request) -> Response:
        engine.rename(req.match["id"], req.query.get("name", ""))
        return Response(204, b"", content_type=None)

    async def resize(req: Request) -> Response:
        h, w = req.int_arg("h", 0) or 0, req.int_arg("w", 0) or 0
        if h < 0 or w < 0:
            raise InvalidArgument("invalid terminal size")
        await engine.resize(req.match["id"], h, w)
        return Response(200, b"", content_type="text/plain; charset=utf-8")

    async def stats(req: Request) -> StreamResponse:
        from berth.engine import stats as st
        c = engine.get(req.match["id"])
        stream = req.flag("stream", True)
        one_shot = req.flag("one-shot")
        ncpu = st.online_cpus()
        loop = asyncio.get_running_loop()

        async def take() -> dict[str, object]:
            cur = engine.by_id.get(c.id) or c
            raw = await loop.run_in_executor(None, st.raw_stats, cur)
            return st.sample(cur, raw, ncpu)

        resp = StreamResponse(req)
        await resp.prepare()
        prev = await take()
        if not stream and not one_shot:
            await asyncio.sleep(1.0)  # dockerd answers with two samples, a second apart
        elif not stream:
            await resp.write(_enc.encode(prev) + b"\n")
            await resp.finish()
            return resp
        while True:
            cur = await take()
            cur["precpu_stats"] = prev["cpu_stats"]
            cur["preread"] = prev["read"]
            await resp.write(_enc.encode(cur) + b"\n")
            if not stream or not engine.by_id.get(c.id) or not engine.by_id[c.id].running:
                break
            prev = cur
            await asyncio.sleep(1.0)
        await resp.finish()
        return resp

    async def changes(req: Request) -> Response:
        out = [{"Path": ch.path, "Kind": ch.kind} for ch in ctx.archives.changes(req.match["id"])]  # type: ignore[attr-defined]
        return json_response(out)

    async def update(req: Request) -> Response:
        body = await req.read()
        try:
            changes = json.loads(body or b"{}")
        except ValueError as e:
            raise InvalidArgument(f"invalid character in JSON: {e}") from None
        if not isinstance(changes, dict):
            raise InvalidArgument("json: cannot unmarshal update config")
        warnings = await engine.update(req.match["id"], changes)
        return json_response({"Warnings": warnings})

    def _stat_header(st: dict[str, object]) -> dict[str, str]:
        import base64
        return {"X-Docker-Container-Path-Stat": base64.b64encode(json.dumps(st).encode()).decode()}

    async def archive_head(req: Request) -> Response:
        st = await ctx.archives.stat(req.match["id"], req.query.get("path", ""))  # type: ignore[attr-defined]
        return Response(200, b"", content_type=None, headers=_stat_header(st))

    async def archive_get(req: Request) -> StreamResponse:
        st, body = await ctx.archives.get(req.match["id"], req.query.get("path", ""))  # type: ignore[attr-defined]
        resp = StreamResponse(req, content_type="application/x-tar", headers=_stat_header(st))
        await resp.prepare()
        async for chunk in body:
            await resp.write(chunk)
        await resp.finish()
        return resp

    async def archive_put(req: Request) -> Response:
        async def body():  # type: ignore[no-untyped-def]
            while chunk := await req.read_chunk():
                yield chunk
        await ctx.archives.put(req.match["id"], req.query.get("path", ""), body(),  # type: ignore[attr-defined]
                               req.flag("noOverwriteDirNonDir"), req.flag("copyUIDGID"))
        return Response(200, b"", content_type=None)

    async def pause(req: Request) -> Response:
        await engine.pause(req.match["id"])
        return Response(204, b"", content_type=None)

    async def unpause(req: Request) -> Response:
        await engine.unpause(req.match["id"])
        return Response(204, b"", content_type=None)

    async def top(req: Request) -> Response:
        c = engine.get(req.match["id"])
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        pids = set(engine.pids(c))
        args = (req.query.get("ps_args") or "-ef").split()
        proc = await asyncio.create_subprocess_exec("ps", *args, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise InvalidArgument(f"Error running ps: {err.decode().strip()}")
        lines = out.decode().splitlines()
        titles = lines[0].split()
        if "PID" not in titles:
            raise InvalidArgument("Couldn't find PID field in ps output")
        pid_i = titles.index("PID")
        procs = []
        for line in lines[1:]:
            fields = line.split(None, len(titles) - 1)
            try:
                if int(fields[pid_i]) in pids:
                    procs.append(fields)
            except (ValueError, IndexError):
                continue
        return json_response({"Titles": titles, "Processes": procs})

    async def prune(req: Request) -> Response:
        filters = parse_filters(req)
        deleted, space = [], 0
        until = parse_time(filters["until"][0]) if "until" in filters else None
        for c in engine.list():
            if c.running or c.state.starting:
                continue
            if until is not None and (parse_time(c.created) or 0) >= until:
                continue
            if "label" in filters and not _matches(engine, c, {"label": filters["label"]}):
                continue
            space += engine.size_rw(c)
            await engine.remove(c.id, force=False)
            deleted.append(c.id)
        return json_response({"ContainersDeleted": deleted, "SpaceReclaimed": space})

    async def logs(req: Request) -> StreamResponse:
        c = engine.get(req.match["id"])
        stdout, stderr = req.flag("stdout"), req.flag("stderr")
        if not (stdout or stderr):
            raise InvalidArgument("Bad parameters: you must choose at least one stream")
        if c.host_config.LogConfig.Type == "none":
            raise ReadNotSupported()
        tail_s = req.query.get("tail", "all")
        try:
            tail = None if tail_s in ("all", "") else int(tail_s)
        except ValueError:
            tail = None
        reader = LogReader(engine.data.container(c.id).log, stdout, stderr, parse_time(req.query.get("since")),
                           parse_time(req.query.get("until")), req.flag("timestamps"), tail)
        ctype = "application/vnd.docker.raw-stream" if c.config.Tty or not req.version_at_least("1.42") \
            else "application/vnd.docker.multiplexed-stream"
        resp = StreamResponse(req, content_type=ctype)
        await resp.prepare()
        cid = c.id
        tty = c.config.Tty

        def running() -> bool:
            cur = engine.by_id.get(cid)
            return cur is not None and (cur.running or cur.state.starting)

        from berth.runtime.shim.protocol import frame
        async for stream, data in reader.read(req.flag("follow"), running):
            await resp.write(data if tty else frame(stream, data))
        await resp.finish()
        return resp

    async def attach(req: Request) -> None:
        c = engine.get(req.match["id"])
        stdin, stdout, stderr = req.flag("stdin"), req.flag("stdout"), req.flag("stderr")
        keys = b""
        if stdin and c.config.Tty:
            try:
                keys = detachkeys.parse(req.query.get("detachKeys") or detachkeys.DEFAULT)
            except ValueError as e:
                raise InvalidArgument(str(e)) from None
        ctype = "application/vnd.docker.raw-stream" if c.config.Tty or not req.version_at_least("1.42") \
            else "application/vnd.docker.multiplexed-stream"
        req.hijack(ctype)
        await req.head_read()
        if req.flag("logs"):
            from berth.runtime.shim.protocol import frame
            reader = LogReader(engine.data.container(c.id).log, stdout, stderr, None, None, False, None)
            async for stream, data in reader.read(False, lambda: False):
                req.writer.write(data if c.config.Tty else frame(stream, data))
            await req.writer.drain()
        if not req.flag("stream"):
            req.writer.close()
            return
        try:
            shim_r, shim_w = await engine.attach_stream(c.id, stdin, stdout, stderr)
        except (asyncio.CancelledError, Exception):
            req.writer.close()
            return
        await relay(req.reader, req.writer, shim_r, shim_w, stdin, keys)

    router.add("POST", "/containers/create", create)
    router.add("GET", "/containers/json", list_containers)
    router.add("POST", "/containers/prune", prune)
    router.add("GET", "/containers/{id}/json", inspect)
    router.add("POST", "/containers/{id}/start", start)
    router.add("POST", "/containers/{id}/stop", stop)
    router.add("POST", "/containers/{id}/restart", restart)
    router.add("POST", "/containers/{id}/kill", kill)
    router.add("POST", "/containers/{id}/wait", wait)
    router.add("POST", "/containers/{id}/rename", rename)
    router.add("POST", "/containers/{id}/resize", resize)
    router.add("POST", "/containers/{id}/pause", pause)
    router.add("GET", "/containers/{id}/stats", stats)
    router.add("GET", "/containers/{id}/changes", changes)
    router.add("POST", "/containers/{id}/update", update)
    router.add("HEAD", "/containers/{id}/archive", archive_head)
    router.add("GET", "/containers/{id}/archive", archive_get)
    router.add("PUT", "/containers/{id}/archive", archive_put)
    router.add("POST", "/containers/{id}/unpause", unpause)
    router.add("GET", "/containers/{id}/top", top)
    router.add("GET", "/containers/{id}/logs", logs)
    router.add("POST", "/containers/{id}/attach", attach)
    router.add("DELETE", "/containers/{id}", delete)


async def relay(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter,
                shim_r: asyncio.StreamReader, shim_w: asyncio.StreamWriter, stdin: bool,
                detach_keys: bytes = b"") -> None:
    """Pump bytes both ways until the container's output ends (or the client leaves, or types
    the detach keys: then its stream ends and the container keeps running)."""
    matcher = detachkeys.Matcher(detach_keys)
    detached = False

    async def upstream() -> None:
        nonlocal detached
        try:
            while True:
                data = await client_r.read(65536)
                if not data:
                    break
                if stdin:
                    data, detached = matcher.feed(data)
                    if data:
                        shim_w.write(data)
                        await shim_w.drain()
                    if detached:
                        down.cancel()
                        return
        except (ConnectionError, OSError):
            pass
        try:
            shim_w.write_eof()  # "no more stdin from me"; output keeps flowing
        except (OSError, RuntimeError):
            pass

    async def downstream() -> None:
        try:
            while True:
                data = await shim_r.read(65536)
                if not data:
                    break
                client_w.write(data)
                await client_w.drain()
        except (ConnectionError, OSError):
            pass

    down = asyncio.ensure_future(downstream())
    up = asyncio.ensure_future(upstream())
    try:
        await down
    except asyncio.CancelledError:
        if not detached:
            raise
    finally:
        up.cancel()
        shim_w.close()
        try:
            client_w.close()
        except Exception:
            pass


_ = (json, subprocess, BadRequest)
