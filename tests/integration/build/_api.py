"""Helpers for the builder's API tests: context tars, a raw POST /build that returns the
decoded JSON messages, and what a build must not leave behind."""

from __future__ import annotations

import io
import json
import tarfile
import time

from tests.integration.daemon import Daemon


def tar_of(files: dict[str, bytes | str], *, mode: str = "w", extra: list[tarfile.TarInfo] | None = None) -> bytes:
    """A context tar; values are file contents (str: ``"->target"`` makes a symlink)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as t:  # type: ignore[call-overload]
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.mtime = int(time.time())
            if isinstance(data, str) and data.startswith("->"):
                ti.type = tarfile.SYMTYPE
                ti.linkname = data[2:]
                t.addfile(ti)
                continue
            raw = data.encode() if isinstance(data, str) else data
            ti.size = len(raw)
            ti.mode = 0o755 if name.endswith(".sh") else 0o644
            t.addfile(ti, io.BytesIO(raw))
        for ti in extra or []:
            t.addfile(ti)
    return buf.getvalue()


def build(d: Daemon, body: bytes, query: str = "", timeout: float = 120,
          headers: dict[str, str] | None = None) -> tuple[int, list[dict]]:
    st, out = d.request("POST", f"/build?{query}", body, {"Content-Type": "application/x-tar", **(headers or {})},
                        timeout=timeout)
    if st != 200:
        return st, [json.loads(out)]
    return st, [json.loads(line) for line in out.decode().splitlines() if line.strip()]


def text(msgs: list[dict]) -> str:
    return "".join(m.get("stream", "") for m in msgs)


def image_id(msgs: list[dict]) -> str:
    ids = [m["aux"]["ID"] for m in msgs if "aux" in m]
    assert ids, msgs
    return ids[-1]


def error(msgs: list[dict]) -> dict:
    errs = [m for m in msgs if "error" in m]
    assert errs, msgs
    return errs[-1]


def get(d: Daemon, path: str) -> object:
    st, out = d.request("GET", path)
    assert st == 200, (path, st, out)
    return json.loads(out)


def containers_all(d: Daemon) -> list[dict]:
    return get(d, "/containers/json?all=1")  # type: ignore[return-value]


def run_output(d: Daemon, image: str, cmd: list[str]) -> str:
    """``docker run --rm image cmd``'s stdout, through the API."""
    st, out = d.request("POST", "/containers/create", json.dumps({"Image": image, "Cmd": cmd}).encode(),
                        {"Content-Type": "application/json"})
    assert st == 201, out
    cid = json.loads(out)["Id"]
    try:
        st, out = d.request("POST", f"/containers/{cid}/start")
        assert st == 204, out
        st, out = d.request("POST", f"/containers/{cid}/wait", timeout=60)
        assert st == 200, out
        st, logs = d.request("GET", f"/containers/{cid}/logs?stdout=1&stderr=1")
        res = b""
        i = 0
        while i + 8 <= len(logs):
            n = int.from_bytes(logs[i + 4:i + 8], "big")
            res += logs[i + 8:i + 8 + n]
            i += 8 + n
        return res.decode()
    finally:
        d.request("DELETE", f"/containers/{cid}?force=1")
