"""Grad-CAM saliency for the ultrasound classifier, and its PNG overlay.

Grad-CAM (Selvaraju et al., 2017) weights the last convolutional feature maps by the spatially
averaged gradient of the logit and keeps the positive part; written here in a few lines on top of
the model's split forward pass rather than through forward/backward hooks.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from numpy.typing import NDArray
from PIL import Image
from skimage.transform import resize

from oncofed.models.breast_us.model import UltrasoundNet
from oncofed.storage.atomic import write_atomic

OVERLAY_ALPHA = 0.45


def grad_cam(model: UltrasoundNet, image: NDArray[np.float32]) -> tuple[NDArray[np.float64], float]:
    """``(heatmap, P(malignant))`` for one ``[1, H, W]`` input. The heatmap (``[H, W]`` in [0, 1])
    explains the predicted class: where the image raises the malignancy logit when the model says
    malignant, where it lowers it when the model says benign."""
    model.eval()
    batch = torch.from_numpy(np.ascontiguousarray(image))[None]
    with torch.enable_grad():
        features = model.feature_map(batch).detach().requires_grad_(True)
        logit = model.logits_from_features(features)[0]
        score = logit if float(logit.detach()) >= 0 else -logit
        (gradient,) = torch.autograd.grad(score, features)
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * features).sum(dim=1))[0].detach().numpy().astype(np.float64)
    top = float(cam.max())
    cam = cam / top if top > 0 else cam
    size = image.shape[-2:]
    heatmap = resize(cam, size, order=1, preserve_range=True)  # type: ignore[no-untyped-call]
    return np.clip(heatmap, 0.0, 1.0), float(torch.sigmoid(logit.detach()))


def overlay_png(grey: NDArray[np.float64], heatmap: NDArray[np.float64], path: Path) -> Path:
    """Write ``grey`` (values in [0, 1]) with ``heatmap`` blended on top as a PNG."""
    if heatmap.shape != grey.shape:
        heatmap = resize(heatmap, grey.shape, order=1, preserve_range=True)  # type: ignore[no-untyped-call]
    base = np.repeat(np.clip(grey, 0, 1)[..., None], 3, axis=2)
    colours = colormaps["jet"](np.clip(heatmap, 0, 1))[..., :3]
    alpha = OVERLAY_ALPHA * np.clip(heatmap, 0, 1)[..., None]
    blended = np.rint(255 * ((1 - alpha) * base + alpha * colours)).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(blended).save(buffer, format="PNG")
    return write_atomic(path, buffer.getvalue())
