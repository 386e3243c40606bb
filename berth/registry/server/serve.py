"""Running the server process: logging, the writers lock, TLS, the stale-upload sweeper,
and a clean stop on SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import ssl
import sys
from pathlib import Path

from aiohttp import web

from berth.registry.server.app import REGISTRY, access_logger_class, make_app
from berth.registry.server.config import Config
from berth.registry.server.locks import hold
from berth.registry.server.storage import Storage

log = logging.getLogger("berth.registry")
# Per-request body buffer: aiohttp pauses reading at twice this much unread. Its 64 KiB default
# makes a single fast upload stop and start the socket hundreds of times per 100 MiB.
READ_BUFSIZE = 1 << 19


def split_addr(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"invalid --addr {addr!r}: want HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def _access_logger(target: str) -> logging.Logger:
    logger = logging.getLogger("berth.registry.access")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    if target:
        handler: logging.Handler = (logging.StreamHandler(sys.stderr) if target == "-"
                                    else logging.FileHandler(target))
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger.addHandler(handler)
    return logger


def run(config: Config) -> int:
    """Serve until SIGTERM/SIGINT; return the exit code."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host, port = split_addr(config.addr)
    root = Path(config.root)
    storage = Storage(root, fsync=config.storage.fsync)
    lock_fd = -1 if config.read_only else hold(storage.writers_lock, exclusive=False)
    ssl_ctx = None
    if config.tls_cert or config.tls_key:
        ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_ctx.load_cert_chain(config.tls_cert, config.tls_key)
    app = make_app(config, storage)
    try:
        asyncio.run(_serve(app, config, host, port, ssl_ctx))
    finally:
        if lock_fd >= 0:
            os.close(lock_fd)
    return 0


async def _serve(app: web.Application, config: Config, host: str, port: int,
                 ssl_ctx: ssl.SSLContext | None) -> None:
    reg = app[REGISTRY]
    runner = web.AppRunner(app, access_log_class=access_logger_class(reg, not config.log.access),
                           access_log=_access_logger(config.log.access), handle_signals=False,
                           read_bufsize=READ_BUFSIZE)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_ctx, backlog=1024,
                       reuse_address=True)
    await site.start()
    bound = runner.addresses[0] if runner.addresses else (host, port)
    scheme = "https" if ssl_ctx else "http"
    mode = "read-only" if config.read_only else "read-write"
    log.info("listening on %s://%s:%d (root %s, auth %s, %s)", scheme, bound[0], bound[1],
             config.root, reg.auth.kind, mode)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sweeper = None
    if not config.read_only:
        sweeper = asyncio.create_task(_sweep(reg.uploads, config))
    try:
        await stop.wait()
    finally:
        if sweeper is not None:
            sweeper.cancel()
        await runner.cleanup()


async def _sweep(uploads, config: Config) -> None:  # type: ignore[no-untyped-def]
    while True:
        removed = uploads.sweep(config.storage.upload_max_age)
        if removed:
            log.info("swept %d stale uploads", len(removed))
        await asyncio.sleep(config.storage.upload_sweep_interval)
