"""Slides as bags of tissue tiles, read through ``oncofed.wsi``, and the torch datasets over them.

Tiles are cut at the model's resolution from the tissue mask's grid; a training bag keeps the
tiles with the most tissue, as the evaluation facility picks them. Stain normalisation (when the
model uses it) is applied per slide with stains estimated over that slide's tiles.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor
from torch.utils.data import Dataset

from oncofed.models.cli_support import LabelledFile
from oncofed.models.stain import (
    MacenkoNormaliser,
    StainError,
    StainJitter,
    Stains,
    augment_stains,
    estimate_stains,
)
from oncofed.models.training import TrainingError
from oncofed.wsi.open import open_slide
from oncofed.wsi.tiling import TileGrid, TileReader, tile_grid
from oncofed.wsi.tissue import detect_tissue

TileArray = NDArray[np.uint8]
"""Tiles as ``[n, s, s, 3]`` RGB."""
STAIN_SAMPLE = 256
"""Tiles, spread over the slide, from which a whole slide's stains are estimated."""
MASK_SIZE = 1024
"""The tissue mask comes from the finest level no larger than this (tiles span several of its
pixels; a finer mask costs more than it changes)."""


@dataclass(frozen=True)
class TileSettings:
    """How a slide becomes tiles."""

    size: int
    mpp: float
    min_tissue: float


def slide_grid(path: object, tiles: TileSettings) -> TileGrid:
    """Every tissue tile of the slide at ``path`` (row-major)."""
    with open_slide(str(path)) as slide:
        mask = detect_tissue(slide, max_size=MASK_SIZE)
        return tile_grid(
            slide, mpp=tiles.mpp, size=tiles.size, min_tissue=tiles.min_tissue, mask=mask
        )


def most_tissue(grid: TileGrid, limit: int) -> TileGrid:
    """The ``limit`` tiles with the most tissue, in grid order (the facility's choice)."""
    keep = np.sort(np.argsort(-grid.tissue_fraction, kind="stable")[:limit])
    return TileGrid(grid.spec, grid.x[keep], grid.y[keep], grid.tissue_fraction[keep])


def spread(grid: TileGrid, limit: int) -> TileGrid:
    """At most ``limit`` tiles evenly spaced through the grid."""
    keep = np.unique(np.linspace(0, len(grid) - 1, min(limit, len(grid))).round().astype(int))
    return TileGrid(grid.spec, grid.x[keep], grid.y[keep], grid.tissue_fraction[keep])


def read_tiles(path: object, grid: TileGrid) -> TileArray:
    """Pixels of the grid's tiles, ``[n, s, s, 3]``."""
    size = grid.spec.size
    tiles = [tile.image for tile in TileReader(str(path), grid)]
    return np.stack(tiles) if tiles else np.zeros((0, size, size, 3), np.uint8)


def iterate_tiles(path: object, grid: TileGrid, chunk: int) -> Iterator[TileArray]:
    """The grid's tiles in chunks of ``chunk``, read as they are needed."""
    pending: list[NDArray[np.uint8]] = []
    for tile in TileReader(str(path), grid):
        pending.append(tile.image)
        if len(pending) == chunk:
            yield np.stack(pending)
            pending = []
    if pending:
        yield np.stack(pending)


def to_tensor(tiles: TileArray) -> Tensor:
    """``[n, s, s, 3]`` uint8 to ``[n, 3, s, s]`` float in [0, 1] (the facility's ``unit``)."""
    return torch.from_numpy(np.ascontiguousarray(tiles.transpose(0, 3, 1, 2))).float() / 255.0


def slide_stains(tiles: TileArray) -> Stains | None:
    """Stains estimated over a slide's tiles, or ``None`` when it holds too little stain."""
    try:
        return estimate_stains(tiles)
    except StainError:
        return None


def normalise(tiles: TileArray, normaliser: MacenkoNormaliser, stains: Stains | None) -> TileArray:
    """Tiles recoloured to the reference stains (unchanged when their stains are unknown)."""
    return tiles if stains is None or not len(tiles) else normaliser.transform(tiles, stains)


@dataclass(frozen=True)
class SlideBag:
    """One slide's training tiles (already normalised if the model normalises), its stains and
    reference grade group."""

    file: LabelledFile
    tiles: TileArray
    stains: Stains | None


def load_bags(
    files: Sequence[LabelledFile],
    tiles: TileSettings,
    max_tiles: int,
    normaliser: MacenkoNormaliser | None,
) -> list[SlideBag]:
    """Bags of up to ``max_tiles`` most-tissue tiles per slide; slides without tissue tiles
    are left out."""
    bags = []
    for file in files:
        grid = most_tissue(slide_grid(file.path, tiles), max_tiles)
        if not len(grid):
            continue
        pixels = read_tiles(file.path, grid)
        stains = slide_stains(pixels)
        if normaliser is not None:
            pixels = normalise(pixels, normaliser, stains)
            stains = normaliser.reference if stains is not None else None
        bags.append(SlideBag(file, pixels, stains))
    return bags


class TileBags(Dataset[tuple[Tensor, Tensor]]):
    """Bags of tiles; ``augment`` adds stain jitter, flips and quarter turns drawn from torch's
    global generator (seeded and checkpointed by ``fit``)."""

    def __init__(self, bags: Sequence[SlideBag], *, augment: bool = False) -> None:
        self.bags, self.augment = list(bags), augment

    def __len__(self) -> int:
        return len(self.bags)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        bag = self.bags[index]
        tiles = bag.tiles
        if self.augment:
            if bag.stains is not None:
                draw = torch.rand(10, dtype=torch.float64).numpy()
                tiles = augment_stains(tiles, StainJitter.draw(draw), bag.stains)
            tiles = np.rot90(tiles, k=int(torch.randint(4, ())), axes=(1, 2))
            if bool(torch.rand(()) < 0.5):
                tiles = tiles[:, :, ::-1]
        return to_tensor(np.ascontiguousarray(tiles)), torch.tensor(float(bag.file.target))


class FeatureBags(Dataset[tuple[Tensor, Tensor]]):
    """Bags of tile features computed once by a frozen encoder."""

    def __init__(
        self, bags: Sequence[SlideBag], encode: Callable[[NDArray[np.float32]], NDArray[np.float32]]
    ) -> None:
        self.features = [torch.from_numpy(encode(to_tensor(b.tiles).numpy())) for b in bags]
        self.targets = [torch.tensor(float(b.file.target)) for b in bags]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.features[index], self.targets[index]


def one_bag(items: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Collate for bags of different sizes: one slide per step."""
    (bag, target), *rest = items
    if rest:
        raise TrainingError("bags of tiles are trained one slide at a time (batch size 1)")
    return bag, target.reshape(1)
