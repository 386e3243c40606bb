"""Image commands: ``images``, ``import``, ``tag``, ``rmi``, ``history``."""

from __future__ import annotations

import sys
import time

from berth.cli._common import filters_param, format_flag, print_error
from berth.cli._flags import Flag, Spec
from berth.cli._units import human_size
from berth.client._http import quote
from berth.client.api import APIError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_IMAGES = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
DIGEST_IMAGES = ("table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}"
                 "\t{{.Size}}")


def _render(fmt: str, rows: list[Any], headers: dict[str, str]) -> int:
    from berth.cli._formatter import render_rows
    from berth.cli._template import TemplateError

    try:
        sys.stdout.write(render_rows(fmt, rows, headers))
    except TemplateError as exc:
        print_error(f"template parsing error: {exc}")
        return 1
    return 0


def split_ref(ref: str) -> tuple[str, str]:
    """"repo:tag" -> (repo, tag); the tag is "" when absent. A digest stays in the name."""
    if "@" in ref:
        return ref, ""
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1:]
    return ref, ""


def repo_tag_params(ref: str) -> dict[str, object]:
    """The ``repo`` and ``tag`` query parameters of import and commit."""
    repo, tag = split_ref(ref)
    return {"repo": repo, "tag": tag} if tag else {"repo": repo}


# -- images ---------------------------------------------------------------------------------------


def spec_images() -> Spec:
    return Spec("images [OPTIONS] [REPOSITORY[:TAG]]", "List images", [
        Flag("all", "a", "bool", "Show all images (default hides intermediate images)"),
        Flag("digests", "", "bool", "Show digests"),
        Flag("filter", "f", "list", "Filter output based on conditions provided"),
        format_flag(),
        Flag("no-trunc", "", "bool", "Don't truncate output"),
        Flag("quiet", "q", "bool", "Only show image IDs"),
        Flag("tree", "", "bool", "List multi-platform images as a tree (EXPERIMENTAL)",
             hidden=True),
    ], aliases=("image ls", "image list", "images"), max_args=1)


def run_images(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    from berth.cli._formatter import ImageRow, image_rows

    filters = filters_param(opts["filter"], {"reference": args} if args else None)
    params: dict[str, object] = {"all": opts["all"]}
    if filters:
        params["filters"] = filters
    images = cli.client.get_json("/images/json", params) or []
    trunc = not opts["no_trunc"]
    rows = []
    for img in images:
        rows.extend(image_rows(img, opts["digests"], trunc))
    fmt = opts["format"]
    if opts["quiet"]:
        fmt = "{{.ID}}"
        seen: set[str] = set()
        rows = [r for r in rows if not (r.ID() in seen or seen.add(r.ID()))]  # type: ignore
    elif not fmt or fmt == "table":
        fmt = DIGEST_IMAGES if opts["digests"] else DEFAULT_IMAGES
    return _render(fmt, rows, ImageRow.HEADERS)


# -- import ---------------------------------------------------------------------------------------


def spec_import() -> Spec:
    return Spec("import [OPTIONS] file|URL|- [REPOSITORY[:TAG]]",
                "Import the contents from a tarball to create a filesystem image", [
                    Flag("change", "c", "list", "Apply Dockerfile instruction to the created image"),
                    Flag("message", "m", "string", "Set commit message for imported image"),
                    Flag("platform", "", "string",
                         "Set platform if server is multi-platform capable"),
                ], aliases=("image import", "import"), min_args=1, max_args=2)


def _file_blocks(stream: Any, size: int = 1 << 16) -> Any:
    while True:
        block = stream.read(size)
        if not block:
            return
        yield block


def run_import(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    from berth.cli._progress import StreamFailed, display

    source = args[0]
    params: dict[str, object] = {}
    body: Any = None
    stream = None
    if source == "-":
        params["fromSrc"] = "-"
        body = _file_blocks(sys.stdin.buffer)
    elif source.startswith(("http://", "https://")):
        params["fromSrc"] = source
    else:
        try:
            stream = open(source, "rb")
        except OSError as exc:
            print_error(f"open {source}: {exc.strerror.lower() if exc.strerror else exc}")
            return 1
        params["fromSrc"] = "-"
        body = _file_blocks(stream)
    if len(args) > 1:
        params.update(repo_tag_params(args[1]))
    if opts["message"]:
        params["message"] = opts["message"]
    if opts["platform"]:
        params["platform"] = opts["platform"]
    if opts["change"]:
        params["changes"] = opts["change"]
    try:
        resp = cli.client.request("POST", "/images/create", params, body=body,
                                  headers={"Content-Type": "application/x-tar"} if body else None)
        display(resp.iter_lines(), sys.stdout.write)
    except StreamFailed as exc:
        print_error(str(exc))
        return 1
    finally:
        if stream is not None:
            stream.close()
    return 0


# -- tag ------------------------------------------------------------------------------------------


def spec_tag() -> Spec:
    return Spec("tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]",
                "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE",
                aliases=("image tag", "tag"), min_args=2, max_args=2)


def run_tag(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    source, target = args
    repo, tag = split_ref(target)
    if "@" in target:
        print_error("refusing to create a tag with a digest reference")
        return 1
    cli.client.call("POST", f"/images/{quote(source, safe='/:@')}/tag",
                    {"repo": repo, "tag": tag or "latest"})
    return 0


# -- rmi ------------------------------------------------------------------------------------------


def spec_rmi() -> Spec:
    return Spec("rmi [OPTIONS] IMAGE [IMAGE...]", "Remove one or more images", [
        Flag("force", "f", "bool", "Force removal of the image"),
        Flag("no-prune", "", "bool", "Do not delete untagged parents"),
        Flag("platform", "", "list", "Remove only the given platform variant", hidden=True),
    ], aliases=("image rm", "image remove", "rmi"), min_args=1)


def run_rmi(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    params = {"force": opts["force"], "noprune": opts["no_prune"]}
    failed = False
    for name in args:
        try:
            items = cli.client.json("DELETE", f"/images/{quote(name, safe='/:@')}", params) or []
        except APIError as exc:
            print_error(f"Error response from daemon: {exc.message}")
            failed = True
            continue
        for item in items:
            if item.get("Untagged"):
                sys.stdout.write(f"Untagged: {item['Untagged']}\n")
            if item.get("Deleted"):
                sys.stdout.write(f"Deleted: {item['Deleted']}\n")
    return 1 if failed else 0


# -- history --------------------------------------------------------------------------------------


class HistoryRow:
    HEADERS = {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
               "CreatedBy": "CREATED BY", "Size": "SIZE", "Comment": "COMMENT"}

    def __init__(self, h: dict[str, Any], trunc: bool, human: bool) -> None:
        self.h = h
        self.trunc = trunc
        self.human = human

    def ID(self) -> str:
        from berth.cli._formatter import truncate_id

        ident = self.h.get("Id") or ""
        return truncate_id(ident) if self.trunc and ident != "<missing>" else ident

    def CreatedSince(self) -> str:
        from berth.cli._formatter import since

        if not self.human:
            return self.CreatedAt()
        return since(self.h.get("Created") or 0)

    def CreatedAt(self) -> str:
        created = self.h.get("Created") or 0
        if self.human:
            from berth.cli._formatter import go_time

            return go_time(created)
        tm = time.localtime(created)
        offset = time.strftime("%z", tm)
        zone = "Z" if offset == "+0000" else f"{offset[:3]}:{offset[3:]}"
        return time.strftime("%Y-%m-%dT%H:%M:%S", tm) + zone

    def CreatedBy(self) -> str:
        from berth.cli._formatter import ellipsis

        text = (self.h.get("CreatedBy") or "").replace("\t", " ")
        return ellipsis(text, 45) if self.trunc else text

    def Size(self) -> str:
        size = self.h.get("Size") or 0
        return human_size(size, 3) if self.human else str(size)

    def Comment(self) -> str:
        return self.h.get("Comment") or ""

    def Tags(self) -> str:
        return ", ".join(self.h.get("Tags") or [])

    def as_json(self) -> dict[str, str]:
        return {k: getattr(self, k)() for k in ("Comment", "CreatedAt", "CreatedBy",
                                                 "CreatedSince", "ID", "Size")}


def spec_history() -> Spec:
    return Spec("history [OPTIONS] IMAGE", "Show the history of an image", [
        format_flag(),
        Flag("human", "H", "bool", "Print sizes and dates in human readable format", True),
        Flag("no-trunc", "", "bool", "Don't truncate output"),
        Flag("platform", "", "string", "Show history for the given platform", hidden=True),
        Flag("quiet", "q", "bool", "Only show image IDs"),
    ], aliases=("image history", "history"), min_args=1, max_args=1)


def run_history(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    items = cli.client.get_json(f"/images/{quote(args[0], safe='/:@')}/history") or []
    rows = [HistoryRow(h, not opts["no_trunc"], opts["human"]) for h in items]
    fmt = opts["format"]
    if opts["quiet"]:
        fmt = "{{.ID}}"
    elif not fmt or fmt == "table":
        fmt = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
    return _render(fmt, rows, HistoryRow.HEADERS)
