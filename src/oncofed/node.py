"""A node home: config, catalog and blob store in one folder, and the operations on it."""

from __future__ import annotations

import getpass
import hashlib
import uuid
from collections.abc import Sequence
from pathlib import Path

from oncofed.catalog.audit import AuditLog
from oncofed.catalog.catalog import Catalog
from oncofed.catalog.idc import IdcImportResult, import_idc
from oncofed.catalog.labels import (
    IdentifierMap,
    LabelError,
    LabelImportResult,
    LabelRow,
    Verbatim,
    import_labels,
    read_label_csv,
)
from oncofed.catalog.writer import CollectionSpec, ensure_collection
from oncofed.closing import Closing
from oncofed.config import CONFIG_FILE, NodeSettings, load_settings, write_settings
from oncofed.deid.keys import KEY_RELATIVE_PATH, Keyring, create_key, load_key
from oncofed.deid.profile import build_profile
from oncofed.deid.stage import DeidStage
from oncofed.errors import ConfigError, IngestError
from oncofed.ingest.pipeline import Ingestor
from oncofed.ingest.report import IngestReport
from oncofed.ingest.slides import SlideIngestor, SlideInput
from oncofed.ingest.stages import DeclaredDeidentified, DeidentifyStage
from oncofed.storage.blobstore import BlobStore
from oncofed.wsi.deid import deidentify_slide, output_suffix
from oncofed.wsi.metadata import read_metadata
from oncofed.wsi.open import detect_format

AUDIT_HEAD_FILE = "audit.head"


class Node(Closing):
    """An opened node home. Use :meth:`init` to create one, the constructor to open one."""

    def __init__(self, home: Path | str, *, read_only: bool = False) -> None:
        self.home = Path(home)
        self.settings = load_settings(self.home)
        self.store = BlobStore(self.home / self.settings.store_dir)
        self.catalog = Catalog(self.home / self.settings.catalog_file, read_only=read_only)
        self.audit = AuditLog(self.catalog.con, self.home / AUDIT_HEAD_FILE)
        self.actor = f"cli:{getpass.getuser()}"
        if not read_only:
            self.store.create()
            self.store.remove_stale_temporaries()

    @classmethod
    def init(cls, home: Path | str, *, name: str | None = None) -> Node:
        """Create a node home (config file, catalog, object store) and open it."""
        home = Path(home)
        if (home / CONFIG_FILE).exists():
            raise ConfigError(f"{home} is already an oncofed node ({CONFIG_FILE} exists)")
        if home.exists() and not home.is_dir():
            raise ConfigError(f"{home} exists and is not a folder")
        home.mkdir(parents=True, exist_ok=True)
        settings = NodeSettings(name=name or home.resolve().name)
        build_profile("basic", settings.deid_options)  # fail before anything is written
        create_key(home / KEY_RELATIVE_PATH)
        write_settings(home, settings)
        return cls(home)

    def close(self) -> None:
        """Close the catalog."""
        self.catalog.close()

    @property
    def reports_dir(self) -> Path:
        """Where ingest reports are written."""
        return self.home / self.settings.reports_dir

    def ingest(
        self,
        paths: Sequence[Path | str],
        collection: str | CollectionSpec,
        *,
        stage: DeidentifyStage | None = None,
        already_deidentified: bool = False,
        workers: int | None = None,
        show_progress: bool | None = None,
    ) -> IngestReport:
        """Ingest DICOM files/folders into a collection; bad files are reported, not fatal."""
        spec = (
            collection
            if isinstance(collection, CollectionSpec)
            else CollectionSpec(collection, collection, deidentified_at_source=already_deidentified)
        )
        stage = stage or self.stage_for(spec, already_deidentified=already_deidentified)
        self.ensure_collection(spec)
        ingestor = Ingestor(
            self.catalog.con,
            self.store,
            stage,
            workers=self.settings.ingest_workers if workers is None else workers,
            show_progress=show_progress,
        )
        report = ingestor.run([Path(p) for p in paths], spec.collection_id)
        self.record_ingest(report)
        return report

    def record_ingest(self, report: IngestReport, actor: str | None = None) -> None:
        """Save an ingest report and audit it (as ``actor``, default this node's CLI user)."""
        saved = report.save(self.reports_dir)
        self.audit.append(
            actor or self.actor,
            "ingest",
            f"collection/{report.collection}",
            {"report": saved.name, "stage": report.stage, "added": report.added,
             "failed": len(report.failed), "already_present": report.already_present},
        )  # fmt: skip

    def ingest_slides(
        self, slides: Sequence[SlideInput], collection: str | CollectionSpec
    ) -> IngestReport:
        """De-identify and store whole-slide images, catalogued with their patients."""
        spec = (
            collection
            if isinstance(collection, CollectionSpec)
            else CollectionSpec(collection, collection)
        )
        if self._declared_deidentified(spec.collection_id):
            raise IngestError(
                f"collection {spec.collection_id!r} is declared already de-identified;"
                " slides are de-identified by the node, so use another collection"
            )
        self.ensure_collection(spec)
        key = load_key(self.home / KEY_RELATIVE_PATH)
        report = SlideIngestor(self.catalog.con, self.store, key).run(slides, spec.collection_id)
        self.record_ingest(report)
        return report

    def ensure_collection(self, spec: CollectionSpec) -> None:
        """Create the collection if it does not exist yet."""
        ensure_collection(self.catalog.con, spec)

    def stage_for(
        self, spec: CollectionSpec, *, already_deidentified: bool = False
    ) -> DeidentifyStage:
        """De-identify with the node's key, unless the data is declared de-identified already."""
        declared = self._declared_deidentified(spec.collection_id)
        if already_deidentified or spec.deidentified_at_source:
            if declared is False:
                raise IngestError(
                    f"collection {spec.collection_id!r} holds data de-identified by this node;"
                    " it cannot also take data declared already de-identified"
                )
            return DeclaredDeidentified()
        if declared:
            raise IngestError(
                f"collection {spec.collection_id!r} is declared already de-identified (public"
                " data); ingest into it with --already-deidentified, or use another collection"
            )
        return self.deid_stage()

    def deid_stage(self) -> DeidStage:
        """The node's de-identification stage: its secret key and its configured options."""
        key = load_key(self.home / KEY_RELATIVE_PATH)
        return DeidStage(key=key, profile=build_profile("basic", self.settings.deid_options))

    def _declared_deidentified(self, collection_id: str) -> bool | None:
        row = self.catalog.con.execute(
            "SELECT deidentified_at_source FROM collection WHERE collection_id = ?",
            [collection_id],
        ).fetchone()
        return None if row is None else bool(row[0])

    def import_idc(self, *, force: bool = False) -> IdcImportResult:
        """Load the IDC reference metadata into the catalog."""
        result = import_idc(self.catalog.con, force=force)
        if not result.skipped_same_version:
            details = {"version": result.version, "series": result.series}
            self.audit.append(self.actor, "import", "reference/idc", details)
        return result

    def import_labels(
        self, csv_path: Path | str, collection: str, *, strict: bool = False
    ) -> LabelImportResult:
        """Import reference labels keyed by the hospital's own identifiers (see catalog.labels).

        Identifiers are mapped with this node's key exactly as ingest mapped them; slide rows
        name the original slide file (relative to the CSV), identified by de-identifying it
        again. Rows that match nothing are reported; ``strict`` refuses the file instead.
        """
        csv_path = Path(csv_path)
        declared = self._declared_deidentified(collection)
        if declared is None:
            raise LabelError(f"no collection {collection!r} on this node")
        rows = read_label_csv(csv_path)
        keys = Verbatim() if declared else Keyring(load_key(self.home / KEY_RELATIVE_PATH))
        identifiers = IdentifierMap(
            collection_id=collection,
            keys=keys,
            retain_uids=declared or "retain-uids" in self.settings.deid_options,
            slide_ids=self._slide_ids(csv_path.parent, rows),
        )
        result = import_labels(self.catalog.con, rows, identifiers, strict=strict)
        self.audit.append(
            self.actor,
            "import-labels",
            f"collection/{collection}",
            {"file_sha256": _sha256_of(csv_path), "rows": result.rows, "added": result.added,
             "updated": result.updated, "unchanged": result.unchanged,
             "unmatched": len(result.unmatched)},
        )  # fmt: skip
        return result

    def _slide_ids(self, folder: Path, rows: list[LabelRow]) -> dict[int, str]:
        """Line → catalog slide id of each row naming a slide file that exists.

        A slide's catalog id is the hash of its de-identified copy, so the copy is made again
        (same identifiers as slide ingest) into the store's tmp/ and removed.
        """
        found: dict[tuple[str, str, str], str] = {}
        out: dict[int, str] = {}
        for row in rows:
            path = (folder / row.slide).resolve()
            if not row.slide or not path.exists():
                continue
            key = (str(path), row.patient_id, row.study_id)
            if key not in found:
                suffix = output_suffix(detect_format(path))
                temporary = self.store.tmp / f"{uuid.uuid4().hex}.part{suffix}"
                identifiers = [v for v in (row.patient_id, row.study_id, path.stem) if v]
                try:
                    deidentify_slide(path, temporary, identifiers=identifiers)
                    found[key] = read_metadata(temporary).slide_id
                finally:
                    temporary.unlink(missing_ok=True)
            out[row.line] = found[key]
        return out


def _sha256_of(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
