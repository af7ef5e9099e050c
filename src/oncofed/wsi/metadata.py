"""Typed slide metadata for the node catalog's ``slide`` table."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from oncofed.wsi.open import Slide, open_slide

CHUNK = 8 << 20


@dataclass(frozen=True)
class SlideMetadata:
    """What the catalog records about one slide; ``slide_id`` is stable for the same bytes."""

    slide_id: str
    sha256: str
    size_bytes: int
    format: str
    vendor: str | None
    width: int
    height: int
    mpp_x: float | None
    mpp_y: float | None
    objective_power: float | None
    level_count: int
    level_dimensions: tuple[tuple[int, int], ...]
    level_downsamples: tuple[float, ...]
    tile_width: int
    tile_height: int
    compression: str | None
    associated_images: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples become lists)."""
        return asdict(self)


def slide_files(path: Path) -> list[Path]:
    """Every file of a slide: the file itself, a DICOM-WSI folder's files, or a MIRAX ``.mrxs``
    followed by the files of its data folder (the ``.mrxs`` alone is often empty)."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    companion = path.with_suffix("")
    if path.suffix.lower() == ".mrxs" and companion.is_dir():
        return [path, *sorted(p for p in companion.rglob("*") if p.is_file())]
    return [path]


def content_hash(path: Path) -> tuple[str, int]:
    """(sha256 hex, byte count) of a slide's files in name order (names hashed too when there
    are several)."""
    digest = hashlib.sha256()
    total = 0
    root = path if path.is_dir() else path.parent
    files = slide_files(path)
    for file in files:
        if len(files) > 1 or path.is_dir():
            digest.update(file.relative_to(root).as_posix().encode() + b"\0")
        with file.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
                total += len(chunk)
    return digest.hexdigest(), total


def slide_metadata(slide: Slide, *, sha256: str | None = None) -> SlideMetadata:
    """Metadata of an open slide; pass ``sha256`` when the caller already hashed the content."""
    if sha256 is None:
        sha256, size = content_hash(slide.path)
    else:
        size = sum(p.stat().st_size for p in slide_files(slide.path))
    base = slide.levels[0]
    return SlideMetadata(
        slide_id=sha256[:32],
        sha256=sha256,
        size_bytes=size,
        format=slide.format,
        vendor=slide.vendor,
        width=base.width,
        height=base.height,
        mpp_x=slide.mpp[0] if slide.mpp else None,
        mpp_y=slide.mpp[1] if slide.mpp else None,
        objective_power=slide.objective_power,
        level_count=len(slide.levels),
        level_dimensions=tuple((lv.width, lv.height) for lv in slide.levels),
        level_downsamples=tuple(lv.downsample for lv in slide.levels),
        tile_width=base.tile_width,
        tile_height=base.tile_height,
        compression=slide.compression,
        associated_images=slide.associated_names,
    )


def read_metadata(path: str | Path, *, sha256: str | None = None) -> SlideMetadata:
    """Open, check and describe the slide at ``path`` (raises a ``SlideError`` if unusable)."""
    with open_slide(path) as slide:
        return slide_metadata(slide, sha256=sha256)
