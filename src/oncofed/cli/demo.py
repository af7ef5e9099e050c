"""`oncofed demo`: a node with the IDC reference index and a synthetic cohort, queried."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.rule import Rule
from rich.table import Table

from oncofed.catalog.writer import CollectionSpec
from oncofed.cli.render import print_cohort, print_ingest_report
from oncofed.config import CONFIG_FILE
from oncofed.node import Node

console = Console()

SYNTHETIC = CollectionSpec(
    "synthetic-demo",
    "Synthetic demo cohort (generated, not real patients)",
    description="Seeded synthetic CT/MR/MG/US studies, de-identified on ingest by the node.",
    cancer_types=("Breast Cancer", "Prostate Cancer", "Lung Cancer"),
    body_parts=("Breast", "Prostate", "Chest"),
    license="CC0 (synthetic)",
)

DEMO_QUERIES: tuple[tuple[str, dict[str, object], tuple[str, ...]], ...] = (
    (
        "Prostate MR across the IDC",
        {"cancer_type": ["Prostate"], "modality": ["MR"]},
        ("collection", "manufacturer"),
    ),
    (
        "Breast imaging, women 50-70",
        {"body_part": ["BREAST"], "sex": ["F"], "age": [50, 70]},
        ("modality", "age"),
    ),
    (
        "Everything synthetic",
        {"collection": [SYNTHETIC.collection_id]},
        ("modality", "body_part", "sex"),
    ),
)


def demo(
    home: Annotated[Path, typer.Argument(help="Folder for the demo node.")] = Path("demo-data"),
    patients: Annotated[int, typer.Option(help="Synthetic patients to generate.")] = 40,
) -> None:
    """Build a demo node (IDC index + synthetic cohort) and run cohort queries on it."""
    from oncofed.testing.dicom import generate_cohort  # only the demo needs the generator

    console.print(Rule("1. node"))
    node = Node(home) if (home / CONFIG_FILE).exists() else Node.init(home, name="demo-node")
    with node:
        console.print(f"node [bold]{node.settings.name}[/] at {node.home}")
        console.print(Rule("2. NCI Imaging Data Commons reference metadata"))
        result = node.import_idc()
        console.print(
            f"IDC {result.version}: {result.collections} collections, {result.patients:,} "
            f"patients, {result.series:,} series, {result.instances:,} instances"
            + (
                " (already imported)"
                if result.skipped_same_version
                else f" in {result.seconds:.1f} s"
            )
        )
        console.print(Rule("3. ingest a synthetic cohort"))
        manifest = generate_cohort(home / "synthetic-input", patients=patients, seed=7)
        console.print(
            f"generated {manifest.instances} DICOM files ({manifest.patients} fake patients) "
            f"in {home / 'synthetic-input'}"
        )
        report = node.ingest([home / "synthetic-input"], SYNTHETIC)
        print_ingest_report(console, report)
        _show_deidentified(node, manifest.files[0])
        again = node.ingest([home / "synthetic-input"], SYNTHETIC)
        console.print(f"ingest again: {again.summary()}")
        console.print(Rule("4. cohort queries"))
        for title, where, facets in DEMO_QUERIES:
            console.print(f"[bold]{title}[/]")
            print_cohort(console, node.catalog.query(where, facets, facet_limit=8))
    console.print(Rule("done"))
    console.print(f"Ingest reports (JSON) are in {home / 'reports'}.")
    console.print(f"Try: oncofed query --node {home} --where modality=SM --facets collection")


def _show_deidentified(node: Node, original: Path) -> None:
    """One input file next to what the node stored for it."""
    import pydicom

    before = pydicom.dcmread(original, stop_before_pixels=True)
    stored_uid = node.deid_stage().process(original.read_bytes(), str(original)).sop_instance_uid
    row = node.catalog.con.execute(
        "SELECT sha256 FROM instance WHERE sop_uid = ?", [stored_uid]
    ).fetchone()
    if row is None:
        return
    after = pydicom.dcmread(node.store.path_for(row[0]), stop_before_pixels=True)
    table = Table(title=f"de-identified on ingest: {original.name}")
    for column in ("attribute", "input file", "stored by the node"):
        table.add_column(column)
    for keyword in _SHOWN:
        table.add_row(keyword, str(before.get(keyword, "")), str(after.get(keyword, "(removed)")))
    console.print(table)


_SHOWN = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "StudyDate",
    "AccessionNumber",
    "ReferringPhysicianName",
    "InstitutionAddress",
    "StudyInstanceUID",
    "Manufacturer",
    "PatientIdentityRemoved",
)
