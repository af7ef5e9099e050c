"""The sandbox: good algorithms give validated scores; each bad one fails with its own reason."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tef_support import FAST, SIZE, python_package

from oncofed.tef.algorithm import load_package, run_algorithm
from oncofed.tef.sandbox import AlgorithmFailed, FailureReason, Limits, SandboxRun

BATCH = np.full((3, 1, SIZE, SIZE), 0.25, np.float32)

GOOD = """\
import numpy as np
def predict(batch):
    print("scoring", batch.shape)
    return batch.reshape(len(batch), -1).mean(axis=1)
"""

BAD = {
    "raises": ("def predict(batch):\n    raise RuntimeError('model weights missing')\n",
               FailureReason.CRASHED, "RuntimeError: model weights missing"),
    "segfault": ("import ctypes\ndef predict(batch):\n    ctypes.string_at(0)\n",
                 FailureReason.CRASHED, "killed by SIGSEGV"),
    "exits": ("import os\ndef predict(batch):\n    os._exit(7)\n",
              FailureReason.CRASHED, "exited with status 7"),
    "spins": ("def predict(batch):\n    while True:\n        pass\n",
              FailureReason.TIMED_OUT, "CPU time"),
    "sleeps": ("import time\ndef predict(batch):\n    time.sleep(60)\n",
               FailureReason.TIMED_OUT, "still running after 4 s"),
    "floods": ("import os, sys\ndef predict(batch):\n    while True:\n"
               "        sys.stdout.buffer.write(os.urandom(4096))\n",
               FailureReason.BAD_OUTPUT, "printed more than"),
    "nan": ("import numpy as np\ndef predict(batch):\n    return np.full(len(batch), np.nan)\n",
            FailureReason.BAD_OUTPUT, "3 value(s) are NaN or infinite"),
    "shape": ("import numpy as np\ndef predict(batch):\n    return np.zeros((len(batch), 5))\n",
              FailureReason.BAD_OUTPUT, "shape (3, 5), expected (3,) or (3, 1)"),
    "rows": ("import numpy as np\ndef predict(batch):\n    return np.zeros(2)\n",
             FailureReason.BAD_OUTPUT, "expected 3 rows"),
    "range": ("import numpy as np\ndef predict(batch):\n    return np.full(len(batch), 1.5)\n",
              FailureReason.BAD_OUTPUT, "probability outside [0, 1]"),
    "text": ("def predict(batch):\n    return 'definitely cancer'\n",
             FailureReason.BAD_OUTPUT, "not an array of real numbers"),
    "objects": ("def predict(batch):\n    return [{'p': 0.5}] * len(batch)\n",
                FailureReason.CRASHED, "not numbers"),
    "socket": ("import socket\ndef predict(batch):\n"
               "    socket.create_connection(('127.0.0.1', 80), timeout=1)\n",
               FailureReason.NETWORK_ATTEMPT, "socket"),
    "swallowed-socket": ("import socket\nimport numpy as np\ndef predict(batch):\n    try:\n"
                         "        socket.socket().connect(('10.0.0.1', 443))\n"
                         "    except OSError:\n        pass\n    return np.zeros(len(batch))\n",
                         FailureReason.NETWORK_ATTEMPT, "socket"),
    "writes": ("def predict(batch):\n    open('/etc/oncofed-was-here', 'w').write('x')\n",
               FailureReason.WROTE_OUTSIDE_SANDBOX, "/etc/oncofed-was-here"),
    "memory": ("def predict(batch):\n    hog = bytearray(2 * 1024 ** 3)\n",
               FailureReason.OUT_OF_MEMORY, "needed more than 256 MiB"),
}  # fmt: skip


def run_code(tmp_path: Path, name: str, code: str) -> SandboxRun:
    """Package ``code`` as a Python algorithm and run it on ``BATCH`` with the fast limits."""
    package = load_package(python_package(tmp_path / name, code))
    return run_algorithm(package, [BATCH], limits=FAST, work_root=tmp_path / "work")


def test_good_algorithm_scores_and_reports_isolation(tmp_path: Path) -> None:
    package = load_package(python_package(tmp_path / "good", GOOD))
    run = run_algorithm(package, [BATCH, BATCH[:1]], limits=FAST, work_root=tmp_path / "work")
    assert [o.tolist() for o in run.outputs] == [[0.25] * 3, [0.25]]
    assert "scoring (3, 1, 16, 16)" in run.log_tail
    assert run.isolation["network"] == "namespace without interfaces"
    assert run.isolation["processes"] == "own PID namespace"
    assert list((tmp_path / "work").iterdir()) == []  # the work folder is removed


@pytest.mark.parametrize("name", list(BAD))
def test_bad_algorithm_fails_with_its_reason(name: str, tmp_path: Path) -> None:
    code, reason, detail = BAD[name]
    package = load_package(python_package(tmp_path / name, code))
    wall = 4 if name == "sleeps" else 30  # CPU time runs out first for the spinning one
    limits = Limits(memory_mb=256, cpu_seconds=2, wall_seconds=wall, log_bytes=64 * 1024)
    with pytest.raises(AlgorithmFailed) as failed:
        run_algorithm(package, [BATCH], limits=limits, work_root=tmp_path / "work")
    assert failed.value.reason is reason
    assert detail in failed.value.message
    assert not Path("/etc/oncofed-was-here").exists()
    assert list((tmp_path / "work").iterdir()) == []


def test_some_garbage_on_stdout_is_only_logged(tmp_path: Path) -> None:
    code = (
        "import os, sys\nimport numpy as np\ndef predict(batch):\n"
        "    sys.stdout.buffer.write(os.urandom(2048))\n    sys.stderr.write('\\x00\\x1b[2J')\n"
        "    return np.full(len(batch), 0.5)\n"
    )
    run = run_code(tmp_path, "noisy", code)
    assert run.outputs[0].tolist() == [0.5, 0.5, 0.5]
    assert len(run.log_tail) >= 2048 // 2


def test_writes_inside_scratch_are_allowed(tmp_path: Path) -> None:
    code = (
        "import os, tempfile\nimport numpy as np\ndef predict(batch):\n"
        "    with tempfile.NamedTemporaryFile(dir=os.environ['TMPDIR']) as f:\n"
        "        f.write(b'cache')\n    return np.zeros(len(batch))\n"
    )
    run = run_code(tmp_path, "scratch", code)
    assert run.outputs[0].tolist() == [0.0, 0.0, 0.0]


def test_node_home_is_hidden_from_the_algorithm(tmp_path: Path) -> None:
    secret = tmp_path / "node" / "secrets"
    secret.mkdir(parents=True)
    (secret / "deid.key").write_text("0" * 64)
    code = (
        "import os\nimport numpy as np\ndef predict(batch):\n"
        f"    node = {str(tmp_path / 'node')!r}\n"
        "    seen = os.listdir(node) if os.path.exists(node) else []\n"
        "    return np.full(len(batch), float(len(seen)))\n"
    )
    package = load_package(python_package(tmp_path / "peek", code, meaning="ordinal_score",
                                          classes=6))  # fmt: skip
    run = run_algorithm(
        package, [BATCH], limits=FAST, work_root=tmp_path / "work", hide=(tmp_path / "node",)
    )
    assert run.outputs[0].tolist() == [0.0, 0.0, 0.0]


RUNNER = """\
import json, sys
from pathlib import Path
import numpy as np
from oncofed.tef.sandbox import Invocation, SandboxUnavailable, run_sandboxed
package, allow, work = Path(sys.argv[1]), sys.argv[2] == "allow", Path(sys.argv[3])
try:
    run = run_sandboxed(Invocation(package, "python", entry_point="algo:predict"),
                        [np.ones((2, 1, 16, 16), np.float32)], lambda a, n: None,
                        allow_network=allow, work_root=work)
    print(json.dumps({"outputs": run.outputs[0].tolist(), "isolation": run.isolation}))
except SandboxUnavailable as exc:
    print(json.dumps({"error": exc.code, "message": exc.message}))
"""


def as_other_user(tmp_path: Path, allow: str, *, user_namespaces: int | None) -> dict[str, Any]:
    """Run RUNNER as uid 1000 in a user namespace (optionally limiting nested namespaces)."""
    if shutil.which("unshare") is None:
        pytest.skip("needs util-linux unshare")
    if subprocess.run(["unshare", "--user", "true"], capture_output=True).returncode != 0:
        pytest.skip("user namespaces are not available here")
    package = python_package(tmp_path / "good", GOOD)
    (tmp_path / "runner.py").write_text(RUNNER)
    command = [sys.executable, str(tmp_path / "runner.py"), str(package), allow,
               str(tmp_path / "work")]  # fmt: skip
    as_1000 = ["unshare", "--user", "--map-user=1000", "--map-group=1000", *command]
    if user_namespaces is not None:  # one more namespace allowed: the one as_1000 makes
        limit = f'echo {user_namespaces} > /proc/sys/user/max_user_namespaces && exec "$@"'
        as_1000 = ["unshare", "--user", "--map-root-user", "sh", "-c", limit, "sh", *as_1000]
    done = subprocess.run(as_1000, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_unprivileged_node_isolates_with_user_namespaces(tmp_path: Path) -> None:
    result = as_other_user(tmp_path, "deny", user_namespaces=None)
    assert result["outputs"] == [1.0, 1.0]
    assert result["isolation"]["network"] == "namespace without interfaces"
    assert "nested user namespace" in result["isolation"]["user"]


def test_without_namespaces_runs_are_refused_unless_network_is_allowed(tmp_path: Path) -> None:
    refused = as_other_user(tmp_path, "deny", user_namespaces=1)
    assert refused["error"] == "sandbox_unavailable"
    assert "allow network access explicitly" in refused["message"]
    allowed = as_other_user(tmp_path, "allow", user_namespaces=1)
    assert allowed["outputs"] == [1.0, 1.0]
    assert allowed["isolation"]["network"] == "not isolated (allowed explicitly)"
