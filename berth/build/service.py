"""The daemon-wide builder: the collaborators every build uses, the build options, the
leftovers' sweep and the outcome counters.

``daemon/`` builds one ``Builder`` at start-up; the build itself (the Dockerfile's parser and
instructions, the context's loaders, ``berth.build.builder``) is imported at the first build,
not on berthd's way to its first answer (docs/performance.md, "Daemon start").
"""

from __future__ import annotations

import asyncio
import collections
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from berth.build.cache import BuildCache
from berth.build.fsview import RootView
from berth.engine import build_support as bs

if TYPE_CHECKING:
    from berth.build.context import BuildContext
    from berth.engine.containers import Containers
    from berth.engine.distribution import Distribution
    from berth.engine.images import Images
    from berth.image.store import Image


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
        from berth.build.builder import Build  # the build's own modules: at the first build
        from berth.build.output import Output

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
