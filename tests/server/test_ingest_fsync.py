"""``ingest_fsync = "batch"``: received instances are acknowledged once written, fsynced within
the group-sync delay and always before their catalog rows; a SIGKILL loses none of them, and a
blob cut short by a power loss before its fsync is refused on recovery and stored again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from oncofed.ingest.pipeline import Failure
from oncofed.node import Node
from oncofed.server import service as service_module
from oncofed.server.service import NodeService
from oncofed.testing.dicom import CohortManifest, generate_cohort

KILLED_CHILD = """
import sys, time
from pathlib import Path
from oncofed.server import service as service_module

service_module.BATCH_SYNC_DELAY_S = 600.0
service = service_module.NodeService.open(sys.argv[1])
session = service.receiving(actor="dimse:TEST")
with service.catalog():  # holds the catalog writer: nothing is catalogued before the kill
    for path in sorted(Path(sys.argv[2]).rglob("*.dcm")):
        outcome = session.accept(path.name, path.read_bytes())
        assert outcome.__class__.__name__ == "InstanceRecord", outcome
    print("ACKNOWLEDGED", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ONCOFED_INGEST_FSYNC", "batch")
    Node.init(tmp_path / "node").close()
    return tmp_path / "node"


@pytest.fixture
def cohort(tmp_path: Path) -> CohortManifest:
    return generate_cohort(tmp_path / "in", patients=1, seed=43)


def _instances(service: NodeService) -> int:
    with service.connection() as con:
        row = con.execute("SELECT count(*) FROM instance").fetchone()
    assert row is not None
    return int(row[0])


def _record_syncs(service: NodeService) -> list[tuple[list[str], int]]:
    """Patch the store's sync to record what it synced and how many rows were catalogued."""
    synced: list[tuple[list[str], int]] = []
    store = service.node.store
    sync = store.sync

    def recording(digests: Sequence[str]) -> None:
        synced.append((list(digests), _instances(service)))
        sync(digests)

    store.sync = recording  # type: ignore[method-assign]
    return synced


def test_the_default_is_each(tmp_path: Path) -> None:
    Node.init(tmp_path / "node").close()
    assert Node(tmp_path / "node").settings.ingest_fsync == "each"


def test_acknowledged_before_the_fsync_and_synced_before_catalogued(
    home: Path, cohort: CohortManifest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service_module, "BATCH_SYNC_DELAY_S", 600.0)
    with NodeService.open(home) as service:
        synced = _record_syncs(service)
        session = service.receiving()
        records = [session.accept(p.name, p.read_bytes()) for p in cohort.files]
        assert not any(isinstance(r, Failure) for r in records)
        assert synced == []  # acknowledged, fsync still to come
        report = service.finish(session)
        assert report.added == cohort.instances == _instances(service)
        digests = {d for batch, rows in synced if rows == 0 for d in batch}
        assert digests == {r.sha256 for r in records if not isinstance(r, Failure)}


def test_blobs_are_synced_within_the_delay(
    home: Path, cohort: CohortManifest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service_module, "BATCH_SYNC_DELAY_S", 0.05)
    with NodeService.open(home) as service:
        synced = _record_syncs(service)
        session = service.receiving()
        record = session.accept("one", cohort.files[0].read_bytes())
        assert not isinstance(record, Failure)
        deadline = time.monotonic() + 10
        while not any(record.sha256 in batch for batch, _ in synced):
            assert time.monotonic() < deadline, "the blob was never fsynced"
            time.sleep(0.01)
        service.finish(session)


def _acknowledge_then_kill(home: Path, cohort: CohortManifest) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_CHILD, str(home), str(cohort.files[0].parents[3])],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "ONCOFED_INGEST_FSYNC": "batch"},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ACKNOWLEDGED"
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=30)


def test_acknowledged_instances_survive_sigkill(home: Path, cohort: CohortManifest) -> None:
    _acknowledge_then_kill(home, cohort)
    with NodeService.open(home) as service:
        assert _instances(service) == cohort.instances
        reports = [json.loads(p.read_text()) for p in service.node.reports_dir.glob("*.json")]
        assert [(r["stage"], r["added"]) for r in reports] == [("recovered", cohort.instances)]


def test_a_blob_cut_short_by_a_power_loss_is_refused_then_stored_again(
    home: Path, cohort: CohortManifest
) -> None:
    _acknowledge_then_kill(home, cohort)
    blobs = sorted((home / "store" / "objects").rglob("*"), key=lambda p: p.name)
    damaged = next(p for p in blobs if p.is_file())
    damaged.write_bytes(b"")  # what a power loss before its fsync can leave
    with NodeService.open(home) as service:
        assert _instances(service) == cohort.instances - 1
        (report,) = [json.loads(p.read_text()) for p in service.node.reports_dir.glob("*.json")]
        assert len(report["failed"]) == 1 and "damaged" in report["failed"][0]["reason"]
        session = service.receiving()
        for path in cohort.files:
            assert not isinstance(session.accept(path.name, path.read_bytes()), Failure)
        assert service.finish(session).added == 1
        assert _instances(service) == cohort.instances
        assert service.node.store.get(damaged.name) and damaged.stat().st_size > 0
