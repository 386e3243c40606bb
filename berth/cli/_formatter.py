"""docker's ``--format`` handling for list commands: rows, headers and tables.

A format is ``table`` (the default layout), ``table TEMPLATE`` (tabwriter-aligned, with a
header row), ``json`` (one JSON object per line) or a bare ``TEMPLATE``. Like docker, a literal
``\\t`` / ``\\n`` in the format becomes a tab / newline, and the header is rendered by running
the same template over the column names with the formatting functions made inert.
"""

from __future__ import annotations

import time

from berth.cli import _tabwriter, _template
from berth.cli._units import human_duration, human_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any


def truncate_id(ident: str) -> str:
    """docker's stringid.TruncateID: drop an algorithm prefix, keep 12 characters."""
    if ":" in ident:
        ident = ident.split(":", 1)[1]
    return ident[:12]


def ellipsis(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    if width <= 1:
        return text[:width]
    return text[: width - 1] + "…"


def go_quote(text: str) -> str:
    """strconv.Quote for the printable cases users meet."""
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append("\\x%02x" % ord(ch))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def go_time(unix: float) -> str:
    """time.Unix(n, 0).String() in local time: "2026-11-27 23:27:39 +0000 UTC"."""
    tm = time.localtime(unix)
    return time.strftime("%Y-%m-%d %H:%M:%S %z %Z", tm)


def since(unix: float, now: float | None = None) -> str:
    now = time.time() if now is None else now
    return human_duration(now - unix) + " ago"


def familiar_name(ref: str) -> str:
    """docker.io/library/busybox -> busybox; docker.io/foo/bar -> foo/bar."""
    for prefix in ("docker.io/library/", "index.docker.io/library/", "docker.io/",
                   "index.docker.io/"):
        if ref.startswith(prefix):
            rest = ref[len(prefix):]
            return rest
    return ref


def split_tag(ref: str) -> tuple[str, str]:
    name, _, digest = ref.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1:]
    return name, ""


# -- rows ----------------------------------------------------------------------------------------

class ContainerRow:
    """One ``GET /containers/json`` entry as docker's ps template sees it."""

    HEADERS = {
        "ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
        "RunningFor": "CREATED", "Ports": "PORTS", "Status": "STATUS", "Size": "SIZE",
        "Names": "NAMES", "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS",
        "State": "STATE", "LocalVolumes": "LOCAL VOLUMES", "Platform": "PLATFORM",
    }

    def __init__(self, c: dict[str, Any], trunc: bool = True, now: float | None = None) -> None:
        self.c = c
        self.trunc = trunc
        self.now = now

    def ID(self) -> str:
        ident = self.c.get("Id", "")
        return truncate_id(ident) if self.trunc else ident

    def Names(self) -> str:
        names = []
        for name in self.c.get("Names") or []:
            name = name[1:] if name.startswith("/") else name
            if self.trunc and "/" in name:
                continue
            names.append(name)
        return ",".join(names)

    def Image(self) -> str:
        image = self.c.get("Image") or ""
        if not image:
            return "<no image>"
        if self.trunc:
            image_id = self.c.get("ImageID") or ""
            if image_id and truncate_id(image_id) == truncate_id(image):
                return truncate_id(image_id)
            if "@" in image:
                name, tag = split_tag(image)
                if tag:
                    return familiar_name(f"{name}:{tag}")
        return image

    def Command(self) -> str:
        command = self.c.get("Command") or ""
        if self.trunc:
            command = ellipsis(command, 20)
        return go_quote(command)

    def CreatedAt(self) -> str:
        return go_time(self.c.get("Created") or 0)

    def RunningFor(self) -> str:
        return since(self.c.get("Created") or 0, self.now)

    def Ports(self) -> str:
        return display_ports(self.c.get("Ports") or [])

    def State(self) -> str:
        return self.c.get("State") or ""

    def Status(self) -> str:
        return self.c.get("Status") or ""

    def Size(self) -> str:
        rw = self.c.get("SizeRw") or 0
        root = self.c.get("SizeRootFs") or 0
        text = human_size(rw, 3)
        if root > 0:
            text = f"{text} (virtual {human_size(root, 3)})"
        return text

    def Labels(self) -> str:
        labels = self.c.get("Labels") or {}
        return ",".join(f"{k}={labels[k]}" for k in sorted(labels))

    def Label(self, name: str) -> str:
        return (self.c.get("Labels") or {}).get(name, "")

    def Mounts(self) -> str:
        names = []
        for mount in self.c.get("Mounts") or []:
            name = mount.get("Name") or mount.get("Source") or ""
            names.append(ellipsis(name, 15) if self.trunc else name)
        return ",".join(names)

    def LocalVolumes(self) -> str:
        mounts = self.c.get("Mounts") or []
        return str(sum(1 for m in mounts if m.get("Driver") == "local"))

    def Networks(self) -> str:
        nets = ((self.c.get("NetworkSettings") or {}).get("Networks") or {})
        return ",".join(sorted(nets))

    def Platform(self) -> str:
        return ""

    def as_json(self) -> dict[str, str | None]:
        out: dict[str, str | None] = {key: getattr(self, key)() for key in (
            "Command", "CreatedAt", "ID", "Image", "Labels", "LocalVolumes", "Mounts", "Names",
            "Networks")}
        out["Platform"] = None
        out.update((key, getattr(self, key)()) for key in (
            "Ports", "RunningFor", "Size", "State", "Status"))
        return out


def display_ports(ports: Iterable[dict[str, Any]]) -> str:
    """docker's DisplayablePorts, without the range compaction."""
    out = []
    seen = set()
    for port in sorted(ports, key=lambda p: (p.get("PrivatePort", 0), p.get("Type", ""),
                                             p.get("IP", ""), p.get("PublicPort", 0))):
        private = f"{port.get('PrivatePort', 0)}/{port.get('Type', 'tcp')}"
        public = port.get("PublicPort")
        if public:
            ip = port.get("IP", "")
            host = f"[{ip}]" if ":" in ip else ip
            text = f"{host}:{public}->{private}"
        else:
            text = private
        if text not in seen:
            seen.add(text)
            out.append(text)
    return ", ".join(out)


class ImageRow:
    """One REPOSITORY/TAG row of ``docker images`` (an image may produce several)."""

    HEADERS = {
        "ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST",
        "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE",
        "Containers": "CONTAINERS", "VirtualSize": "VIRTUAL SIZE", "SharedSize": "SHARED SIZE",
        "UniqueSize": "UNIQUE SIZE",
    }

    def __init__(self, i: dict[str, Any], repo: str, tag: str, digest: str,
                 trunc: bool = True, now: float | None = None) -> None:
        self.i = i
        self.repo = repo
        self.tag = tag
        self.digest = digest
        self.trunc = trunc
        self.now = now

    def ID(self) -> str:
        ident = self.i.get("Id", "")
        return truncate_id(ident) if self.trunc else ident

    def Repository(self) -> str:
        return self.repo

    def Tag(self) -> str:
        return self.tag

    def Digest(self) -> str:
        return self.digest

    def CreatedSince(self) -> str:
        created = self.i.get("Created") or 0
        return "N/A" if created == 0 else since(created, self.now)

    def CreatedAt(self) -> str:
        return go_time(self.i.get("Created") or 0)

    def Size(self) -> str:
        return human_size(self.i.get("Size") or 0, 3)

    def VirtualSize(self) -> str:
        return human_size(self.i.get("VirtualSize", self.i.get("Size")) or 0)

    def SharedSize(self) -> str:
        shared = self.i.get("SharedSize", -1)
        return "N/A" if shared is None or shared < 0 else human_size(shared, 3)

    def UniqueSize(self) -> str:
        shared = self.i.get("SharedSize", -1)
        if shared is None or shared < 0:
            return "N/A"
        return human_size((self.i.get("Size") or 0) - shared, 3)

    def Containers(self) -> str:
        count = self.i.get("Containers", -1)
        return "N/A" if count is None or count < 0 else str(count)

    def as_json(self) -> dict[str, str]:
        return {key: getattr(self, key)() for key in (
            "Containers", "CreatedAt", "CreatedSince", "Digest", "ID", "Repository",
            "SharedSize", "Size", "Tag", "UniqueSize", "VirtualSize")}


def image_rows(img: dict[str, Any], digests: bool, trunc: bool,
               now: float | None = None) -> list[ImageRow]:
    """docker's imageFormat: one row per repository:tag (and per digest with --digests)."""
    tags = img.get("RepoTags") or []
    dgs = img.get("RepoDigests") or []
    if (not tags and not dgs) or (tags == ["<none>:<none>"] and dgs == ["<none>@<none>"]):
        return [ImageRow(img, "<none>", "<none>", "<none>", trunc, now)]
    repo_tags: dict[str, list[str]] = {}
    repo_digests: dict[str, list[str]] = {}
    for ref in tags:
        if ref == "<none>:<none>":
            continue
        name, tag = split_tag(ref)
        if tag:
            repo_tags.setdefault(familiar_name(name), []).append(tag)
    for ref in dgs:
        name, _, digest = ref.partition("@")
        if digest and name != "<none>":
            repo_digests.setdefault(familiar_name(name), []).append(digest)
    rows = []
    for repo, repo_tag_list in repo_tags.items():
        ds = repo_digests.pop(repo, []) if digests else (repo_digests.pop(repo, None) and [])
        for tag in repo_tag_list:
            if not ds:
                rows.append(ImageRow(img, repo, tag, "<none>", trunc, now))
            for d in ds or []:
                rows.append(ImageRow(img, repo, tag, d, trunc, now))
    for repo, ds in repo_digests.items():
        if digests:
            rows.extend(ImageRow(img, repo, "<none>", d, trunc, now) for d in ds)
        else:
            rows.append(ImageRow(img, repo, "<none>", "", trunc, now))
    return rows


# -- rendering -----------------------------------------------------------------------------------

class HeaderContext:
    """What the header template sees: every field is its column title."""

    def __init__(self, headers: dict[str, str]) -> None:
        self._headers = headers

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name == "Label":
            return lambda key: key.split(".")[-1].replace("-", " ").replace("_", " ").upper()
        if name in self._headers:
            return self._headers[name]
        return name.upper()


def prepare(fmt: str) -> tuple[bool, str]:
    """(is_table, template text) for a --format value, with \\t and \\n unescaped."""
    table = fmt.startswith("table")
    body = fmt[len("table"):] if table else fmt
    body = body.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    return table, body


def render_rows(fmt: str, rows: Iterable[Any], headers: dict[str, str]) -> str:
    """Rows rendered the way docker's formatter.Context does.

    Raises:
        _template.TemplateError: the format does not parse or fails on a row.
    """
    if fmt == "json":
        fmt = "{{json .}}"
    table, body = prepare(fmt)
    tmpl = _template.Template(body)
    lines = [tmpl.execute(row) + "\n" for row in rows]
    if not table:
        return "".join(lines)
    header = _template.Template(body, _template.HEADER_FUNCS).execute(HeaderContext(headers))
    return _tabwriter.render(header + "\n" + "".join(lines))
