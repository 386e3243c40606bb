"""``cachefrom`` with images this daemon did not build (pulled, loaded): the classic
builder's rule (moby's ``image/cache``): a step matches an image of the list when that
image's history starts with the parent's history and layers (entry by entry, diff ID by
diff ID) and its next history entry was made by the same step (``created_by``). The hit is
then the image itself when it ends there, else a new image made of the parent, that history
entry and its layer (``restore``): pulled images have no intermediate images to hand out.

Pure matching here; the builder records the restored images (store, parent link, cache row).
"""

from __future__ import annotations

from typing import Any

from berth.oci.image import History, ImageConfig, RootFS


def _history(cfg: ImageConfig | None) -> list[History]:
    return list(cfg.history or []) if cfg is not None else []


def _diff_ids(cfg: ImageConfig | None) -> list[str]:
    return list(cfg.rootfs.diff_ids) if cfg is not None and cfg.rootfs is not None else []


def valid_parent(target: ImageConfig, parent: ImageConfig | None) -> bool:
    """Does ``target`` continue ``parent`` (same history entries and layers so far)?"""
    hist = _history(target)
    if not hist:
        return False
    p_hist, p_diffs = _history(parent), _diff_ids(parent)
    if parent is None or (not p_hist and not p_diffs):
        return True
    t_diffs = _diff_ids(target)
    if len(p_hist) >= len(hist) or len(p_diffs) > len(t_diffs):
        return False
    return hist[:len(p_hist)] == p_hist and t_diffs[:len(p_diffs)] == p_diffs


def layer_at(target: ImageConfig, index: int) -> str | None:
    """The diff ID that history entry ``index`` added (None for an empty-layer entry)."""
    hist = _history(target)
    if hist[index].empty_layer:
        return None
    n = sum(1 for h in hist[:index] if not h.empty_layer)
    diffs = _diff_ids(target)
    return diffs[n] if n < len(diffs) else None


def matches(target: ImageConfig, parent: ImageConfig | None, created_by: str) -> bool:
    n = len(_history(parent))
    hist = _history(target)
    return valid_parent(target, parent) and n < len(hist) and hist[n].created_by == created_by


def ends_at(target: ImageConfig, parent: ImageConfig | None) -> bool:
    """Is the matching entry the target's last (the hit is then the target itself)?"""
    return len(_history(target)) - 1 == len(_history(parent))


def restore(target: ImageConfig, parent: ImageConfig | None, config: Any) -> ImageConfig:
    """The image between ``parent`` and ``target``: parent's history and layers plus the
    matching entry (and its layer), with the step's container config (``ContainerConfig``)."""
    n = len(_history(parent))
    entry = _history(target)[n]
    diffs = _diff_ids(parent)
    layer = layer_at(target, n)
    if layer is not None:
        diffs.append(layer)
    return ImageConfig(architecture=target.architecture, os=target.os, variant=target.variant,
                       created=entry.created, author=target.author, config=config, docker_version="berth",
                       rootfs=RootFS(diff_ids=diffs), history=[*_history(parent), entry])
