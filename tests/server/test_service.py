"""NodeService: received instances acknowledged when durable and catalogued in batches (and
after a SIGKILL), reads beside the writer, read audit entries group-committed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pydicom
import pytest

from oncofed.ingest.pipeline import Failure, StoreFailure
from oncofed.ingest.receive import Conflict
from oncofed.node import Node
from oncofed.server.service import NodeService
from oncofed.testing.dicom import CohortManifest, generate_cohort

KILLED_CHILD = """
import sys, time
from pathlib import Path
from oncofed.server.service import NodeService

service = NodeService.open(sys.argv[1])
session = service.receiving(actor="dimse:TEST")
with service.catalog():  # holds the catalog writer: nothing is catalogued before the kill
    for path in sorted(Path(sys.argv[2]).rglob("*.dcm")):
        outcome = session.accept(path.name, path.read_bytes())
        assert outcome.__class__.__name__ == "InstanceRecord", outcome
    print("ACKNOWLEDGED", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    Node.init(tmp_path / "node").close()
    return tmp_path / "node"


@pytest.fixture
def cohort(tmp_path: Path) -> CohortManifest:
    return generate_cohort(tmp_path / "in", patients=1, seed=41)


def _count(service: NodeService, sql: str) -> int:
    with service.connection() as con:
        row = con.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def test_a_session_reports_each_payload_and_writes_one_report(
    home: Path, cohort: CohortManifest
) -> None:
    first = cohort.files[0].read_bytes()
    changed = pydicom.dcmread(cohort.files[0])
    changed.PixelData = bytes(len(changed.PixelData))
    changed.save_as(cohort.files[0].parent / "changed.dcm")
    with NodeService.open(home) as service:
        session = service.receiving(actor="dimse:TEST@127.0.0.1")
        stored = [session.accept(p.name, p.read_bytes()) for p in cohort.files]
        again = session.accept("again", first)
        conflict = session.accept("changed", (cohort.files[0].parent / "changed.dcm").read_bytes())
        garbage = session.accept("garbage", b"not DICOM at all")
        report = service.finish(session)
        assert not any(isinstance(o, Failure) for o in stored)
        assert not isinstance(again, Failure)
        assert isinstance(conflict, Conflict) and isinstance(garbage, Failure)
        assert (report.files_seen, report.added, report.already_present) == (
            cohort.instances + 3,
            cohort.instances,
            1,
        )
        assert len(report.conflicts) == 1 and [s.path for s in report.failed] == ["garbage"]
        assert _count(service, "SELECT count(*) FROM instance") == cohort.instances
        assert _count(service, "SELECT count(*) FROM audit WHERE action = 'ingest'") == 1
        assert len(list(service.node.reports_dir.glob("ingest-*.json"))) == 1
        assert not list((service.node.store.root / "staging").iterdir())


def test_a_full_store_fails_the_payload_and_keeps_what_was_stored(
    home: Path, cohort: CohortManifest
) -> None:
    with NodeService.open(home) as service:
        session = service.receiving()
        assert not isinstance(session.accept("ok", cohort.files[0].read_bytes()), Failure)
        service.node.store.tmp.rmdir()  # writes into the store now fail
        failed = session.accept("next", cohort.files[1].read_bytes())
        service.node.store.tmp.mkdir()
        report = service.finish(session)
        assert isinstance(failed, StoreFailure) and "cannot store blob" in failed.reason
        assert report.added == 1
        assert _count(service, "SELECT count(*) FROM instance") == 1
        retried = service.receiving()
        assert not isinstance(retried.accept("next", cohort.files[1].read_bytes()), Failure)
        assert service.finish(retried).added == 1


def test_acknowledged_instances_survive_sigkill(home: Path, cohort: CohortManifest) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_CHILD, str(home), str(cohort.files[0].parents[3])],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ACKNOWLEDGED"
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    journals = list((home / "store" / "staging").glob("*.journal"))
    assert len(journals) == 1
    assert len(journals[0].read_text().splitlines()) == cohort.instances
    with NodeService.open(home) as service:
        assert _count(service, "SELECT count(*) FROM instance") == cohort.instances
        rows = _count(service, "SELECT count(*) FROM audit WHERE actor = 'recovery'")
        assert rows == 1
        reports = [json.loads(p.read_text()) for p in service.node.reports_dir.glob("*.json")]
        assert [(r["stage"], r["added"]) for r in reports] == [("recovered", cohort.instances)]
        with service.connection() as con:
            for (digest,) in con.execute("SELECT sha256 FROM instance").fetchall():
                assert service.node.store.has(str(digest))
    assert not list((home / "store" / "staging").glob("*.journal"))
    with NodeService.open(home) as service:  # recovered once only
        assert _count(service, "SELECT count(*) FROM audit WHERE actor = 'recovery'") == 1


def test_a_torn_journal_line_is_skipped_on_recovery(home: Path, cohort: CohortManifest) -> None:
    with NodeService.open(home) as service:
        session = service.receiving()
        session.accept("one", cohort.files[0].read_bytes())
        with session.journal.path.open("a") as journal:
            journal.write('["abc", "rec')  # a write cut short by a power loss
        session.journal.close()
        kept = session.journal.path.read_text()
        service.finish(session)
    staging = home / "store" / "staging"
    (staging / "left.journal").write_text(kept)
    with NodeService.open(home) as service:
        assert _count(service, "SELECT count(*) FROM instance") == 1
    assert not list(staging.glob("*.journal"))


def test_reads_go_on_while_the_writer_is_held(home: Path) -> None:
    with NodeService.open(home) as service:
        answered = threading.Event()

        def read() -> None:
            with service.connection() as con:
                con.execute("SELECT count(*) FROM instance").fetchone()
            answered.set()

        with service.catalog():
            reader = threading.Thread(target=read)
            reader.start()
            assert answered.wait(timeout=30)
        reader.join()


def test_read_audit_entries_are_written_within_the_delay(home: Path) -> None:
    with NodeService(Node(home), audit_delay_s=0.05) as service:
        service.audit_read("reader", "read", "dicomweb/1.2.3", {"instances": 2})
        deadline = time.monotonic() + 10
        while _count(service, "SELECT count(*) FROM audit") == 0:
            assert time.monotonic() < deadline, "the read was never audited"
            time.sleep(0.02)


def test_read_audit_entries_are_written_on_close(home: Path) -> None:
    with NodeService(Node(home), audit_delay_s=600) as service:
        service.audit_read("reader", "read", "dicomweb/1.2.3")
        service.audit("admin", "grant", "collection/x")
        service.audit_read("reader", "read", "dicomweb/4.5.6")
        assert _count(service, "SELECT count(*) FROM audit") == 2
    with Node(home) as node:
        assert [e.target for e in node.audit.entries()] == [
            "dicomweb/1.2.3",
            "collection/x",
            "dicomweb/4.5.6",
        ]
        assert node.audit.verify() == []
