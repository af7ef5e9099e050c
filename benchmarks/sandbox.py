"""What isolation costs: an ONNX model run in the TEF sandbox vs the same model in-process.

The peer is onnxruntime in this process with the same settings (one thread, same batches). The
sandbox adds a process start, namespaces and mounts, importing numpy and onnxruntime again, and
writing inputs/reading outputs as .npy files. Reported: the fixed cost (one case), the marginal
cost of a cohort (its time minus the one-case time), and from these the exchange cost per case
(sandbox marginal minus in-process marginal, per case). The model is deliberately tiny so that
exchange, not inference, dominates. Goals: fixed cost under 0.5 s; exchange under 50 µs per
64x64 float32 case (16 KiB), i.e. negligible next to any real model.

Usage: python benchmarks/sandbox.py [--cases 10000 --repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from _common import machine, print_table
from onnx import helper, numpy_helper

from oncofed.tef.algorithm import load_package, run_algorithm
from oncofed.tef.sandbox import Limits

SIZE = 64
BATCH = 32


def write_package(root: Path) -> Path:
    """A two-layer perceptron on 64x64 images (random weights), as an ONNX package."""
    rng = np.random.default_rng(0)
    hidden = rng.normal(0, 0.02, (SIZE * SIZE, 256)).astype(np.float32)
    head = rng.normal(0, 0.1, (256, 2)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["image"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "w1"], ["h"]),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("MatMul", ["r", "w2"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        ],
        "mlp",
        [helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, [None, 1, SIZE, SIZE])],
        [helper.make_tensor_value_info("probabilities", onnx.TensorProto.FLOAT, [None, 2])],
        [numpy_helper.from_array(hidden, "w1"), numpy_helper.from_array(head, "w2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    root.mkdir(parents=True)
    onnx.save(model, root / "model.onnx")
    (root / "manifest.toml").write_text(
        textwrap.dedent(f"""\
        [algorithm]
        name = "mlp"
        version = "1"
        kind = "onnx"
        model = "model.onnx"
        [input]
        kind = "dicom-image"
        shape = [-1, 1, {SIZE}, {SIZE}]
        [output]
        name = "probabilities"
        meaning = "class_probabilities"
        classes = 2
        """)
    )
    return root


def in_process(model: Path, batches: list[np.ndarray]) -> float:
    """Seconds for session creation and every batch, in this process."""
    started = time.perf_counter()
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    for batch in batches:
        session.run(["probabilities"], {"image": batch})
    return time.perf_counter() - started


def sandboxed(package: Path, batches: list[np.ndarray], work: Path) -> float:
    """Seconds for the whole sandboxed run, outputs validated."""
    started = time.perf_counter()
    run_algorithm(load_package(package), batches, limits=Limits(wall_seconds=600),
                  work_root=work)  # fmt: skip
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(machine())
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp:
        package = write_package(Path(tmp) / "mlp")
        times = {}
        for cases in (1, args.cases):
            images = rng.random((cases, 1, SIZE, SIZE), dtype=np.float32)
            batches = [images[i : i + BATCH] for i in range(0, cases, BATCH)]
            peer = statistics.median(
                in_process(package / "model.onnx", batches) for _ in range(args.repeats)
            )
            ours = statistics.median(
                sandboxed(package, batches, Path(tmp)) for _ in range(args.repeats)
            )
            times[cases] = (peer * 1000, ours * 1000)
    (peer_1, ours_1), (peer_n, ours_n) = times[1], times[args.cases]
    print_table(
        "ONNX inference: TEF sandbox vs in-process onnxruntime (ms, median of runs)",
        ["measure", "in-process", "sandbox", "sandbox / in-process"],
        [
            ("one case (fixed cost)", peer_1, ours_1, ours_1 / peer_1),
            (f"{args.cases:,} cases", peer_n, ours_n, ours_n / peer_n),
            (f"{args.cases:,} cases minus one", peer_n - peer_1, ours_n - ours_1,
             (ours_n - ours_1) / (peer_n - peer_1)),
        ],
    )  # fmt: skip
    exchange = ((ours_n - ours_1) - (peer_n - peer_1)) / (args.cases - 1) * 1000
    print(f"fixed cost {ours_1:.0f} ms (goal < 500); exchange {exchange:.1f} µs/case (goal < 50)")


if __name__ == "__main__":
    main()
