"""CPU inference throughput of the reference models: onnxruntime vs PyTorch eager, same run.

Each row runs one model on the same seeded inputs, in the same batches, with the same number of
intra-op threads (2 by default: the CI machine's cores), first through PyTorch eager
(``torch.no_grad``, eval mode) and then through the exported ONNX file in onnxruntime. Throughput
is the median over repeats after one warm-up pass. Goal: onnxruntime >= 1.5x PyTorch.

The prostate rows add tiles/s of the default tile encoder and the time to grade a whole generated
40,000 x 40,000 biopsy slide (goal < 60 s on 2 cores); for that row the figures are seconds per
slide and the ratio is PyTorch's time over onnxruntime's.

Usage: python benchmarks/models.py [--images 2048 --batch 32 --threads 2 --repeats 3]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from _common import machine, print_table

from oncofed.models.breast_us import pipeline as breast_us
from oncofed.models.breast_us.model import Probability, example_frames
from oncofed.models.export import export_onnx
from oncofed.models.prostate import pipeline as prostate
from oncofed.testing.prostate import make_prostate_slide

Row = tuple[str, str, float, float, float]


def images_per_second(
    run: Callable[[np.ndarray], object], batches: list[np.ndarray], repeats: int
) -> float:
    """Median images/s of ``run`` over all batches (after one warm-up batch)."""
    run(batches[0])
    count = sum(len(b) for b in batches)
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        for batch in batches:
            run(batch)
        rates.append(count / (time.perf_counter() - started))
    return statistics.median(rates)


def onnx_session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def breast_us_rows(args: argparse.Namespace, work: Path) -> list[Row]:
    """Breast-US classifier as packaged: 128x128 frame in (cropped to 64x64 inside), P out."""
    settings = breast_us.BreastUSSettings()
    model = breast_us.build_model(settings, seed=0).eval()
    onnx_path = work / "breast-us.onnx"
    breast_us.export(model, settings, onnx_path)
    wrapped = Probability(model, settings.size).eval()
    images = np.repeat(example_frames(1, settings.frame).numpy(), args.images, axis=0)
    batches = [images[i : i + args.batch] for i in range(0, len(images), args.batch)]

    def eager(batch: np.ndarray) -> object:
        with torch.no_grad():
            return wrapped(torch.from_numpy(batch))

    session = onnx_session(onnx_path, args.threads)

    def onnxruntime(batch: np.ndarray) -> object:
        return session.run([breast_us.OUTPUT_NAME], {breast_us.INPUT_NAME: batch})

    peer = images_per_second(eager, batches, args.repeats)
    ours = images_per_second(onnxruntime, batches, args.repeats)
    return [("breast-US classifier", "images/s", peer, ours, ours / peer)]


def prostate_rows(args: argparse.Namespace, work: Path) -> list[Row]:
    """Prostate tile encoder (default CNN, 32x32 tiles, batches of ``--tile-batch``), then a
    whole generated 40,000 x 40,000 biopsy slide: tissue mask, tiling, reading, encoding and
    attention pooling, with the encoder in PyTorch and then in onnxruntime."""
    grader = prostate.build(prostate.ProstateSettings())
    cnn = grader.network.encoder
    assert cnn is not None
    size = grader.settings.tile_size
    onnx_path = export_onnx(cnn.eval(), torch.rand(2, 3, size, size), work / "tiles.onnx",
                            input_names=["tiles"], output_names=["features"],
                            dynamic_axes={"tiles": {0: "tiles"}})  # fmt: skip
    tiles = np.random.default_rng(0).random((args.tiles, 3, size, size), dtype=np.float32)
    batches = [tiles[i : i + args.tile_batch] for i in range(0, len(tiles), args.tile_batch)]
    session = onnx_session(onnx_path, args.threads)

    def onnxruntime(batch: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(None, {"tiles": batch})[0])

    peer = images_per_second(grader.encode, batches, args.repeats)
    ours = images_per_second(onnxruntime, batches, args.repeats)
    rows: list[Row] = [("prostate tile encoder (32x32)", "tiles/s", peer, ours, ours / peer)]
    slide = work / "biopsy-40k.svs"
    started = time.perf_counter()
    make_prostate_slide(slide, isup_grade=3, width=args.slide_side, height=args.slide_side)
    megabytes, took = slide.stat().st_size / 1e6, time.perf_counter() - started
    print(f"generated a {args.slide_side:,} x {args.slide_side:,} slide ({megabytes:.0f} MB) "
          f"in {took:.0f} s")  # fmt: skip
    seconds = {}
    for engine, encode in (("PyTorch eager", grader.encode), ("onnxruntime", onnxruntime)):
        started = time.perf_counter()
        result = prostate.infer_slide(grader, slide, encode=encode)
        seconds[engine] = time.perf_counter() - started
        print(f"whole-slide inference, {engine}: {len(result.grid):,} tiles in "
              f"{seconds[engine]:.1f} s (goal < 60 s)")  # fmt: skip
    eager, runtime = seconds["PyTorch eager"], seconds["onnxruntime"]
    rows.append(("prostate whole slide (tiling+encoding+MIL)", "s/slide", eager, runtime,
                 eager / runtime))  # fmt: skip
    return rows


ROWS: list[Callable[[argparse.Namespace, Path], list[Row]]] = [breast_us_rows, prostate_rows]
"""One function per model; each returns its table rows."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048, help="inputs per pass")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiles", type=int, default=8192, help="prostate tiles per pass")
    parser.add_argument("--tile-batch", type=int, default=256)
    parser.add_argument("--slide-side", type=int, default=40_000, help="generated slide, pixels")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed"
    print(machine(), f"torch {torch.__version__}, onnxruntime {ort.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        rows = [row for make in ROWS for row in make(args, Path(tmp))]
    print_table(
        f"CPU inference, batch {args.batch}, {args.threads} threads (median of {args.repeats})",
        ["model", "unit", "PyTorch eager", "onnxruntime", "onnxruntime / PyTorch"],
        rows,
    )
    worst = min(row[4] for row in rows)
    print(f"slowest ratio {worst:.2f}x (goal >= 1.5x)")


if __name__ == "__main__":
    main()
