"""The state database is shared by the event loop and worker threads (pull and push workers
record layer sources): transactions from several threads must serialise, not collide."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from berth.state.db import Database


def test_transactions_from_many_threads_serialise(tmp_path: Path) -> None:
    db = Database(tmp_path / "state.db")
    db.conn.execute("CREATE TABLE t (n INTEGER)")
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for _ in range(5):
                with db.tx() as c:
                    c.execute("INSERT INTO t VALUES (?)", (n,))
                    time.sleep(0.002)  # hold the transaction while the others try to begin theirs
        except BaseException as e:  # noqa: BLE001 - collected and reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert db.one("SELECT count(*) FROM t") == (40,)
    db.close()


def test_a_failed_transaction_rolls_back_and_frees_the_next(tmp_path: Path) -> None:
    db = Database(tmp_path / "state.db")
    db.conn.execute("CREATE TABLE t (n INTEGER)")
    try:
        with db.tx() as c:
            c.execute("INSERT INTO t VALUES (1)")
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    with db.tx() as c:
        c.execute("INSERT INTO t VALUES (2)")
    assert db.query("SELECT n FROM t") == [(2,)]
    db.close()
