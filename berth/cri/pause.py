"""berth's own pause: the process that holds a pod's namespaces, and the image it comes in.

No registry is needed for a pod: the first RunPodSandbox imports ``berth.local/pause:builtin``,
an image with one file, ``/pause``, a static x86-64 ELF of 129 bytes made here. Its whole
program is ``for (;;) pause();``: it sleeps without a single page of heap, and as PID 1 of the
pod's PID namespace it ignores SIGTERM, so a sandbox is stopped with SIGKILL (the kubelet never
asks for a grace period: StopPodSandbox stops the containers first).

    elf()[:4] == b"\\x7fELF"
"""

from __future__ import annotations

import io
import platform
import struct
import tarfile
from collections.abc import AsyncIterator

from berth.engine.images import Images
from berth.errors import NotFound, Unsupported

IMAGE = "berth.local/pause:builtin"
BASE = 0x400000
# mov eax, 34 (SYS_pause); syscall; jmp back to the mov
_CODE = bytes.fromhex("b822000000" "0f05" "ebf7")
_EHDR, _PHDR = 64, 56


def elf() -> bytes:
    """The pause program: one ELF header, one loadable segment (read + execute), the code."""
    size = _EHDR + _PHDR + len(_CODE)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # 64-bit, little endian, SysV
    ehdr = ident + struct.pack("<HHIQQQIHHHHHH", 2, 0x3E, 1, BASE + _EHDR + _PHDR, _EHDR, 0, 0,
                               _EHDR, _PHDR, 1, 0, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, BASE, BASE, size, size, 0x1000)
    return ehdr + phdr + _CODE


def layer() -> bytes:
    """The image's one layer: ``/pause``, mode 0755, owned by root."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = elf()
        info = tarfile.TarInfo("pause")
        info.size, info.mode, info.mtime = len(data), 0o755, 0
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


async def image(images: Images) -> str:
    """The pause image's ID, imported on first use."""
    try:
        return images.resolve(IMAGE).id
    except NotFound:
        pass
    if platform.machine() not in ("x86_64", "amd64"):
        raise Unsupported(f"berth's pause image is built for x86-64 only, not {platform.machine()}")

    async def body() -> AsyncIterator[bytes]:
        yield layer()
    repo, _, tag = IMAGE.rpartition(":")
    img = await images.import_tar(body(), repo, tag, ['ENTRYPOINT ["/pause"]'], "berth's pod sandbox")
    return img.id
