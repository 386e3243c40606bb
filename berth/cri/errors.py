"""Error kinds -> gRPC status codes: the CRI's one table, as api/errors.py is the Docker API's.

Every RPC handler is wrapped by ``rpc``: a berth error aborts the call with its code and its
message; anything else is logged once with its traceback and answered INTERNAL.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from berth.errors import (AlreadyExists, BerthError, Conflict, Internal, InvalidArgument, NotFound, NotModified,
                          PermissionDenied, RuntimeFailure, Unavailable, Unsupported)

log = logging.getLogger("berth.cri")

CODES: tuple[tuple[type[BerthError], grpc.StatusCode], ...] = (
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (Conflict, grpc.StatusCode.FAILED_PRECONDITION),
    (NotModified, grpc.StatusCode.FAILED_PRECONDITION),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (Unsupported, grpc.StatusCode.UNIMPLEMENTED),
    (Internal, grpc.StatusCode.INTERNAL),
    (RuntimeFailure, grpc.StatusCode.UNKNOWN),
)


class DeadlineExceeded(Unavailable):
    """An ExecSync ran past its timeout (DEADLINE_EXCEEDED; a 503 if the Docker API saw it)."""


def code_of(e: BerthError) -> grpc.StatusCode:
    if isinstance(e, DeadlineExceeded):
        return grpc.StatusCode.DEADLINE_EXCEEDED
    for kind, code in CODES:
        if isinstance(e, kind):
            return code
    return grpc.StatusCode.UNKNOWN


R = TypeVar("R")
Handler = Callable[[Any, Any, Any], Awaitable[R]]


def rpc(fn: Handler[R]) -> Handler[R]:
    """Wrap a servicer method: berth errors become gRPC statuses with their message."""

    @functools.wraps(fn)
    async def call(self: Any, request: Any, context: Any) -> R:
        try:
            return await fn(self, request, context)
        except BerthError as e:
            await context.abort(code_of(e), str(e))
            raise  # abort raises; this line is for the type checker
        except grpc.aio.AbortError:
            raise
        except Exception as e:
            log.exception("%s failed", fn.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, f"{fn.__name__}: {e}")
            raise
    return call
