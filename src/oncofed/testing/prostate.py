"""Seeded synthetic prostate needle-biopsy slides with learnable Gleason-pattern signal.

Each slide holds a few curved, tapering biopsy cores. Along the cores, segments of tissue show
one growth pattern each, drawn as histology-inspired textures: benign glands (large, infolded,
with open lumens, a dark basal cell layer and pale luminal cells), Gleason pattern 3 (many small
discrete glands with small lumens), 4 (fused masses with cribriform lumens and poorly formed
glands) and 5 (solid sheets without lumens, single cells in the stroma). The slide's Gleason score
and ISUP grade group follow from the patterns' areas by the ISUP 2014 biopsy rules.

Textures are made as haematoxylin and eosin concentration maps and coloured with Beer-Lambert
optical densities; sites differ as labs and scanners do (stain vectors and strengths, glass
brightness, optical blur, JPEG quality), so a model trained at one site loses accuracy at another
unless it handles stain. Slides are written through :func:`oncofed.testing.wsi.write_slide` one
tile at a time, so a 40,000 x 40,000 slide never sits in memory. Everything is synthetic: patient
identifiers are obviously fake.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import gaussian_filter

from oncofed.testing.sites import seeded_sites
from oncofed.testing.slide_parts import BACKGROUND, FakeIdentifiers, SyntheticSlide, jpeg_encode
from oncofed.testing.wsi import Kind, write_slide

__all__ = [
    "SITES",
    "ProstateCohort",
    "ProstateSlide",
    "StainSite",
    "TextureBank",
    "generate_prostate",
    "gleason_score",
    "grade_group",
    "make_prostate_slide",
]

Float = NDArray[np.float32]
RGB = NDArray[np.uint8]

TILE = 256
"""Side of the stored JPEG tiles and of the pattern textures, level-0 pixels."""
VARIANTS = 6
"""Textures per pattern; neighbouring 256-pixel blocks pick different ones."""
BENIGN = 1
PATTERN_CODES = (BENIGN, 3, 4, 5)
"""Codes of the pattern map: 0 is glass, 1 benign, 3-5 Gleason patterns."""
SEGMENTS_PER_CORE = 6
MINOR_SHARE = 0.05
"""Biopsy rule: a lower-grade secondary pattern below this share of tumour is not graded."""
COMBINATIONS: dict[int, tuple[tuple[int, int], ...]] = {
    1: ((3, 3),),
    2: ((3, 4),),
    3: ((4, 3),),
    4: ((4, 4), (3, 5), (5, 3)),
    5: ((4, 5), (5, 4), (5, 5)),
}
"""Primary+secondary patterns of each ISUP grade group (1-5) that the generator draws."""


@dataclass(frozen=True)
class StainSite:
    """One lab and scanner: H&E optical-density vectors and strengths, glass, blur, JPEG."""

    name: str
    hematoxylin: tuple[float, float, float]
    eosin: tuple[float, float, float]
    hematoxylin_strength: float
    eosin_strength: float
    glass: float
    """Brightness of empty glass, 0-255."""
    blur: float
    """Gaussian sigma of the scanner's optics, level-0 pixels."""
    quality: int

    def stain_matrix(self) -> NDArray[np.float64]:
        """Rows: unit H and E optical-density vectors (RGB)."""
        matrix = np.array([self.hematoxylin, self.eosin], np.float64)
        return np.asarray(matrix / np.linalg.norm(matrix, axis=1, keepdims=True), np.float64)


SITES: dict[str, StainSite] = {
    site.name: site
    for site in (
        StainSite("site-a", (0.65, 0.70, 0.29), (0.07, 0.99, 0.11), 1.0, 1.0, 243, 0.5, 85),
        StainSite("site-b", (0.45, 0.72, 0.53), (0.32, 0.86, 0.40), 1.6, 0.9, 236, 1.2, 70),
        StainSite("site-c", (0.74, 0.64, 0.20), (0.03, 0.86, 0.51), 0.55, 1.5, 248, 0.8, 60),
    )
}
"""Sites: a reference H&E lab (a), a haematoxylin-heavy blue lab with a soft scanner (b) and a
pale, eosin-heavy lab with strong JPEG compression (c)."""


def grade_group(primary: int, secondary: int) -> int:
    """ISUP 2014 grade group (1-5) of a Gleason score ``primary+secondary``."""
    if not (3 <= primary <= 5 and 3 <= secondary <= 5):
        raise ValueError(f"Gleason {primary}+{secondary}: patterns graded on biopsy are 3-5")
    total = primary + secondary
    if total <= 6:
        return 1
    if total == 7:
        return 2 if primary == 3 else 3
    return 4 if total == 8 else 5


def gleason_score(areas: Mapping[int, float]) -> tuple[int, int] | None:
    """Biopsy Gleason score from pattern areas (codes 3-5; others ignored); ``None`` if benign.

    Primary: the most extensive pattern. Secondary: the highest-grade other pattern of any
    extent if it is higher; else the most extensive lower one if it reaches 5% of the tumour;
    else the primary again.
    """
    tumour = {code: area for code, area in areas.items() if code in (3, 4, 5) and area > 0}
    if not tumour:
        return None
    primary = max(tumour, key=lambda code: (tumour[code], code))
    others = {code: area for code, area in tumour.items() if code != primary}
    higher = [code for code in others if code > primary]
    if higher:
        return primary, max(higher)
    total = sum(tumour.values())
    lower = [code for code, area in others.items() if area >= MINOR_SHARE * total]
    if lower:
        return primary, max(lower, key=lambda code: others[code])
    return primary, primary


@dataclass(frozen=True)
class ProstateSlide:
    """One generated biopsy slide and its truth."""

    slide: SyntheticSlide
    patient_id: str
    site: str
    isup_grade: int
    gleason: tuple[int, int] | None
    pattern_areas: dict[int, float] = field(repr=False)
    """Share of the slide's tissue per pattern code (1 benign, 3-5)."""

    @property
    def path(self) -> Path:
        """The slide file."""
        return self.slide.path

    @property
    def malignant(self) -> int:
        """1 when any Gleason pattern is present."""
        return int(self.isup_grade > 0)


@dataclass(frozen=True)
class ProstateCohort:
    """What :func:`generate_prostate` wrote."""

    slides: list[ProstateSlide]
    sample_sheet: Path
    """``path,patient_id,stain,body_part`` rows for ``Node.ingest_slides``."""
    labels_csv: Path
    """``patient_id,slide,kind,value`` rows (isup_grade, gleason, malignant) for
    ``Node.import_labels``."""


def generate_prostate(
    out_dir: Path,
    *,
    slides_per_site: int = 12,
    sites: Sequence[str] = ("site-a",),
    seed: int = 0,
    width: int = 2048,
    height: int = 1024,
    mpp: float = 0.25,
    cores: int = 2,
) -> ProstateCohort:
    """Write ``slides_per_site`` SVS slides per site under ``out_dir/slides/<site>/``, the
    sample sheet and the label CSV; grade groups 0-5 are spread evenly over each site's slides.
    The same arguments write byte-identical files."""
    slides: list[ProstateSlide] = []
    for site, rng in seeded_sites(sites, SITES, seed):
        bank = TextureBank(SITES[site], seed=seed)
        grades = rng.permutation([g % 6 for g in range(slides_per_site)])
        folder = out_dir / "slides" / site
        folder.mkdir(parents=True, exist_ok=True)
        for number, grade in enumerate(grades, start=1):
            patient = f"FAKE-PROS-{site[-1].upper()}{number:04d}"
            slides.append(
                _write(
                    folder / f"{patient}.svs",
                    bank,
                    int(grade),
                    patient,
                    width=width,
                    height=height,
                    mpp=mpp,
                    cores=cores,
                    seed=int(rng.integers(2**31)),
                )
            )
    return ProstateCohort(slides, *_write_sheets(out_dir, slides))


def make_prostate_slide(
    path: Path,
    *,
    isup_grade: int,
    site: str = "site-a",
    width: int = 40_000,
    height: int = 40_000,
    mpp: float = 0.25,
    cores: int | None = None,
    seed: int = 0,
    kind: Kind = "svs",
) -> ProstateSlide:
    """Write one biopsy slide of the given grade group (any size: drawn tile by tile)."""
    if site not in SITES:
        raise ValueError(f"unknown site {site!r}; choose from {sorted(SITES)}")
    count = cores if cores is not None else max(2, round(height / 9000))
    bank = TextureBank(SITES[site], seed=seed)
    patient = f"FAKE-PROS-{site[-1].upper()}9999"
    return _write(path, bank, isup_grade, patient, width=width, height=height, mpp=mpp,
                  cores=count, seed=seed, kind=kind)  # fmt: skip


def _write(
    path: Path,
    bank: TextureBank,
    grade: int,
    patient: str,
    *,
    width: int,
    height: int,
    mpp: float,
    cores: int,
    seed: int,
    kind: Kind = "svs",
) -> ProstateSlide:
    if not 0 <= grade <= 5:
        raise ValueError(f"ISUP grade group {grade} is not 0-5")
    rng = np.random.default_rng(seed)
    downsample = max(1, math.ceil(max(width, height) / 1024))
    shape = (math.ceil(height / downsample), math.ceil(width / downsample))
    tissue, position = _cores(shape, cores, rng)
    patterns, areas, gleason = _patterns(tissue, position, grade, cores, rng)
    identifiers = FakeIdentifiers(
        patient_name=f"FAKENAME^BX{patient[-5:]}",
        patient_id=patient,
        slide_label=f"FAKEBX-{patient[-5:]}",
        filename=path.name,
        scanner_id=f"FAKE-SCANNER-{bank.site.name.upper()}",
    )
    painter = BiopsyPainter(patterns, downsample, bank, seed)
    slide = write_slide(path, kind, painter, width=width, height=height, mpp=mpp,
                        identifiers=identifiers)  # fmt: skip
    return ProstateSlide(slide, patient, bank.site.name, grade, gleason, areas)


def _write_sheets(out_dir: Path, slides: Sequence[ProstateSlide]) -> tuple[Path, Path]:
    """Both files name slides by their path relative to ``out_dir``, where they are written."""
    sheet, labels = out_dir / "sample_sheet.csv", out_dir / "labels.csv"
    with sheet.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "patient_id", "stain", "body_part"])
        for item in slides:
            relative = item.path.relative_to(out_dir).as_posix()
            writer.writerow([relative, item.patient_id, "HE", "PROSTATE"])
    with labels.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["patient_id", "slide", "kind", "value"])
        for item in slides:
            relative = item.path.relative_to(out_dir).as_posix()
            writer.writerow([item.patient_id, relative, "isup_grade", item.isup_grade])
            writer.writerow([item.patient_id, relative, "malignant", item.malignant])
            if item.gleason is not None:
                gleason = "{}+{}".format(*item.gleason)
                writer.writerow([item.patient_id, relative, "gleason", gleason])
    return sheet, labels


def _cores(
    shape: tuple[int, int], count: int, rng: np.random.Generator
) -> tuple[NDArray[np.bool_], Float]:
    """Curved, tapering horizontal cores (some broken in two) on a map of ``shape``; returns
    the tissue mask and each pixel's position along its core (0-1, -1 off tissue)."""
    rows, cols = shape
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    tissue = np.zeros(shape, bool)
    position = np.full(shape, -1.0, np.float32)
    band = rows / count
    for index in range(count):
        start, end = rng.uniform(0.04, 0.12) * cols, rng.uniform(0.88, 0.96) * cols
        middle = (index + 0.5) * band + rng.uniform(-0.08, 0.08) * band
        half = rng.uniform(0.17, 0.23) * band
        bend, phase = rng.uniform(0.05, 0.15) * band, rng.uniform(0, 2 * np.pi)
        along = (xx - start) / (end - start)
        centre = middle + bend * np.sin(2 * np.pi * along * rng.uniform(0.6, 1.4) + phase)
        taper = np.sqrt(np.clip(1 - np.abs(2 * along - 1) ** 6, 0, 1))
        wobble = 1 + 0.06 * np.sin(along * rng.uniform(20, 40) + phase)
        inside = (np.abs(yy - centre) <= half * taper * wobble) & (along >= 0) & (along <= 1)
        if rng.random() < 0.4:  # a fragmented core
            gap = rng.uniform(0.3, 0.7)
            inside &= np.abs(along - gap) > 0.012
        tissue |= inside
        position[inside] = index + along[inside]
    return tissue, position


def _patterns(
    tissue: NDArray[np.bool_],
    position: Float,
    grade: int,
    cores: int,
    rng: np.random.Generator,
) -> tuple[NDArray[np.uint8], dict[int, float], tuple[int, int] | None]:
    """A pattern code per map pixel whose areas grade as ``grade`` (redrawn until they do)."""
    segments = cores * SEGMENTS_PER_CORE
    edges = np.floor(np.clip(position, 0, cores - 1e-6) * SEGMENTS_PER_CORE).astype(np.int64)
    for _ in range(50):
        codes = np.full(segments, BENIGN, np.uint8)
        if grade > 0:
            primary, secondary = COMBINATIONS[grade][int(rng.integers(len(COMBINATIONS[grade])))]
            tumour = rng.permutation(segments)[: max(2, round(rng.uniform(0.35, 0.75) * segments))]
            major = math.ceil(rng.uniform(0.6, 0.8) * len(tumour))
            codes[tumour[:major]] = primary
            codes[tumour[major:]] = secondary
        patterns = np.where(tissue, codes[edges], 0).astype(np.uint8)
        total = float(tissue.sum())
        areas = {code: float((patterns == code).sum()) / total for code in PATTERN_CODES}
        gleason = gleason_score(areas)
        found = 0 if gleason is None else grade_group(*gleason)
        if found == grade:
            return patterns, areas, gleason
    raise ValueError(f"could not lay out grade group {grade} on {cores} core(s)")


class TextureBank:
    """Pattern textures of one site, coloured, blurred and averaged down for every pyramid
    level; textures are seeded by ``seed`` alone, so sites differ only in stain and scanner."""

    def __init__(self, site: StainSite, *, seed: int) -> None:
        self.site = site
        rng = np.random.default_rng([seed, 7919])
        glass = [_glass(rng, site.glass) for _ in range(VARIANTS)]
        coloured = [glass] + [
            [self._colour(*DRAW[code](rng)) for _ in range(VARIANTS)] for code in PATTERN_CODES
        ]
        self.levels: dict[int, RGB] = {1: np.stack([np.stack(v) for v in coloured])}

    def _colour(self, hematoxylin: Float, eosin: Float) -> RGB:
        site = self.site
        stains = site.stain_matrix()
        density = (
            hematoxylin[..., None] * site.hematoxylin_strength * stains[0]
            + eosin[..., None] * site.eosin_strength * stains[1]
        )
        rgb = site.glass * np.exp(-density)
        if site.blur > 0:
            rgb = gaussian_filter(rgb, sigma=(site.blur, site.blur, 0), mode="wrap")
        return np.asarray(np.clip(np.rint(rgb), 0, 255), np.uint8)

    def at(self, downsample: int) -> RGB:
        """``[pattern, variant, y, x, rgb]`` textures averaged over ``downsample`` pixels."""
        if downsample not in self.levels:
            side = max(1, TILE // downsample)
            full = self.levels[1].astype(np.float32)
            shape = (*full.shape[:2], side, TILE // side, side, TILE // side, 3)
            self.levels[downsample] = np.rint(full.reshape(shape).mean(axis=(3, 5))).astype(
                np.uint8
            )
        return self.levels[downsample]


class BiopsyPainter:
    """Draws any tile of any pyramid level from the pattern map and a site's texture bank
    (the :class:`oncofed.testing.slide_parts.Painter` the slide writers take)."""

    tile = TILE

    def __init__(
        self, patterns: NDArray[np.uint8], downsample: int, bank: TextureBank, seed: int
    ) -> None:
        self.patterns, self.ds, self.bank, self.seed = patterns, downsample, bank, seed
        self.quality = bank.site.quality
        self.tissue = patterns > 0
        self.pen = np.zeros_like(self.tissue)
        self.pen_colour = np.zeros(3, np.uint8)
        lookup = np.zeros(256, np.int64)
        lookup[list(PATTERN_CODES)] = np.arange(1, len(PATTERN_CODES) + 1)
        self.bank_index = lookup[patterns]
        self._glass: dict[int, bytes] = {}

    def _variant(self, block_x: NDArray[np.int64], block_y: NDArray[np.int64]) -> NDArray[np.int64]:
        mixed = (block_x * 7919 + block_y * 104729 + self.seed * 31) % 2_147_483_647
        return np.asarray((mixed * 48271 % 2_147_483_647) % VARIANTS, np.int64)

    def render(self, downsample: int, x: int, y: int) -> RGB:
        """Tile of a level with the given downsample whose top-left is (x, y) in level pixels."""
        textures = self.bank.at(downsample)
        side = textures.shape[2]
        level = np.arange(TILE)
        ys0, xs0 = (y + level) * downsample, (x + level) * downsample
        rows = np.minimum(ys0 // self.ds, self.patterns.shape[0] - 1)
        cols = np.minimum(xs0 // self.ds, self.patterns.shape[1] - 1)
        index = self.bank_index[np.ix_(rows, cols)]
        variant = self._variant((xs0 // TILE)[None, :], (ys0 // TILE)[:, None])
        rows_in, cols_in = ((y + level) % side)[:, None], ((x + level) % side)[None, :]
        return np.asarray(textures[index, variant, rows_in, cols_in], np.uint8)

    def encoded(self, downsample: int, x: int, y: int) -> bytes:
        """JPEG bytes of a tile; tiles of bare glass are encoded once per level."""
        y0, x0 = (y * downsample) // self.ds, (x * downsample) // self.ds
        y1 = min(((y + TILE) * downsample) // self.ds + 1, self.tissue.shape[0])
        x1 = min(((x + TILE) * downsample) // self.ds + 1, self.tissue.shape[1])
        if not self.tissue[y0:y1, x0:x1].any():
            if downsample not in self._glass:
                self._glass[downsample] = jpeg_encode(self.render(downsample, x, y), self.quality)
            return self._glass[downsample]
        return jpeg_encode(self.render(downsample, x, y), self.quality)


# Concentration maps (haematoxylin, eosin) of the patterns, TILE x TILE, in optical density.


Window = tuple[NDArray[np.intp], NDArray[np.intp]]


def _window(cy: float, cx: float, reach: float) -> tuple[Window, Float, Float]:
    """Index of the square around (cy, cx) on the torus (textures tile without seams), with
    each pixel's distance and angle from the centre."""
    offsets = np.arange(-math.ceil(reach), math.ceil(reach) + 1)
    rows, cols = (round(cy) + offsets) % TILE, (round(cx) + offsets) % TILE
    dy = (offsets + round(cy) - cy).astype(np.float32)[:, None]
    dx = (offsets + round(cx) - cx).astype(np.float32)[None, :]
    window = (rows[:, None], cols[None, :])
    return window, np.hypot(dy, dx), np.arctan2(dy, dx)


def _stroma(rng: np.random.Generator) -> tuple[Float, Float]:
    """Fibromuscular stroma: fibrous eosin with sparse elongated nuclei."""
    fibres = gaussian_filter(rng.normal(0, 1, (TILE, TILE)), sigma=(1.0, 5.0), mode="wrap")
    eosin = (0.55 + 0.9 * fibres).astype(np.float32)
    hematoxylin = np.full((TILE, TILE), 0.04, np.float32)
    for cy, cx in rng.uniform(0, TILE, (14, 2)):
        window, distance, angle = _window(cy, cx, 6)
        spindle = (distance * np.sin(angle) / 2.0) ** 2 + (distance * np.cos(angle) / 6.0) ** 2
        hematoxylin[window] = np.where(spindle <= 1, 0.9, hematoxylin[window])
    return hematoxylin, eosin


def _nuclei(
    hematoxylin: Float,
    where: NDArray[np.bool_],
    count: int,
    radius: float,
    rng: np.random.Generator,
) -> None:
    """Dark round nuclei at random points of ``where``."""
    points = np.argwhere(where)
    if not len(points):
        return
    for cy, cx in points[rng.integers(len(points), size=count)]:
        window, distance, _ = _window(float(cy), float(cx), radius)
        hematoxylin[window] = np.where(distance <= radius, 1.05, hematoxylin[window])


def _centres(count: int, spacing: float, rng: np.random.Generator) -> list[tuple[float, float]]:
    """Up to ``count`` points on the torus at least ``spacing`` apart (dart throwing)."""
    found: list[tuple[float, float]] = []
    for _ in range(count * 30):
        cy, cx = rng.uniform(0, TILE, 2)
        if all(_torus(cy - y, cx - x) >= spacing for y, x in found):
            found.append((float(cy), float(cx)))
            if len(found) == count:
                break
    return found


def _torus(dy: float, dx: float) -> float:
    dy = (dy + TILE / 2) % TILE - TILE / 2
    dx = (dx + TILE / 2) % TILE - TILE / 2
    return math.hypot(dy, dx)


def _set(
    image: Float, window: Window, where: NDArray[np.bool_], value: float
) -> None:  # fmt: skip
    image[window] = np.where(where, value, image[window])


def _benign(rng: np.random.Generator) -> tuple[Float, Float]:
    """Large infolded glands: open lumen, pale luminal cells, dark basal layer."""
    hematoxylin, eosin = _stroma(rng)
    epithelium = np.zeros((TILE, TILE), bool)
    for cy, cx in _centres(4, 115, rng):
        radius = rng.uniform(40, 56)
        window, distance, angle = _window(cy, cx, radius * 1.1 + 1)
        edge = radius * (1 + 0.1 * np.sin(angle * rng.integers(5, 9) + rng.uniform(0, 6)))
        gland = distance <= edge
        lumen = gland & (distance <= edge - 13)
        _set(hematoxylin, window, gland, 0.22)
        _set(eosin, window, gland, 0.28)
        _set(hematoxylin, window, gland & (distance > edge - 4), 0.95)
        _set(hematoxylin, window, lumen, 0.0)
        _set(eosin, window, lumen, 0.04)
        epithelium[window] |= gland & (distance > edge - 13) & (distance <= edge - 4)
    _nuclei(hematoxylin, epithelium, 40, 2.0, rng)
    return hematoxylin, eosin


def _pattern3(rng: np.random.Generator) -> tuple[Float, Float]:
    """Discrete, well-formed small glands infiltrating the stroma."""
    hematoxylin, eosin = _stroma(rng)
    epithelium = np.zeros((TILE, TILE), bool)
    for cy, cx in _centres(22, 40, rng):
        radius = rng.uniform(12, 18)
        window, distance, _ = _window(cy, cx, radius + 1)
        gland, lumen = distance <= radius, distance <= radius * 0.45
        _set(hematoxylin, window, gland, 0.5)
        _set(eosin, window, gland, 0.4)
        _set(hematoxylin, window, lumen, 0.0)
        _set(eosin, window, lumen, 0.05)
        epithelium[window] |= gland & ~lumen
    _nuclei(hematoxylin, epithelium, 90, 1.8, rng)
    return hematoxylin, eosin


def _pattern4(rng: np.random.Generator) -> tuple[Float, Float]:
    """Fused epithelial masses with cribriform punched-out lumens."""
    hematoxylin, eosin = _stroma(rng)
    mass = np.zeros((TILE, TILE), bool)
    for cy, cx in _centres(3, 90, rng):
        for _ in range(4):
            oy, ox = rng.normal(0, 18, 2)
            radius = rng.uniform(26, 40)
            window, distance, _ = _window(cy + oy, cx + ox, radius + 1)
            mass[window] |= distance <= radius
    hematoxylin[mass], eosin[mass] = 0.6, 0.42
    lumens = np.zeros_like(mass)
    for cy, cx in _centres(45, 16, rng):
        if mass[int(cy), int(cx)]:
            radius = rng.uniform(3.5, 6)
            window, distance, _ = _window(cy, cx, radius + 1)
            lumens[window] |= distance <= radius
    lumens &= mass
    hematoxylin[lumens], eosin[lumens] = 0.0, 0.05
    _nuclei(hematoxylin, mass & ~lumens, 160, 1.8, rng)
    return hematoxylin, eosin


def _pattern5(rng: np.random.Generator) -> tuple[Float, Float]:
    """Solid sheets of tumour cells without lumens; single cells in the stroma between."""
    hematoxylin, eosin = _stroma(rng)
    field_ = gaussian_filter(rng.normal(0, 1, (TILE, TILE)), sigma=14, mode="wrap")
    sheet = field_ > np.quantile(field_, 0.3)
    hematoxylin[sheet], eosin[sheet] = 0.78, 0.4
    _nuclei(hematoxylin, sheet, 260, 1.8, rng)
    _nuclei(hematoxylin, ~sheet, 40, 2.2, rng)
    return hematoxylin, eosin


DRAW: dict[int, Callable[[np.random.Generator], tuple[Float, Float]]] = {
    BENIGN: _benign,
    3: _pattern3,
    4: _pattern4,
    5: _pattern5,
}


def _glass(rng: np.random.Generator, brightness: float) -> RGB:
    """Near-white empty glass with faint noise."""
    tint = np.array(BACKGROUND, np.float64) - BACKGROUND[0] + brightness
    noise = rng.normal(0, 1.5, (TILE, TILE, 1))
    return np.clip(tint + noise, 0, 255).astype(np.uint8)
