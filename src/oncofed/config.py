"""Node settings: ``oncofed.toml`` in the node home, overridable by ``ONCOFED_*`` variables."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from oncofed.errors import ConfigError, NodeNotFoundError
from oncofed.storage.atomic import write_atomic

CONFIG_FILE = "oncofed.toml"
# What cohort search and AI need to survive de-identification: shifted dates, age and sex
# (manufacturer and model are outside Table E.1-1 and stay); free text, structured content and
# burned-in text are cleaned. Device identity (station names, serial numbers) is removed: it
# points at the hospital, and site-shift analysis needs only manufacturer and model.
RESEARCH_DEID_OPTIONS = (
    "retain-modified-dates",
    "retain-patient-characteristics",
    "clean-descriptors",
    "clean-structured-content",
    "clean-pixel-data",
)


class NodeSettings(BaseSettings):
    """What a node needs to know about itself; stored in ``<home>/oncofed.toml``."""

    model_config = SettingsConfigDict(env_prefix="ONCOFED_", extra="forbid")

    name: str = Field(description="Human name of the node, e.g. the hospital")
    catalog_file: str = Field(default="catalog.duckdb", description="Catalog path, node-relative")
    store_dir: str = Field(default="store", description="Blob store folder, node-relative")
    reports_dir: str = Field(default="reports", description="Ingest reports folder")
    ingest_workers: int = Field(default=0, ge=0, description="Worker processes; 0 = all cores")
    ingest_fsync: Literal["each", "batch"] = Field(
        default="each",
        description="Received instances: 'each' acknowledges one once its blob is fsynced;"
        " 'batch' acknowledges a C-STORE once written and fsyncs within 0.1 s (a power loss can"
        " lose those acknowledged in that window; a crash of the process cannot)",
    )
    min_count: int = Field(default=10, ge=1, description="Counts below this are shown as <k")
    count_rounding: int = Field(default=10, ge=1, description="Counts are rounded to this")
    count_noise_scale: float = Field(
        default=0.0, ge=0, description="Query-seeded noise on released counts (0 = off; 10 is good)"
    )
    queries_per_day: int = Field(
        default=500, ge=1, description="Federated queries a hub user may run here per UTC day"
    )
    evaluation_benchmarks: list[str] = Field(
        default_factory=list,
        description="Benchmark ids this node evaluates for its hub ('*': any); none by default",
    )
    oidc_issuer: str | None = Field(default=None, description="Trusted OpenID Connect issuer")
    oidc_audience: str | None = Field(default=None, description="Audience tokens must name")
    oidc_jwks_url: str | None = Field(
        default=None, description="JWKS URL (default: from the issuer's discovery document)"
    )
    oidc_roles_claim: str = Field(default="roles", description="Claim holding oncofed roles")
    oidc_user_claim: str = Field(default="sub", description="Claim naming the user")
    deid_options: list[str] = Field(
        default=list(RESEARCH_DEID_OPTIONS),
        description="PS3.15 Annex E options applied on ingest (see `oncofed deid --help`)",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment variables win over the values read from ``oncofed.toml``."""
        return env_settings, init_settings


def write_settings(home: Path, settings: NodeSettings) -> Path:
    """Write ``settings`` to the node home's config file atomically."""
    return write_atomic(home / CONFIG_FILE, tomli_w.dumps(settings.model_dump(exclude_none=True)))


def load_settings(home: Path) -> NodeSettings:
    """Read a node's settings; environment variables override the file."""
    path = home / CONFIG_FILE
    if not path.is_file():
        raise NodeNotFoundError(
            f"{home} is not an oncofed node (no {CONFIG_FILE}); run `oncofed node init {home}`"
        )
    try:
        values: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return NodeSettings(**values)
    except ValidationError as exc:
        raise ConfigError(f"{path}: invalid settings: {exc}") from exc
