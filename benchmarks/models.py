"""CPU inference throughput of the reference models: onnxruntime vs PyTorch eager, same run.

Each row runs one model on the same seeded inputs, in the same batches, with the same number of
intra-op threads (2 by default: the CI machine's cores), first through PyTorch eager
(``torch.no_grad``, eval mode) and then through the exported ONNX file in onnxruntime. Throughput
is the median over repeats after one warm-up pass. Goal: onnxruntime >= 1.5x PyTorch.

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


ROWS: list[Callable[[argparse.Namespace, Path], list[Row]]] = [breast_us_rows]
"""One function per model; each returns its table rows."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048, help="inputs per pass")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
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
