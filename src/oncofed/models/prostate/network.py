"""The grading network: a small tile CNN, gated-attention MIL pooling (Ilse, Tomczak and
Welling 2018) and a CORN head; plus the wrapper that is exported to ONNX."""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn

from oncofed.models.prostate.ordinal import THRESHOLDS, exceedance, grade_probabilities

TILE_MEAN = 0.7
TILE_SCALE = 0.25
"""Tiles come in as RGB in [0, 1]; the CNN centres and scales them with these."""


class TileCNN(nn.Module):
    """Four 3x3 convolution blocks and global average pooling: RGB tiles to feature vectors."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        channels = (3, width, 2 * width, 4 * width, 4 * width)
        layers: list[nn.Module] = []
        for index, (inputs, outputs) in enumerate(itertools.pairwise(channels)):
            layers += [nn.Conv2d(inputs, outputs, 3, padding=1), nn.ReLU(inplace=True)]
            if index < len(channels) - 2:
                layers.append(nn.MaxPool2d(2))
        self.body = nn.Sequential(*layers)
        self.features = channels[-1]

    def forward(self, tiles: Tensor) -> Tensor:
        """``[n, 3, s, s]`` in [0, 1] to ``[n, features]``."""
        hidden: Tensor = self.body((tiles - TILE_MEAN) / TILE_SCALE)
        return hidden.mean(dim=(2, 3))


class GatedAttentionMIL(nn.Module):
    """Bag of tile features to slide logits, with one attention weight per tile."""

    def __init__(self, features: int, hidden: int = 64, attention: int = 32) -> None:
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(inplace=True))
        self.value = nn.Sequential(nn.Linear(hidden, attention), nn.Tanh())
        self.gate = nn.Sequential(nn.Linear(hidden, attention), nn.Sigmoid())
        self.score = nn.Linear(attention, 1)
        self.head = nn.Linear(hidden, THRESHOLDS)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """``[n, features]`` to (CORN logits ``[1, 5]``, attention ``[n]`` summing to 1)."""
        hidden = self.embed(features)
        weights = torch.softmax(self.score(self.value(hidden) * self.gate(hidden))[:, 0], dim=0)
        pooled = (weights[:, None] * hidden).sum(dim=0, keepdim=True)
        logits: Tensor = self.head(pooled)
        return logits, weights


class SlideGrader(nn.Module):
    """A bag of tiles (or of precomputed tile features, with no encoder) to CORN logits."""

    def __init__(self, encoder: nn.Module | None, features: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.mil = GatedAttentionMIL(features)

    def attend(self, bag: Tensor) -> tuple[Tensor, Tensor]:
        """(logits ``[1, 5]``, attention ``[n]``)."""
        features = self.encoder(bag) if self.encoder is not None else bag
        return self.mil(features)  # type: ignore[no-any-return]

    def forward(self, bag: Tensor) -> Tensor:
        """CORN logits ``[1, 5]`` of one slide."""
        return self.attend(bag)[0]


class ExportedGrader(nn.Module):
    """What the ONNX file computes from a bag (after ``normaliser``, if any): per tile row, the
    slide's grade-group probabilities and P(cancer) (every row the same, so a facility that
    averages tile rows gets the slide's), and each tile's attention."""

    def __init__(self, grader: SlideGrader, normaliser: nn.Module | None = None) -> None:
        super().__init__()
        self.grader, self.normaliser = grader, normaliser

    def forward(self, bag: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``[n, ...]`` to (``[n, 6]``, ``[n]``, ``[n]``)."""
        if self.normaliser is not None:
            bag = self.normaliser(bag)
        logits, attention = self.grader.attend(bag)
        rows = torch.ones_like(attention)[:, None]
        probabilities = grade_probabilities(logits) * rows
        cancer = exceedance(logits)[:, 0] * rows[:, 0]
        return probabilities, cancer, attention
