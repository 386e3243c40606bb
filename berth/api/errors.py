"""The one table from error kinds to HTTP statuses, and the error response (Docker's shape)."""

from __future__ import annotations

import logging

import msgspec

from berth import errors
from berth.api.http import BadRequest, Request, Response, TooLarge

log = logging.getLogger("berth.api")

STATUS: dict[type[BaseException], int] = {
    errors.NotFound: 404,
    errors.AlreadyExists: 409,
    errors.Conflict: 409,
    errors.InvalidArgument: 400,
    errors.PermissionDenied: 403,
    errors.Unavailable: 503,
    errors.Unsupported: 501,
    errors.NotModified: 304,
    errors.RuntimeFailure: 400,
    errors.Internal: 500,
    BadRequest: 400,
    TooLarge: 413,
    msgspec.ValidationError: 400,
    msgspec.DecodeError: 400,
}


def status_of(e: BaseException) -> int | None:
    for cls in type(e).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return None


def message(text: str) -> bytes:
    return msgspec.json.encode({"message": text}) + b"\n"


def error_response(req: Request | None, e: BaseException) -> Response:
    status = status_of(e)
    if status is None:
        log.exception("unhandled error", exc_info=e)
        return Response(500, message(errors.os_text(e) if isinstance(e, OSError) else str(e) or e.__class__.__name__))
    if status == 304:
        return Response(304, b"", content_type=None)
    text = str(e)
    if isinstance(e, msgspec.DecodeError) and not isinstance(e, msgspec.ValidationError):
        text = f"invalid JSON: {e}" if str(e) else "invalid JSON"
    return Response(status, message(text))
