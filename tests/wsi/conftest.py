"""Shared synthetic slides (generated once per test session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from oncofed.testing.mirax import make_mirax_slide
from oncofed.testing.ndpi import make_ndpi_slide
from oncofed.testing.wsi import SyntheticSlide, make_dicom_slide, make_slide

SIZE = {"width": 2048, "height": 1536}


@pytest.fixture(scope="session")
def slides(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SyntheticSlide]:
    """One small slide per supported format, with a pen mark and planted fake identifiers."""
    root = tmp_path_factory.mktemp("slides")
    return {
        "svs": make_slide(root / "s.svs", "svs", pen=True, seed=1, **SIZE),
        "tiff": make_slide(root / "s.tiff", "tiff", pen=True, seed=2, **SIZE),
        "ome": make_slide(root / "s.ome.tiff", "ome", pen=True, seed=3, **SIZE),
        "dicom": make_dicom_slide(root / "dicom", pen=True, seed=4, **SIZE),
        "ndpi": make_ndpi_slide(root / "s.ndpi", pen=True, seed=5, **SIZE),
        "mirax": make_mirax_slide(root / "s.mrxs", pen=True, seed=6, **SIZE),
    }


@pytest.fixture(params=["svs", "tiff", "ome", "dicom", "ndpi", "mirax"])
def slide(request: pytest.FixtureRequest, slides: dict[str, SyntheticSlide]) -> SyntheticSlide:
    """Each format in turn."""
    return slides[request.param]


def files_of(path: Path) -> list[Path]:
    """The file itself, the files of a DICOM-WSI folder, or a MIRAX .mrxs and its data folder."""
    if path.is_dir():
        return sorted(path.iterdir())
    companion = path.with_suffix("")
    if path.suffix == ".mrxs" and companion.is_dir():
        return [path, *sorted(companion.iterdir())]
    return [path]
