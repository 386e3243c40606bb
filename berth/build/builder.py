"""The builder: a Dockerfile and a context in, an image out, streamed the way Docker's classic
builder reports it.

Life of a build (``Builder.build``)::

    parse + validate the Dockerfile -> split into stages -> the stages the target needs
    each needed stage as its own task, once the stages it uses are built (independent
    stages build at once; their streams are written in Dockerfile order, output.Ordered):
        FROM (store, pull, scratch or an earlier stage),
        then each instruction: probe the cache (parent image + step + inputs), else run it:
        RUN = a container (berth.engine.build_support), COPY/ADD = a layer written directly
        (berth.build.layers), the rest = a config change with an empty-layer history entry
    tag the last stage's image

Every step's result is an image in the store, recorded in the build cache (cache.py);
nothing is tagged before the end, so a build cut short leaves no visible image.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import dataclasses
import logging
import platform as _p
import os
import secrets
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import msgspec

from berth.build import cachefrom
from berth.build import dockerfile as dfp
from berth.build import instructions as ins
from berth.build.cache import BuildCache, step_key
from berth.build.context import BuildContext
from berth.build.fsview import RootView
from berth.build.output import BuildFailed, Ordered, Output, excerpt
from berth.engine import build_support as bs
from berth.engine.containers import Containers
from berth.engine.distribution import Distribution
from berth.engine.progress import Progress
from berth.engine.images import Images
from berth.errors import InvalidArgument, NotFound
from berth.image.store import Image, NoSuchImage
from berth.oci import reference
from berth.oci.image import History, ImageConfig, RootFS
from berth.schema.containers import ContainerConfig

log = logging.getLogger("berth.build")

DEFAULT_SHELL = ["/bin/sh", "-c"]
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class BuildOptions:
    dockerfile: str = "Dockerfile"
    tags: list[str] = field(default_factory=list)
    extra_hosts: list[str] = field(default_factory=list)
    quiet: bool = False
    nocache: bool = False
    cache_from: list[str] = field(default_factory=list)
    pull: bool = False
    rm: bool = True
    forcerm: bool = False
    memory: int = 0
    memswap: int = 0
    cpushares: int = 0
    cpusetcpus: str = ""
    cpuperiod: int = 0
    cpuquota: int = 0
    shmsize: int = 0
    build_args: dict[str, str | None] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    network_mode: str = "default"
    platform: str = ""
    target: str = ""
    secrets: dict[str, bytes] = field(default_factory=dict)
    creds: Callable[[str], Any] = lambda domain: None   # registry domain -> Credentials


@dataclass
class Lane:
    """A stage task's own stream and the number of the last step it printed."""
    out: Output
    step: int


# Set in each stage's task (a task runs in its own copy of the context).
_LANE: contextvars.ContextVar[Lane | None] = contextvars.ContextVar("berth_build_lane", default=None)


@dataclass
class StageState:
    """Where a stage is: its current image (``image`` is None only for a bare ``scratch``)."""
    index: int
    name: str | None
    config: ImageConfig
    image: Image | None = None
    args: dict[str, str] = field(default_factory=dict)      # ARGs declared in this stage
    maintainer: str | None = None
    cmd_set: bool = False

    @property
    def image_id(self) -> str:
        return self.image.id if self.image else ""

    @property
    def cc(self) -> ContainerConfig:
        if self.config.config is None:
            self.config.config = ContainerConfig()
        return self.config.config

    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for e in self.cc.Env or []:
            k, _, v = e.partition("=")
            out[k] = v
        return out

    def expand_env(self) -> dict[str, str]:
        """What ``$VAR`` sees: the stage's ARGs, overridden by its ENV (Docker's order)."""
        return {**self.args, **self.env()}


class Builder:
    """Daemon-wide: the collaborators every build uses. Built once by daemon/."""

    def __init__(self, containers: Containers, images: Images, distribution: Distribution, cache: BuildCache,
                 tmp_root: Path, mounts_root: Path, secrets_root: Path, pids_limit: int = bs.DEFAULT_PIDS_LIMIT):
        self.containers = containers
        self.images = images
        self.store = images.store
        self.distribution = distribution
        self.cache = cache
        self.tmp_root = tmp_root
        self.mounts_root = mounts_root
        self.secrets_root = secrets_root
        self.pids_limit = pids_limit   # of every RUN step's container (0: none)
        self.reserve = bs.Reserve(tmp_root.parent / "space-reserve")
        self.locks: dict[str, asyncio.Lock] = {}
        self.outcomes: collections.Counter[str] = collections.Counter()  # builds by outcome: /metrics

    def new_dir(self) -> tuple[str, Path]:
        bid = secrets.token_hex(16)
        d = self.tmp_root / bid
        d.mkdir(parents=True)
        return bid, d

    def sweep(self) -> None:
        """Leftovers of builds that berthd's death cut short (temp dirs, secrets): each root is
        renamed aside at once (a new one made in its place) and deleted by the trash's thread,
        off the loop: a killed build's context may hold thousands of files."""
        for root in (self.tmp_root, self.secrets_root):
            for old in root.parent.glob(f".{root.name}.swept-*"):  # a sweep a killed berthd left
                self.containers.trash.discard(old)
            aside = root.with_name(f".{root.name}.swept-{secrets.token_hex(4)}")
            try:
                os.rename(root, aside)
            except FileNotFoundError:
                pass
            else:
                self.containers.trash.discard(aside)
            root.mkdir(parents=True, exist_ok=True)
        self.reserve.take()

    async def build(self, ctx: BuildContext, opts: BuildOptions, sink: Callable[[dict[str, Any]], None],
                    build_id: str, work: Path) -> Image:
        out = Output(sink, opts.quiet)
        b = Build(self, ctx, opts, out, build_id, work)
        try:
            img = await b.run()
            self.outcomes["success"] += 1
            return img
        except BaseException as e:
            self.outcomes["cancelled" if isinstance(e, asyncio.CancelledError) else "failure"] += 1
            if opts.quiet:
                out.flush_held()
            raise
        finally:
            await b.cleanup()

    def view(self, img: Image | None) -> RootView:
        if img is None:
            return RootView([])
        return RootView([p.resolve() for p in self.store.lower_dirs(img)])


class Build:
    """One build: its options, stream, stages and the containers it still has to remove."""

    def __init__(self, builder: Builder, ctx: BuildContext, opts: BuildOptions, out: Output, build_id: str,
                 work: Path):
        self.b = builder
        self.ctx = ctx
        self.opts = opts
        self._out = out
        self.id = build_id
        self.work = work
        self.containers: list[str] = []      # created and not yet removed
        self.stages: dict[int, StageState] = {}
        self.stage_names: dict[str, int] = {}
        self.step = 0
        self.total = 0
        self.used_args: set[str] = set()
        self.meta: dict[str, str] = {}
        self.escape = "\\"
        self.context_view = RootView([ctx.root], layered=False)
        self.epoch = _source_date_epoch(opts.build_args)
        self.allowed_cache: set[str] | None = None
        self.cache_sources: list[Image] = []   # cachefrom images, matched by history (cachefrom.py)
        self.extra_images: dict[str, Image] = {}
        self._image_locks: dict[str, asyncio.Lock] = {}
        self._stage_tasks: dict[int, asyncio.Future[None]] = {}
        self._matcher: Any = None

    @property
    def out(self) -> Output:
        """The running stage's stream (the build's own outside the stages)."""
        lane = _LANE.get()
        return lane.out if lane is not None else self._out

    # -- the whole build ------------------------------------------------------------------

    async def run(self) -> Image:
        df = dfp.parse(self.ctx.dockerfile)
        ins.validate(df)
        self.escape = df.escape
        meta, stages = ins.split_stages(df)
        if not stages:
            raise InvalidArgument("file with no instructions")
        for s in stages:
            if s.name:
                self.stage_names[s.name] = s.index
        target = self._target(stages)
        needed = self._needed(stages, target)
        if self.opts.labels:
            stages[target].commands.append(_labels_instruction(self.opts.labels))
        self.total = len(meta) + sum(1 + len(stages[i].commands) for i in needed)
        self._meta_args(meta)
        if self.opts.cache_from:
            self.allowed_cache = self._cache_from_set()
            self.cache_sources = self._cache_from_images()
        await self._stages(stages, needed)
        final = self.stages[target]
        img = await self._materialize(final)
        self._warn_unused_args()
        self.out.emit({"aux": {"ID": img.id}})
        if self.opts.quiet:
            self.out.sink({"stream": f"{img.id}\n"})
        else:
            self.out.stream(f"Successfully built {img.short_id}\n")
        for t in self.opts.tags:
            ref = reference.parse(t)
            self.b.images.tag(img.id, f"{ref.domain}/{ref.path}", ref.tag)
            self.out.stream(f"Successfully tagged {ref.familiar}\n")
        return img

    def _target(self, stages: list[ins.Stage]) -> int:
        if not self.opts.target:
            return len(stages) - 1
        t = self.opts.target.lower()
        for s in stages:
            if s.name == t:
                return s.index
        raise InvalidArgument(f"failed to reach build target {self.opts.target} in Dockerfile")

    def _needed(self, stages: list[ins.Stage], target: int) -> list[int]:
        """The stages ``target`` depends on, itself included."""
        need: set[int] = set()

        def visit(i: int) -> None:
            if i not in need:
                need.add(i)
                for j in self._deps(stages[i]):
                    visit(j)
        visit(target)
        return sorted(need)

    def _deps(self, s: ins.Stage) -> set[int]:
        """The earlier stages a stage uses: FROM <stage>, COPY --from, RUN --mount from=."""
        words: list[str] = []
        fargs = _first_word(s.from_)
        if fargs:
            words.append(fargs)
        for inst in s.commands:
            for k, v in inst.flags:
                if k == "from":
                    words.append(v)
                elif k == "mount":
                    for part in v.split(","):
                        key, _, val = part.partition("=")
                        if key.strip() == "from":
                            words.append(val.strip())
        return {j for j in (self._stage_ref(w, s.index) for w in words) if j is not None}

    def _stage_ref(self, word: str, before: int) -> int | None:
        w = word.lower()
        if w in self.stage_names and self.stage_names[w] < before:
            return self.stage_names[w]
        if w.isdigit() and int(w) < before:
            return int(w)
        return None

    # -- ARG ------------------------------------------------------------------------------

    def _meta_args(self, meta: list[dfp.Instruction]) -> None:
        plat = _host_platform()
        self.meta = ins.predefined_platform_args(self.opts.platform or plat, plat)
        for inst in meta:
            self._print(inst)
            cmd = ins.to_command(inst, self.meta, self.escape)
            assert isinstance(cmd, ins.Arg)
            for k, v in cmd.pairs:
                if k in self.opts.build_args and self.opts.build_args[k] is not None:
                    self.meta[k] = self.opts.build_args[k] or ""
                    self.used_args.add(k)
                elif v is not None:
                    self.meta[k] = v
                elif k not in self.meta:
                    self.meta.setdefault(k, "")
                    self.meta.pop(k)

    def _warn_unused_args(self) -> None:
        unused = sorted(k for k in self.opts.build_args if k not in self.used_args
                        and k not in ins.PREDEFINED_ARGS and k != "SOURCE_DATE_EPOCH")
        if unused:
            self.out.stream(f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed\n")

    # -- stages ---------------------------------------------------------------------------

    async def _stages(self, stages: list[ins.Stage], needed: list[int]) -> None:
        """Every needed stage as a task that starts once the stages it uses are built."""
        order = Ordered(self._out.emit, len(needed))
        first = self.step
        bases: dict[int, int] = {}
        for i in needed:
            bases[i] = first
            first += 1 + len(stages[i].commands)

        async def one(k: int, i: int) -> None:
            for j in sorted(self._deps(stages[i])):
                if j in self._stage_tasks:
                    await asyncio.wait([self._stage_tasks[j]])
                    if self._stage_tasks[j].cancelled() or self._stage_tasks[j].exception() is not None:
                        return  # that stage's error is the build's
            _LANE.set(Lane(Output(order.sink(k)), bases[i]))
            await self._stage(stages[i])
            order.close(k)
        for k, i in enumerate(needed):
            self._stage_tasks[i] = asyncio.ensure_future(one(k, i))
        tasks = list(self._stage_tasks.values())
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            order.flush()
            raise

    async def _stage(self, stage: ins.Stage) -> None:
        self._print(stage.from_)
        with self._at(stage.from_):
            cmd = ins.to_command(stage.from_, self.meta, self.escape)
            assert isinstance(cmd, ins.From)
            st = await self._from(stage, cmd)
        self.stages[stage.index] = st
        self.out.arrow(st.image.short_id if st.image else "")
        triggers = list(st.cc.OnBuild or [])
        if triggers:
            st.cc.OnBuild = None
            self.out.stream(f"# Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}\n")
            for t in triggers:
                for inst in dfp.parse(t).instructions:
                    await self._dispatch(st, inst, trigger=True)
            self.out.arrow(st.image.short_id if st.image else "")
        for inst in stage.commands:
            self._print(inst)
            with self._at(inst):
                await self._dispatch(st, inst)
            self.out.arrow(st.image.short_id if st.image else "")

    @contextmanager
    def _at(self, inst: dfp.Instruction) -> Iterator[None]:
        """A step that fails shows its Dockerfile lines above the error, as BuildKit does (the
        error itself keeps the classic builder's words, which clients match)."""
        try:
            yield
        except Exception:
            if inst.line and self.ctx.dockerfile:
                name = self.ctx.dockerfile_name.rsplit("/", 1)[-1]
                if not name or name.startswith(".dockerfile."):  # the CLI's name for -f outside the context
                    name = "Dockerfile"
                self.out.stream(excerpt(name, self.ctx.dockerfile, inst.line, inst.end_line))
            raise

    def _print(self, inst: dfp.Instruction) -> None:
        lane = _LANE.get()
        if lane is None:
            self.step += 1
            n = self.step
        else:
            lane.step += 1
            n = lane.step
        self.out.step(n, self.total, inst.original)

    async def _from(self, stage: ins.Stage, cmd: ins.From) -> StageState:
        name = cmd.image
        if not name:
            raise InvalidArgument("base name (${...}) should not be blank")
        low = name.lower()
        if low in self.stage_names and self.stage_names[low] < stage.index:
            base = await self._built(self.stage_names[low], name)
            cfg = _copy_config(base.config)
            return StageState(stage.index, stage.name, cfg, base.image)
        if name == "scratch":
            cfg = ImageConfig(architecture=_host_platform().split("/")[1], os="linux",
                              config=ContainerConfig(Env=[DEFAULT_PATH]), rootfs=RootFS(diff_ids=[]), history=[])
            return StageState(stage.index, stage.name, cfg, None)
        img = await self.image(name, cmd.platform)
        cfg = _copy_config(img.config)
        if cfg.config is None:
            cfg.config = ContainerConfig()
        if not any(e.startswith("PATH=") for e in cfg.config.Env or []):
            cfg.config.Env = [DEFAULT_PATH, *(cfg.config.Env or [])]
        return StageState(stage.index, stage.name, cfg, img)

    async def image(self, name: str, platform: str | None = None) -> Image:
        """An image by name: from the store, or pulled (always with ``pull=1``); stages that
        build at once share one pull."""
        async with self._image_locks.setdefault(name, asyncio.Lock()):
            return await self._image(name, platform)

    async def _image(self, name: str, platform: str | None) -> Image:
        if name in self.extra_images:
            return self.extra_images[name]
        try:
            ref = reference.parse(name)
        except InvalidArgument:
            raise InvalidArgument(f"invalid reference format: {name}") from None
        img = None
        if not self.opts.pull:
            try:
                img = self.b.store.resolve(name)
            except NoSuchImage:
                img = None
        if img is None:
            img = await self._pull(ref, platform or self.opts.platform or None)
        self.extra_images[name] = img
        return img

    async def _pull(self, ref: reference.Reference, platform: str | None) -> Image:
        loop = asyncio.get_running_loop()
        progress = Progress(loop, self.out.emit)
        name = str(reference.Reference(ref.domain, ref.path, None, None))
        tag = ref.digest or ref.tag or "latest"
        try:
            return await self.b.distribution.pull(name, tag, self.opts.creds(ref.domain), platform, progress)
        except NotFound as e:
            raise NotFound(str(e)) from None

    async def _materialize(self, st: StageState) -> Image:
        """The stage's image in the store (a bare ``FROM scratch`` has none yet)."""
        if st.image is None:
            st.image = self.b.store.create_image(st.config)
        return st.image

    # -- dispatch -------------------------------------------------------------------------

    async def _dispatch(self, st: StageState, inst: dfp.Instruction, trigger: bool = False) -> None:
        from berth.build import steps
        env = {**self.meta_visible(st), **st.expand_env()}
        cmd = ins.to_command(inst, env, self.escape)
        try:
            await steps.dispatch(self, st, cmd)
        except (BuildFailed, InvalidArgument, NotFound):
            raise
        except OSError as e:
            raise BuildFailed(f"{inst.cmd.upper()} failed: {e}") from None

    def meta_visible(self, st: StageState) -> dict[str, str]:
        return {}

    async def source_view(self, name: str, before: int | None = None) -> RootView:
        """``--from=``: an earlier stage (by name or index) or an image."""
        low = name.lower()
        idx = self.stage_names.get(low)
        if idx is None and low.isdigit():
            idx = int(low)
        if idx is not None and (before is None or idx < before):
            return self.b.view((await self._built(idx, name)).image)
        return self.b.view(await self.image(name))

    async def _built(self, idx: int, name: str) -> StageState:
        """An earlier stage once its task is done (a ``--from=$ARG`` is only known then)."""
        task = self._stage_tasks.get(idx)
        if task is not None and not task.done():
            await asyncio.wait([task])
        st = self.stages.get(idx)
        if st is None:
            raise InvalidArgument(f"invalid from flag value {name}: stage {name} is not built yet")
        return st

    def ctx_excluded(self) -> Callable[[str, bool], bool] | None:
        """``.dockerignore`` of the context as a predicate on relative paths (None: no file)."""
        if self._matcher is None and self.ctx.ignore_patterns:
            from berth.build.dockerignore import Matcher
            self._matcher = Matcher(self.ctx.ignore_patterns)
        if self._matcher is None:
            return None
        return self._matcher.excluded

    # -- committing steps -----------------------------------------------------------------

    def now(self) -> float:
        t = time.time()
        return min(t, self.epoch) if self.epoch is not None else t

    def created(self) -> str:
        if self.epoch is not None:
            return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.epoch))
        t = time.time()
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"

    def probe(self, st: StageState, step: object, created_by: str | None = None) -> str | None:
        """The cache key of a step, after trying it: on a hit the stage moves to the cached
        image and None is returned. ``created_by`` (the step's history line) lets the
        ``cachefrom`` images match by their history."""
        key = step_key(st.image_id, step)
        if self.opts.nocache:
            return key
        img = self._cached(key)
        if img is None and created_by is not None and self.cache_sources:
            img = self._from_sources(st, key, created_by)
        if img is None:
            return key
        self.out.stream(" ---> Using cache\n")
        st.image = img
        st.config = _copy_config(img.config)
        return None

    def _cached(self, key: str) -> Image | None:
        rec = self.b.cache.get(key)
        if rec is None:
            return None
        if self.allowed_cache is not None and rec.image_id not in self.allowed_cache:
            return None
        try:
            img = self.b.store.get_by_id(rec.image_id)
        except NoSuchImage:
            self.b.cache.drop(key)
            return None
        self.b.cache.touch(key)
        return img

    def _from_sources(self, st: StageState, key: str, created_by: str) -> Image | None:
        """moby's ImageCache.GetCache for images that have no cache rows here (pulled)."""
        parent = st.image.config if st.image is not None else None
        for target in self.cache_sources:
            if not cachefrom.matches(target.config, parent, created_by):
                continue
            if cachefrom.ends_at(target.config, parent):
                img = target
            else:
                img = self.b.store.create_image(cachefrom.restore(target.config, parent, _copy_config(st.config).config))
                self.cache_sources = [target]  # as moby: keep following this image only
            if st.image is not None:
                self.b.store.set_parent(img.id, st.image.id)
            if self.allowed_cache is not None:
                self.allowed_cache.add(img.id)
            self.b.cache.put(key, st.image_id, img.id, created_by, 0)
            return img
        return None

    async def linked_layer(self, st: StageState, link_key: str) -> Any:
        """``COPY --link``: the layer an earlier build made for the same files, whatever the
        parent was then, put on this stage's parent from its stored blob (None: not cached)."""
        if self.opts.nocache:
            return None
        img = self._cached(link_key)
        if img is None or not img.config.rootfs.diff_ids:
            return None
        diff_id = img.config.rootfs.diff_ids[-1]
        blobs = self.b.store.blobs_of(diff_id)
        if not blobs:
            return None
        layer = await self.b.images.layer_from_blob(blobs[0][0], st.image.top if st.image else None)
        if layer.diff_id != diff_id:
            return None
        self.out.stream(" ---> Using cache\n")
        return layer

    def commit(self, st: StageState, key: str, created_by: str, diff_id: str | None, size: int = 0) -> Image:
        """The stage's next image: its current config plus a history entry (and a layer)."""
        cfg = st.config
        created = self.created()
        hist = list(cfg.history or [])
        hist.append(History(created=created, created_by=created_by, author=st.maintainer,
                            empty_layer=diff_id is None))
        diff_ids = list(cfg.rootfs.diff_ids) + ([diff_id] if diff_id else [])
        new = ImageConfig(architecture=cfg.architecture, os=cfg.os, variant=cfg.variant, created=created,
                          author=st.maintainer, config=cfg.config, docker_version="berth",
                          rootfs=RootFS(diff_ids=diff_ids), history=hist)
        img = self.b.store.create_image(new)
        if st.image is not None and hasattr(self.b.store, "set_parent"):
            self.b.store.set_parent(img.id, st.image.id)
        self.b.cache.put(key, st.image_id, img.id, created_by, size)
        st.image = img
        st.config = _copy_config(img.config)
        return img

    def _cache_from_set(self) -> set[str]:
        """Images the cache may hand out with ``cachefrom``: those named and the cached
        steps that led to them."""
        allowed: set[str] = set()
        by_image: dict[str, list[str]] = {}
        for r in self.b.cache.records():
            by_image.setdefault(r.image_id, []).append(r.parent)
        todo = []
        for name in self.opts.cache_from:
            try:
                todo.append(self.b.store.resolve(name).id)
            except NotFound:
                continue
        while todo:
            i = todo.pop()
            if i in allowed:
                continue
            allowed.add(i)
            todo.extend(p for p in by_image.get(i, []) if p)
        return allowed

    def _cache_from_images(self) -> list[Image]:
        out = []
        for name in self.opts.cache_from:
            try:
                out.append(self.b.store.resolve(name))
            except NotFound:
                continue
        return out

    # -- containers -----------------------------------------------------------------------

    async def remove_container(self, cid: str) -> None:
        if cid in self.containers:
            self.containers.remove(cid)
        try:
            await asyncio.shield(self.b.containers.remove(cid, force=True, volumes=True))
        except NotFound:
            pass

    def keep_container(self, cid: str) -> None:
        """``rm=0``: the step's container stays (``docker ps -a``), also across restarts."""
        if cid in self.containers:
            self.containers.remove(cid)
        self.b.cache.keep_container(cid)

    async def cleanup(self) -> None:
        for cid in list(self.containers):  # cut short (error, cancel): none may stay
            if True:
                try:
                    await self.remove_container(cid)
                except Exception as e:  # keep cleaning up the rest
                    log.warning("build %s: removing container %s: %s", self.id, cid[:12], e)


def _first_word(inst: dfp.Instruction) -> str:
    text = inst.args[0] if inst.args else ""
    return text.split()[0] if text.split() else ""


def _copy_config(cfg: ImageConfig) -> ImageConfig:
    return msgspec.json.decode(msgspec.json.encode(cfg), type=ImageConfig)


def _labels_instruction(labels: dict[str, str]) -> dfp.Instruction:
    text = " ".join(f"{_quote(k)}={_quote(v)}" for k, v in sorted(labels.items()))
    df = dfp.parse(f"LABEL {text}\n")
    return dataclasses.replace(df.instructions[0], line=0, end_line=0)  # not a line of the Dockerfile


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


def _host_platform() -> str:
    m = _p.machine()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(m, m)
    return f"linux/{arch}"


def _source_date_epoch(args: dict[str, str | None]) -> float | None:
    v = args.get("SOURCE_DATE_EPOCH")
    if not v:
        return None
    try:
        return float(int(v))
    except ValueError:
        raise InvalidArgument(f"invalid SOURCE_DATE_EPOCH: {v}") from None
