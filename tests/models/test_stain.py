"""Macenko stain normalisation and stain augmentation on re-stained synthetic tissue."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from oncofed.models.prostate.stain_graph import BagMacenko
from oncofed.models.stain import (
    MacenkoNormaliser,
    StainError,
    StainJitter,
    Stains,
    augment_stains,
    estimate_stains,
)
from oncofed.testing.prostate import SITES, TextureBank


def tissue(site: str) -> np.ndarray:
    """The same seeded tissue textures (benign, patterns 3-5) stained as ``site`` stains."""
    return bank(site).at(1)[1:].reshape(-1, 256, 256, 3).copy()


@functools.cache
def bank(site: str) -> TextureBank:
    return TextureBank(SITES[site], seed=3)


def colour_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(float) - b.astype(float)).mean())


@pytest.mark.parametrize("site", ["site-b", "site-c"])
def test_normalising_a_restained_tile_towards_its_reference_cuts_colour_distance(
    site: str,
) -> None:
    reference, restained = tissue("site-a"), tissue(site)
    normaliser = MacenkoNormaliser.fit(reference[0])
    before = colour_distance(reference, restained)
    after = colour_distance(reference, normaliser.transform(restained))
    assert before > 15
    assert after < before / 3, (before, after)  # measured: 20.3 -> 5.4 (b), 20.6 -> 2.8 (c)


def test_estimated_vectors_are_the_sites_stains() -> None:
    for site in ("site-a", "site-c"):
        found = estimate_stains(tissue(site)).matrix
        truth = SITES[site].stain_matrix()
        cosine = (found * truth).sum(axis=1)
        # mixed H+E pixels pull the haematoxylin vector a little towards eosin (measured 0.92)
        assert cosine.min() > 0.9, (site, found.round(2), truth.round(2))


def test_glass_alone_has_no_stains_to_estimate() -> None:
    glass = np.full((2, 32, 32, 3), 238, np.uint8)
    with pytest.raises(StainError, match="stained pixels"):
        estimate_stains(glass)


def test_augmentation_changes_stain_and_leaves_glass_alone() -> None:
    tiles = tissue("site-a")[:2, :64, :64]
    tiles[:, :8] = 240  # a strip of bare glass
    stains = estimate_stains(tiles)
    identity = StainJitter.draw(np.full(10, 0.5))
    assert identity.scale == (1.0, 1.0) and not identity.tilt.any()
    same = augment_stains(tiles, identity, stains)
    changed = augment_stains(tiles, StainJitter.draw(np.linspace(0, 1, 10)), stains)
    assert colour_distance(same, tiles) < 6  # only the two-stain projection error
    assert colour_distance(changed, tiles) > colour_distance(same, tiles) + 3
    assert np.array_equal(changed[:, :8], same[:, :8])


def test_stains_round_trip_through_their_saved_form() -> None:
    stains = estimate_stains(tissue("site-b"))
    again = Stains.from_dict(stains.to_dict())
    assert np.allclose(again.matrix, stains.matrix, atol=1e-6)
    assert np.allclose(again.max_concentrations, stains.max_concentrations, atol=1e-6)


def test_the_exportable_bag_normaliser_equals_the_numpy_one() -> None:
    reference = tissue("site-a")[0]
    bag = bank("site-b").at(4)[1:].reshape(-1, 64, 64, 3)[:, :32, :32]
    normaliser = MacenkoNormaliser.fit(reference)
    expected = normaliser.transform(bag).astype(float)
    tiles = torch.from_numpy(bag.transpose(0, 3, 1, 2).copy()).float() / 255
    found = BagMacenko(normaliser.reference)(tiles).numpy().transpose(0, 2, 3, 1) * 255
    assert np.abs(found - expected).max() <= 0.5 + 1e-3  # NumPy rounds to 8 bits, the graph not
    glass = torch.full((2, 3, 32, 32), 0.95)
    assert torch.equal(BagMacenko(normaliser.reference)(glass), glass)  # nothing to estimate
