"""berthd: flags, the data-root lock, the listening sockets and the first /_ping answers; then
the event loop (``daemon.serving``).

Start-up is on a budget (/_ping must answer well under 100 ms after exec). berthd checks its
flags and daemon.json, takes the data-root lock and binds its Unix sockets before it imports
asyncio; from then on a thread answers /_ping (``api.early``) while the main thread imports
asyncio and the HTTP server, and hands the sockets, and the connections it holds, to the
loop's server (``serving.serve``). That server answers /_ping too while the engine's modules
are imported in a thread (``daemon.wiring``), the objects wired and the containers recovered;
only then are other requests served (``Server.ready``): they wait, so none sees a
half-recovered state. What this module imports is what the steps before the loop need: no
asyncio, no ssl (docs/design-notes.md, "Lazy imports"; docs/performance.md, "Daemon start").
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

import berth
from berth.daemon import prelisten, rootless, settings
from berth.daemon.config import load
from berth.daemon.config_values import ConfigError

T0 = time.perf_counter()  # as near the exec as berthd can measure


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The flags and daemon.json merged (``daemon.config``); a bad configuration ends berthd.
    A rootless berthd (``daemon.rootless``) has its own defaults and daemon.json."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        if rootless.wanted(argv) or rootless.inside():
            if {"-h", "--help", "-v", "--version"} & set(argv):
                return load(argv)   # needs no $XDG_RUNTIME_DIR
            paths = rootless.Paths.from_env()
            return load(argv, rootless.defaults(paths), str(paths.config_file))
        return load(argv)
    except (ConfigError, rootless.RootlessError) as e:
        raise SystemExit(f"berthd: {e}") from None


def main(argv: list[str] | None = None) -> None:
    # dockerd's setDefaultUmask: what berthd creates (data root, rootfs mount points, /etc
    # files, sockets) and what its children inherit must not depend on the caller's umask
    os.umask(0o022)
    args = parse_args(argv)
    if args.version:
        print(f"berthd version {berth.__version__}")
        return
    logging.basicConfig(level=settings.log_level(args), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    argv = sys.argv[1:] if argv is None else argv
    if rootless.wanted(argv):
        from berth.daemon import rootless_boot  # only a rootless start needs it
        try:
            raise SystemExit(rootless_boot.start(argv))
        except (rootless.RootlessError, OSError) as e:
            raise SystemExit(f"berthd: {e}") from None
    if os.geteuid() != 0:
        raise SystemExit("berthd: must run as root")
    started = prelisten.listen_early(args)
    from berth.daemon import serving  # asyncio and the HTTP server: while the early thread answers
    serving.run(args, started, T0)


if __name__ == "__main__":
    main()
