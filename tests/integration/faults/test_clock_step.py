"""A step of the wall clock backwards (one hour) during a churn: containers keep running,
starts, stops, waits and timeouts go on (they run on the monotonic clock), ``ps`` and inspect
still answer, and the store stays consistent.

The host's clock is never touched. A time namespace cannot help (it offsets the monotonic and
boot clocks only, not CLOCK_REALTIME), and Debian's libfaketime 0.9.10 breaks
``clock_nanosleep`` when told to leave the monotonic clock alone (EINVAL from every
``time.sleep``). So berthd runs with a tiny LD_PRELOAD library, compiled here, that adds the
number of seconds written in a file to CLOCK_REALTIME (clock_gettime, gettimeofday, time) and
to nothing else, re-reading the file every 20 ms. Its fork server and shims inherit it, as
they would share a real host's clock; containers do not (their environment is the spec's).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.integration.daemon import Daemon, suite_args
from tests.integration.faults.conftest import Churn, run_daemon, api, assert_consistent, assert_up, docker, run_detached

pytestmark = pytest.mark.root

SHIFT_SOURCE = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static int (*real_gettime)(clockid_t, struct timespec *);
static long cached;
static struct timespec checked;

static long offset(void) {
    struct timespec now;
    real_gettime(CLOCK_MONOTONIC, &now);
    long ms = (now.tv_sec - checked.tv_sec) * 1000 + (now.tv_nsec - checked.tv_nsec) / 1000000;
    if (checked.tv_sec == 0 || ms >= 20) {
        const char *path = getenv("BERTH_TEST_CLOCK_SHIFT");
        FILE *f = path ? fopen(path, "re") : NULL;
        long v = 0;
        if (f) {
            if (fscanf(f, "%ld", &v) == 1)
                cached = v;
            fclose(f);
        }
        checked = now;
    }
    return cached;
}

int clock_gettime(clockid_t id, struct timespec *ts) {
    if (!real_gettime)
        real_gettime = dlsym(RTLD_NEXT, "clock_gettime");
    int r = real_gettime(id, ts);
    if (r == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE))
        ts->tv_sec += offset();
    return r;
}

int gettimeofday(struct timeval *tv, void *tz) {
    struct timespec ts;
    int r = clock_gettime(CLOCK_REALTIME, &ts);
    if (r == 0 && tv) {
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
    }
    (void)tz;
    return r;
}

time_t time(time_t *t) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (t)
        *t = ts.tv_sec;
    return ts.tv_sec;
}
"""

STEP = -3600


@pytest.fixture
def shifted_daemon(tmp_path: Path) -> Iterator[tuple[Daemon, Path]]:
    if os.geteuid() != 0:
        pytest.skip("needs uid 0")
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.fail("no C compiler to build the clock-shift library (.ci/run installs gcc)")
    src, lib, shift = tmp_path / "shift.c", tmp_path / "libshift.so", tmp_path / "shift"
    src.write_text(SHIFT_SOURCE)
    subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(lib), str(src), "-ldl"], check=True)
    shift.write_text("0\n")
    d = Daemon(args=suite_args(), env={"LD_PRELOAD": str(lib), "BERTH_TEST_CLOCK_SHIFT": str(shift)})
    for dd in run_daemon(d):
        yield dd, shift


def _clock(d: Daemon) -> float:
    """berthd's wall clock (/info's SystemTime)."""
    import calendar
    status, info = api(d, "GET", "/info")
    assert status == 200 and isinstance(info, dict), info
    return float(calendar.timegm(time.strptime(info["SystemTime"][:19], "%Y-%m-%dT%H:%M:%S")))


def _state(d: Daemon, cid: str) -> dict:
    status, info = api(d, "GET", f"/containers/{cid}/json")
    assert status == 200 and isinstance(info, dict), info
    return info["State"]


def test_clock_steps_back_an_hour(shifted_daemon: tuple[Daemon, Path]):
    d, shift = shifted_daemon
    running = run_detached(d, "sleep", "300")
    before = run_detached(d, "sh", "-c", "echo before; sleep 1; exit 2")
    assert abs(_clock(d) - time.time()) < 5
    with Churn(d, seed=7) as churn:
        time.sleep(0.5)
        shift.write_text(f"{STEP}\n")
        time.sleep(0.1)
        assert _clock(d) - time.time() < STEP + 5, "the step did not reach berthd"
        # after the step: starts, waits, timeouts (monotonic) and stops still work
        after = run_detached(d, "sh", "-c", "echo after; sleep 1; exit 3")
        assert docker(d, "wait", before).stdout.strip() == "2"
        assert docker(d, "wait", after).stdout.strip() == "3"
        t0 = time.monotonic()
        slow = run_detached(d, "sh", "-c", "trap '' TERM; sleep 300")
        assert docker(d, "stop", "-t", "1", slow).returncode == 0
        assert time.monotonic() - t0 < 10, "stop -t 1 waited on the wall clock"
        assert _state(d, slow)["ExitCode"] == 137
        ok = churn.ok
        deadline = time.monotonic() + 30
        while churn.ok < ok + 2:
            assert time.monotonic() < deadline, "the churn stalled after the clock step"
            time.sleep(0.1)
    ps = docker(d, "ps", "--format", "{{.ID}} {{.Status}}")
    assert ps.returncode == 0 and f"{running[:12]} Up" in ps.stdout, ps
    assert docker(d, "logs", "--timestamps", after).stdout.endswith("after\n")
    assert "before" in docker(d, "logs", before).stdout
    st = _state(d, after)
    assert st["FinishedAt"] > st["StartedAt"], st
    assert_consistent(d, running=[running], gone=churn.created)
    assert_up(d)
