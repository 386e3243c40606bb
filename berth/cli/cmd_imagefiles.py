"""Commands that move images and file systems: ``save``, ``load``, ``commit``, ``export``,
``image prune`` and ``system df``."""

from __future__ import annotations

import os
import sys

from berth.cli._common import confirm, filters_json, format_flag, print_error
from berth.cli._flags import Flag, Spec
from berth.cli._tabwriter import render
from berth.cli._units import human_size
from berth.client._http import quote

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO


def _copy_to(resp: Any, output: str, what: str) -> int:
    f: BinaryIO
    if output:
        f = open(output + ".tmp", "wb")
    else:
        if sys.stdout.isatty():
            print_error("Cowardly refusing to save to a terminal. Use the -o flag or redirect")
            resp.close()
            return 1
        f = sys.stdout.buffer
    try:
        for chunk in resp:
            f.write(chunk)
    finally:
        if output:
            f.close()
    if output:
        os.replace(output + ".tmp", output)
    else:
        f.flush()
    return 0


def spec_save() -> Spec:
    return Spec("save [OPTIONS] IMAGE [IMAGE...]",
                "Save one or more images to a tar archive (streamed to STDOUT by default)", [
                    Flag("output", "o", "string", "Write to a file, instead of STDOUT"),
                    Flag("platform", "", "list", "Save only the given platform(s)"),
                ], aliases=("image save", "save"), min_args=1)


def run_save(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    if not opts["output"] and sys.stdout.isatty():
        print_error("Cowardly refusing to save to a terminal. Use the -o flag or redirect")
        return 1
    resp = cli.client.request("GET", "/images/get", {"names": args})
    return _copy_to(resp, opts["output"], "save")


def spec_load() -> Spec:
    return Spec("load [OPTIONS]", "Load an image from a tar archive or STDIN", [
        Flag("input", "i", "string", "Read from tar archive file, instead of STDIN"),
        Flag("quiet", "q", "bool", "Suppress the load output"),
        Flag("platform", "", "list", "Load only the given platform(s)"),
    ], aliases=("image load", "load"), max_args=0)


def run_load(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    from berth.cli._progress import StreamFailed
    from berth.cli.cmd_distribution import stream

    src: BinaryIO
    if opts["input"]:
        try:
            src = open(opts["input"], "rb")
        except OSError as exc:
            print_error(f"open {opts['input']}: {(exc.strerror or str(exc)).lower()}")
            return 1
    else:
        if sys.stdin.isatty():
            print_error("requested load from stdin, but stdin is empty")
            return 1
        src = sys.stdin.buffer

    def body():  # type: ignore[no-untyped-def]
        while b := src.read(1 << 20):
            yield b
    try:
        resp = cli.client.request("POST", "/images/load", {"quiet": opts["quiet"]}, body=body(),
                                  headers={"Content-Type": "application/x-tar"})
        stream(resp.iter_lines(), sys.stdout, False)
    except StreamFailed as exc:
        print_error(str(exc))
        return 1
    finally:
        if opts["input"]:
            src.close()
    return 0


def spec_commit() -> Spec:
    return Spec("commit [OPTIONS] CONTAINER [REPOSITORY[:TAG]]",
                "Create a new image from a container's changes", [
                    Flag("author", "a", "string", 'Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")'),
                    Flag("change", "c", "list", "Apply Dockerfile instruction to the created image"),
                    Flag("message", "m", "string", "Commit message"),
                    Flag("pause", "p", "bool", "Pause container during commit", True),
                    Flag("no-pause", "", "bool", "Disable pausing container during commit", hidden=True),
                ], aliases=("container commit", "commit"), min_args=1, max_args=2)


def run_commit(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    from berth.cli.cmd_image import repo_tag_params

    params: dict[str, object] = {"container": args[0], "pause": opts["pause"] and not opts["no_pause"]}
    if len(args) > 1:
        params.update(repo_tag_params(args[1]))
    if opts["message"]:
        params["comment"] = opts["message"]
    if opts["author"]:
        params["author"] = opts["author"]
    if opts["change"]:
        params["changes"] = opts["change"]
    res = cli.client.json("POST", "/commit", params) or {}
    sys.stdout.write(f"{res.get('Id', '')}\n")
    return 0


def spec_export() -> Spec:
    return Spec("export [OPTIONS] CONTAINER", "Export a container's filesystem as a tar archive", [
        Flag("output", "o", "string", "Write to a file, instead of STDOUT"),
    ], aliases=("container export", "export"), min_args=1, max_args=1)


def run_export(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    if not opts["output"] and sys.stdout.isatty():
        print_error("cowardly refusing to save to a terminal. Use the -o flag or redirect")
        return 1
    resp = cli.client.request("GET", f"/containers/{quote(args[0])}/export")
    return _copy_to(resp, opts["output"], "export")


def spec_image_prune() -> Spec:
    return Spec("image prune [OPTIONS]", "Remove unused images", [
        Flag("all", "a", "bool", "Remove all unused images, not just dangling ones"),
        Flag("filter", "", "list", 'Provide filter values (e.g. "until=<timestamp>")'),
        Flag("force", "f", "bool", "Do not prompt for confirmation"),
    ], max_args=0)


def run_image_prune(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    if not opts["force"]:
        what = "images without at least one container associated to them" if opts["all"] else "dangling images"
        if not confirm(f"WARNING! This will remove all {what}.\n"):
            print_error("Error: image prune has been cancelled")
            return 1
    filters = filters_json(opts["filter"], {"dangling": ["false"]} if opts["all"] else None)
    report = cli.client.json("POST", "/images/prune", {"filters": filters} if filters else None) or {}
    deleted = report.get("ImagesDeleted") or []
    if deleted:
        sys.stdout.write("Deleted Images:\n")
        for d in deleted:
            if d.get("Untagged"):
                sys.stdout.write(f"untagged: {d['Untagged']}\n")
            if d.get("Deleted"):
                sys.stdout.write(f"deleted: {d['Deleted']}\n")
        sys.stdout.write("\n")
    sys.stdout.write(f"Total reclaimed space: {human_size(report.get('SpaceReclaimed') or 0)}\n")
    return 0


def spec_system_df() -> Spec:
    return Spec("system df [OPTIONS]", "Show docker disk usage", [
        format_flag(),
        Flag("verbose", "v", "bool", "Show detailed information on space usage"),
    ], max_args=0)


def run_system_df(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    df = cli.client.get_json("/system/df") or {}
    images = df.get("Images") or []
    containers = df.get("Containers") or []
    layers = int(df.get("LayersSize") or 0)
    active_imgs = [i for i in images if (i.get("Containers") or 0) > 0]
    used = set()
    for i in active_imgs:
        used.add(i["Id"])
    reclaim_img = layers - sum(i.get("Size", 0) - i.get("SharedSize", 0) for i in active_imgs) \
        - (max((i.get("SharedSize", 0) for i in active_imgs), default=0))
    reclaim_img = max(reclaim_img, 0)
    c_size = sum(int(c.get("SizeRw") or 0) for c in containers)
    c_active = [c for c in containers if c.get("State") == "running"]
    c_reclaim = sum(int(c.get("SizeRw") or 0) for c in containers if c.get("State") != "running")

    def pct(part: int, total: int) -> str:
        return f"{human_size(part)} ({int(part * 100 / total) if total else 0}%)"
    rows = [("Images", len(images), len(active_imgs), human_size(layers), pct(reclaim_img, layers)),
            ("Containers", len(containers), len(c_active), human_size(c_size), pct(c_reclaim, c_size)),
            ("Local Volumes", 0, 0, "0B", "0B"),
            ("Build Cache", 0, 0, "0B", "0B")]

    lines = ["TYPE\tTOTAL\tACTIVE\tSIZE\tRECLAIMABLE"] + ["\t".join(str(x) for x in r) for r in rows]
    sys.stdout.write(render("".join(line + "\n" for line in lines)))
    if opts["verbose"]:
        sys.stdout.write("\nImages space usage:\n\n")
        sys.stdout.write("REPOSITORY\tTAG\tIMAGE ID\tSIZE\tSHARED SIZE\tUNIQUE SIZE\tCONTAINERS\n".replace("\t", "   "))
        for i in images:
            tags = i.get("RepoTags") or ["<none>:<none>"]
            repo, _, tag = tags[0].rpartition(":")
            sys.stdout.write("   ".join([repo, tag, i["Id"].removeprefix("sha256:")[:12], human_size(i.get("Size", 0)),
                                         human_size(i.get("SharedSize", 0)),
                                         human_size(i.get("Size", 0) - i.get("SharedSize", 0)),
                                         str(i.get("Containers", 0))]) + "\n")
    return 0

