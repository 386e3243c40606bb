"""The OCI Distribution error codes, as exceptions. No HTTP here: ``app.STATUS`` maps codes to
statuses, and the middleware writes ``{"errors": [{"code", "message", "detail"}]}``.

Each class subclasses the berth error kind it is, so code outside the server can catch kinds.
"""

from __future__ import annotations

from typing import Any

from berth import errors


class RegistryError(errors.BerthError):
    """One spec error: ``code`` is the spec's code; ``detail`` is JSON-able extra context."""

    code = "UNKNOWN"
    default_message = "unknown error"

    def __init__(self, message: str | None = None, detail: Any = None,
                 challenge: str = "") -> None:
        super().__init__(message or self.default_message)
        self.message = message or self.default_message
        self.detail = detail
        self.challenge = challenge  # a WWW-Authenticate value to send with it, if any


class BlobUnknown(RegistryError, errors.NotFound):
    code, default_message = "BLOB_UNKNOWN", "blob unknown to registry"


class BlobUploadInvalid(RegistryError, errors.InvalidArgument):
    code, default_message = "BLOB_UPLOAD_INVALID", "blob upload invalid"


class RangeInvalid(BlobUploadInvalid):
    """A chunk that does not start at the upload's current offset (answered 416)."""

    code = "BLOB_UPLOAD_INVALID"


class BlobUploadUnknown(RegistryError, errors.NotFound):
    code, default_message = "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry"


class DigestInvalid(RegistryError, errors.InvalidArgument):
    code, default_message = "DIGEST_INVALID", "provided digest did not match uploaded content"


class ManifestBlobUnknown(RegistryError, errors.InvalidArgument):
    code, default_message = "MANIFEST_BLOB_UNKNOWN", "manifest references a blob unknown to registry"


class ManifestInvalid(RegistryError, errors.InvalidArgument):
    code, default_message = "MANIFEST_INVALID", "manifest invalid"


class ManifestUnknown(RegistryError, errors.NotFound):
    code, default_message = "MANIFEST_UNKNOWN", "manifest unknown"


class NameInvalid(RegistryError, errors.InvalidArgument):
    code, default_message = "NAME_INVALID", "invalid repository name"


class NameUnknown(RegistryError, errors.NotFound):
    code, default_message = "NAME_UNKNOWN", "repository name not known to registry"


class SizeInvalid(RegistryError, errors.InvalidArgument):
    code, default_message = "SIZE_INVALID", "provided length did not match content length"


class TooLarge(SizeInvalid):
    """A manifest over the configured limit (answered 413)."""


class Unauthorized(RegistryError, errors.PermissionDenied):
    """No, wrong or expired credentials (sent with a challenge)."""

    code, default_message = "UNAUTHORIZED", "authentication required"


class Denied(RegistryError, errors.PermissionDenied):
    code, default_message = "DENIED", "requested access to the resource is denied"


class Unsupported(RegistryError, errors.Unsupported):
    code, default_message = "UNSUPPORTED", "the operation is unsupported"


class NotFoundPath(RegistryError, errors.NotFound):
    """A path outside the API (not a spec code; answered 404)."""

    code, default_message = "NOT_FOUND", "not found"


class PaginationNumberInvalid(RegistryError, errors.InvalidArgument):
    """A negative or non-numeric ``n`` (distribution's code; not in the OCI spec's list)."""

    code, default_message = "PAGINATION_NUMBER_INVALID", "invalid number of results requested"


class TooManyRequests(RegistryError, errors.Unavailable):
    code, default_message = "TOOMANYREQUESTS", "too many requests"


STATUS: dict[type[RegistryError], int] = {
    BlobUnknown: 404,
    BlobUploadInvalid: 400,
    RangeInvalid: 416,
    BlobUploadUnknown: 404,
    DigestInvalid: 400,
    ManifestBlobUnknown: 400,
    ManifestInvalid: 400,
    ManifestUnknown: 404,
    NameInvalid: 400,
    NameUnknown: 404,
    SizeInvalid: 400,
    TooLarge: 413,
    Unauthorized: 401,
    Denied: 403,
    Unsupported: 405,
    NotFoundPath: 404,
    PaginationNumberInvalid: 400,
    TooManyRequests: 429,
}


def status_of(err: RegistryError) -> int:
    """The HTTP status of an error: its own class's entry, else its nearest base's."""
    for cls in type(err).__mro__:
        if cls in STATUS:
            return STATUS[cls]  # type: ignore[index]
    return 500
