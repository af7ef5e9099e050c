"""Shared fixtures: fresh catalogs and node homes under tmp_path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from oncofed.catalog.catalog import Catalog
from oncofed.node import Node


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    """An empty, migrated catalog file."""
    with Catalog(tmp_path / "catalog.duckdb") as opened:
        yield opened


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    """A fresh node home."""
    with Node.init(tmp_path / "node", name="test-node") as opened:
        yield opened
