"""H&E stain handling for slides from different labs: Macenko normalisation and stain jitter.

Macenko et al. (2009): pixels become optical densities (Beer-Lambert); the two stain vectors
span the plane of the two largest principal directions of the tissue pixels' densities, at
robust (percentile) extreme angles in that plane. A slide's stain concentrations, rescaled so that
their 99th percentiles match the reference's, are recoloured with the reference stain vectors.
Augmentation (Tellez et al. 2019) scales and shifts each stain's concentrations and tilts the
stain vectors a little, so a model sees lab-to-lab variation while it trains.

Written with NumPy here (a few lines of linear algebra): the libraries that ship Macenko
(torchstain, staintools) pull in their own array stacks or unmaintained dependencies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from oncofed.errors import OncofedError

BACKGROUND = 240.0
"""Light intensity of empty glass assumed by the optical densities."""
TISSUE_DENSITY = 0.3
"""Pixels whose optical densities sum to less are glass (or too faint to tell the stains)."""
ANGLE_PERCENTILE = 1.0
"""Stain vectors sit at this and 100 minus this percentile of the angles."""
CONCENTRATION_PERCENTILE = 99.0
MIN_TISSUE_PIXELS = 64

RGBArray = NDArray[np.uint8]


class StainError(OncofedError):
    """Stains cannot be estimated from the given pixels (too little tissue)."""

    code = "stain_error"


@dataclass(frozen=True)
class Stains:
    """Unit H and E optical-density vectors (rows, RGB) and robust maximum concentrations."""

    matrix: NDArray[np.float64]
    max_concentrations: NDArray[np.float64]

    def to_dict(self) -> dict[str, Any]:
        """JSON- and checkpoint-ready form."""
        return {
            "matrix": self.matrix.round(6).tolist(),
            "max_concentrations": self.max_concentrations.round(6).tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Stains:
        """Stains saved by :meth:`to_dict`."""
        return cls(
            np.asarray(data["matrix"], np.float64).reshape(2, 3),
            np.asarray(data["max_concentrations"], np.float64).reshape(2),
        )


def optical_density(rgb: NDArray[Any]) -> NDArray[np.float64]:
    """``-log(I / I0)`` per channel, with I clipped to [1, I0] so glass is 0 and black finite."""
    intensity = np.clip(np.asarray(rgb, np.float64), 1.0, BACKGROUND)
    return np.asarray(-np.log(intensity / BACKGROUND))


def estimate_stains(rgb: NDArray[Any]) -> Stains:
    """Macenko stain vectors and maximum concentrations of ``rgb`` (any shape ending in 3:
    one tile, or a slide's tiles stacked)."""
    density = optical_density(rgb).reshape(-1, 3)
    tissue = density[density.sum(axis=1) > TISSUE_DENSITY]
    if len(tissue) < MIN_TISSUE_PIXELS:
        raise StainError(
            f"{len(tissue)} stained pixels (summed optical density > {TISSUE_DENSITY}); "
            f"stain estimation needs at least {MIN_TISSUE_PIXELS}"
        )
    _, vectors = np.linalg.eigh(np.cov(tissue.T))
    plane = vectors[:, [2, 1]]  # the two largest principal directions
    plane *= np.where(plane[0] < 0, -1.0, 1.0)  # point into positive densities
    projected = tissue @ plane
    angles = np.arctan2(projected[:, 1], projected[:, 0])
    low, high = np.percentile(angles, [ANGLE_PERCENTILE, 100 - ANGLE_PERCENTILE])
    first = plane @ np.array([np.cos(low), np.sin(low)])
    second = plane @ np.array([np.cos(high), np.sin(high)])
    # haematoxylin absorbs more red than eosin does
    hematoxylin, eosin = (first, second) if first[0] > second[0] else (second, first)
    matrix = np.stack([hematoxylin, eosin])
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    concentrations = _concentrations(tissue, matrix)
    maxima = np.percentile(concentrations, CONCENTRATION_PERCENTILE, axis=0)
    return Stains(matrix, np.maximum(maxima, 1e-6))


def _concentrations(density: NDArray[np.float64], matrix: NDArray[np.float64]) -> NDArray[Any]:
    """Least-squares H and E concentrations ``[n, 2]`` of densities ``[n, 3]``."""
    solution, *_ = np.linalg.lstsq(matrix.T, density.T, rcond=None)
    return np.asarray(solution.T)


def _recolour(concentrations: NDArray[np.float64], matrix: NDArray[np.float64]) -> RGBArray:
    rgb = BACKGROUND * np.exp(-(concentrations @ matrix))
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


class MacenkoNormaliser:
    """Maps pixels of any lab to the stain appearance of a reference."""

    def __init__(self, reference: Stains) -> None:
        self.reference = reference

    @classmethod
    def fit(cls, reference_rgb: NDArray[Any]) -> MacenkoNormaliser:
        """A normaliser towards the stains of a reference tile (or tiles)."""
        return cls(estimate_stains(reference_rgb))

    def transform(self, rgb: NDArray[Any], source: Stains | None = None) -> RGBArray:
        """``rgb`` recoloured with the reference stains; ``source`` (estimated from ``rgb``
        when not given) are its own, e.g. estimated once over a whole slide's tiles."""
        source = source or estimate_stains(rgb)
        density = optical_density(rgb).reshape(-1, 3)
        concentrations = _concentrations(density, source.matrix)
        concentrations *= self.reference.max_concentrations / source.max_concentrations
        return _recolour(concentrations, self.reference.matrix).reshape(np.shape(rgb))


@dataclass(frozen=True)
class StainJitter:
    """One draw of stain augmentation: per-stain concentration scale and shift, vector tilt."""

    scale: tuple[float, float]
    shift: tuple[float, float]
    tilt: NDArray[np.float64]
    """Added to the unit stain vectors (2 x 3) before renormalising."""

    @classmethod
    def draw(
        cls, uniform: NDArray[np.float64], *, strength: float = 0.2, tilt: float = 0.05
    ) -> StainJitter:
        """From 10 numbers uniform in [0, 1) (drawn by the caller's seeded generator)."""
        u = np.asarray(uniform, np.float64).reshape(10)
        scale = 1 + strength * (2 * u[:2] - 1)
        shift = strength / 4 * (2 * u[2:4] - 1)
        return cls(
            (float(scale[0]), float(scale[1])),
            (float(shift[0]), float(shift[1])),
            tilt * (2 * u[4:].reshape(2, 3) - 1),
        )


def augment_stains(
    rgb: NDArray[Any], jitter: StainJitter, stains: Stains | None = None
) -> RGBArray:
    """``rgb`` with its stain concentrations scaled and shifted and its stain vectors tilted;
    ``stains`` are its own (estimated from ``rgb`` when not given)."""
    stains = stains or estimate_stains(rgb)
    density = optical_density(rgb).reshape(-1, 3)
    concentrations = _concentrations(density, stains.matrix)
    stained = density.sum(axis=1, keepdims=True) > TISSUE_DENSITY  # glass stays glass
    concentrations = np.where(
        stained,
        concentrations * np.asarray(jitter.scale) + np.asarray(jitter.shift),
        concentrations,
    )
    matrix = np.abs(stains.matrix + jitter.tilt)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return _recolour(np.maximum(concentrations, 0), matrix).reshape(np.shape(rgb))
