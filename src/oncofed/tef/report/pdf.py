"""PDF export of an HTML report with headless Chromium (Debian package ``chromium``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from oncofed.storage.atomic import write_atomic
from oncofed.tef.report.model import ReportError

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
PDF_MAGIC = b"%PDF-"


def find_chromium() -> str:
    """The first Chromium on PATH, or a ReportError saying how to install one."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise ReportError(
        "PDF export needs headless Chromium, and none of "
        f"{', '.join(CHROMIUM_NAMES)} is on PATH: install the Debian package 'chromium'"
        " (apt-get install chromium, or make deps)"
    )


def export_pdf(
    html: str, destination: Path, *, chromium: str | None = None, timeout: float = 120.0
) -> Path:
    """Print ``html`` to a PDF at ``destination`` (written atomically); returns the path.

    Chromium runs with a throw-away profile and home inside a temporary folder, so nothing is
    written anywhere else.
    """
    program = chromium or find_chromium()
    with tempfile.TemporaryDirectory(prefix="oncofed-pdf-") as scratch:
        work = Path(scratch)
        page, printed = work / "report.html", work / "report.pdf"
        page.write_text(html, encoding="utf-8")
        env = {**os.environ, "HOME": str(work), "XDG_CONFIG_HOME": str(work / "config"),
               "XDG_CACHE_HOME": str(work / "cache")}  # fmt: skip
        command = [
            program, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-extensions", "--disable-background-networking", "--no-pdf-header-footer",
            f"--user-data-dir={work / 'profile'}", f"--print-to-pdf={printed}", page.as_uri(),
        ]  # fmt: skip
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                  env=env, check=False)  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise ReportError(f"Chromium did not print the report within {timeout:.0f} s") from exc
        except OSError as exc:
            raise ReportError(f"Chromium at {program!r} could not be started: {exc}") from exc
        data = printed.read_bytes() if printed.exists() else b""
        if not data.startswith(PDF_MAGIC):
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            said = " / ".join(tail) or "no output"
            raise ReportError(f"Chromium printed no PDF (exit {done.returncode}): {said}")
    return write_atomic(Path(destination), data)
