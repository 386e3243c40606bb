"""kill -9 of berthd at random points of a churn, 50 times over (seeded: a failure names its
seed and replays): each restart finds a consistent store, the long-running containers still
running, and nothing of the containers cut off half-way is left behind."""

from __future__ import annotations

import os
import random
import time

import pytest

from tests.integration.daemon import Daemon
from tests.integration.faults.conftest import Churn, assert_consistent, assert_up, run_detached, start_ready

pytestmark = pytest.mark.root

SEED = int(os.environ.get("BERTH_FAULT_SEED", "16"))
KILLS = 50


def _progress(churn: Churn) -> None:
    """Wait (5 s at most) until the restarted berthd has answered the churn again."""
    seen = churn.steps
    deadline = time.monotonic() + 5
    while churn.steps == seen and time.monotonic() < deadline:
        time.sleep(0.01)


def test_kill_9_of_berthd_at_random_points(own_daemon: Daemon):
    d = own_daemon
    rng = random.Random(SEED)
    running = [run_detached(d, "sleep", "600") for _ in range(3)]
    starts: list[float] = []
    with Churn(d, seed=SEED, workers=2) as churn:
        for i in range(KILLS):
            _progress(churn)  # then a random point in what the churn is doing
            time.sleep(rng.uniform(0.0, 0.4))
            d.kill9()
            t0 = time.monotonic()
            start_ready(d)
            starts.append(time.monotonic() - t0)
            if i % 10 == 9:  # now and then, the full check (the churn holds still for it)
                with churn.paused():
                    try:
                        assert_consistent(d, running=running)
                    except AssertionError as e:
                        raise AssertionError(f"seed {SEED}, after kill {i + 1}: {e}") from None
    assert churn.ok > 0, "no churn round went through"
    try:
        assert_consistent(d, running=running, gone=churn.created)
    except AssertionError as e:
        raise AssertionError(f"seed {SEED}, after {KILLS} kills: {e}") from None
    assert_up(d)
    print(f"{KILLS} kills; restart to /_ping: max {max(starts):.2f} s, mean {sum(starts) / len(starts):.2f} s; "
          f"churn rounds {churn.ok} ok, {churn.failed} failed")
