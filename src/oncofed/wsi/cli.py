"""``oncofed wsi`` commands: info, tiles, deid, convert. A slide that fails is reported, skipped."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from oncofed.errors import OncofedError
from oncofed.wsi.convert import convert_to_dicom
from oncofed.wsi.deid import deidentify_slide, output_suffix
from oncofed.wsi.metadata import read_metadata
from oncofed.wsi.open import detect_format, open_slide
from oncofed.wsi.tiling import tile_grid, write_tiles_parquet

app = typer.Typer(help="Whole-slide images: inspect, de-identify, tile.", no_args_is_help=True)

Slides = Annotated[list[Path], typer.Argument(help="Slide files (or DICOM-WSI folders).")]


def _each(slides: list[Path], work: Callable[[Path], str]) -> None:
    """Run ``work`` per slide; print its result or the error, exit 1 if any slide failed."""
    failed = 0
    for path in slides:
        try:
            typer.echo(work(path))
        except OncofedError as exc:
            failed += 1
            typer.echo(f"error [{exc.code}] {exc.message}", err=True)
    if failed:
        raise typer.Exit(1)


@app.command()
def info(slides: Slides) -> None:
    """Print each slide's metadata as one JSON line."""
    _each(slides, lambda p: json.dumps({"path": str(p), **read_metadata(p).to_dict()}))


@app.command()
def tiles(
    slides: Slides,
    mpp: Annotated[float, typer.Option(help="Tile resolution in micrometres per pixel.")] = 0.5,
    size: Annotated[int, typer.Option(help="Tile width and height in pixels.")] = 256,
    min_tissue: Annotated[float, typer.Option(help="Minimum tissue fraction per tile.")] = 0.5,
    out: Annotated[Path, typer.Option(help="Folder for <slide>.tiles.parquet files.")] = Path("."),
) -> None:
    """Detect tissue and write tile coordinates at MPP/SIZE as Parquet, one file per slide."""

    def run(path: Path) -> str:
        with open_slide(path) as slide:
            grid = tile_grid(slide, mpp=mpp, size=size, min_tissue=min_tissue)
        target = write_tiles_parquet(grid, out / f"{path.name}.tiles.parquet")
        return f"{path}: {len(grid)} tiles (level {grid.spec.level}) -> {target}"

    _each(slides, run)


@app.command()
def deid(
    slides: Slides,
    out: Annotated[Path, typer.Option(help="Folder for de-identified copies.")],
    identifier: Annotated[
        list[str] | None, typer.Option(help="Extra identifier that must not remain (repeatable).")
    ] = None,
    to_dicom: Annotated[
        bool, typer.Option("--to-dicom", help="Write DICOM-WSI folders whatever the input format.")
    ] = False,
) -> None:
    """Write de-identified, verified copies named by content hash (never the source filename)."""

    def run(path: Path) -> str:
        slide_id = read_metadata(path).slide_id
        suffix = "" if to_dicom else output_suffix(detect_format(path))
        target = out / f"{slide_id}{suffix}"
        report = deidentify_slide(
            path, target, identifiers=identifier or (), to_dicom=to_dicom, uid_source=slide_id
        )
        removed = ", ".join(report.removed_images) or "none"
        return f"{path}: removed images: {removed}; scrubbed {len(report.scrubbed)} -> {target}"

    _each(slides, run)


@app.command()
def convert(
    slides: Slides,
    out: Annotated[Path, typer.Option(help="Folder for DICOM-WSI folders (one per slide).")],
    associated: Annotated[
        bool, typer.Option(help="Include label and overview (macro) images.")
    ] = True,
) -> None:
    """Convert slides to DICOM-WSI folders named by content hash, keeping pyramid levels and JPEG
    tiles. The copies are not de-identified: use `deid --to-dicom` for that."""

    def run(path: Path) -> str:
        slide_id = read_metadata(path).slide_id
        files = convert_to_dicom(path, out / slide_id, uid_source=slide_id, associated=associated)
        return f"{path}: {len(files)} DICOM instances -> {out / slide_id}"

    _each(slides, run)
