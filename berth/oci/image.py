"""The image config (OCI image-spec / Docker image JSON), pure data."""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from berth.errors import InvalidArgument
from berth.schema.containers import ContainerConfig


class RootFS(msgspec.Struct):
    type: str = "layers"
    diff_ids: list[str] = []


class History(msgspec.Struct, omit_defaults=True):
    created: str | None = None
    created_by: str | None = None
    author: str | None = None
    comment: str | None = None
    empty_layer: bool = False


class ImageConfig(msgspec.Struct, omit_defaults=True):
    architecture: str = "amd64"
    os: str = "linux"
    created: str | None = None
    author: str | None = None
    comment: str | None = None
    config: ContainerConfig | None = None
    container: str | None = None                     # commit: the container's ID
    container_config: dict[str, Any] | None = None   # commit: the container's Config
    docker_version: str | None = None
    rootfs: RootFS = msgspec.field(default_factory=RootFS)
    history: list[History] = []
    variant: str | None = None


_dec = msgspec.json.Decoder(ImageConfig)
_enc = msgspec.json.Encoder()


def decode_config(b: bytes) -> ImageConfig:
    """Raises InvalidArgument for bytes that are not an image config (from a registry or an
    archive: outside input)."""
    try:
        return _dec.decode(b)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"invalid image config: {e}") from None


def encode_config(c: ImageConfig) -> bytes:
    return _enc.encode(c)


def digest(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def chain_ids(diff_ids: list[str]) -> list[str]:
    """OCI image-spec ChainID: ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    out: list[str] = []
    for d in diff_ids:
        out.append(d if not out else digest(f"{out[-1]} {d}".encode()))
    return out
