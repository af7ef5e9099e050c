"""Per-tile scores over a slide (e.g. a model's attention), stored as Parquet and drawn as a
transparent PNG overlay with the slide's aspect ratio.

A node keeps a slide's heatmaps in ``<home>/heatmaps/<slide id>/<name>.parquet``; the slide
router lists them and serves each as ``/{slide id}/heatmaps/{name}.png`` for the viewer.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from matplotlib import colormaps
from numpy.typing import NDArray
from PIL import Image

from oncofed.errors import OncofedError
from oncofed.storage.atomic import write_atomic

HEATMAPS_DIR = "heatmaps"
SUFFIX = ".parquet"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
META_KEY = b"oncofed.wsi.heatmap"
OVERLAY_ALPHA = 170
COLOURMAP = "inferno"


class HeatmapError(OncofedError):
    """A heatmap file or name is invalid."""

    code = "invalid_heatmap"


def check_name(name: str) -> str:
    """A heatmap name usable as a file name and in URLs."""
    if not NAME.match(name):
        raise HeatmapError(
            f"heatmap name {name!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class TileHeatmap:
    """Scores of square tiles (level-0 top-left corners, side ``extent``) of a slide."""

    x: NDArray[np.int64]
    y: NDArray[np.int64]
    score: NDArray[np.float32]
    extent: float
    width: int
    height: int
    description: str = ""

    def write(self, path: Path) -> Path:
        """Write atomically as Parquet."""
        meta = {"extent": self.extent, "width": self.width, "height": self.height,
                "description": self.description}  # fmt: skip
        table = pa.table(
            {
                "x": pa.array(self.x, pa.int64()),
                "y": pa.array(self.y, pa.int64()),
                "score": pa.array(self.score, pa.float32()),
            }
        ).replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
        buffer = pa.BufferOutputStream()
        pq.write_table(table, buffer)
        return write_atomic(path, buffer.getvalue().to_pybytes())

    @classmethod
    def read(cls, path: Path) -> TileHeatmap:
        """A heatmap written by :meth:`write`."""
        try:
            table = pq.read_table(path)
            meta = json.loads((table.schema.metadata or {})[META_KEY])
            return cls(
                table["x"].to_numpy().astype(np.int64),
                table["y"].to_numpy().astype(np.int64),
                table["score"].to_numpy().astype(np.float32),
                float(meta["extent"]),
                int(meta["width"]),
                int(meta["height"]),
                str(meta.get("description", "")),
            )
        except (OSError, KeyError, ValueError, pa.ArrowException) as exc:
            raise HeatmapError(f"{path}: not an oncofed heatmap ({exc})") from exc

    def png(self, max_size: int = 1024) -> bytes:
        """RGBA PNG whose longer side is ``max_size`` and whose aspect is the slide's; tiles
        are coloured by score (scaled to the map's own range), the rest is transparent."""
        scale = max_size / max(self.width, self.height)
        columns = max(1, round(self.width * scale))
        rows = max(1, round(self.height * scale))
        cells_x = int(np.ceil(self.width / self.extent))
        cells_y = int(np.ceil(self.height / self.extent))
        cells = np.full((cells_y, cells_x), np.nan, np.float32)
        low, high = (
            (float(self.score.min()), float(self.score.max())) if len(self.score) else (0, 1)
        )
        spread = high - low if high > low else 1.0
        cells[(self.y / self.extent).astype(int), (self.x / self.extent).astype(int)] = (
            self.score - low
        ) / spread
        # each output pixel shows the tile under its centre
        ys = np.minimum(((np.arange(rows) + 0.5) / scale / self.extent).astype(int), cells_y - 1)
        xs = np.minimum(((np.arange(columns) + 0.5) / scale / self.extent).astype(int), cells_x - 1)
        values = cells[np.ix_(ys, xs)]
        rgba = (colormaps[COLOURMAP](np.nan_to_num(values)) * 255).astype(np.uint8)
        rgba[..., 3] = np.where(np.isnan(values), 0, OVERLAY_ALPHA)
        buffer = io.BytesIO()
        Image.fromarray(rgba, "RGBA").save(buffer, "PNG")
        return buffer.getvalue()


def heatmap_names(folder: Path) -> list[str]:
    """Names of the heatmaps in a slide's heatmap folder."""
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob(f"*{SUFFIX}") if NAME.match(p.stem))
