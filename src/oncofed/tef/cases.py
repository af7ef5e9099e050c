"""A benchmark's cases at one node: which series or slides, their reference label, their pixels.

:func:`resolve_cases` runs the spec's cohort filter on the catalog, keeps the series of the
spec's modality (with a slide for ``wsi`` input) and attaches the most specific label of the
spec's kind (series over study over patient). Cases without a usable label are counted by
reason, never guessed. :func:`case_pixels` reads a case from the blob store and turns it into
what the algorithm's manifest asks for.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom.pixels.processing import apply_modality_lut
from skimage.transform import resize

from oncofed.catalog.filters import compile_filter, parse_filter
from oncofed.errors import OncofedError
from oncofed.node import Node
from oncofed.tef.algorithm import Manifest
from oncofed.tef.spec import BenchmarkSpec
from oncofed.ultrasound import crop_to_region
from oncofed.wsi.open import open_slide
from oncofed.wsi.tiling import read_tile, tile_grid


class CaseError(OncofedError):
    """A case's pixels could not be read or prepared; ``reason`` is its count label."""

    code = "case_error"

    def __init__(self, case: Case, reason: str, detail: str = "") -> None:
        super().__init__(f"case {case.case_id}: {reason}" + (f" ({detail})" if detail else ""))
        self.reason = reason


@dataclass(frozen=True)
class Case:
    """One series (or slide) with its reference label and subgroup values."""

    case_id: str
    """The catalog's (pseudonymous) series UID."""
    series_key: int
    patient: str
    label: str
    target: int
    """Index of ``label`` in the spec's classes."""
    subgroups: dict[str, str]
    slide_sha256: str | None = None


@dataclass
class CaseSet:
    """The cases of a benchmark at a node, and how many cohort series were left out, by why."""

    cases: list[Case]
    excluded: Counter[str] = field(default_factory=Counter)


# Series of the cohort with every label of the kind that applies to them, most specific first.
_CASES = """
WITH cohort AS (SELECT s.* FROM series s WHERE ({where}) AND s.modality = ?),
labels AS (
  SELECT c.series_key, l.value,
         CASE WHEN l.series_key IS NOT NULL THEN 3 WHEN l.study_key IS NOT NULL THEN 2 ELSE 1
         END AS level
  FROM cohort c JOIN label l ON l.kind = ? AND l.patient_key = c.patient_key
   AND l.collection_id = c.collection_id
   AND (l.study_key IS NULL OR l.study_key = c.study_key)
   AND (l.series_key IS NULL OR l.series_key = c.series_key)
),
best AS (
  SELECT series_key, list(DISTINCT value ORDER BY value) AS label_values FROM labels l
  WHERE level = (SELECT max(level) FROM labels m WHERE m.series_key = l.series_key)
  GROUP BY series_key
)
SELECT c.series_key, c.series_uid, c.collection_id, p.pseudo_id, c.manufacturer, c.model,
       c.sex, c.age_years, c.modality, b.label_values, sl.sha256
FROM cohort c
JOIN (SELECT DISTINCT patient_key, pseudo_id FROM patient) p ON p.patient_key = c.patient_key
LEFT JOIN best b ON b.series_key = c.series_key
LEFT JOIN (SELECT series_key, any_value(sha256) AS sha256 FROM slide GROUP BY series_key) sl
  ON sl.series_key = c.series_key
ORDER BY c.collection_id, c.series_uid
"""


def age_band(age: float | None) -> str:
    """Ten-year band like the catalog's age facet (``50-59``), or ``unknown``."""
    if age is None:
        return "unknown"
    low = int(age // 10) * 10
    return f"{low:02d}-{low + 9:02d}"


def resolve_cases(node: Node, spec: BenchmarkSpec) -> CaseSet:
    """The labelled cases of ``spec`` at ``node``; unusable series are counted by reason."""
    compiled = compile_filter(parse_filter(spec.cohort))
    rows = node.catalog.con.execute(
        _CASES.format(where=compiled.where),
        [*compiled.params, spec.input.modality, spec.label_kind],
    ).fetchall()
    classes = {value: index for index, value in enumerate(spec.classes)}
    result = CaseSet(cases=[])
    for key, uid, collection, patient, maker, model, sex, age, modality, values, slide in rows:
        if spec.input.kind == "wsi" and slide is None:
            result.excluded["no slide for the series"] += 1
        elif not values:
            result.excluded["no reference label"] += 1
        elif len(values) > 1:
            result.excluded["conflicting reference labels"] += 1
        elif values[0] not in classes:
            result.excluded["label value is not a benchmark class"] += 1
        else:
            subgroups = {
                "site": node.settings.name,
                "collection": collection,
                "manufacturer": maker or "unknown",
                "model": model or "unknown",
                "age_band": age_band(age),
                "sex": sex or "unknown",
                "modality": modality,
            }
            result.cases.append(
                Case(uid, int(key), patient, values[0], classes[values[0]], subgroups, slide)
            )
    return result


def case_pixels(node: Node, spec: BenchmarkSpec, manifest: Manifest, case: Case) -> NDArray[Any]:
    """The input batch for one case: ``[1, ...]`` for an image, ``[tiles, ...]`` for a slide."""
    if spec.input.kind == "wsi":
        images = list(_slide_tiles(node, spec, manifest, case))
        if not images:
            raise CaseError(case, "no tile with enough tissue")
    else:
        images = [_dicom_image(node, spec, manifest, case)]
    return np.stack([_to_tensor(image, manifest) for image in images])


def _dicom_image(
    node: Node, spec: BenchmarkSpec, manifest: Manifest, case: Case
) -> NDArray[np.float64]:
    digests = [
        str(r[0])
        for r in node.catalog.con.execute(
            "SELECT sha256 FROM instance WHERE series_key = ? ORDER BY sop_uid", [case.series_key]
        ).fetchall()
    ]
    if not digests:
        raise CaseError(case, "no stored instances")
    paths = [node.store.path_for(d) for d in digests]
    if len(paths) > 1:
        paths.sort(key=_instance_number)
    pick = 0 if spec.input.preprocessing.image == "first" else len(paths) // 2
    try:
        ds = pydicom.dcmread(paths[pick])
        pixels = np.asarray(apply_modality_lut(ds.pixel_array, ds), dtype=np.float64)
    except Exception as exc:  # pydicom raises many types for undecodable pixel data
        raise CaseError(case, "pixels not decodable", str(exc)) from exc
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        pixels = pixels[0 if spec.input.preprocessing.image == "first" else frames // 2]
    if int(ds.get("SamplesPerPixel", 1) or 1) == 1:
        pixels = pixels[..., None]
    if manifest.preprocessing.crop == "ultrasound-region":
        pixels = crop_to_region(pixels, ds)
    return _normalise(pixels, manifest)


def _instance_number(path: Path) -> tuple[int, str]:
    ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["InstanceNumber"])
    number = ds.get("InstanceNumber")
    return (int(number) if number is not None else 0, path.name)


def _normalise(pixels: NDArray[np.float64], manifest: Manifest) -> NDArray[np.float64]:
    """Window or normalise (per image), resize, and set the channel count; ``[H, W, C]``."""
    prep = manifest.preprocessing
    if prep.window is not None:
        center, width = prep.window
        pixels = np.clip((pixels - (center - width / 2)) / width, 0.0, 1.0)
    elif prep.normalise == "minmax":
        low, high = float(pixels.min()), float(pixels.max())
        pixels = (pixels - low) / (high - low) if high > low else np.zeros_like(pixels)
    elif prep.normalise == "zscore":
        std = float(pixels.std())
        pixels = (pixels - pixels.mean()) / std if std > 0 else np.zeros_like(pixels)
    elif prep.normalise == "unit":
        pixels = pixels / 255.0
    rows, cols = manifest.input.size
    if pixels.shape[:2] != (rows, cols):
        pixels = resize(  # type: ignore[no-untyped-call]
            pixels, (rows, cols), order=1, anti_aliasing=True, preserve_range=True
        )
    channels = manifest.input.channels
    if pixels.shape[2] != channels:
        pixels = (
            pixels.mean(axis=2, keepdims=True) if channels == 1 else np.repeat(pixels, 3, axis=2)
        )
    return pixels


def _slide_tiles(
    node: Node, spec: BenchmarkSpec, manifest: Manifest, case: Case
) -> Iterator[NDArray[np.float64]]:
    assert case.slide_sha256 is not None and manifest.preprocessing.mpp is not None
    selection = spec.input.preprocessing
    size = manifest.input.size[0]
    with open_slide(node.store.path_for(case.slide_sha256)) as slide:
        grid = tile_grid(
            slide, mpp=manifest.preprocessing.mpp, size=size, min_tissue=selection.min_tissue
        )
        most = np.argsort(-grid.tissue_fraction, kind="stable")[: selection.max_tiles]
        for index in sorted(most.tolist()):
            rgb = read_tile(slide, grid.spec, int(grid.x[index]), int(grid.y[index]))
            yield _normalise(np.asarray(rgb, dtype=np.float64), manifest)


def _to_tensor(image: NDArray[np.float64], manifest: Manifest) -> NDArray[Any]:
    """``[H, W, C]`` to the manifest's layout and dtype."""
    array = image.transpose(2, 0, 1) if manifest.input.layout == "NCHW" else image
    if manifest.input.dtype == "uint8":
        scaled = array * 255.0 if manifest.preprocessing.normalise != "none" else array
        return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return array.astype(manifest.input.dtype)
