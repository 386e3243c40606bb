"""ImageFiles: the image operations that move whole images or file systems around, built
once by daemon/ over ``Images``. Each is owned by its own module:

    commit                                image_commit  (a container's layer -> an image)
    save, load, export                    image_tar     (docker-save tars; a container's files)
    prune, disk usage                     image_space
"""

from __future__ import annotations

import contextlib
from typing import AsyncGenerator, BinaryIO, Callable

from berth.engine.image_commit import Committer
from berth.engine.image_records import DiskUsage, PruneReport
from berth.engine.image_space import Space
from berth.engine.image_tar import ImageTars
from berth.engine.images import Images
from berth.image.store import Image
from berth.schema.containers import ContainerConfig


class ImageFiles:
    def __init__(self, images: Images):
        self.images = images
        self.committer = Committer(images)
        self.tars = ImageTars(images)
        self.space = Space(images)

    async def commit(self, container: str, repo: str, tag: str, comment: str, author: str,
                     changes: list[str], config: ContainerConfig | None, pause: bool) -> Image:
        return await self.committer.commit(container, repo, tag, comment, author, changes, config, pause)

    def save(self, names: list[str], out: BinaryIO) -> None:
        self.tars.save(names, out)

    async def load(self, path: str, say: Callable[[str], None]) -> list[str]:
        return await self.tars.load(path, say)

    def export(self, container: str) -> AsyncGenerator[bytes, None]:
        return self.tars.export(container)

    def scratch(self, prefix: str) -> contextlib.AbstractContextManager[str]:
        return self.tars.scratch(prefix)

    def save_chunks(self, names: list[str]) -> AsyncGenerator[bytes, None]:
        return self.tars.save_chunks(names)

    def prune(self, filters: dict[str, list[str]]) -> PruneReport:
        return self.space.prune(filters)

    def disk_usage(self) -> DiskUsage:
        return self.space.disk_usage()

    def shared_sizes(self) -> dict[str, int]:
        return self.space.shared_sizes()
