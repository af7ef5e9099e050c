"""``oncofed deid IN OUT``: the standalone de-identification tool (a typer sub-app).

Mount it into the main CLI with ``main.add_typer(oncofed.deid.cli.app)`` (no name: its ``deid``
command joins the parent group) or ``main.command("deid")(oncofed.deid.cli.deid)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from oncofed.deid.keys import load_key, node_key
from oncofed.deid.profile import build_profile
from oncofed.deid.run import deidentify_tree
from oncofed.deid.stage import DeidStage
from oncofed.errors import ConfigError, OncofedError

app = typer.Typer(help="De-identify DICOM files (DICOM PS3.15 Annex E).")


@app.callback()
def group() -> None:
    """De-identify DICOM files (DICOM PS3.15 Annex E)."""


def _safe_private(path: Path | None) -> list[tuple[str, int, int]]:
    """Read a JSON list of [private creator, group, element] safe private attributes."""
    if path is None:
        return []
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
        return [(str(c), int(str(g), 16), int(str(e), 16)) for c, g, e in rows]
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"{path}: expected a JSON list of [creator, group hex, element hex] ({exc})"
        ) from exc


@app.command("deid")
def deid(
    source: Annotated[Path, typer.Argument(help="input file or folder", exists=True)],
    output: Annotated[Path, typer.Argument(help="output folder (<study>/<series>/<sop>.dcm)")],
    profile: Annotated[str, typer.Option(help="confidentiality profile")] = "basic",
    option: Annotated[
        list[str] | None,
        typer.Option(help="profile option, repeatable, e.g. retain-dates, clean-pixel-data"),
    ] = None,
    key: Annotated[Path | None, typer.Option(help="key file (default <node-dir>/secrets)")] = None,
    node_dir: Annotated[Path, typer.Option(help="node home holding secrets/deid.key")] = Path("."),
    safe_private: Annotated[
        Path | None,
        typer.Option(help="JSON list of [creator, group, element] kept besides PS3.15 E.3.10-1"),
    ] = None,
    report: Annotated[
        Path | None, typer.Option(help="report path (default <OUT>.deid-report.json)")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="worker processes")] = 1,
) -> None:
    """De-identify every DICOM file under SOURCE into OUTPUT; quarantined files are reported."""
    try:
        built = build_profile(profile, option or (), _safe_private(safe_private))
        secret = load_key(key) if key is not None else node_key(node_dir)
        stage = DeidStage(key=secret, profile=built)
        result = deidentify_tree(stage, source, output, workers)
        target = report or output.with_name(output.name + ".deid-report.json")
        result.write(target)
    except OncofedError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{result.summary()}; report: {target}")
    for item in result.quarantined:
        typer.echo(f"quarantined {item['reason']}", err=True)
