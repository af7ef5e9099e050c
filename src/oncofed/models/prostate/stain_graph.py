"""Macenko normalisation of a whole bag of tiles as torch operations that export to ONNX.

The evaluation facility feeds a packaged model raw tiles, so a model trained on normalised tiles
carries its normaliser in the graph. This is ``oncofed.models.stain`` (NumPy) restated with
operations ONNX has: the two principal directions of the 3x3 density covariance come from power
iteration (ONNX has no eigendecomposition), percentiles from one sort over the tissue pixels
(glass sorted past the end), least squares from the 2x2 normal equations. Stains are estimated
over the whole bag, i.e. the slide, as the pipeline does; the output is not rounded to 8 bits.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from oncofed.models.stain import (
    ANGLE_PERCENTILE,
    BACKGROUND,
    CONCENTRATION_PERCENTILE,
    MIN_TISSUE_PIXELS,
    TISSUE_DENSITY,
    Stains,
)

POWER_STEPS = 40


def _percentile(ascending: Tensor, count: Tensor, q: float) -> Tensor:
    """NumPy's linear-interpolation percentile of the first ``count`` sorted values."""
    position = (count - 1).clamp(min=0).to(ascending.dtype) * (q / 100)
    low = position.floor()
    weight = position - low
    below = ascending.gather(-1, low.long().reshape(1)).squeeze(-1)
    above = ascending.gather(-1, position.ceil().long().reshape(1)).squeeze(-1)
    return below + weight * (above - below)


def _principal(covariance: Tensor, start: Tensor, against: Tensor | None) -> Tensor:
    vector: Tensor = start / start.norm()
    for _ in range(POWER_STEPS):
        vector = covariance @ vector
        if against is not None:
            vector = vector - (vector @ against) * against
        vector = vector / vector.norm().clamp(min=1e-12)
    return vector


class BagMacenko(nn.Module):
    """Tiles ``[n, 3, s, s]`` in [0, 1] to the same tiles in the reference's stains."""

    matrix: Tensor
    maxima: Tensor

    def __init__(self, reference: Stains) -> None:
        super().__init__()
        self.register_buffer("matrix", torch.tensor(reference.matrix, dtype=torch.float32))
        self.register_buffer(
            "maxima", torch.tensor(reference.max_concentrations, dtype=torch.float32)
        )

    def forward(self, tiles: Tensor) -> Tensor:
        """The bag recoloured (unchanged when it holds too little stain to estimate)."""
        intensity = (tiles * 255).clamp(1.0, BACKGROUND)
        density = -torch.log(intensity / BACKGROUND)  # [n, 3, s, s]
        pixels = density.permute(1, 0, 2, 3).reshape(3, -1)  # [3, N]
        tissue = pixels.sum(dim=0) > TISSUE_DENSITY
        weight = tissue.to(pixels.dtype)
        count = weight.sum()
        mean = (pixels * weight).sum(dim=1) / count.clamp(min=1)
        centred = (pixels - mean[:, None]) * weight
        covariance = centred @ centred.T / (count - 1).clamp(min=1)
        first = _principal(covariance, torch.ones(3), None)
        second = _principal(covariance, torch.tensor([1.0, -1.0, 0.5]), first)
        plane = torch.stack([first, second], dim=1)  # [3, 2]
        plane = plane * torch.where(plane[0] < 0, -1.0, 1.0)
        projected = plane.T @ pixels  # [2, N]
        angles = torch.atan2(projected[1], projected[0])
        ordered, _ = torch.sort(torch.where(tissue, angles, torch.full_like(angles, 10.0)))
        low = _percentile(ordered, count, ANGLE_PERCENTILE)
        high = _percentile(ordered, count, 100 - ANGLE_PERCENTILE)
        one = plane @ torch.stack([torch.cos(low), torch.sin(low)])
        two = plane @ torch.stack([torch.cos(high), torch.sin(high)])
        swap = one[0] < two[0]  # haematoxylin absorbs more red than eosin
        source = torch.stack([torch.where(swap, two, one), torch.where(swap, one, two)])
        source = source / source.norm(dim=1, keepdim=True)
        concentrations = self._solve(source, pixels)  # [2, N]
        masked = torch.where(tissue, concentrations, torch.full_like(concentrations, 1e9))
        ordered_c, _ = torch.sort(masked, dim=1)
        maxima = torch.stack(
            [_percentile(ordered_c[k], count, CONCENTRATION_PERCENTILE) for k in range(2)]
        ).clamp(min=1e-6)
        scaled = concentrations * (self.maxima / maxima)[:, None]
        recoloured = BACKGROUND * torch.exp(-(self.matrix.T @ scaled))  # [3, N]
        out = (recoloured.clamp(0, 255) / 255).reshape(3, *tiles.shape[:1], *tiles.shape[2:])
        out = out.permute(1, 0, 2, 3)
        return torch.where(count >= MIN_TISSUE_PIXELS, out, tiles)

    @staticmethod
    def _solve(stains: Tensor, pixels: Tensor) -> Tensor:
        """Least-squares concentrations: ``(S S^T)^-1 S d`` with the 2x2 inverse written out."""
        gram = stains @ stains.T
        a, b, c, d = gram[0, 0], gram[0, 1], gram[1, 0], gram[1, 1]
        inverse = torch.stack([torch.stack([d, -b]), torch.stack([-c, a])]) / (a * d - b * c)
        return inverse @ (stains @ pixels)
