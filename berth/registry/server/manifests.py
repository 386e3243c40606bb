"""Manifest parsing and the checks made before one is stored: media type, shape, references.

Four media types are served: OCI image manifest and index, Docker schema 2 manifest and
manifest list. Docker schema 1 is refused with a clear MANIFEST_INVALID.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import msgspec

from berth.registry.server.errors import ManifestInvalid
from berth.registry.server.names import parse_digest

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_V1 = ("application/vnd.docker.distribution.manifest.v1+json",
             "application/vnd.docker.distribution.manifest.v1+prettyjws")
IMAGE_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MEDIA_TYPES = IMAGE_TYPES + INDEX_TYPES
# Content-Types that say nothing about which manifest it is.
_GENERIC = ("", "application/json", "application/octet-stream", "text/plain")


class Descriptor(msgspec.Struct, omit_defaults=True):
    digest: str
    size: int
    mediaType: str = ""
    artifactType: str | None = None
    urls: list[str] | None = None
    annotations: dict[str, str] | None = None
    platform: dict[str, object] | None = None


class _Manifest(msgspec.Struct):
    schemaVersion: int = 0
    mediaType: str | None = None
    artifactType: str | None = None
    config: Descriptor | None = None
    layers: list[Descriptor] | None = None
    manifests: list[Descriptor] | None = None
    subject: Descriptor | None = None
    annotations: dict[str, str] | None = None


_decoder = msgspec.json.Decoder(_Manifest)
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True)
class Checked:
    """What the server needs from a manifest it accepted."""

    media_type: str
    digest: str
    blobs: list[Descriptor]        # must be blobs in the repository (config and layers)
    children: list[Descriptor]     # must be manifests in the repository (index entries)
    subject: Descriptor | None
    artifact_type: str | None
    annotations: dict[str, str] | None

    def referrer_descriptor(self, size: int) -> bytes:
        """This manifest as an entry of its subject's referrers index."""
        return _encoder.encode(Descriptor(
            mediaType=self.media_type, digest=self.digest, size=size,
            artifactType=self.artifact_type, annotations=self.annotations))


def content_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check(data: bytes, content_type: str) -> Checked:
    """Parse and check a manifest body sent with content_type.

    Raises:
        ManifestInvalid: not JSON, not a supported manifest, media types that disagree, or a
            malformed descriptor.
    """
    content_type = content_type.split(";")[0].strip().lower()
    if content_type in DOCKER_V1:
        raise ManifestInvalid("docker schema 1 manifests are not supported",
                              detail={"mediaType": content_type})
    try:
        m = _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ManifestInvalid(f"manifest invalid: {exc}") from None
    if m.schemaVersion != 2:
        raise ManifestInvalid(f"unsupported schemaVersion {m.schemaVersion}")
    media_type = _media_type(m, content_type)
    if media_type in IMAGE_TYPES:
        if m.config is None or m.manifests is not None:
            raise ManifestInvalid("image manifest needs a config and no manifests")
        blobs = [m.config, *(m.layers or [])]
        children: list[Descriptor] = []
        artifact_type = m.artifactType or (m.config.mediaType or None)
    else:
        if m.manifests is None or m.config is not None or m.layers is not None:
            raise ManifestInvalid("index needs manifests and no config or layers")
        blobs = []
        children = list(m.manifests)
        artifact_type = m.artifactType
    for desc in [*blobs, *children, *([m.subject] if m.subject else [])]:
        parse_digest(desc.digest)
        if desc.size < 0:
            raise ManifestInvalid(f"negative size for {desc.digest}")
    if m.artifactType is not None and media_type in (DOCKER_MANIFEST, DOCKER_LIST):
        raise ManifestInvalid("artifactType is not allowed in docker manifests")
    return Checked(media_type=media_type, digest=content_digest(data), blobs=blobs,
                   children=children, subject=m.subject, artifact_type=artifact_type,
                   annotations=m.annotations)


def _media_type(m: _Manifest, content_type: str) -> str:
    if content_type not in _GENERIC:
        if content_type not in MEDIA_TYPES:
            raise ManifestInvalid(f"unsupported manifest media type {content_type}",
                                  detail={"mediaType": content_type})
        if m.mediaType and m.mediaType != content_type:
            raise ManifestInvalid(
                f"mediaType {m.mediaType} in the manifest does not match Content-Type "
                f"{content_type}")
        return content_type
    if m.mediaType:
        if m.mediaType not in MEDIA_TYPES:
            raise ManifestInvalid(f"unsupported manifest media type {m.mediaType}")
        return m.mediaType
    return OCI_INDEX if m.manifests is not None else OCI_MANIFEST


def references(data: bytes, media_type: str) -> tuple[list[str], list[str], str | None]:
    """(blob digests, child manifest digests, subject digest) of a stored manifest (for gc)."""
    try:
        m = _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return [], [], None
    subject = m.subject.digest if m.subject else None
    if media_type in INDEX_TYPES:
        return [], [d.digest for d in m.manifests or []], subject
    blobs = ([m.config.digest] if m.config else []) + [d.digest for d in m.layers or []]
    return blobs, [], subject


def accepts(accept_values: list[str], media_type: str) -> bool:
    """Whether a request's Accept headers allow media_type. No Accept header accepts all,
    as do ``*/*`` and ``application/*``. Docker clients that send only schema 2 types still
    get OCI manifests refused, as distribution does."""
    types = [part.split(";")[0].strip().lower()
             for value in accept_values for part in value.split(",") if part.strip()]
    if not types:
        return True
    return media_type in types or "*/*" in types or "application/*" in types
