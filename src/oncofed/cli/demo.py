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
        "Prostate MR, all collections",
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
    federation: Annotated[
        bool, typer.Option(help="Start a hub and three more nodes; search across them.")
    ] = True,
    serve: Annotated[bool, typer.Option(help="Serve the node at the end.")] = True,
    serve_for: Annotated[float, typer.Option(help="Seconds to serve (0: until Ctrl-C).")] = 0,
) -> None:
    """Build a demo node (IDC index, de-identified synthetic cohort and slide), query it,
    then serve it (REST, DICOMweb, slide viewer) and show what each kind of caller sees."""
    from oncofed.cli.demo_serve import demo_tokens, serve_demo
    from oncofed.testing.dicom import generate_cohort  # only the demo needs the generators

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
        console.print(Rule("4. a whole-slide image"))
        slide_id = _ingest_demo_slide(node, home)
        console.print(Rule("5. cohort queries"))
        for title, where, facets in DEMO_QUERIES:
            console.print(f"[bold]{title}[/]")
            print_cohort(console, node.catalog.query(where, facets, facet_limit=8))
        tokens = demo_tokens(node, [SYNTHETIC.collection_id, SLIDES])
    console.print(f"Ingest reports (JSON) are in {home / 'reports'}.")
    console.print(f"Try: oncofed query --node {home} --where modality=SM --facets collection")
    if federation:
        from oncofed.cli.demo_federation import federation_demo

        console.print(Rule("6. federation: a hub and four nodes"))
        federation_demo(console, home / "federation", home, patients)
    if serve:
        console.print(Rule("7. the node server"))
        serve_demo(console, home, tokens, slide_id, serve_for)


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


SLIDES = "synthetic-biopsies"


def _ingest_demo_slide(node: Node, home: Path) -> str | None:
    """Generate a synthetic SVS slide with fake label/identifiers and ingest it."""
    from oncofed.ingest.slides import SlideInput
    from oncofed.testing.wsi import make_slide

    path = home / "synthetic-input-slides" / "FAKE-SLIDE-0001.svs"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        make_slide(path, "svs", seed=7)
    item = SlideInput(path, "FAKE-0001", "FAKE-CASE-1", "H&E", "PROSTATE")
    report = node.ingest_slides([item], SLIDES)
    print_ingest_report(console, report)
    row = node.catalog.con.execute(
        "SELECT slide_id, format, width, height, levels FROM slide WHERE collection_id = ?",
        [SLIDES],
    ).fetchone()
    if row is None:
        return None
    console.print(
        f"slide {row[0]}: {row[1]}, {row[2]}x{row[3]} px, {row[4]} levels; label and macro "
        "images removed, identifiers scrubbed"
    )
    return str(row[0])
