"""Directories deleted off the request path: ``discard`` renames a directory into the data
root's ``trash/`` (one rename: the directory is gone from its place when it returns) and one
worker thread deletes it afterwards. A berthd killed meanwhile leaves it in ``trash/``,
which ``sweep`` empties at the next start, also in the background.

    trash = Trash(data.trash)
    trash.sweep()                      # at start: what a killed berthd left
    trash.discard(data.container(cid).root)
"""

from __future__ import annotations

import concurrent.futures
import os
import secrets
import shutil
from pathlib import Path


class Trash:
    def __init__(self, root: Path):
        self.root = root
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="trash")

    def discard(self, path: Path) -> None:
        """Take ``path`` (a directory, or nothing) away now and delete it in the background.
        Where it cannot be renamed into the trash (another file system), it is deleted in
        place, still in the background."""
        dst = self.root / f"{path.name}.{secrets.token_hex(4)}"
        try:
            os.rename(path, dst)
        except OSError:
            if not os.path.lexists(path):
                return
            dst = path   # no trash directory, or another file system
        self._pool.submit(shutil.rmtree, dst, True)

    def sweep(self) -> None:
        """Delete (in the background) whatever the trash holds."""
        try:
            entries = list(self.root.iterdir())
        except FileNotFoundError:
            return
        for p in entries:
            self._pool.submit(shutil.rmtree, p, True)

    def flush(self) -> None:
        """Wait until everything discarded so far is deleted."""
        self._pool.submit(lambda: None).result()
