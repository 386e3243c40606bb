"""What the builder needs from the engine: run a step's container and stream its output, turn
a container's writable layer (its overlay upper dir) or a ready layer tar into an image, and
find the containers a dead build left behind.

A build container carries the label ``BUILD_LABEL`` (the build's ID), so containers of a
build that berthd's death cut short are removed at the next start (``sweep``).

A running step is watched (``StepWatch``): when the filesystem its writes go to falls under
a floor of free space, or its processes keep failing to fork at the pids limit (a fork bomb),
it is killed, so one RUN can neither fill the disk under berthd nor spin forever.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import struct
from pathlib import Path
from typing import Awaitable, BinaryIO, Callable

from berth.engine import container_userns
from berth.engine.containers import Containers
from berth.errors import Conflict, NotFound
from berth.engine.images import Images
from berth.image.archive import diff_tar
from berth.image.store import Image, Layer
from berth.oci.image import ImageConfig
from berth.schema.containers import CreateRequest

log = logging.getLogger("berth.build")

BUILD_LABEL = "berth.build"
# Processes (and threads) one RUN step may have at once. Docker sets none; a fork bomb in a
# build would then take the host's pid space. Podman's default is 2048; this leaves room for
# compilers and JVMs with many threads.
DEFAULT_PIDS_LIMIT = 4096
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
    attach = containers.attach_soon(c.id, False, True, True)  # subscribed before the start
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
        pass
    else:
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
                path = os.path.join(root, n)
                st = os.lstat(path)
                if st.st_mtime > clamp:
                    os.utime(path, (clamp, clamp), follow_symlinks=False)
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


async def commit_upper(images: Images, upper: Path, parent: Image | None, cid: str = "") -> Layer:
    """The RUN step's upper dir as a layer; ``cid``: its container, whose user namespace's ids
    (if any) go back to the container's own in the tar."""
    maps = None
    if cid:
        c = images.containers.get(cid)
        maps = container_userns.maps_for(cid, c.host_config, images.containers.userns)
    return await commit_tar(images, lambda out: diff_tar(upper, out, maps.container_ids if maps else None), parent)


def create_image(images: Images, config: ImageConfig) -> Image:
    return images.store.create_image(config)


def build_containers(containers: Containers) -> set[str]:
    """The IDs of every build step's container now in the table."""
    return {c.id for c in containers.list() if BUILD_LABEL in (c.config.Labels or {})}


async def sweep(containers: Containers, stale: set[str], kept: Callable[[set[str]], set[str]] | None = None) -> None:
    """Remove ``stale``: the containers of builds that did not finish (berthd died under
    them), named at start before any new build could begin; ``kept`` names, among them,
    those a build kept on purpose (rm=0)."""
    keep = kept(set(stale)) if kept is not None else set()
    for cid in sorted(stale - keep):
        try:
            await containers.remove(cid, force=True, volumes=True)
        except Exception:  # already gone
            pass


def free_space(path: Path) -> tuple[int, int]:
    """(free bytes for unprivileged writers, total bytes) of the filesystem holding path."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


def space_floor(path: Path) -> int:
    """The free space a step may not take: 5% of the filesystem (at least 16 MiB, at most
    1 GiB), and at most half of what is free when the step starts (a nearly full disk still
    builds)."""
    free, total = free_space(path)
    return min(max(total // 20, 16 << 20), 1 << 30, free // 2)


class Reserve:
    """Space held back on the data root's filesystem (an allocated file): a step that
    writes faster than the watch looks can still fill the disk, and berthd then needs room
    to record the step's end and remove it. Released when a step runs out of space, taken
    again once there is room."""

    def __init__(self, path: Path, size: int = 8 << 20):
        self.path = path
        self.size = size

    def take(self) -> None:
        try:
            if self.path.exists() and self.path.stat().st_blocks * 512 >= self.size:
                return
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.size)
            finally:
                os.close(fd)
        except OSError as e:  # no room now: try again after the next step
            log.info("build space reserve %s: %s", self.path, e)
            self.release()

    def release(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class StepWatch:
    """Watches one running step container; ``reason`` says why it was killed: "disk" (less
    than ``floor`` bytes free where its upper dir is) or "pids" (a fork refused at the pids
    limit: a fork bomb, whose processes would otherwise spin or hang on their pipes forever;
    a real build that needs more processes than the limit fails at that point anyway)."""

    def __init__(self, containers: Containers, cid: str, upper: Path, reserve: Reserve, interval: float = 0.1):
        self.containers = containers
        self.reserve = reserve
        self.cid = cid
        self.upper = upper
        self.floor = space_floor(upper.parent)
        self.interval = interval
        self.reason: str | None = None
        self._task: asyncio.Future[None] | None = None
        self._events: Path | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    def low_on_space(self) -> bool:
        try:
            return free_space(self.upper.parent)[0] < self.floor
        except OSError:
            return False

    async def _run(self) -> None:
        while self.reason is None:
            await asyncio.sleep(self.interval)
            if self.low_on_space():
                self.reason = "disk"
            elif self._fork_failures():
                self.reason = "pids"
        await asyncio.to_thread(self._stop_now)
        try:
            await self.containers.kill(self.cid, "KILL")
        except (Conflict, NotFound):
            pass  # it ended on its own
        except Exception as e:
            log.warning("stopping build step %s: %s", self.cid[:12], e)

    def _stop_now(self) -> None:
        """Freeze the step, give back the reserve (berthd needs room to record the exit), then
        kill every process of it: nothing can fork or write in between."""
        try:
            cg = self.containers.cgroup(self.containers.get(self.cid))
        except Exception:
            self.reserve.release()
            return
        try:
            cg.freeze(timeout=2.0)
        except Exception as e:
            log.info("build step %s: freeze: %s", self.cid[:12], e)
        self.reserve.release()
        try:
            cg.kill_all()
        except Exception as e:
            log.info("build step %s: kill: %s", self.cid[:12], e)

    def _fork_failures(self) -> int:
        """The pids cgroup's count of forks refused at pids.max ("max N" in pids.events)."""
        if self._events is None:
            try:
                paths = self.containers.cgroup(self.containers.get(self.cid)).paths()
            except Exception:
                return 0
            d = paths.get("pids") or paths.get("")
            if d is None:
                return 0
            self._events = d / "pids.events"
        try:
            for line in self._events.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "max":
                    return int(value)
        except (OSError, ValueError):
            self._events = None
        return 0


def tree_size(root: Path) -> int:
    """Bytes the files under root take (a step's upper dir, before it is committed)."""
    total = 0
    for dirpath, dirs, files in os.walk(root):
        for n in files + dirs:
            try:
                total += os.lstat(os.path.join(dirpath, n)).st_blocks * 512
            except OSError:
                pass
    return total
