"""Fixtures shared by the DIMSE tests: a node served by DimseServer on 127.0.0.1, its peers.

Peers: SCU (the test's own client), DEST (a storage SCP a test may start on ``dest_port``) and
FAR (a known AE title that must call from 192.0.2.10, so calls from 127.0.0.1 are refused).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import free_port
from oncofed.node import Node
from oncofed.server.dimse import DimseServer
from oncofed.server.service import NodeService
from oncofed.testing.dicom import CohortManifest, generate_cohort

SCP_AET = "ONCOFED"
SCU_AET = "SCU"
DEST_AET = "DEST"
FAR_AET = "FAR"


@dataclass(frozen=True)
class ServedScp:
    """A running SCP, the node behind it, and what was ingested before it started."""

    server: DimseServer
    service: NodeService
    cohort: CohortManifest | None
    dest_port: int

    @property
    def port(self) -> int:
        return self.server.port

    def scalar(self, sql: str, params: list[object] | None = None) -> object:
        with self.service.connection() as con:
            row = con.execute(sql, params or []).fetchone()
        assert row is not None
        return row[0]

    def rows(self, sql: str, params: list[object] | None = None) -> list[tuple[object, ...]]:
        with self.service.connection() as con:
            return con.execute(sql, params or []).fetchall()


@contextmanager
def serve(root: Path, cohort: CohortManifest | None) -> Iterator[ServedScp]:
    """Init a node under ``root`` (ingesting ``cohort`` as collection synth) and serve it."""
    home = root / "node"
    with Node.init(home, name="dimse-test") as node:
        if cohort is not None:
            node.ingest(cohort.files, "synth", workers=1)
    service = NodeService.open(home)
    dest_port = free_port()
    peers = {
        SCU_AET: ("127.0.0.1", free_port()),
        DEST_AET: ("127.0.0.1", dest_port),
        FAR_AET: ("192.0.2.10", 104),
    }
    server = DimseServer(service, peers=peers, ae_title=SCP_AET, port=0)
    server.start()
    try:
        yield ServedScp(server, service, cohort, dest_port)
    finally:
        server.stop()
        service.close()


@pytest.fixture(scope="module")
def scp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedScp]:
    """A node holding a 5-patient cohort; tests must not store into it."""
    root = tmp_path_factory.mktemp("dimse")
    with serve(root, generate_cohort(root / "in", patients=5, seed=21)) as served:
        yield served


@pytest.fixture
def empty_scp(tmp_path: Path) -> Iterator[ServedScp]:
    """A fresh, empty node for tests that store."""
    with serve(tmp_path, None) as served:
        yield served
