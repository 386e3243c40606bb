"""What the builder needs from the engine: run a step's container and stream its output, turn
a container's writable layer (its overlay upper dir) or a ready layer tar into an image, and
find the containers a dead build left behind.

A build container carries the label ``BUILD_LABEL`` (the build's ID), so containers of a
build that berthd's death cut short are removed at the next start (``sweep``).
"""

from __future__ import annotations

import asyncio
import os
import stat
import struct
from pathlib import Path
from typing import Awaitable, BinaryIO, Callable

from berth.engine.containers import Containers
from berth.engine.images import Images
from berth.image.archive import diff_tar
from berth.image.store import Image, Layer
from berth.oci.image import ImageConfig
from berth.schema.containers import CreateRequest

BUILD_LABEL = "berth.build"
# Mount points the runtime creates in the rootfs when the image lacks them: they are not
# the step's work and stay out of its layer.
RUNTIME_MOUNT_POINTS = ("proc", "sys", "dev", "etc/hosts", "etc/hostname", "etc/resolv.conf")

Output = Callable[[bytes], Awaitable[None]]


async def run_container(containers: Containers, req: CreateRequest, on_created: Callable[[str], None],
                        output: Output) -> int:
    """Create, start and wait for a container, streaming its stdout and stderr to ``output``;
    returns the exit code. The caller removes the container (``on_created`` gave its ID)."""
    c, _ = containers.create(req, None)
    on_created(c.id)
    attach = asyncio.ensure_future(containers.attach_stream(c.id, False, True, True))
    await asyncio.sleep(0)  # the subscription is registered before the init is released
    exited = containers.wait_future(c.id, "next-exit")
    try:
        await containers.start(c.id)
    except BaseException:
        attach.cancel()
        exited.cancel()
        raise
    try:
        reader, writer = await attach
    except (asyncio.CancelledError, OSError, ConnectionError):
        reader = writer = None  # type: ignore[assignment]
    if reader is not None:
        try:
            await _pump(reader, output)
        finally:
            writer.close()
    status = await exited
    return status.exit_code


async def _pump(reader: asyncio.StreamReader, output: Output) -> None:
    """Docker's multiplexed frames (8-byte header) -> output."""
    while True:
        try:
            head = await reader.readexactly(8)
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        stream, size = head[0], struct.unpack(">I", head[4:])[0]
        try:
            data = await reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        if stream in (1, 2):
            await output(data)
        elif stream == 3:  # the exit frame
            return


def tidy_upper(upper: Path, present: Callable[[str], bool], extra: list[str], clamp: float | None) -> None:
    """Drop the empty mount points the runtime (or a RUN --mount) created that the image did
    not have, and clamp mtimes to ``clamp`` (SOURCE_DATE_EPOCH)."""
    for rel in [*RUNTIME_MOUNT_POINTS, *[e.strip("/") for e in extra]]:
        parts = rel.split("/")
        for i in range(len(parts), 0, -1):
            sub = "/".join(parts[:i])
            p = upper / sub
            if present("/" + sub):
                break
            try:
                st = os.lstat(p)
            except OSError:
                continue
            try:
                if stat.S_ISDIR(st.st_mode):
                    os.rmdir(p)
                elif stat.S_ISREG(st.st_mode) and st.st_size == 0:
                    os.unlink(p)
            except OSError:
                break
    if clamp is not None:
        for root, dirs, files in os.walk(upper):
            for n in dirs + files:
                p = os.path.join(root, n)
                st = os.lstat(p)
                if st.st_mtime > clamp:
                    os.utime(p, (clamp, clamp), follow_symlinks=False)
        st = os.lstat(upper)


async def commit_tar(images: Images, write: Callable[[BinaryIO], None], parent: Image | None) -> Layer:
    """A layer from a tar that ``write`` produces (in a thread), on top of ``parent``."""
    store = images.store

    def ingest() -> str:
        ing = store.content.ingest()
        try:
            write(ing)  # type: ignore[arg-type]
        except BaseException:
            ing.abort()
            raise
        return ing.commit()
    blob = await asyncio.to_thread(ingest)
    return await images.layer_from_blob(blob, parent.top if parent else None)


async def commit_upper(images: Images, upper: Path, parent: Image | None) -> Layer:
    return await commit_tar(images, lambda out: diff_tar(upper, out), parent)


def create_image(images: Images, config: ImageConfig) -> Image:
    return images.store.create_image(config)


async def sweep(containers: Containers) -> None:
    """Remove the containers of builds that did not finish (berthd died under them)."""
    for c in containers.list():
        if BUILD_LABEL in (c.config.Labels or {}):
            try:
                await containers.remove(c.id, force=True, volumes=True)
            except Exception:  # already gone
                pass
