"""Run an algorithm in a confined child process and bring back only validated score arrays.

The child (:mod:`oncofed.tef.worker`) gets a private work folder: ``pkg/`` (a copy of the
algorithm package) and ``in/`` (input batches as ``.npy``) read-only, ``out/`` and ``scratch/``
writable. It enters a network namespace without interfaces and a mount namespace where every
other mount is read-only and ``/tmp`` and the node home are empty, drops root, and runs under
rlimits. This process enforces what the child cannot be trusted with: the wall-clock limit (the
whole process group is killed), bounded stdout/stderr capture, and validation of every output
(``.npy`` read with ``allow_pickle=False``: numbers only, right shape, finite). Each way an
algorithm can fail raises :class:`AlgorithmFailed` with a :class:`FailureReason`; a node that
cannot isolate raises :class:`SandboxUnavailable` unless network access is allowed explicitly.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from oncofed.errors import OncofedError
from oncofed.tef import worker

WORKER = Path(worker.__file__)
CHILD_ENV = {
    "PATH": "/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
MiB = 1 << 20


class FailureReason(StrEnum):
    """Why an algorithm's run failed."""

    CRASHED = "crashed"
    TIMED_OUT = "timed_out"
    OUT_OF_MEMORY = "out_of_memory"
    NETWORK_ATTEMPT = "network_attempt"
    WROTE_OUTSIDE_SANDBOX = "wrote_outside_sandbox"
    BAD_OUTPUT = "bad_output"


class AlgorithmFailed(OncofedError):
    """The algorithm failed in the sandbox; the node and its data are untouched."""

    code = "algorithm_failed"

    def __init__(
        self, reason: FailureReason, detail: str, log_tail: str = "", *, public: str | None = None
    ) -> None:
        super().__init__(f"algorithm {reason.value.replace('_', ' ')}: {detail}")
        self.reason = reason
        self.detail = detail
        self.log_tail = log_tail
        self.public_detail = detail if public is None else public
        """The detail without text the algorithm chose (which could carry case data)."""


class SandboxUnavailable(OncofedError):
    """This machine cannot isolate an algorithm from the network, and that was not waived."""

    code = "sandbox_unavailable"


@dataclass(frozen=True)
class Limits:
    """Resources one algorithm run may use."""

    memory_mb: int = 2048
    """Address space on top of the runtime's own (Python, numpy, onnxruntime)."""
    cpu_seconds: int = 600
    wall_seconds: float = 900.0
    open_files: int = 256
    file_mb: int = 512
    """Largest file the child may write (each output batch)."""
    log_bytes: int = 1 * MiB
    """stdout + stderr beyond this is a failure (bad output)."""

    def for_child(self) -> dict[str, int]:
        """The limits the child applies to itself."""
        return {
            "memory_bytes": self.memory_mb * MiB,
            "cpu_seconds": self.cpu_seconds,
            "open_files": self.open_files,
            "file_bytes": self.file_mb * MiB,
        }


@dataclass(frozen=True)
class Invocation:
    """What the child runs: an ONNX model or a Python entry point inside the package folder."""

    package: Path
    kind: str
    """``onnx`` or ``python``."""
    model: str = ""
    """ONNX file, relative to the package."""
    entry_point: str = ""
    """``module:function`` for Python packages."""
    wheel: str = ""
    """Wheel file, relative to the package, put on the child's import path."""
    input_name: str = "image"
    output_name: str = ""


@dataclass
class SandboxRun:
    """A successful run: one validated output per input batch, and what was enforced."""

    outputs: list[NDArray[np.float64]]
    isolation: dict[str, Any]
    graph: dict[str, Any]
    """For ONNX: the model's inputs and outputs as onnxruntime reports them."""
    log_tail: str
    seconds: float
    notes: list[str] = field(default_factory=list)


OutputCheck = Callable[[NDArray[np.float64], int], None]
"""Raises ``ValueError`` when an output array (for a batch of n cases) is wrong."""


def run_sandboxed(
    invocation: Invocation,
    batches: Iterable[NDArray[Any]],
    check: OutputCheck,
    *,
    limits: Limits | None = None,
    allow_network: bool = False,
    work_root: Path | None = None,
    hide: Sequence[Path] = (),
) -> SandboxRun:
    """Run ``invocation`` over ``batches`` in a confined child; every output passes ``check``.

    Batches are written to the work folder as they come, so only one is in memory at a time.
    """
    limits = limits or Limits()
    work_root = work_root or Path(tempfile.gettempdir())
    work_root.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="sandbox-", dir=work_root))
    try:
        sizes = _prepare(workdir, invocation, batches, limits, allow_network, hide)
        started = time.monotonic()
        ended = _execute(workdir, limits)
        seconds = time.monotonic() - started
        status = _read_status(workdir)
        _raise_for_failure(workdir, status, ended, limits)
        outputs = [
            _load_output(workdir, i, size, check, limits, ended.log) for i, size in enumerate(sizes)
        ]
        return SandboxRun(outputs, status["isolation"], status.get("graph", {}), ended.log, seconds)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _batch_name(index: int) -> str:
    return f"batch-{index:06d}.npy"


def _prepare(
    workdir: Path,
    invocation: Invocation,
    batches: Iterable[NDArray[Any]],
    limits: Limits,
    allow_network: bool,
    hide: Sequence[Path],
) -> list[int]:
    """Lay out the work folder: read-only package and inputs, writable out/ and scratch/;
    returns the number of rows of each batch."""
    workdir.chmod(0o755)
    shutil.copytree(invocation.package, workdir / "pkg", symlinks=True)
    (workdir / "in").mkdir()
    sizes = []
    for index, batch in enumerate(batches):
        target = workdir / "in" / _batch_name(index)
        np.save(target, np.ascontiguousarray(batch), allow_pickle=False)
        sizes.append(len(batch))
    for name in worker.WRITABLE:
        (workdir / name).mkdir()
    request = {
        "kind": invocation.kind,
        "model": f"pkg/{invocation.model}" if invocation.model else "",
        "entry_point": invocation.entry_point,
        "wheel": f"pkg/{invocation.wheel}" if invocation.wheel else "",
        "input_name": invocation.input_name,
        "output_name": invocation.output_name,
        "limits": limits.for_child(),
        "allow_network": allow_network,
        "hide": [str(p.resolve()) for p in hide if p.is_dir()],
    }
    (workdir / "request.json").write_text(json.dumps(request), encoding="utf-8")
    for path in [workdir / "pkg", workdir / "in", workdir / "request.json"]:
        _make_readable(path)
    return sizes


def _make_readable(path: Path) -> None:
    """Directories 0755, files 0644 (an unprivileged sandbox user reads them)."""
    if path.is_dir():
        path.chmod(0o755)
        for child in path.rglob("*"):
            child.chmod(0o755 if child.is_dir() else 0o644)
    else:
        path.chmod(0o644)


@dataclass(frozen=True)
class Ended:
    """How the child process ended."""

    returncode: int
    cpu_seconds: float
    log: str
    flooded: bool
    timed_out: bool


def _execute(workdir: Path, limits: Limits) -> Ended:
    """Run the child, capture its output (bounded), enforce the wall-clock limit."""
    process = subprocess.Popen(
        [sys.executable, "-I", "-B", str(WORKER), str(workdir)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=CHILD_ENV,
        cwd=workdir,
        start_new_session=True,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + limits.wall_seconds
    tail = bytearray()
    total = 0
    flooded = timed_out = False
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            if not selector.select(timeout=min(remaining, 1.0)):
                continue
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                break
            total += len(chunk)
            tail = (tail + chunk)[-16384:]
            if total > limits.log_bytes:
                flooded = True
                break
    if flooded or timed_out:
        _kill_group(process.pid)
    returncode, cpu_seconds = _wait(process, deadline)
    if returncode is None:  # closed its output but kept running
        timed_out = True
        _kill_group(process.pid)
        returncode, cpu_seconds = _wait(process, None)
    _kill_group(process.pid)  # anything it left behind in its group
    process.stdout.close()
    assert returncode is not None
    return Ended(returncode, cpu_seconds, tail.decode("utf-8", errors="replace"), flooded,
                 timed_out)  # fmt: skip


def _wait(process: subprocess.Popen[bytes], deadline: float | None) -> tuple[int | None, float]:
    """Exit status and CPU seconds of the child (os.wait4: Popen.wait gives no usage)."""
    while True:
        pid, status, usage = os.wait4(process.pid, 0 if deadline is None else os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return process.returncode, usage.ru_utime + usage.ru_stime
        if deadline is not None and time.monotonic() > deadline:
            return None, 0.0
        time.sleep(0.02)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _read_status(workdir: Path) -> dict[str, Any]:
    path = workdir / "out" / "status.json"
    try:
        if path.is_file() and path.stat().st_size < MiB:
            status = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(status, dict):
                return status
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        pass
    return {}


def _events(workdir: Path) -> list[dict[str, str]]:
    path = workdir / "out" / "events.log"
    if not path.is_file():
        return []
    events = []
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle.readlines(MiB):
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(event, dict):
                events.append({str(k): str(v) for k, v in event.items()})
    return events


def _raise_for_failure(workdir: Path, status: dict[str, Any], ended: Ended, limits: Limits) -> None:
    """Turn how the child ended into one clear reason (the first that applies)."""
    if status.get("error") == "isolation":
        raise SandboxUnavailable(
            "cannot isolate the algorithm from the network on this machine"
            f" ({status.get('detail')}); run as root or enable unprivileged user namespaces,"
            " or allow network access explicitly"
        )
    log, code = ended.log, ended.returncode
    events = _events(workdir)
    for kind, reason in (("network", FailureReason.NETWORK_ATTEMPT),
                         ("write", FailureReason.WROTE_OUTSIDE_SANDBOX)):  # fmt: skip
        tried = [e["detail"] for e in events if e.get("kind") == kind]
        if tried:
            count = f"refused {len(tried)} time(s)"
            raise AlgorithmFailed(reason, f"{count}, first: {tried[0]}", log, public=count)
    if ended.timed_out:
        raise AlgorithmFailed(
            FailureReason.TIMED_OUT, f"still running after {limits.wall_seconds:g} s", log
        )
    if ended.flooded:
        raise AlgorithmFailed(
            FailureReason.BAD_OUTPUT, f"printed more than {limits.log_bytes} bytes", log
        )
    if code == -signal.SIGXCPU or (code == -signal.SIGKILL
                                   and ended.cpu_seconds >= limits.cpu_seconds):  # fmt: skip
        raise AlgorithmFailed(
            FailureReason.TIMED_OUT, f"used more than {limits.cpu_seconds} s of CPU time", log
        )
    if status.get("ok") and code == 0:
        return
    if status.get("error"):
        reason = FailureReason(status["error"])
        detail = str(status.get("detail", ""))
        public = "raised an exception"
        if reason is FailureReason.OUT_OF_MEMORY:
            public = f"needed more than {limits.memory_mb} MiB"
            detail = f"{public}: {detail}"
        traceback = str(status.get("traceback", "")) or log
        raise AlgorithmFailed(reason, detail, traceback, public=public)
    if code == -signal.SIGKILL:
        raise AlgorithmFailed(
            FailureReason.OUT_OF_MEMORY, "killed by the system (out of memory)", log
        )
    if code < 0:
        name = signal.Signals(-code).name
        raise AlgorithmFailed(FailureReason.CRASHED, f"killed by {name}", log)
    raise AlgorithmFailed(FailureReason.CRASHED, f"exited with status {code}", log)


def _load_output(
    workdir: Path, index: int, cases: int, check: OutputCheck, limits: Limits, log: str
) -> NDArray[np.float64]:
    """Read one output batch as numbers (never pickles) and validate it."""
    path = workdir / "out" / _batch_name(index)

    def bad(detail: str) -> AlgorithmFailed:
        return AlgorithmFailed(FailureReason.BAD_OUTPUT, f"batch {index}: {detail}", log)

    if not path.is_file() or path.is_symlink():
        raise bad("no output written")
    if path.stat().st_size > limits.file_mb * MiB:
        raise bad(f"output larger than {limits.file_mb} MiB")
    try:
        raw = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise bad(f"not a numeric .npy array ({exc})") from exc
    if not isinstance(raw, np.ndarray) or raw.dtype.kind not in "biuf":
        raise bad(f"not an array of real numbers (dtype {getattr(raw, 'dtype', type(raw))})")
    array = raw.astype(np.float64)
    if array.ndim == 0 or array.shape[0] != cases:
        raise bad(f"shape {array.shape}, expected {cases} rows (one per case)")
    if not np.isfinite(array).all():
        raise bad(f"{int((~np.isfinite(array)).sum())} value(s) are NaN or infinite")
    try:
        check(array, cases)
    except ValueError as exc:
        raise bad(str(exc)) from exc
    return array
