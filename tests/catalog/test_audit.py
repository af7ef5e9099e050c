"""The audit log: every change recorded, and tampering of any kind detected."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import pytest

from oncofed.catalog.audit import GENESIS, AuditLog
from oncofed.node import Node


@pytest.fixture
def log(node: Node) -> AuditLog:
    for n in range(5):
        node.audit.append(f"user{n}", "query", f"collection/c{n}", {"n": n})
    return node.audit


def test_intact_log_verifies(log: AuditLog) -> None:
    assert log.verify() == []
    entries = log.entries()
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))


def test_edited_entry_is_detected(log: AuditLog) -> None:
    log.con.execute("UPDATE audit SET actor = 'mallory' WHERE seq = 3")
    assert [(b.seq, b.reason) for b in log.verify()] == [
        (3, "content does not match its hash (edited)")
    ]


def test_removed_entry_is_detected(log: AuditLog) -> None:
    log.con.execute("DELETE FROM audit WHERE seq = 2")
    reasons = {(b.seq, b.reason) for b in log.verify()}
    assert (3, "expected entry 2 here (removed or moved)") in reasons
    assert (3, "does not follow the entry before it") in reasons


def test_reordered_entries_are_detected(log: AuditLog) -> None:
    rows = log.con.execute("SELECT * FROM audit ORDER BY seq").fetchall()
    log.con.execute("DELETE FROM audit")
    for row in [rows[0], rows[2], rows[1], rows[3], rows[4]]:
        log.con.execute("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?)", list(row))
    assert {b.seq for b in log.verify()} >= {2, 3}


def test_removed_newest_entry_is_caught_by_the_head_file(log: AuditLog) -> None:
    log.con.execute("DELETE FROM audit WHERE seq = 5")
    assert [(b.seq, b.reason) for b in log.verify()] == [
        (5, "head file says entry 5 is the newest")
    ]


def test_rewritten_chain_is_caught_by_the_head_file(log: AuditLog) -> None:
    log.con.execute("DELETE FROM audit")
    log.head_file.rename(log.head_file.with_suffix(".saved"))
    for n in range(5):
        log.append("mallory", "query", f"collection/c{n}")
    log.head_file.with_suffix(".saved").replace(log.head_file)
    assert log.verify()


def test_node_operations_are_audited(node: Node, tmp_path: Path) -> None:
    from oncofed.testing.dicom import generate_cohort

    cohort = generate_cohort(tmp_path / "in", patients=1, seed=2)
    node.ingest(cohort.files, "synth", workers=1)
    (entry,) = node.audit.entries()
    assert (entry.action, entry.target, entry.actor.startswith("cli:")) == (
        "ingest",
        "collection/synth",
        True,
    )
    assert f'"added": {cohort.instances}' in entry.details


def test_audit_verify_command(node: Node) -> None:
    node.audit.append("user", "query", "collection/x")
    home = node.home
    node.close()

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "oncofed", "audit", "verify", "--node", str(home)],
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert run().returncode == 0
    with Node(home) as reopened:
        reopened.catalog.con.execute("UPDATE audit SET target = 'collection/y'")
    broken = run()
    assert broken.returncode == 1 and "entry 1: content does not match its hash" in broken.stderr


def test_deferred_entries_are_written_in_order_by_flush(node: Node) -> None:
    log = node.audit
    log.append("alice", "query", "collection/a")
    log.defer("bob", "read", "dicomweb/search/study", {"matches": 3})
    log.defer("carol", "read", "dicomweb/1.2.3")
    assert log.deferred == 2 and len(log.entries()) == 1
    assert log.flush() == 2
    assert log.flush() == 0
    assert [(e.seq, e.actor) for e in log.entries()] == [(1, "alice"), (2, "bob"), (3, "carol")]
    assert log.verify() == []
    assert log.head_file.read_text().split()[0] == "3"


def test_an_append_writes_the_deferred_entries_first(node: Node) -> None:
    log = node.audit
    log.defer("bob", "read", "dicomweb/1.2.3")
    entry = log.append("alice", "ingest", "collection/a")
    assert entry.seq == 2 and log.deferred == 0
    assert [e.actor for e in log.entries()] == ["bob", "alice"]
    assert log.verify() == []


def test_tampering_with_group_committed_entries_is_detected(node: Node) -> None:
    log = node.audit
    for n in range(4):
        log.defer(f"user{n}", "read", f"dicomweb/{n}")
    log.flush()
    log.con.execute("DELETE FROM audit WHERE seq = 2")
    reasons = {(b.seq, b.reason) for b in log.verify()}
    assert (3, "expected entry 2 here (removed or moved)") in reasons
    log.con.execute("UPDATE audit SET target = 'dicomweb/x' WHERE seq = 4")
    assert (4, "content does not match its hash (edited)") in {
        (b.seq, b.reason) for b in log.verify()
    }
