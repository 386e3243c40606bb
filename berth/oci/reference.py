"""Image references with Docker's rules (pure).

``busybox`` -> ``docker.io/library/busybox:latest``; ``host:port/repo:tag``; ``repo@sha256:...``.
The familiar form drops ``docker.io/`` and ``library/`` again, as the docker CLI shows it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from berth.errors import InvalidArgument

DEFAULT_DOMAIN = "docker.io"
DEFAULT_TAG = "latest"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_NAME_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")
_HEX64 = re.compile(r"^[a-f0-9]{64}$")


@dataclass(frozen=True)
class Reference:
    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def repository(self) -> str:
        return f"{self.domain}/{self.path}"

    @property
    def familiar_repository(self) -> str:
        if self.domain == DEFAULT_DOMAIN:
            p = self.path
            return p[len("library/"):] if p.startswith("library/") and p.count("/") == 1 else p
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        s = self.repository
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s

    @property
    def familiar(self) -> str:
        s = self.familiar_repository
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s


def is_image_id(s: str) -> bool:
    return bool(_HEX64.match(s.removeprefix("sha256:")))


def parse(ref: str, default_tag: bool = True) -> Reference:
    """Parse and normalize; raises InvalidArgument like Docker's ``invalid reference format``."""
    if not ref or ref != ref.strip():
        raise InvalidArgument("invalid reference format")
    name, digest = ref, None
    if "@" in ref:
        name, digest = ref.split("@", 1)
        if not _DIGEST_RE.match(digest):
            raise InvalidArgument("invalid reference format")
    tag = None
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
        if not _TAG_RE.match(tag):
            raise InvalidArgument("invalid reference format")
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, rest
    else:
        domain, path = DEFAULT_DOMAIN, name
    if domain == "index.docker.io":
        domain = DEFAULT_DOMAIN
    if any(c.isupper() for c in path):
        raise InvalidArgument("invalid reference format: repository name must be lowercase")
    if not _NAME_RE.match(path) or len(path) > 255:
        raise InvalidArgument("invalid reference format")
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = f"library/{path}"
    if tag is None and digest is None and default_tag:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest)
