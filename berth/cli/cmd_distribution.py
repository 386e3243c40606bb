"""Registry commands: ``pull``, ``push``, ``login``, ``logout``.

Credentials live in the docker CLI's ``~/.docker/config.json`` (``$DOCKER_CONFIG``) and go to
the daemon as ``X-Registry-Auth``. On a terminal, progress is drawn as one line per layer
(updated in place); otherwise one line per status, as docker prints it.
"""

from __future__ import annotations

import getpass
import json
import sys

from berth.cli._common import print_error
from berth.cli._flags import Flag, Spec
from berth.client._http import quote
from berth.client.api import APIError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterable

    from berth.oci.reference import Reference


def _registry_of(name: str) -> str:
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def auth_header(name_or_registry: str, is_registry: bool = False) -> dict[str, str]:
    from berth.client.credentials import lookup, registry_auth_header

    reg = name_or_registry if is_registry else _registry_of(name_or_registry)
    try:
        creds = lookup(reg)
    except Exception:  # a broken config file must not break pull
        creds = None
    return {"X-Registry-Auth": registry_auth_header(creds)}


class Renderer:
    """docker's jsonmessage display: per-id lines, redrawn in place on a terminal."""

    def __init__(self, out: Any, tty: bool):
        self.out = out
        self.tty = tty
        self.lines: dict[str, int] = {}
        self.count = 0

    def show(self, msg: dict[str, Any]) -> None:
        ident = msg.get("id")
        status = msg.get("status") or ""
        progress = msg.get("progress") or ""
        if not self.tty:
            if progress or (msg.get("progressDetail") or {}).get("total"):
                return
            self.out.write(f"{ident}: {status}\n" if ident else f"{status}\n")
            return
        text = f"{ident}: {status} {progress}".rstrip() if ident else status
        if ident and ident in self.lines:
            up = self.count - self.lines[ident]
            self.out.write(f"\x1b[{up}A\r\x1b[2K{text}\r\x1b[{up}B")
        else:
            if ident:
                self.lines[ident] = self.count
            self.out.write(text + "\n")
            self.count += 1
        self.out.flush()


def stream(lines: Iterable[bytes], out: Any, tty: bool) -> list[dict[str, Any]]:
    """Render a JSON message stream; raise StreamFailed on an error message; return aux."""

    from berth.cli._progress import StreamFailed

    r = Renderer(out, tty)
    aux = []
    for raw in lines:
        try:
            msg = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(msg, dict):
            continue
        if msg.get("error") or msg.get("errorDetail"):
            raise StreamFailed(msg.get("error") or (msg.get("errorDetail") or {}).get("message") or "unknown error")
        if msg.get("aux") is not None:
            aux.append(msg["aux"])
            continue
        if msg.get("stream") is not None:
            out.write(str(msg["stream"]))
            continue
        if msg.get("status") is not None:
            r.show(msg)
    return aux


# -- pull -----------------------------------------------------------------------------------------


def spec_pull() -> Spec:
    return Spec("pull [OPTIONS] NAME[:TAG|@DIGEST]", "Download an image from a registry", [
        Flag("all-tags", "a", "bool", "Download all tagged images in the repository"),
        Flag("disable-content-trust", "", "bool", "Skip image verification", True),
        Flag("platform", "", "string", "Set platform if server is multi-platform capable"),
        Flag("quiet", "q", "bool", "Suppress verbose output"),
    ], aliases=("image pull", "pull"), min_args=1, max_args=1)


def _parse(name: str) -> Reference | None:
    """The image reference to pull or push; None (error printed) when it is malformed."""
    from berth.oci import reference

    try:
        return reference.parse(name, default_tag=False)
    except Exception:
        print_error("invalid reference format")
        return None


def _follow(resp: Any, quiet: bool) -> bool:
    """Render a pull or push progress stream (nothing when quiet); False when it failed (printed)."""
    from berth.cli._progress import StreamFailed

    try:
        stream(resp.iter_lines(), _Null() if quiet else sys.stdout, sys.stdout.isatty() and not quiet)
    except StreamFailed as exc:
        print_error(str(exc))
        return False
    return True


def run_pull(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    from berth.oci import reference

    name = args[0]
    ref = _parse(name)
    if ref is None:
        return 1
    if not ref.tag and not ref.digest:
        if not opts["quiet"]:
            sys.stdout.write("Using default tag: latest\n")
        ref = reference.Reference(ref.domain, ref.path, "latest")
    params: dict[str, object] = {"fromImage": ref.familiar_repository,
                                 "tag": ref.digest or ref.tag}
    if opts["platform"]:
        params["platform"] = opts["platform"]
    resp = cli.client.request("POST", "/images/create", params, headers=auth_header(name))
    if not _follow(resp, opts["quiet"]):
        return 1
    sys.stdout.write(f"{ref.familiar if ref.domain != 'docker.io' else str(ref)}\n")
    return 0


class _Null:
    def write(self, _s: str) -> None:
        pass

    def flush(self) -> None:
        pass


# -- push -----------------------------------------------------------------------------------------


def spec_push() -> Spec:
    return Spec("push [OPTIONS] NAME[:TAG]", "Upload an image to a registry", [
        Flag("all-tags", "a", "bool", "Push all tags of an image to the repository"),
        Flag("disable-content-trust", "", "bool", "Skip image signing", True),
        Flag("platform", "", "string", "Push a platform-specific manifest"),
        Flag("quiet", "q", "bool", "Suppress verbose output"),
    ], aliases=("image push", "push"), min_args=1, max_args=1)


def run_push(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    name = args[0]
    ref = _parse(name)
    if ref is None:
        return 1
    tag = ref.tag or ("" if opts["all_tags"] else "latest")
    if not ref.tag and not opts["all_tags"] and not opts["quiet"]:
        sys.stdout.write("Using default tag: latest\n")
    repo = ref.familiar_repository
    resp = cli.client.request("POST", f"/images/{quote(repo, safe='/:')}/push", {"tag": tag},
                              headers=auth_header(name))
    if not _follow(resp, opts["quiet"]):
        return 1
    if opts["quiet"]:
        sys.stdout.write(f"{repo}:{tag}\n" if tag else f"{repo}\n")
    return 0


# -- login / logout -------------------------------------------------------------------------------


def spec_login() -> Spec:
    return Spec("login [OPTIONS] [SERVER]", "Authenticate to a registry", [
        Flag("password", "p", "string", "Password or Personal Access Token (PAT)"),
        Flag("password-stdin", "", "bool", "Take the Password or Personal Access Token (PAT) from stdin"),
        Flag("username", "u", "string", "Username"),
    ], aliases=("login",), max_args=1)


def run_login(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    from berth.client.credentials import INDEX_SERVER, server_key, store

    server = args[0] if args else INDEX_SERVER
    server = server.removeprefix("https://").removeprefix("http://").rstrip("/") if args else server
    user = opts["username"]
    pw = opts["password"]
    if opts["password_stdin"]:
        if pw:
            print_error("--password and --password-stdin are mutually exclusive")
            return 1
        if not user:
            print_error("Must provide --username with --password-stdin")
            return 1
        pw = sys.stdin.read().rstrip("\r\n")
    elif pw:
        print_error("WARNING! Using --password via the CLI is insecure. Use --password-stdin.")
    if not user:
        sys.stdout.write("Username: ")
        sys.stdout.flush()
        user = sys.stdin.readline().strip()
    if not pw:
        pw = getpass.getpass("Password: ")
    if not user or not pw:
        print_error("Error: Cannot perform an interactive login from a non TTY device")
        return 1
    key = server_key(server) if args else INDEX_SERVER
    try:
        res = cli.client.json("POST", "/auth", json_body={"username": user, "password": pw, "serveraddress": key})
    except APIError as exc:
        print_error(f"Error response from daemon: {exc.message}")
        return 1
    path = store(server if args else "docker.io", user, pw, (res or {}).get("IdentityToken") or "")
    print_error(f"WARNING! Your credentials are stored unencrypted in '{path}'.\n"
                "Configure a credential helper to remove this warning. See\n"
                "https://docs.docker.com/go/credential-store/\n")
    sys.stdout.write(f"{(res or {}).get('Status') or 'Login Succeeded'}\n")
    return 0


def spec_logout() -> Spec:
    return Spec("logout [SERVER]", "Log out from a registry", [], aliases=("logout",), max_args=1)


def run_logout(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    from berth.client.credentials import INDEX_SERVER, erase

    server = args[0].removeprefix("https://").removeprefix("http://").rstrip("/") if args else "docker.io"
    shown = args[0] if args else INDEX_SERVER
    if not erase(server):
        sys.stdout.write(f"Not logged in to {shown}\n")
        return 0
    sys.stdout.write(f"Removing login credentials for {shown}\n")
    return 0
