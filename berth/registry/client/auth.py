"""Registry credentials: ``X-Registry-Auth`` headers, ``WWW-Authenticate`` challenges, and
the docker CLI's ``~/.docker/config.json`` (pure, stdlib only)."""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from berth.errors import InvalidArgument

INDEX_SERVER = "https://index.docker.io/v1/"


@dataclass(frozen=True)
class Credentials:
    username: str = ""
    password: str = ""
    identitytoken: str = ""
    registrytoken: str = ""
    serveraddress: str = ""

    @property
    def empty(self) -> bool:
        return not (self.username or self.password or self.identitytoken or self.registrytoken)


def _b64decode(s: str) -> bytes:
    s = s.strip()
    pad = "=" * (-len(s) % 4)
    try:
        return base64.urlsafe_b64decode(s + pad)
    except ValueError:
        return base64.b64decode(s + pad)


def decode_registry_auth(header: str | None) -> Credentials:
    """The ``X-Registry-Auth`` header: base64url of ``{"username", "password", ...}``."""
    if not header:
        return Credentials()
    try:
        doc = json.loads(_b64decode(header) or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument("invalid X-Registry-Auth header") from None
    if not isinstance(doc, dict):
        return Credentials()
    return Credentials(str(doc.get("username") or ""), str(doc.get("password") or ""),
                       str(doc.get("identitytoken") or ""), str(doc.get("registrytoken") or ""),
                       str(doc.get("serveraddress") or ""))


def encode_registry_auth(c: Credentials | None) -> str:
    if c is None or c.empty:
        return base64.urlsafe_b64encode(b"{}").decode()
    doc = {k: v for k, v in (("username", c.username), ("password", c.password),
                              ("identitytoken", c.identitytoken), ("serveraddress", c.serveraddress)) if v}
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()


_PARAM = re.compile(r'([a-zA-Z_][a-zA-Z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="...",service="...",scope="..."`` -> ("bearer", {...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3)).replace('\\"', '"')
              for m in _PARAM.finditer(rest)}
    return scheme.lower(), params


# -- the docker CLI's config file -----------------------------------------------------------------


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


def lookup(registry: str, path: Path | None = None) -> Credentials | None:
    """Stored credentials for ``registry`` (a host[:port] or docker.io), if any."""
    doc = load_config(path)
    auths = doc.get("auths") or {}
    if not isinstance(auths, dict):
        return None
    want = _normalize_key(server_key(registry))
    for k, v in auths.items():
        if _normalize_key(k) != want or not isinstance(v, dict):
            continue
        user, pw = v.get("username", ""), v.get("password", "")
        if v.get("auth"):
            try:
                user, _, pw = _b64decode(v["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                continue
        return Credentials(user, pw, v.get("identitytoken", "") or "", "", server_key(registry))
    return None


def store(registry: str, creds: Credentials, path: Path | None = None) -> Path:
    p = path or config_path()
    doc = load_config(p)
    auths = doc.setdefault("auths", {})
    assert isinstance(auths, dict)
    entry: dict[str, str] = {"auth": base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()}
    if creds.identitytoken:
        entry = {"auth": base64.b64encode(f"{creds.username}:".encode()).decode(),
                 "identitytoken": creds.identitytoken}
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
    tmp = p.with_name(p.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent="\t")
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, p)
