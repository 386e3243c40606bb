"""Error kinds shared by every layer. No HTTP in here: api/errors.py maps kinds to statuses.

Domain errors subclass a kind (``class NoSuchContainer(NotFound)``); messages that clients
parse copy Docker's wording.
"""


class BerthError(Exception):
    """Base of every error berth raises on purpose."""


class NotFound(BerthError):
    pass


class AlreadyExists(BerthError):
    pass


class Conflict(BerthError):
    pass


class InvalidArgument(BerthError):
    pass


class PermissionDenied(BerthError):
    pass


class Unavailable(BerthError):
    pass


class Unsupported(BerthError):
    pass


class NotModified(BerthError):
    """The request asked for a state the object is already in (Docker answers 304)."""


class Internal(BerthError):
    """dockerd's errdefs.System: the daemon could not do what a valid request asked (500)."""


class RuntimeFailure(BerthError):
    """The runtime could not create or start a container (Docker answers 400 or 500)."""


def os_text(e: OSError) -> str:
    """An OSError as Go prints one (``<path>: too many open files``): users and clients look
    for the errno's words, in lower case, as Docker writes them."""
    if not e.errno:
        return str(e)
    import os
    reason = os.strerror(e.errno)
    reason = reason[:1].lower() + reason[1:]
    return f"{e.filename}: {reason}" if e.filename else reason
