"""Manifest handlers: HEAD/GET with Accept negotiation, PUT with reference checks, DELETE."""

from __future__ import annotations

from aiohttp import web

from berth.registry.server import manifests
from berth.registry.server._body import read_limited
from berth.registry.server.context import Registry
from berth.registry.server.errors import (BlobUnknown, DigestInvalid, ManifestBlobUnknown,
                                          ManifestInvalid, ManifestUnknown, RegistryError,
                                          TooLarge, Unsupported)
from berth.registry.server.names import check_reference

# Layers that live elsewhere and are not expected in the registry.
_FOREIGN = ("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            "application/vnd.oci.image.layer.nondistributable.v1.tar",
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd")


def _resolve(reg: Registry, name: str, reference: str) -> str:
    try:
        is_digest, ref = check_reference(reference)
    except RegistryError:
        raise ManifestUnknown(f"manifest unknown: {reference[:200]}") from None
    return ref if is_digest else reg.storage.resolve_tag(name, ref)


async def get(request: web.Request, reg: Registry, params: dict[str, str]) -> web.StreamResponse:
    name = params["name"]
    digest = _resolve(reg, name, params["reference"])
    media_type, data = reg.storage.get_manifest(name, digest)
    if media_type in (manifests.OCI_MANIFEST, manifests.OCI_INDEX) and \
            not manifests.accepts(request.headers.getall("Accept", []), media_type):
        raise ManifestUnknown(f"{media_type} found, but the Accept header does not allow it",
                              detail={"mediaType": media_type})
    headers = {"Docker-Content-Digest": digest, "ETag": f'"{digest}"'}
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(data))
        headers["Content-Type"] = media_type
        return web.Response(status=200, headers=headers)
    return web.Response(body=data, content_type=media_type, headers=headers)


async def put(request: web.Request, reg: Registry, params: dict[str, str]) -> web.StreamResponse:
    name = params["name"]
    is_digest, ref = check_reference(params["reference"])
    limit = reg.config.storage.manifest_max_size
    data = await read_limited(request, limit)
    if data is None:
        raise TooLarge(f"manifest is larger than {limit} bytes", detail={"limit": limit})
    checked = manifests.check(data, request.headers.get("Content-Type", ""))
    if is_digest and ref != checked.digest:
        if ref.startswith("sha256:"):
            raise DigestInvalid(f"manifest digest {checked.digest} does not match {ref}",
                                detail={"digest": ref})
        raise DigestInvalid(f"manifests are accepted by sha256 digest only, not {ref}")
    _check_references(reg, name, checked)
    subject = checked.subject.digest if checked.subject else None
    reg.storage.put_manifest(name, checked.digest, data, checked.media_type,
                             tag=None if is_digest else ref, subject=subject,
                             referrer=checked.referrer_descriptor(len(data)))
    headers = {"Location": f"/v2/{name}/manifests/{checked.digest}",
               "Docker-Content-Digest": checked.digest, "Content-Length": "0"}
    if subject:
        headers["OCI-Subject"] = subject
    return web.Response(status=201, headers=headers)


def _check_references(reg: Registry, name: str, checked: manifests.Checked) -> None:
    for desc in checked.blobs:
        if desc.urls and desc.mediaType in _FOREIGN:
            continue
        try:
            size = reg.storage.stat_blob(name, desc.digest)
        except BlobUnknown:
            raise ManifestBlobUnknown(f"blob unknown to registry: {desc.digest}",
                                      detail={"digest": desc.digest}) from None
        if size != desc.size:
            raise ManifestInvalid(f"blob {desc.digest} has size {size}, not {desc.size}",
                                  detail={"digest": desc.digest})
    for desc in checked.children:
        if reg.storage.manifest_media_type(name, desc.digest) is None:
            raise ManifestBlobUnknown(f"manifest unknown to repository: {desc.digest}",
                                      detail={"digest": desc.digest})


async def delete(request: web.Request, reg: Registry, params: dict[str, str]) -> web.StreamResponse:
    if not reg.config.storage.delete:
        raise Unsupported("deletion is disabled in this registry's config")
    name = params["name"]
    try:
        is_digest, ref = check_reference(params["reference"])
    except RegistryError:
        raise ManifestUnknown(f"manifest unknown: {params['reference'][:200]}") from None
    if is_digest:
        reg.storage.delete_manifest(name, ref)
    else:
        reg.storage.delete_tag(name, ref)
    return web.Response(status=202, headers={"Content-Length": "0"})
