"""What the PS3.15 table generators share: the pinned innolitics/dicom-standard source, checked
against its SHA-256, and writing the generated module.

Imported by ``scripts/deid_build_table.py`` and ``scripts/deid_build_safe_private.py`` (run as
scripts, so this folder is on ``sys.path``).
"""

from __future__ import annotations

import argparse
import hashlib
import pathlib
import subprocess
import sys
import urllib.request

REPOSITORY = "https://raw.githubusercontent.com/innolitics/dicom-standard"


def pinned_url(commit: str, path: str) -> str:
    """Where ``path`` of the repository lies at ``commit``."""
    return f"{REPOSITORY}/{commit}/{path}"


def arguments(doc: str, source_help: str, output: pathlib.Path) -> argparse.Namespace:
    """``--source`` (a local copy instead of the download) and ``--output`` (default ``output``);
    the script's ``doc`` string's first line describes it."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--source", help=source_help)
    parser.add_argument("--output", default=str(output))
    return parser.parse_args()


def load(source: str | None, url: str, sha256: str, *, timeout: float) -> bytes:
    """Read ``source`` (a path) or download ``url``; refuse data whose SHA-256 is not ``sha256``."""
    if source:
        data = pathlib.Path(source).read_bytes()
    else:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = response.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise SystemExit(
            f"source SHA-256 {digest} differs from the pinned {sha256}: update the pin"
        )
    return bytes(data)


def write_module(output: str, text: str) -> None:
    """Write the generated module and format it as the project formats its code."""
    pathlib.Path(output).write_text(text, encoding="utf-8")
    subprocess.run([sys.executable, "-m", "ruff", "format", "--quiet", output], check=True)
