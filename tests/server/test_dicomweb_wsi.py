"""A DICOM-WSI slide ingested (de-identified) into a node, opened from it by wsidicom's DICOMweb
client, reads the same pixels as the original files opened locally."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from dicomweb_client.api import DICOMwebClient
from wsidicom import WsiDicom, WsiDicomWebClient

from conftest import serving
from oncofed.access.store import IdentityStore
from oncofed.node import Node
from oncofed.server.app import create_app
from oncofed.server.service import NodeService
from oncofed.testing.wsi import make_dicom_slide


@pytest.fixture(scope="module")
def slide_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    root = tmp_path_factory.mktemp("wsi-web")
    make_dicom_slide(root / "slide")
    files = sorted(p for p in (root / "slide").rglob("*.dcm") if not p.name.startswith("."))
    with Node.init(root / "node") as node:
        report = node.ingest(files, "slides", workers=1)
        assert report.added >= 3, report.failed  # the pyramid levels
        store = IdentityStore(node.catalog.con)
        store.add_user("steward", ["data_manager"])
        token = store.issue_token("steward").token
    service = NodeService.open(root / "node")
    with serving(create_app(service)) as url:
        yield url, token, root / "slide"
    service.close()


def test_wsidicom_opens_the_slide_over_dicomweb(slide_node: tuple[str, str, Path]) -> None:
    url, token, originals = slide_node
    client = DICOMwebClient(f"{url}/dicomweb", headers={"Authorization": f"Bearer {token}"})
    (study,) = client.search_for_studies()
    study_uid = study["0020000D"]["Value"][0]
    series_uids = [s["0020000E"]["Value"][0] for s in client.search_for_series(study_uid)]
    with (
        WsiDicom.open_web(WsiDicomWebClient(client), study_uid, series_uids) as remote,
        WsiDicom.open(originals) as local,
    ):
        assert remote.size == local.size
        assert len(remote.levels) == len(local.levels)
        for level in (0, len(local.levels) - 1):
            here = np.asarray(local.read_region((512, 256), level, (256, 256)))
            there = np.asarray(remote.read_region((512, 256), level, (256, 256)))
            assert np.array_equal(here, there)
