"""Deep Zoom, thumbnail, viewer and static endpoints of the slide router."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from oncofed.testing.wsi import SyntheticSlide


@pytest.fixture
def client(slides: dict[str, SyntheticSlide]) -> TestClient:
    from oncofed.wsi.router import make_router

    paths: dict[str, Path] = {kind: s.path for kind, s in slides.items()}
    app = FastAPI()
    app.include_router(make_router(paths.get), prefix="/wsi")
    return TestClient(app)


def test_dzi_descriptor_and_tiles(client: TestClient) -> None:
    xml = client.get("/wsi/svs.dzi")
    assert xml.status_code == 200 and 'Width="2048" Height="1536"' in xml.text
    assert 'Overlap="0" TileSize="256"' in xml.text  # laid on the stored 256-pixel JPEG tiles
    top = client.get("/wsi/svs_files/11/0_0.jpeg")  # 2048 px -> levels 0..11
    assert top.status_code == 200 and top.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(top.content)).size == (256, 256)
    whole = client.get("/wsi/dicom_files/7/0_0.jpeg")  # 128x96 fits one tile
    assert Image.open(io.BytesIO(whole.content)).size == (128, 96)


def test_thumbnail_and_viewer(client: TestClient) -> None:
    thumb = client.get("/wsi/ome/thumbnail.jpeg", params={"size": 200})
    assert Image.open(io.BytesIO(thumb.content)).size == (200, 150)
    page = client.get("/wsi/tiff/viewer")
    assert "OpenSeadragon(" in page.text and "../tiff.dzi" in page.text
    js = client.get("/wsi/static/openseadragon/openseadragon.min.js")
    assert js.status_code == 200 and len(js.content) > 100_000


def test_unknown_slide_tile_and_path_traversal(client: TestClient) -> None:
    missing = client.get("/wsi/nope.dzi")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert client.get("/wsi/svs_files/11/99_0.jpeg").status_code == 404
    assert client.get("/wsi/svs_files/40/0_0.jpeg").status_code == 404
    assert client.get("/wsi/static/../router.py").status_code == 404
