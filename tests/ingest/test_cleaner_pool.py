"""Large requests de-identified in worker processes: the same results, and no loss when a
worker dies."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from oncofed.deid.stage import make_stage
from oncofed.ingest.cleaning import POOL_PAYLOADS, CleanerPool, clean_payloads
from oncofed.testing.dicom import generate_cohort

STARTUP_S = 120


@pytest.fixture(scope="module")
def payloads(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, bytes]]:
    cohort = generate_cohort(tmp_path_factory.mktemp("pool"), patients=3, seed=11)
    found = [(str(path), path.read_bytes()) for path in cohort.files]
    found.append(("empty.dcm", b""))  # a failure travels back like the rest
    assert len(found) >= POOL_PAYLOADS
    return found


def _started(pool: CleanerPool) -> None:
    deadline = time.monotonic() + STARTUP_S
    while pool._ready() is None:
        assert time.monotonic() < deadline, "the worker processes did not start"
        time.sleep(0.1)


def test_workers_give_what_this_process_gives(
    payloads: list[tuple[str, bytes]], tmp_path: Path
) -> None:
    stage = make_stage(b"pool-test-key-0123456789abcdef!!")
    expected = clean_payloads(stage, payloads)
    with CleanerPool(2) as pool:
        assert list(pool.clean(stage, payloads)) == expected  # while they start: here
        _started(pool)
        assert list(pool.clean(stage, payloads)) == expected
        assert list(pool.clean(stage, payloads[:3])) == expected[:3]  # small: here


def test_a_killed_worker_loses_nothing(payloads: list[tuple[str, bytes]]) -> None:
    stage = make_stage(b"pool-test-key-0123456789abcdef!!")
    expected = clean_payloads(stage, payloads)
    with CleanerPool(2) as pool:
        _started(pool)
        assert pool._pool is not None
        for pid in list(pool._pool._processes):
            os.kill(pid, signal.SIGKILL)
        assert list(pool.clean(stage, payloads)) == expected
        assert list(pool.clean(stage, payloads)) == expected  # restarting: here meanwhile
