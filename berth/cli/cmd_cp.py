"""``cp``: copy between a container and the local file system (docker cp's rules).

``CONTAINER:SRC DEST``: GET the archive of SRC; if DEST is an existing directory the copy lands
inside it, else it is created with DEST's name. ``SRC CONTAINER:DEST``: HEAD DEST; if it is a
directory SRC lands inside it, else SRC is sent renamed to DEST's base name into its parent.
``-`` means a tar stream on stdin/stdout.
"""

from __future__ import annotations

import io
import json
import os
import sys

from berth.cli._common import print_error
from berth.cli._flags import Flag, Spec
from berth.cli._units import human_size
from berth.client.api import APIError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any


def spec_cp() -> Spec:
    return Spec("cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-", "Copy files/folders between a container and the local filesystem", [
        Flag("archive", "a", "bool", "Archive mode (copy all uid/gid information)"),
        Flag("follow-link", "L", "bool", "Always follow symbol link in SRC_PATH"),
        Flag("quiet", "q", "bool", "Suppress progress output during copy. Progress output is automatically suppressed if no terminal is attached"),
    ], aliases=("container cp", "cp"), min_args=2, max_args=2)


def _split(arg: str) -> tuple[str, str]:
    """"name:path" -> (name, path); a local path (absolute, ./x, or without ":") -> ("", path)."""
    if arg.startswith("/") or arg.startswith(".") or ":" not in arg:
        return "", arg
    name, _, path = arg.partition(":")
    return name, path


def run_cp(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    (sc, sp), (dc, dp) = _split(args[0]), _split(args[1])
    if sc and dc:
        print_error("copying between containers is not supported")
        return 1
    if not sc and not dc:
        print_error("must specify at least one container source")
        return 1
    try:
        if sc:
            n = _from_container(cli, sc, sp, dp, opts["follow_link"])
            what = dp
        else:
            n = _to_container(cli, sp, dc, dp, opts["archive"], opts["follow_link"])
            what = f"{dc}:{dp}"
    except APIError as exc:
        print_error(f"Error response from daemon: {exc.message}")
        return 1
    except OSError as exc:
        print_error(str(exc))
        return 1
    if not opts["quiet"] and (sc and dp != "-" or dc and sp != "-"):
        print_error(f"Successfully copied {human_size(n, 3)} to {what}")
    return 0


def _stat(cli: Any, name: str, path: str) -> dict[str, Any] | None:
    import base64
    try:
        resp = cli.client.request("HEAD", f"/containers/{name}/archive", {"path": path})
    except APIError as exc:
        if exc.status == 404 and "container" not in exc.message.lower()[:20]:
            return None
        raise
    resp.read()
    h = resp.headers.get("x-docker-container-path-stat")
    return json.loads(base64.b64decode(h)) if h else {}


def _from_container(cli: Any, name: str, src: str, dest: str, follow: bool) -> int:
    import tarfile
    from typing import cast
    if follow:
        st = _stat(cli, name, src)
        if st and st.get("linkTarget"):
            target = st["linkTarget"]
            src = target if target.startswith("/") else os.path.join(os.path.dirname(src), target)
    resp = cli.client.request("GET", f"/containers/{name}/archive", {"path": src})
    if dest == "-":
        n = 0
        for chunk in resp:
            sys.stdout.buffer.write(chunk)
            n += len(chunk)
        sys.stdout.buffer.flush()
        return n
    counter = _Counter(resp)
    into_dir = os.path.isdir(dest)
    if not into_dir and dest.endswith("/"):
        raise OSError(f"destination directory \"{dest}\" must exist")
    parent = dest if into_dir else (os.path.dirname(dest.rstrip("/")) or ".")
    new_name = None if into_dir else os.path.basename(dest.rstrip("/"))
    # stream mode ("r|") only ever calls read(), which is all _Counter has
    with tarfile.open(fileobj=cast("IO[bytes]", counter), mode="r|") as tar:
        root = None
        for m in tar:
            if root is None:
                root = m.name.split("/", 1)[0]
            if new_name is not None:
                rest = m.name[len(root):]
                m.name = new_name + rest
            tar.extract(m, parent, set_attrs=True, filter="tar")
    return counter.n


class _Counter:
    """A file-like reader over the response that counts bytes."""

    def __init__(self, resp: Any) -> None:
        self._it = iter(resp)
        self._buf = b""
        self.n = 0

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buf) < size:
            try:
                chunk = next(self._it)
            except StopIteration:
                break
            self._buf += chunk
        if size < 0:
            data, self._buf = self._buf, b""
        else:
            data, self._buf = self._buf[:size], self._buf[size:]
        self.n += len(data)
        return data


def _to_container(cli: Any, src: str, name: str, dest: str, archive: bool, follow: bool) -> int:
    import tarfile
    params: dict[str, object] = {"noOverwriteDirNonDir": True}
    if archive:
        params["copyUIDGID"] = True
    if src == "-":
        data = sys.stdin.buffer.read()
        params["path"] = dest
        cli.client.request("PUT", f"/containers/{name}/archive", params, body=data,
                           headers={"Content-Type": "application/x-tar"}).read()
        return len(data)
    if not os.path.lexists(src):
        raise OSError(f"lstat {src}: no such file or directory")
    st = _stat(cli, name, dest)
    if st is not None and st.get("mode", 0) & (1 << 31):
        target_dir, arcname = dest, os.path.basename(src.rstrip("/")) or "."
    else:
        if dest.endswith("/"):
            raise OSError(f"destination directory \"{dest}\" must exist")
        target_dir, arcname = os.path.dirname(dest.rstrip("/")) or "/", os.path.basename(dest.rstrip("/"))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        path = os.path.realpath(src) if follow else src
        tar.add(path, arcname=arcname)
    data = buf.getvalue()
    params["path"] = target_dir
    cli.client.request("PUT", f"/containers/{name}/archive", params, body=data,
                       headers={"Content-Type": "application/x-tar"}).read()
    return len(data)
