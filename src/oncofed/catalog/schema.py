"""The catalog's versioned schema: an ordered list of migrations, applied in one transaction each.

Design notes:
- Patients, studies and series carry 64-bit surrogate keys, ``md5_number_upper`` of their natural
  key (DuckDB computes it in SQL for bulk imports, :func:`surrogate_key` in Python for ingest).
  Counting distinct integers is about twice as fast as counting distinct UID strings.
- ``series`` repeats the collection, patient key, sex and age of its patient/study so that a
  cohort query is a single scan of one table (denormalised on purpose; the writer keeps it true).
- No PRIMARY KEY constraints on the large tables: DuckDB's ART indexes slow bulk loads and
  updates; uniqueness is kept by the writers (look-ups of the keys a batch would add), and
  tests check it.
- Plain (non-unique) ART indexes serve the node server's point look-ups: a study, a series
  and its instances (WADO-RS), an instance by SOP Instance UID (duplicate check on receive),
  and the writer's look-ups of a batch's keys (``IN (SELECT unnest(?))`` uses them too).
  Without them each look-up scans its table (6 ms a series at 1M series, 1.2 ms an instance at
  1M instances, measured); with them 0.3-0.4 ms. A bulk load of 1M series costs ~0.3 s more.
  DuckDB uses them only when the value compared has the column's type (``?::UBIGINT``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

SCHEMA_VERSION_KEY = "schema_version"


def surrogate_key(natural_key: str) -> int:
    """The 64-bit key of a natural key; equals DuckDB's ``md5_number_upper(natural_key)``."""
    return int.from_bytes(hashlib.md5(natural_key.encode("utf-8")).digest()[:8], "little")


PATIENT_KEY_SEPARATOR = "\x1f"


def patient_natural_key(collection_id: str, patient_id: str) -> str:
    """Patients are scoped to their collection: the same ID in two collections is two people."""
    return f"{collection_id}{PATIENT_KEY_SEPARATOR}{patient_id}"


@dataclass(frozen=True)
class Migration:
    """One step of the schema, from ``version - 1`` to ``version``."""

    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "DICOM hierarchy: collection, patient, study, series, instance",
        (
            """CREATE TABLE collection (
                collection_id VARCHAR PRIMARY KEY,
                title VARCHAR NOT NULL,
                description VARCHAR,
                cancer_types VARCHAR[] NOT NULL DEFAULT [],
                body_parts VARCHAR[] NOT NULL DEFAULT [],
                license VARCHAR,
                tier TINYINT NOT NULL DEFAULT 1,
                data_holder VARCHAR,
                source VARCHAR NOT NULL,
                deidentified_at_source BOOLEAN NOT NULL DEFAULT FALSE,
                doi VARCHAR,
                created_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )""",
            """CREATE TABLE patient (
                patient_key UBIGINT NOT NULL,
                pseudo_id VARCHAR NOT NULL,
                collection_id VARCHAR NOT NULL,
                sex VARCHAR,
                birth_year_shifted SMALLINT,
                age_at_first_study DOUBLE
            )""",
            """CREATE TABLE study (
                study_key UBIGINT NOT NULL,
                study_uid VARCHAR NOT NULL,
                patient_key UBIGINT NOT NULL,
                collection_id VARCHAR NOT NULL,
                study_date DATE,
                description VARCHAR,
                age_years DOUBLE
            )""",
            """CREATE TABLE series (
                series_key UBIGINT NOT NULL,
                series_uid VARCHAR NOT NULL,
                study_key UBIGINT NOT NULL,
                patient_key UBIGINT NOT NULL,
                collection_id VARCHAR NOT NULL,
                modality VARCHAR,
                body_part VARCHAR,
                manufacturer VARCHAR,
                model VARCHAR,
                sop_class VARCHAR,
                transfer_syntax VARCHAR,
                description VARCHAR,
                sex VARCHAR,
                age_years DOUBLE,
                instance_count BIGINT NOT NULL DEFAULT 0,
                bytes BIGINT NOT NULL DEFAULT 0
            )""",
            """CREATE TABLE instance (
                sop_uid VARCHAR NOT NULL,
                series_key UBIGINT NOT NULL,
                sop_class VARCHAR,
                sha256 VARCHAR NOT NULL,
                size BIGINT NOT NULL,
                frames INTEGER,
                rows INTEGER,
                cols INTEGER,
                ingested_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )""",
        ),
    ),
    Migration(
        2,
        "AI and provenance: slide, label, clinical, reference imports",
        (
            """CREATE TABLE slide (
                slide_id VARCHAR PRIMARY KEY,
                series_key UBIGINT,
                patient_key UBIGINT,
                collection_id VARCHAR NOT NULL,
                vendor VARCHAR,
                format VARCHAR,
                mpp_x DOUBLE,
                mpp_y DOUBLE,
                magnification DOUBLE,
                width BIGINT,
                height BIGINT,
                levels INTEGER,
                stain VARCHAR,
                sha256 VARCHAR,
                bytes BIGINT
            )""",
            """CREATE TABLE label (
                collection_id VARCHAR NOT NULL,
                patient_key UBIGINT NOT NULL,
                study_key UBIGINT,
                series_key UBIGINT,
                kind VARCHAR NOT NULL,
                value VARCHAR NOT NULL,
                source VARCHAR,
                confidence DOUBLE
            )""",
            """CREATE TABLE clinical (
                patient_key UBIGINT NOT NULL,
                key VARCHAR NOT NULL,
                value_number DOUBLE,
                value_text VARCHAR
            )""",
            """CREATE TABLE reference_import (
                source VARCHAR NOT NULL,
                version VARCHAR NOT NULL,
                imported_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                collections INTEGER NOT NULL,
                series BIGINT NOT NULL
            )""",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        3,
        "append-only, hash-chained audit log",
        (
            """CREATE TABLE audit (
                seq BIGINT NOT NULL,
                time VARCHAR NOT NULL,
                actor VARCHAR NOT NULL,
                action VARCHAR NOT NULL,
                target VARCHAR NOT NULL,
                details VARCHAR NOT NULL,
                prev_hash VARCHAR NOT NULL,
                hash VARCHAR NOT NULL
            )""",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        4,
        "identities: users, hashed API tokens, access grants",
        (
            """CREATE TABLE app_user (
                user_id VARCHAR PRIMARY KEY,
                display_name VARCHAR NOT NULL,
                roles VARCHAR[] NOT NULL,
                created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                disabled BOOLEAN NOT NULL DEFAULT FALSE
            )""",
            """CREATE TABLE api_token (
                token_id VARCHAR PRIMARY KEY,
                user_id VARCHAR NOT NULL,
                secret_sha256 VARCHAR NOT NULL,
                scopes VARCHAR[] NOT NULL,
                created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                expires_at TIMESTAMPTZ NOT NULL,
                revoked_at TIMESTAMPTZ
            )""",
            """CREATE TABLE access_grant (
                grant_id VARCHAR PRIMARY KEY,
                user_id VARCHAR NOT NULL,
                collection_id VARCHAR NOT NULL,
                tier TINYINT NOT NULL,
                granted_by VARCHAR NOT NULL,
                created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                expires_at TIMESTAMPTZ NOT NULL,
                revoked_at TIMESTAMPTZ
            )""",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        5,
        "indexes for the node server's point look-ups",
        (
            "CREATE INDEX study_by_key ON study (study_key)",
            "CREATE INDEX series_by_key ON series (series_key)",
            "CREATE INDEX instance_by_series ON instance (series_key)",
            "CREATE INDEX instance_by_sop_uid ON instance (sop_uid)",
        ),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version
