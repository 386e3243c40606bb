"""``system dial-stdio`` (the far end of ``DOCKER_HOST=ssh://``), ``system rootless-check``
(what a rootless berthd needs here: ``client/rootless_check.py``) and ``completion``."""

from __future__ import annotations

import sys

from berth.cli._flags import Spec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def spec_rootless_check() -> Spec:
    return Spec("system rootless-check", "Check what a rootless berthd needs from this host and user, "
                "with the fix for each", [], max_args=0)


def run_rootless_check(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    """Every check, with its fix; 1 when one that berthd cannot start without fails."""
    from berth.client import rootless_check
    results = rootless_check.checks(rootless_check.Host.this())
    for c in results:
        for line in c.lines():
            print(line)
    return 1 if any(c.required and not c.ok for c in results) else 0


def spec_dial_stdio() -> Spec:
    return Spec("system dial-stdio", "Proxy the stdio stream to the daemon connection. "
                "Should not be invoked manually.", [], max_args=0)


def run_dial_stdio(cli: Any, opts: dict[str, Any], args: list[str]) -> int:
    from berth.client._http import ConnectError
    from berth.client.dialstdio import dial_stdio

    try:
        dial_stdio(cli.host)
    except ConnectError as exc:
        cli.err(f"Cannot connect to the berth daemon at {cli.host}. Is the berth daemon running? ({exc.strerror})\n")
        return 1
    except BrokenPipeError:
        return 0
    sys.stdout.flush()
    return 0
