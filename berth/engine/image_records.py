"""What the image operations of ``engine.images`` return: typed records, not Docker's JSON
(``api/images_shape.py`` shapes them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from berth.engine.model import Container
from berth.image.store import Image as Image  # re-exported: the API names an image by this type


@dataclass(frozen=True)
class ImageRecord:
    """An image with what the store knows about it besides its config."""

    image: Image
    tags: list[str]
    digests: list[str]            # repo digests (``name@sha256:...``)
    parent: str                   # the parent image's id, or ""
    layer_dirs: list[Path] = field(default_factory=list)  # top first; filled by ``Images.record(layers=True)``


@dataclass(frozen=True)
class Removal:
    """One step of an image removal: a tag (or repo digest) untagged, or the image deleted."""

    untagged: str = ""
    deleted: str = ""


@dataclass(frozen=True)
class HistoryEntry:
    """One line of ``docker history``, newest first; ``id`` is "<missing>" below the top."""

    id: str
    created: int                  # unix seconds
    created_by: str
    tags: list[str]
    size: int
    comment: str


@dataclass(frozen=True)
class PruneReport:
    removed: list[Removal]
    space_reclaimed: int


@dataclass(frozen=True)
class ImageUsage:
    record: ImageRecord
    shared_size: int
    containers: int               # how many containers use it


@dataclass(frozen=True)
class DiskUsage:
    """``/system/df`` for images and containers."""

    layers_size: int
    images: list[ImageUsage]
    containers: list[Container]
