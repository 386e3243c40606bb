"""Image operations that involve more than the store: import, tag, remove (with the
containers that use an image), history, and the ``--change`` instructions."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import tempfile
from typing import AsyncIterator, Callable

from berth.engine.containers import Containers
from berth.errors import Conflict, InvalidArgument
from berth.image.store import Image, ImageStore, NoSuchImage, now_rfc3339
from berth.oci import reference
from berth.oci.image import History, ImageConfig, RootFS
from berth.schema.containers import ContainerConfig


def apply_changes(cfg: ContainerConfig, changes: list[str]) -> None:
    """Dockerfile instructions allowed by ``import --change`` / ``commit --change``."""
    for change in changes:
        change = change.strip()
        if not change:
            continue
        word, _, rest = change.partition(" ")
        word = word.upper()
        rest = rest.strip()
        if word in ("CMD", "ENTRYPOINT", "SHELL"):
            if rest.startswith("["):
                try:
                    val = json.loads(rest)
                except ValueError:
                    val = ["/bin/sh", "-c", rest]
            else:
                val = ["/bin/sh", "-c", rest]
            if word == "CMD":
                cfg.Cmd = val
            elif word == "ENTRYPOINT":
                cfg.Entrypoint = val
            else:
                cfg.Shell = val
        elif word == "ENV":
            env = {e.split("=", 1)[0]: e for e in (cfg.Env or [])}
            if "=" in rest.split(" ", 1)[0]:
                for part in shlex.split(rest):
                    k, _, v = part.partition("=")
                    env[k] = f"{k}={v}"
            else:
                k, _, v = rest.partition(" ")
                env[k] = f"{k}={v.strip()}"
            cfg.Env = list(env.values())
        elif word == "LABEL":
            labels = dict(cfg.Labels or {})
            for part in shlex.split(rest):
                k, _, v = part.partition("=")
                labels[k] = v
            cfg.Labels = labels
        elif word == "EXPOSE":
            ports = dict(cfg.ExposedPorts or {})
            for p in rest.split():
                ports[p if "/" in p else f"{p}/tcp"] = {}
            cfg.ExposedPorts = ports
        elif word == "VOLUME":
            vols = dict(cfg.Volumes or {})
            for v in (json.loads(rest) if rest.startswith("[") else rest.split()):
                vols[v] = {}
            cfg.Volumes = vols
        elif word == "USER":
            cfg.User = rest
        elif word == "WORKDIR":
            cfg.WorkingDir = rest
        elif word == "STOPSIGNAL":
            cfg.StopSignal = rest
        elif word == "ONBUILD":
            cfg.OnBuild = (cfg.OnBuild or []) + [rest]
        else:
            raise InvalidArgument(f"{word} is not a valid change command")


class Images:
    def __init__(self, store: ImageStore, containers: Containers, tmp_dir: str):
        self.store = store
        self.containers = containers
        self.tmp_dir = tmp_dir
        self.on_event: Callable[[str, str, dict[str, str]], None] = lambda *a: None

    async def import_tar(self, body: AsyncIterator[bytes], repo: str, tag: str, changes: list[str],
                         message: str) -> Image:
        ref = None
        if repo:
            ref = reference.parse(f"{repo}:{tag}" if tag else repo)
        cfg = ContainerConfig()
        apply_changes(cfg, changes)
        fd, path = tempfile.mkstemp(dir=self.tmp_dir, prefix="import-")
        try:
            with os.fdopen(fd, "wb") as f:
                async for chunk in body:
                    f.write(chunk)
            with open(path, "rb") as f:
                stage, diff_id, size = await asyncio.to_thread(self.store.stage_layer, f)
        finally:
            os.unlink(path)
        layer = self.store.commit_layer(stage, diff_id, size, None)
        created = now_rfc3339()
        config = ImageConfig(
            created=created, comment=message or None, config=cfg, docker_version="berth",
            rootfs=RootFS(diff_ids=[layer.diff_id]),
            history=[History(created=created, comment=message or "Imported from -")])
        img = self.store.create_image(config, [str(ref)] if ref else [])
        self.on_event("import", img.id, {})
        return img

    def tag(self, name: str, repo: str, tag: str | None) -> None:
        if not repo:
            raise InvalidArgument("repository name must have at least one component")
        self.store.tag(name, repo, tag)
        img = self.store.resolve(name)
        self.on_event("tag", img.id, {"name": reference.parse(f"{repo}:{tag}" if tag else repo).familiar})

    def remove(self, name: str, force: bool) -> list[dict[str, str]]:
        img = self.store.resolve(name)
        tags = self.store.tags_of(img.id)
        by_id = reference.is_image_id(name) or img.id.removeprefix("sha256:").startswith(name.removeprefix("sha256:"))
        named_ref = None
        if not by_id or name in tags:
            try:
                named_ref = reference.parse(name)
            except InvalidArgument:
                named_ref = None
            if named_ref is not None and named_ref.familiar not in tags:
                named_ref = None
        users = self.containers.using_image(img.id)
        out: list[dict[str, str]] = []
        if named_ref is not None and len(tags) > 1:
            self.store.untag(str(named_ref))
            self.on_event("untag", img.id, {"name": named_ref.familiar})
            return [{"Untagged": named_ref.familiar}]
        if named_ref is None and len(tags) > 1 and not force:
            raise Conflict(f"conflict: unable to delete {img.short_id} (must be forced) - image is "
                           "referenced in multiple repositories")
        if users:
            running = [c for c in users if c.running]
            if named_ref is not None and not force:
                raise Conflict(f'conflict: unable to remove repository reference "{named_ref.familiar}" '
                               f"(must force) - container {users[0].short_id} is using its referenced image {img.short_id}")
            if named_ref is None and not force:
                raise Conflict(f"conflict: unable to delete {img.short_id} (must be forced) - image is being used "
                               f"by stopped container {users[0].short_id}" if not running else
                               f"conflict: unable to delete {img.short_id} (cannot be forced) - image is being used "
                               f"by running container {running[0].short_id}")
            if running and named_ref is None:
                raise Conflict(f"conflict: unable to delete {img.short_id} (cannot be forced) - image is being "
                               f"used by running container {running[0].short_id}")
            for t in tags:
                self.store.untag(str(reference.parse(t)))
                out.append({"Untagged": t})
                self.on_event("untag", img.id, {"name": t})
            return out
        for t in tags:
            out.append({"Untagged": t})
            self.on_event("untag", img.id, {"name": t})
        self.store.delete_image(img.id)
        out.append({"Deleted": img.id})
        self.on_event("delete", img.id, {})
        return out

    def history(self, name: str) -> list[dict[str, object]]:
        img = self.store.resolve(name)
        diff_ids = list(img.config.rootfs.diff_ids)
        from berth.oci.image import chain_ids
        chains = chain_ids(diff_ids)
        sizes = []
        for c in chains:
            layer = self.store.layer(c)
            sizes.append(layer.size if layer else 0)
        out: list[dict[str, object]] = []
        layer_i = len(sizes) - 1
        hist = img.config.history or [History(created=img.created)]
        for i, h in enumerate(reversed(hist)):
            size = 0
            if not h.empty_layer and layer_i >= 0:
                size = sizes[layer_i]
                layer_i -= 1
            out.append({"Id": img.id if i == 0 else "<missing>", "Created": _unix(h.created or img.created),
                        "CreatedBy": h.created_by or "", "Tags": self.store.tags_of(img.id) if i == 0 else None,
                        "Size": size, "Comment": h.comment or ""})
        return out


def _unix(t: str) -> int:
    from berth.engine.logs import parse_time
    try:
        return int(parse_time(t) or 0)
    except InvalidArgument:
        return 0


_ = NoSuchImage
