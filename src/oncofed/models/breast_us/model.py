"""A small CNN classifier for ultrasound images: one logit for P(malignant)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _block(channels_in: int, channels_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(channels_out),
        nn.ReLU(inplace=True),
    )


class UltrasoundNet(nn.Module):
    """Four conv stages (16-32-48-64 channels, each halving the resolution but the last), global
    average pooling and a linear head; ``features`` is the Grad-CAM layer."""

    def __init__(self, width: int = 16, dropout: float = 0.2) -> None:
        super().__init__()
        self.stem = nn.Sequential(_block(1, width), nn.MaxPool2d(2))
        self.body = nn.Sequential(
            _block(width, 2 * width),
            nn.MaxPool2d(2),
            _block(2 * width, 3 * width),
            nn.MaxPool2d(2),
        )
        self.features = _block(3 * width, 4 * width)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(4 * width, 1)
        )

    def forward(self, image: Tensor) -> Tensor:
        """Logits ``[N]`` for images ``[N, 1, H, W]`` in [0, 1]."""
        return self.logits_from_features(self.feature_map(image))

    def feature_map(self, image: Tensor) -> Tensor:
        """The last convolutional feature map (Grad-CAM's target)."""
        output: Tensor = self.features(self.body(self.stem(image)))
        return output

    def logits_from_features(self, features: Tensor) -> Tensor:
        """Logits ``[N]`` from :meth:`feature_map`'s output."""
        output: Tensor = self.head(features)
        return output.squeeze(1)


class ContentCrop(nn.Module):
    """Crop whole frames ``[N, 1, H, W]`` to their imaging region and resample to ``size``.

    For callers that cannot crop by the Sequence of Ultrasound Regions (the evaluation
    facility resizes the whole frame): de-identification blanks everything outside the region,
    so the region is the span of rows and of columns in which most pixels are above black. A
    frame without such rows or columns is used whole. Resampling is bilinear, written as two
    matrix products (rows, then columns) because onnxruntime's GridSample is several times
    slower than the network behind it.
    """

    def __init__(self, size: int, level: float = 8 / 255, share: float = 0.5) -> None:
        super().__init__()
        self.size, self.level, self.share = size, level, share

    def forward(self, frame: Tensor) -> Tensor:
        """Crops ``[N, 1, size, size]``."""
        lit = (frame > self.level).to(frame.dtype)
        rows = self._weights(lit.mean(dim=3)[:, 0] > self.share)
        columns = self._weights(lit.mean(dim=2)[:, 0] > self.share)
        return (rows @ frame[:, 0] @ columns.transpose(1, 2)).unsqueeze(1)

    def _weights(self, inside: Tensor) -> Tensor:
        """``[N, size, length]`` bilinear weights mapping the first-to-last True span of each
        row of ``inside`` onto ``size`` samples (pixel centres; edges clamped)."""
        length = inside.shape[1]
        index = torch.arange(length, dtype=torch.float32).expand_as(inside)
        first = torch.where(inside, index, torch.full_like(index, length)).amin(dim=1)
        last = torch.where(inside, index, torch.full_like(index, -1)).amax(dim=1)
        found = last >= first
        first = torch.where(found, first, torch.zeros_like(first))
        last = torch.where(found, last, torch.full_like(last, length - 1))
        step = (last + 1 - first) / self.size
        centres = torch.arange(self.size, dtype=torch.float32) + 0.5
        source = (first[:, None] + centres[None, :] * step[:, None] - 0.5).clamp(0, length - 1)
        offsets = source[:, :, None] - torch.arange(length, dtype=torch.float32)[None, None, :]
        return torch.relu(1 - offsets.abs())


class Probability(nn.Module):
    """P(malignant) ``[N]`` from whole frames: :class:`ContentCrop`, the network, a sigmoid;
    what the TEF package exports."""

    def __init__(self, model: UltrasoundNet, size: int) -> None:
        super().__init__()
        self.crop = ContentCrop(size)
        self.model = model

    def forward(self, frame: Tensor) -> Tensor:
        """Probabilities ``[N]``."""
        return torch.sigmoid(self.model(self.crop(frame)))


def example_frames(batch: int, side: int) -> Tensor:
    """Seeded whole frames ``[batch, 1, side, side]`` for export tracing and checks: speckle-like
    values in an inner region, black outside it (as de-identified ultrasound frames are)."""
    generator = torch.Generator().manual_seed(0)
    frames = torch.zeros(batch, 1, side, side)
    top, left = side // 6, side // 12
    inner = frames[:, :, top : side - side // 12, left : side - side // 6]
    inner.copy_(0.05 + 0.9 * torch.rand(inner.shape, generator=generator))
    return frames
