"""Ingest under SIGKILL and a full disk: the catalog and store stay consistent, nothing is lost."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_ingest import assert_store_consistent

from oncofed.node import Node
from oncofed.testing.dicom import generate_cohort, generate_large, generate_many_small

FILES = 3000


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("many")
    generate_many_small(root, FILES, seed=11)
    return root


def _ingest_command(home: Path, *inputs: Path, workers: int) -> list[str]:
    return [
        sys.executable, "-m", "oncofed", "ingest", *map(str, inputs), "--node", str(home),
        "--collection", "synth", "--already-deidentified", "--workers", str(workers),
    ]  # fmt: skip


def _blob_count(home: Path) -> int:
    objects = home / "store" / "objects"
    return sum(len(files) for _, _, files in os.walk(objects))


@pytest.mark.slow
@pytest.mark.parametrize("kill_after_blobs", [300, 1800, 2700])
def test_sigkill_mid_ingest_then_rerun(tmp_path: Path, many: Path, kill_after_blobs: int) -> None:
    home = tmp_path / "node"
    Node.init(home).close()
    process = subprocess.Popen(
        _ingest_command(home, many, workers=2),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while _blob_count(home) < kill_after_blobs and process.poll() is None:
        assert time.monotonic() < deadline, "ingest made no progress"
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    with Node(home) as node:
        assert_store_consistent(node)
        assert node.catalog.table_counts()["instance"] <= _blob_count(home)
        report = node.ingest([many], "synth", already_deidentified=True, workers=2)
        assert report.failed == []
        assert node.catalog.table_counts()["instance"] == FILES
        assert node.catalog.query({}).counts.instances == FILES
        assert_store_consistent(node)
    assert not list((home / "store" / "tmp").iterdir())


@pytest.mark.slow
def test_full_disk_stops_the_run_naming_the_file_and_keeps_what_was_stored(
    tmp_path: Path,
) -> None:
    inputs = tmp_path / "in"
    cohort = generate_cohort(inputs / "a-small", patients=3, seed=5)
    (large,) = generate_large(inputs / "z-large", 1, frames=40, rows=256, columns=256)
    home = tmp_path / "node"
    Node.init(home).close()
    limit = large.stat().st_size // 2

    def limit_file_size() -> None:  # a stand-in for a full disk: writes past `limit` fail
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = subprocess.run(
        _ingest_command(home, inputs, workers=1),
        preexec_fn=limit_file_size,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert f"cannot store {large}" in done.stderr and "File too large" in done.stderr
    assert "Traceback" not in done.stderr
    with Node(home) as node:
        assert node.catalog.table_counts()["instance"] == cohort.instances
        assert_store_consistent(node)
        node.ingest([inputs], "synth", already_deidentified=True, workers=1)
        assert node.catalog.table_counts()["instance"] == cohort.instances + 1


def test_a_file_changed_between_read_and_copy_is_refused(tmp_path: Path) -> None:
    from oncofed.storage.blobstore import BlobStore, SourceChangedError, sha256_hex

    store = BlobStore(tmp_path / "store")
    store.create()
    source = tmp_path / "in.dcm"
    source.write_bytes(b"first version")
    digest = sha256_hex(b"first version")
    source.write_bytes(b"second version")
    with pytest.raises(SourceChangedError, match="changed while it was being stored"):
        store.put_copy(source, digest)
    assert not store.has(digest) and not list(store.tmp.iterdir())
