"""A node home: config, catalog and blob store in one folder, and the operations on it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from oncofed.catalog.catalog import Catalog
from oncofed.catalog.idc import IdcImportResult, import_idc
from oncofed.catalog.writer import CollectionSpec, ensure_collection
from oncofed.config import CONFIG_FILE, NodeSettings, load_settings, write_settings
from oncofed.errors import ConfigError, IngestError
from oncofed.ingest.pipeline import Ingestor
from oncofed.ingest.report import IngestReport
from oncofed.ingest.stages import DeclaredDeidentified, DeidentifyStage
from oncofed.storage.blobstore import BlobStore


class Node:
    """An opened node home. Use :meth:`init` to create one, the constructor to open one."""

    def __init__(self, home: Path | str, *, read_only: bool = False) -> None:
        self.home = Path(home)
        self.settings = load_settings(self.home)
        self.store = BlobStore(self.home / self.settings.store_dir)
        self.catalog = Catalog(self.home / self.settings.catalog_file, read_only=read_only)
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
        write_settings(home, NodeSettings(name=name or home.resolve().name))
        return cls(home)

    def close(self) -> None:
        """Close the catalog."""
        self.catalog.close()

    def __enter__(self) -> Node:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

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
        stage = stage or self._default_stage(spec, already_deidentified)
        ensure_collection(self.catalog.con, spec)
        ingestor = Ingestor(
            self.catalog.con,
            self.store,
            stage,
            workers=self.settings.ingest_workers if workers is None else workers,
            show_progress=show_progress,
        )
        report = ingestor.run([Path(p) for p in paths], spec.collection_id)
        report.save(self.reports_dir)
        return report

    def _default_stage(self, spec: CollectionSpec, already_deidentified: bool) -> DeidentifyStage:
        if already_deidentified or spec.deidentified_at_source:
            return DeclaredDeidentified()
        raise IngestError(
            f"collection {spec.collection_id!r}: refusing to store data that is not de-identified;"
            " declare it already de-identified (public data) with already_deidentified=True"
            " / --already-deidentified"
        )

    def import_idc(self, *, force: bool = False) -> IdcImportResult:
        """Load the IDC reference metadata into the catalog."""
        return import_idc(self.catalog.con, force=force)
