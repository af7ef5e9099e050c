"""The sandbox child: confine this process, then run one algorithm over the input batches.

Run as ``python -I -B worker.py WORKDIR`` by :mod:`oncofed.tef.sandbox`, never imported by the
node. It imports only the standard library until it is confined, because namespaces can only be
entered by a single-threaded process (numpy starts threads on import). Order of events:

1. new network namespace (no interfaces up: every connect fails) and mount namespace;
2. every mount re-mounted read-only, a private tmpfs over ``/tmp``, the work folder bound at
   ``/tmp/sandbox`` with only ``out/`` and ``scratch/`` writable;
3. a new PID namespace (the child sees and can signal only its own processes); as root, every
   capability dropped (the mounts cannot be undone, nothing regained by exec); otherwise a
   nested user namespace locks the mounts;
4. no-new-privileges, resource limits (memory, CPU time, open files, file size);
5. an audit hook that records (and refuses) socket use and writes outside the sandbox, so the
   parent can name the reason even when the algorithm swallows the error;
6. load the model or entry point, run every ``in/batch-*.npy``, write ``out/batch-*.npy``.

The outcome goes to ``out/status.json``; audit events to ``out/events.log`` as they happen.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x20000, 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
ST_RELATIME = 4096
PR_SET_NO_NEW_PRIVS, PR_CAPBSET_DROP, PR_SET_SECUREBITS = 38, 24, 28
SECURE_ALL_LOCKED = 0x2F  # noroot, no-setuid-fixup and keep-caps, each locked
CAPABILITY_VERSION_3 = 0x20080522
SANDBOX_MOUNT = "/tmp/sandbox"
WRITABLE = ("out", "scratch")
EXIT_ISOLATION = 3
EXIT_FAILED = 4
_KEEP_MOUNT_FLAGS = ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
                     (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME),
                     (ST_RELATIME, MS_RELATIME))  # fmt: skip
_NETWORK_EVENTS = {"socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg",
                   "socket.getaddrinfo", "socket.gethostbyname",
                   "socket.gethostbyaddr"}  # fmt: skip
_INET_FAMILIES = {2, 10, 17}  # AF_INET, AF_INET6, AF_PACKET
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_WRITE_EVENTS = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.symlink", "os.link",
                 "os.truncate", "os.chmod", "os.chown", "shutil.rmtree", "shutil.move"}  # fmt: skip


class IsolationUnavailable(Exception):
    """The kernel refused a namespace or mount this sandbox needs."""


_libc = ctypes.CDLL(None, use_errno=True)


def _call(name: str, *args: Any) -> None:
    if getattr(_libc, name)(*args) != 0:
        errno = ctypes.get_errno()
        raise IsolationUnavailable(f"{name}{args!r}: {os.strerror(errno)}")


def _encode(value: str | None) -> bytes | None:
    return None if value is None else value.encode()


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    _call("mount", _encode(source), target.encode(), _encode(fstype), ctypes.c_ulong(flags),
          _encode(data or None))  # fmt: skip


def _python_under_tmp() -> list[str]:
    """Folders of this interpreter (prefix, import path) that lie under /tmp, outermost only:
    the private /tmp would hide them (a checkout or virtual environment in /tmp)."""
    candidates = {sys.prefix, sys.base_prefix, *sys.path}
    found = sorted(os.path.realpath(p) for p in candidates if p and os.path.isdir(p))
    under = [p for p in found if p.startswith("/tmp/")]
    outermost: list[str] = []
    for path in under:
        if not any(path == o or path.startswith(o + "/") for o in outermost):
            outermost.append(path)
    return outermost


def _mount_points() -> list[str]:
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            raw = line.split()[4]
            points.append(raw.encode().decode("unicode_escape"))  # \040 for spaces, etc.
    return points


def _remount_read_only(point: str, notes: list[str]) -> None:
    try:
        kept = os.statvfs(point).f_flag
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY
        flags |= sum(ms for st, ms in _KEEP_MOUNT_FLAGS if kept & st)
        _mount(None, point, None, flags)
    except (IsolationUnavailable, OSError) as exc:
        notes.append(f"{point} left as is ({exc})")


def _write_id_map(uid: int, gid: int) -> None:
    Path("/proc/self/setgroups").write_text("deny", encoding="ascii")
    Path("/proc/self/uid_map").write_text(f"0 {uid} 1", encoding="ascii")
    Path("/proc/self/gid_map").write_text(f"0 {gid} 1", encoding="ascii")


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32))  # fmt: skip


def _drop_capabilities() -> None:
    """Root without capabilities: cannot remount, signal outside, or regain them by exec."""
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text(encoding="ascii"))
    for cap in range(last + 1):
        _call("prctl", PR_CAPBSET_DROP, cap, 0, 0, 0)
    _call("prctl", PR_SET_SECUREBITS, SECURE_ALL_LOCKED, 0, 0, 0)
    header = _CapHeader(CAPABILITY_VERSION_3, 0)
    _call("capset", ctypes.byref(header), ctypes.byref((_CapData * 2)()))


def _reap(child: int) -> NoReturn:
    """Outside the new PID namespace: wait for the child and end exactly as it ended."""
    code = EXIT_FAILED
    try:
        _, status = os.waitpid(child, 0)
        code = os.waitstatus_to_exitcode(status)
        if code < 0 and -code not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(-code, signal.SIG_DFL)
        if code < 0:
            os.kill(os.getpid(), -code)
    finally:
        os._exit(code if code >= 0 else 128 - code)


def confine(workdir: Path, hide: list[str]) -> dict[str, Any]:
    """Enter the namespaces and lock the file system down; returns what was enforced.

    Forks: the calling process stays outside the new PID namespace to reap, and only the
    child returns. ``hide`` are folders (the node home) covered by an empty read-only tmpfs.
    """
    uid, gid = os.geteuid(), os.getegid()
    root = uid == 0
    _call("unshare", CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID | (0 if root else CLONE_NEWUSER))
    if not root:
        _write_id_map(uid, gid)
    child = os.fork()
    if child:
        _reap(child)
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    notes: list[str] = []
    keep = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except IsolationUnavailable as exc:
        notes.append(f"/proc shows the host's processes ({exc})")
    for point in _mount_points():
        if point == "/dev" or point.startswith(("/proc", "/sys")):
            continue
        _remount_read_only(point, notes)
    for folder in hide:
        _mount("sandbox-hidden", folder, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k")
    python = {path: os.open(path, os.O_RDONLY | os.O_DIRECTORY) for path in _python_under_tmp()}
    _mount("sandbox-tmp", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=16m,mode=0755")
    for path, handle in python.items():  # the interpreter and its packages stay visible
        os.makedirs(path)
        _mount(f"/proc/self/fd/{handle}", path, None, MS_BIND | MS_REC)
        os.close(handle)
        _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.mkdir(SANDBOX_MOUNT)
    _mount(f"/proc/self/fd/{keep}", SANDBOX_MOUNT, None, MS_BIND | MS_REC)
    os.close(keep)
    _mount(None, SANDBOX_MOUNT, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    for name in WRITABLE:
        target = f"{SANDBOX_MOUNT}/{name}"
        _mount(target, target, None, MS_BIND)
        _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV)
    _mount(None, "/tmp", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    if root:
        _drop_capabilities()
        user = "root without capabilities"
    else:
        _call("unshare", CLONE_NEWUSER | CLONE_NEWNS)  # mounts inherited here are locked
        _write_id_map(0, 0)
        user = "unprivileged user; mounts locked by a nested user namespace"
    os.chdir(SANDBOX_MOUNT)
    return {
        "network": "namespace without interfaces",
        "filesystem": "read-only mounts; writable: " + ", ".join(WRITABLE),
        "processes": "own PID namespace",
        "user": user,
        "hidden_folders": len(hide),
        "notes": notes,
    }


def set_limits(limits: dict[str, int]) -> None:
    """Resource limits on top of what the runtime needs after its imports."""
    _call("prctl", PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    status = Path("/proc/self/status").read_text(encoding="ascii")
    used = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in status.splitlines()
            if line.startswith(("VmSize:", "VmData:"))}  # fmt: skip
    memory = limits["memory_bytes"]
    for kind, base in (
        (resource.RLIMIT_AS, used["VmSize"]),
        (resource.RLIMIT_DATA, used["VmData"]),
    ):
        resource.setrlimit(kind, (base + memory, base + memory))
    cpu = limits["cpu_seconds"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits["open_files"],) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


class Guard:
    """Audit hook: records and refuses network use and writes outside the writable folders."""

    def __init__(self, events: Path, writable: list[str]) -> None:
        self.writable = [os.path.realpath(p) + os.sep for p in writable]
        self.log = open(events, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
        self.active = False

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.active:
            return
        if event in _NETWORK_EVENTS or (event == "socket.__new__" and args[1] in _INET_FAMILIES):
            self._refuse("network", f"{event} {args[1:]!r}"[:300])
        elif event == "open" and self._writes(args) and not self._inside(args[0]):
            self._refuse("write", str(args[0]))
        elif event in _WRITE_EVENTS and args and not self._inside(args[0]):
            self._refuse("write", f"{event} {args[0]}")

    @staticmethod
    def _writes(args: tuple[Any, ...]) -> bool:
        mode, flags = args[1], args[2]
        if isinstance(mode, str):
            return any(c in mode for c in "wax+")
        return isinstance(flags, int) and bool(flags & _WRITE_FLAGS)

    def _inside(self, path: Any) -> bool:
        if isinstance(path, int):
            return True  # an already-open descriptor: its opening was checked
        text = os.fsdecode(path)
        if text == os.devnull:
            return True
        real = os.path.realpath(text)
        return any((real + os.sep).startswith(w) for w in self.writable)

    def _refuse(self, kind: str, detail: str) -> None:
        self.log.write(json.dumps({"kind": kind, "detail": detail}) + "\n")  # no audit event
        raise PermissionError(f"oncofed sandbox: {kind} not allowed ({detail})")


def _load_python(request: dict[str, Any]) -> Callable[[Any], Any]:
    import importlib

    if request.get("wheel"):
        sys.path.insert(0, os.path.abspath(request["wheel"]))  # pure-Python wheels import as zips
    sys.path.insert(0, os.path.abspath("pkg"))
    module_name, _, function_name = request["entry_point"].partition(":")
    function = getattr(importlib.import_module(module_name), function_name)
    if not callable(function):
        raise TypeError(f"{request['entry_point']} is not callable")
    return function  # type: ignore[no-any-return]


def _load_onnx(request: dict[str, Any]) -> tuple[Callable[[Any], Any], dict[str, Any]]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(request["model"], options, providers=["CPUExecutionProvider"])

    def describe(items: list[Any]) -> list[dict[str, Any]]:
        return [{"name": i.name, "shape": [d if isinstance(d, int) else None for d in i.shape],
                 "type": i.type} for i in items]  # fmt: skip

    graph = {"inputs": describe(session.get_inputs()), "outputs": describe(session.get_outputs())}
    output, name = request["output_name"], request["input_name"]

    def infer(batch: Any) -> Any:
        return session.run([output], {name: batch})[0]

    return infer, graph


def run(request: dict[str, Any]) -> dict[str, Any]:
    """Run the algorithm over every input batch; returns the model description."""
    import numpy as np

    graph: dict[str, Any] = {}
    if request["kind"] == "onnx":
        predict, graph = _load_onnx(request)
    else:
        predict = _load_python(request)
    for batch_file in sorted(Path("in").glob("batch-*.npy")):
        batch = np.load(batch_file, allow_pickle=False)
        result = np.asarray(predict(batch))
        if result.dtype == object:
            raise TypeError(f"returned {type(result).__name__} of objects, not numbers")
        np.save(Path("out") / batch_file.name, result, allow_pickle=False)
    return graph


def _error_kind(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, MemoryError) or "bad_alloc" in text or "Failed to allocate" in text:
        return "out_of_memory"
    return "crashed"


def main(workdir: Path) -> int:
    """Confine, run, report; the exit status says whether ``status.json`` has the outcome."""
    request = json.loads((workdir / "request.json").read_text(encoding="utf-8"))
    signal.signal(signal.SIGXCPU, signal.SIG_DFL)  # the CPU limit must end the process
    # opened now: a confinement that fails half-way may have covered the work folder already
    early_status = open(workdir / "out" / "status.json", "w", encoding="utf-8")  # noqa: SIM115
    try:
        isolation = confine(workdir, request["hide"])
    except (IsolationUnavailable, OSError) as exc:
        if not request["allow_network"]:
            early_status.write(json.dumps({"error": "isolation", "detail": str(exc)}))
            early_status.close()
            return EXIT_ISOLATION
        os.chdir(workdir)
        isolation = {"network": "not isolated (allowed explicitly)", "detail": str(exc)}
    early_status.close()
    status_file = Path("out/status.json")
    os.environ["HOME"] = os.environ["TMPDIR"] = os.path.abspath("scratch")
    guard = Guard(Path("out/events.log"), list(WRITABLE))
    sys.addaudithook(guard)
    import numpy  # noqa: F401  (the runtime's own memory is not the algorithm's)

    if request["kind"] == "onnx":
        import onnxruntime  # noqa: F401
    set_limits(request["limits"])
    guard.active = True
    try:
        graph = run(request)
    except BaseException as exc:  # whatever the algorithm raised is its failure, reported
        guard.active = False
        tail = "".join(traceback.format_exception(exc))[-4000:]
        status = {"error": _error_kind(exc), "detail": f"{type(exc).__name__}: {exc}"[:1000]}
        status_file.write_text(json.dumps({**status, "traceback": tail, "isolation": isolation}))
        return EXIT_FAILED
    guard.active = False
    status_file.write_text(json.dumps({"ok": True, "graph": graph, "isolation": isolation}))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
