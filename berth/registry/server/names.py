"""The grammar of repository names, tags and digests (OCI Distribution spec, "Pulling manifests")."""

from __future__ import annotations

import re

from berth.registry.server.errors import DigestInvalid, ManifestInvalid, NameInvalid

# <name>: path components separated by "/", each [a-z0-9]+ joined by ".", "_", "__" or "-"+.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
DIGEST_RE = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
NAME_MAX = 255

# Algorithms whose content berth can verify, and the hex length of each.
ALGORITHMS = {"sha256": 64, "sha512": 128}


def check_name(name: str) -> str:
    if len(name) > NAME_MAX or not NAME_RE.fullmatch(name):
        raise NameInvalid(f"invalid repository name: {name[:300]}", detail={"name": name[:300]})
    return name


def is_tag(ref: str) -> bool:
    return TAG_RE.fullmatch(ref) is not None


def parse_digest(text: str) -> tuple[str, str]:
    """Split ``alg:hex``; raise DIGEST_INVALID for bad syntax or an algorithm berth cannot check."""
    if not DIGEST_RE.fullmatch(text):
        raise DigestInvalid(f"invalid digest: {text[:200]}", detail={"digest": text[:200]})
    alg, _, hexpart = text.partition(":")
    if ALGORITHMS.get(alg) != len(hexpart) or not re.fullmatch(r"[a-f0-9]+", hexpart):
        raise DigestInvalid(f"unsupported or malformed digest: {text[:200]}",
                            detail={"digest": text[:200]})
    return alg, hexpart


def check_reference(ref: str) -> tuple[bool, str]:
    """Return (is_digest, ref) for a manifest reference: a tag or a digest."""
    if ":" in ref:
        parse_digest(ref)
        return True, ref
    if not is_tag(ref):
        raise ManifestInvalid(f"invalid tag: {ref[:200]}", detail={"tag": ref[:200]})
    return False, ref
