"""Manifests and indexes (Docker schema 2 and OCI image-spec), pure data and parsing.

A registry answers a manifest GET with one of: an image manifest (config + layers), or an
index / manifest list (one manifest per platform). Schema 1 is refused with a clear error.
"""

from __future__ import annotations

import json
import platform as _platform
from typing import Any

import msgspec

from berth.errors import InvalidArgument, NotFound, Unsupported

MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MT_DOCKER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MT_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
              "application/vnd.docker.distribution.manifest.v1+prettyjws")

ACCEPT = ", ".join([MT_OCI_INDEX, MT_DOCKER_LIST, MT_OCI_MANIFEST, MT_DOCKER_MANIFEST])
IMAGE_MANIFESTS = (MT_DOCKER_MANIFEST, MT_OCI_MANIFEST)
INDEXES = (MT_DOCKER_LIST, MT_OCI_INDEX)
LAYER_TYPES = (MT_DOCKER_LAYER, MT_DOCKER_FOREIGN, MT_OCI_LAYER, MT_OCI_LAYER_GZIP, MT_OCI_LAYER_ZSTD,
               "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
               "application/vnd.oci.image.layer.nondistributable.v1.tar")


class Platform(msgspec.Struct, omit_defaults=True):
    architecture: str = ""
    os: str = ""
    variant: str | None = None
    os_version: str | None = msgspec.field(default=None, name="os.version")
    os_features: list[str] | None = msgspec.field(default=None, name="os.features")

    def __str__(self) -> str:
        s = f"{self.os}/{self.architecture}"
        return f"{s}/{self.variant}" if self.variant else s


class Descriptor(msgspec.Struct, omit_defaults=True):
    mediaType: str
    digest: str
    size: int
    urls: list[str] | None = None
    annotations: dict[str, str] | None = None
    platform: Platform | None = None


class Manifest(msgspec.Struct, omit_defaults=True):
    schemaVersion: int
    config: Descriptor
    layers: list[Descriptor]
    mediaType: str | None = None
    annotations: dict[str, str] | None = None


class Index(msgspec.Struct, omit_defaults=True):
    schemaVersion: int
    manifests: list[Descriptor]
    mediaType: str | None = None
    annotations: dict[str, str] | None = None


class _Probe(msgspec.Struct):
    schemaVersion: int = 2
    mediaType: str | None = None
    manifests: Any = None
    layers: Any = None
    config: Any = None


def kind_of(data: bytes, content_type: str | None) -> str:
    """The manifest media type: from the body's mediaType, else the header, else its shape."""
    try:
        p = msgspec.json.decode(data, type=_Probe)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"invalid manifest: {e}") from None
    if p.schemaVersion == 1:
        raise Unsupported("Docker Image Format v1 and Docker Image manifest version 2, schema 1 "
                          "support has been removed; this image must be pushed again in a newer format")
    ct = (content_type or "").split(";")[0].strip()
    mt = p.mediaType or ct
    if mt in MT_SCHEMA1:
        raise Unsupported("Docker Image Format v1 and Docker Image manifest version 2, schema 1 "
                          "support has been removed; this image must be pushed again in a newer format")
    if mt in INDEXES or mt in IMAGE_MANIFESTS:
        return mt
    if p.manifests is not None:
        return MT_OCI_INDEX
    if p.layers is not None and p.config is not None:
        return MT_OCI_MANIFEST
    raise Unsupported(f"unsupported manifest media type {mt or 'unknown'}")


# dockerd's pull accepts a config or layer media type of these families (a prefix followed by
# "."), and a few exact types old images carry; anything else is refused before a download.
_SUPPORTED_PREFIXES = ("application/vnd.oci.image", "application/vnd.docker")
_SUPPORTED_EXACT = ("application/octet-stream", "application/json", "text/html", "")


def check_blob_media_type(media_type: str) -> None:
    """Refuse a config or layer descriptor whose media type a pull cannot handle."""
    mt = media_type.lower()
    if mt in _SUPPORTED_EXACT or any(mt.startswith(p + ".") for p in _SUPPORTED_PREFIXES):
        return
    raise Unsupported(f"unsupported media type {media_type}")


def decode_manifest(data: bytes) -> Manifest:
    try:
        return msgspec.json.decode(data, type=Manifest)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"invalid manifest: {e}") from None


def decode_index(data: bytes) -> Index:
    try:
        return msgspec.json.decode(data, type=Index)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"invalid manifest list: {e}") from None


_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm", "i686": "386",
         "i386": "386", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def host_platform() -> Platform:
    m = _platform.machine()
    arch = _ARCH.get(m, m)
    variant = {"aarch64": "v8", "armv7l": "v7", "armv6l": "v6"}.get(m)
    return Platform(architecture=arch, os="linux", variant=variant)


def parse_platform(s: str) -> Platform:
    """``os[/arch[/variant]]`` as ``--platform`` takes it; ``arch`` alone means linux/arch."""
    parts = [p.strip().lower() for p in s.split("/") if p.strip()]
    if not parts or len(parts) > 3:
        raise InvalidArgument(f'"{s}": unknown operating system or architecture: invalid argument')
    if len(parts) == 1:
        if parts[0] in ("linux", "windows", "darwin", "freebsd"):
            host = host_platform()
            return Platform(architecture=host.architecture, os=parts[0], variant=host.variant)
        return Platform(architecture=_ARCH.get(parts[0], parts[0]), os="linux")
    arch = _ARCH.get(parts[1], parts[1])
    variant = parts[2] if len(parts) == 3 else None
    if arch == "arm64" and variant is None:
        variant = "v8"
    return Platform(architecture=arch, os=parts[0], variant=variant)


def _variant_ok(want: Platform, have: Platform) -> bool:
    if not want.variant or not have.variant:
        return True
    if want.architecture == "arm" and want.variant.startswith("v") and have.variant.startswith("v"):
        try:
            return int(have.variant[1:]) <= int(want.variant[1:])
        except ValueError:
            pass
    return want.variant == have.variant


def choose(index: Index, want: Platform) -> Descriptor:
    """The manifest of ``index`` for platform ``want`` (exact variant first)."""
    cands = [d for d in index.manifests if d.platform is not None and d.mediaType not in INDEXES
             and d.platform.os == want.os and d.platform.architecture == want.architecture
             and _variant_ok(want, d.platform)]
    if not cands:
        # A single manifest without platform data (some OCI indexes) is taken as is.
        plain = [d for d in index.manifests if d.platform is None and d.mediaType in IMAGE_MANIFESTS]
        if len(plain) == 1:
            return plain[0]
        raise NotFound(f"no matching manifest for {want} in the manifest list entries")
    cands.sort(key=lambda d: 0 if (d.platform and d.platform.variant == want.variant) else 1)
    return cands[0]


def encode_pretty(obj: Any) -> bytes:
    """JSON indented with 3 spaces, as Docker writes the manifests it pushes."""

    return json.dumps(msgspec.to_builtins(obj), indent=3, separators=(",", ": ")).encode()
