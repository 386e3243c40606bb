"""The docker CLI's credential store: the ``auths`` of ``~/.docker/config.json``, and the
``X-Registry-Auth`` header the CLI builds from it (stdlib only: the CLI imports it per command).

The daemon side of the same header (decoding it, the Credentials record) is
``berth.registry.client.auth``; the file format here is the docker CLI's, byte-compatible.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from berth.errors import InvalidArgument
from berth.schema.registryauth import b64decode
from berth.state.atomic import write_atomic

INDEX_SERVER = "https://index.docker.io/v1/"
_HEADER_FIELDS = ("username", "password", "identitytoken", "serveraddress")


def config_path() -> Path:
    d = os.environ.get("DOCKER_CONFIG")
    return Path(d) / "config.json" if d else Path.home() / ".docker" / "config.json"


def server_key(registry: str) -> str:
    """The config.json key for a registry host (Docker Hub keeps its historical URL)."""
    if registry in ("docker.io", "index.docker.io", "registry-1.docker.io", INDEX_SERVER, ""):
        return INDEX_SERVER
    return registry


def _normalize_key(k: str) -> str:
    k = k.removeprefix("https://").removeprefix("http://")
    return k.split("/", 1)[0] if not k.startswith("index.docker.io") else "docker.io"



def load_config(path: Path | None = None) -> dict[str, object]:
    p = path or config_path()
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as e:
        raise InvalidArgument(f"loading config file {p}: {e}") from None
    return doc if isinstance(doc, dict) else {}


def lookup(registry: str, path: Path | None = None) -> dict[str, str] | None:
    """Stored credentials for ``registry`` (a host[:port] or docker.io), if any, as the fields
    of an X-Registry-Auth document (username, password, identitytoken, serveraddress)."""
    auths = load_config(path).get("auths") or {}
    if not isinstance(auths, dict):
        return None
    want = _normalize_key(server_key(registry))
    for k, v in auths.items():
        if _normalize_key(k) != want or not isinstance(v, dict):
            continue
        user, pw = v.get("username", ""), v.get("password", "")
        if v.get("auth"):
            try:
                user, _, pw = b64decode(v["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                continue
        return {"username": user, "password": pw, "identitytoken": v.get("identitytoken", "") or "",
                "serveraddress": server_key(registry)}
    return None


def registry_auth_header(creds: dict[str, str] | None) -> str:
    """The ``X-Registry-Auth`` value: base64url of the non-empty fields ("{}" for none)."""
    creds = creds or {}
    if not any(creds.get(k) for k in ("username", "password", "identitytoken")):
        return base64.urlsafe_b64encode(b"{}").decode()
    doc = {k: creds[k] for k in _HEADER_FIELDS if creds.get(k)}
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()


def store(registry: str, username: str, password: str, identitytoken: str = "",
          path: Path | None = None) -> Path:
    p = path or config_path()
    doc = load_config(p)
    auths = doc.setdefault("auths", {})
    assert isinstance(auths, dict)
    entry: dict[str, str] = {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}
    if identitytoken:
        entry = {"auth": base64.b64encode(f"{username}:".encode()).decode(),
                 "identitytoken": identitytoken}
    auths[server_key(registry)] = entry
    _write(p, doc)
    return p


def erase(registry: str, path: Path | None = None) -> bool:
    p = path or config_path()
    doc = load_config(p)
    auths = doc.get("auths") or {}
    if not isinstance(auths, dict):
        return False
    want = _normalize_key(server_key(registry))
    keys = [k for k in auths if _normalize_key(k) == want]
    for k in keys:
        del auths[k]
    if keys:
        _write(p, doc)
    return bool(keys)


def _write(p: Path, doc: dict[str, object]) -> None:
    p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(p, json.dumps(doc, indent="\t").encode(), mode=0o600)
