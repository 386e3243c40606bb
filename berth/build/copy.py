"""COPY and ADD: sources from the context (``.dockerignore`` applied), another stage or an
image (``--from``), heredocs, URLs (ADD, ``--checksum``) and local archives (ADD extracts
them); the layer is written directly from the plan (layers.py), no container involved."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import posixpath
import tempfile
import urllib.parse
import urllib.request
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING

from berth.build import instructions as ins
from berth.build import layers
from berth.build.cache import step_key
from berth.build.context import is_tar
from berth.build.fsview import RootView, has_magic
from berth.build.output import BuildFailed
from berth.build.steps import shell
from berth.engine import build_support as bs

if TYPE_CHECKING:
    from berth.build.builder import Build, StageState

NOT_FOUND = "file not found in build context or excluded by .dockerignore"


def _is_url(s: str) -> bool:
    return s.startswith(("http://", "https://"))


async def copy(b: Build, st: StageState, cmd: ins.Copy) -> None:
    what = "ADD" if cmd.is_add else "COPY"
    dest = layers.normalize_dest(st.cc.WorkingDir, cmd.dest)
    # --link: planned on an empty root, never reading the parent (BuildKit, which falls back
    # to a plain copy when --chmod is given too)
    link = cmd.link and not cmd.chmod
    image_view = RootView([]) if link else b.b.view(st.image)
    if cmd.chown:
        owner = layers.parse_chown_link(cmd.chown) if link else layers.parse_chown(cmd.chown, image_view)
    else:
        owner = None
    chmod = layers.parse_chmod(cmd.chmod)
    now = b.now()
    if len(cmd.sources) + len(cmd.heredocs) > 1 and not dest.endswith("/"):
        raise BuildFailed(f"When using {what} with more than one source file, the destination must be a "
                          "directory and end with a /")
    plans: list[layers.Plan] = []
    sources: list[layers.Source] = []
    for h in cmd.heredocs:
        sources.append(layers.Source(h.name, data=h.content.encode()))
    if cmd.from_:
        view = await b.source_view(cmd.from_, st.index)
        for s in cmd.sources:
            sources += _resolve(view, s, what, from_context=False, b=b)
    else:
        for s in cmd.sources:
            if cmd.is_add and _is_url(s):
                plans.append(await _url_plan(b, s, dest, cmd, image_view, owner, chmod, now))
                continue
            found = _resolve(b.context_view, s, what, from_context=True, b=b)
            if cmd.is_add:
                rest = []
                for src in found:
                    if src.node is not None and not src.node.is_dir and not src.node.is_link and is_tar(src.node.host):
                        plans.append(await asyncio.to_thread(layers.plan_archive, src.node.host, dest, image_view,
                                                             now))
                    else:
                        rest.append(src)
                found = rest
            sources += found
    skip = None
    if cmd.exclude:
        from berth.build.dockerignore import Matcher
        skip = Matcher(list(cmd.exclude)).excluded
        sources = [s for s in sources if s.node is None or s.node.is_dir or not skip(s.name, False)]
    if cmd.parents:
        sources = [_keep_parents(s) for s in sources]
    if sources:
        excluded = b.ctx_excluded()
        plans.append(await asyncio.to_thread(layers.plan_copy, sources, dest, image_view, owner, chmod, now,
                                             excluded, skip))
    plan = layers.Plan()
    for p in plans:
        plan.entries += p.entries
        plan.sources += p.sources
    digest = await asyncio.to_thread(layers.checksum, plan.entries)
    src_hash = layers.source_hash(plan)
    flags = ("--link " if link else "") + (f"--chown={cmd.chown} " if cmd.chown else "")
    created_by = " ".join(shell(st) + [f"#(nop) {what} {flags}{src_hash} in {cmd.dest} "])
    step = ["copy", created_by, digest, cmd.chmod or "", dest, sorted(cmd.exclude), cmd.parents]
    key = b.probe(st, step + (["link"] if link else []), created_by)
    if key is None:
        return
    # --link: the layer's own key leaves the parent out, so a changed earlier step still
    # reuses the layer (the image on top of the new parent is new)
    link_key = step_key("link", step) if link else None
    layer = await b.linked_layer(st, link_key) if link_key else None
    if layer is None:
        clamp = b.epoch
        layer = await bs.commit_tar(b.b.images, lambda out: layers.write_tar(plan.entries, out, clamp), st.image)
    img = b.commit(st, key, created_by, layer.diff_id, layer.size)
    if link_key:
        b.b.cache.put(link_key, "", img.id, created_by, 0)


def _resolve(view: RootView, src: str, what: str, from_context: bool, b: Build) -> list[layers.Source]:
    """Sources named by one COPY argument (wildcards expanded), as Docker resolves them."""
    found = _resolve_one(view, src, what, from_context, b)
    rest = src
    while rest.startswith("./"):
        rest = rest[2:]
    if "/./" in rest:  # a --parents pivot: the part before it is not kept
        pivot = posixpath.normpath("/" + rest.split("/./", 1)[0]).strip("/")
        found = [dataclasses.replace(s, pivot=pivot) for s in found]
    return found


def _resolve_one(view: RootView, src: str, what: str, from_context: bool, b: Build) -> list[layers.Source]:
    clean = posixpath.normpath("/" + src) if src else "/"
    if from_context and _escapes(src):
        raise BuildFailed(f"{what} failed: forbidden path outside the build context: {src} ()")
    excluded = b.ctx_excluded() if from_context else None
    if has_magic(src):
        nodes = view.glob(clean)
        if excluded is not None:
            nodes = [n for n in nodes if not excluded(n.path.lstrip("/"), n.is_dir)]
        if not nodes:
            raise BuildFailed(f"{what} failed: no source files were specified")
        return [layers.Source(posixpath.basename(n.path), node=n, view=view, from_context=from_context)
                for n in nodes]
    node = view.lookup(clean)
    if node is None or (excluded is not None and clean != "/" and excluded(node.path.lstrip("/"), node.is_dir)):
        if from_context:
            raise BuildFailed(f"{what} failed: {NOT_FOUND}: stat {src}: file does not exist")
        raise BuildFailed(f"{what} failed: stat {clean}: file does not exist")
    return [layers.Source(posixpath.basename(clean) or posixpath.basename(node.path), node=node, view=view,
                          from_context=from_context)]


def _keep_parents(src: layers.Source) -> layers.Source:
    """``COPY --parents``: the source keeps its path from the root, or from a ``/./`` pivot
    in the argument (BuildKit's rule)."""
    if src.node is None:
        return src
    path = src.node.path.strip("/")
    if src.pivot:
        path = path[len(src.pivot):].lstrip("/") if path.startswith(src.pivot) else path
    return dataclasses.replace(src, keep_path=path)


def _escapes(src: str) -> bool:
    depth = 0
    for p in src.split("/"):
        if p in ("", "."):
            continue
        depth += -1 if p == ".." else 1
        if depth < 0:
            return True
    return False


async def _url_plan(b: Build, url: str, dest: str, cmd: ins.Copy, image_view: RootView,
                    owner: tuple[int, int] | None, chmod: int | None, now: float) -> layers.Plan:
    fd, tmp = tempfile.mkstemp(dir=b.work, prefix="add-")
    os.close(fd)
    path = Path(tmp)

    def fetch() -> float | None:
        try:
            with urllib.request.urlopen(url, timeout=300) as r, open(path, "wb") as f:
                while chunk := r.read(1 << 20):
                    f.write(chunk)
                lm = r.headers.get("Last-Modified")
        except OSError as e:
            raise BuildFailed(f"failed to download {url}: {e}") from None
        try:
            return parsedate_to_datetime(lm).timestamp() if lm else None
        except (TypeError, ValueError):
            return None
    mtime = await asyncio.to_thread(fetch)
    if cmd.checksum:
        algo, _, want = cmd.checksum.partition(":")
        if algo != "sha256" or not want:
            raise BuildFailed(f"unsupported checksum {cmd.checksum!r}: expected sha256:<hex>")
        got = await asyncio.to_thread(layers.file_digest, path)
        if got != want:
            raise BuildFailed(f"digest mismatch for {url}: expected sha256:{want}, got sha256:{got}")
    name = posixpath.basename(urllib.parse.urlsplit(url).path) or "__unnamed__"
    st = os.stat(path)
    node_view = RootView([path.parent], layered=False)
    node = node_view.lookup("/" + path.name)
    assert node is not None
    os.chmod(path, 0o600 if chmod is None else chmod)
    os.utime(path, (mtime or now, mtime or now))
    node = node_view.lookup("/" + path.name)
    src = layers.Source(name, node=node, view=node_view, from_context=True)
    plan = layers.plan_copy([src], dest, image_view, owner, chmod, now)
    plan.sources = ["file:" + hashlib.sha256(url.encode()).hexdigest() + ":" + str(st.st_size)]
    return plan
