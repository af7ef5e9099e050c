"""Generate ``src/oncofed/deid/safe_private_table.py`` from PS3.15 Table E.3.10-1.

Table E.3.10-1 (Safe Private Attributes) lists private attributes that vendors state carry no
identifying information: data element ``(gggg,xxee)``, private creator, VR, VM and meaning. The
source is the DocBook HTML of PS3.15 kept by the innolitics/dicom-standard project
(``dicom_standard/standard/part15.html``, the same project and approach as
``scripts/deid_build_table.py``). The script pins one commit and the file's SHA-256, so regenerating
gives the same module until someone deliberately moves the pin.

Regenerate (needs network once; or pass a local copy with --source)::

    python scripts/deid_build_safe_private.py
    python scripts/deid_build_safe_private.py --source /path/to/part15.html

Move to a newer edition: set ``COMMIT``, ``EDITION`` and ``SHA256`` below, rerun, review the diff.
"""

from __future__ import annotations

import argparse
import hashlib
import pathlib
import re
import subprocess
import sys
import urllib.request
from html.parser import HTMLParser

from pydicom.valuerep import STANDARD_VR

# The newest part15.html of that repository whose content the pinned snapshot holds (newer
# revisions, 2024b/2024e, were not retrievable when this was written): DICOM PS3.15 2020b.
COMMIT = "db94f23df351b4c425da1bcdd3ed22a3d38fb7c3"
EDITION = "2020b"
SHA256 = "1fb2e239d52932513e4de1de8ed37e5925856cb58fbbdd882a0cdf7da5a3de86"
URL = (
    "https://raw.githubusercontent.com/innolitics/dicom-standard/"
    f"{COMMIT}/dicom_standard/standard/part15.html"
)
OUTPUT = pathlib.Path(__file__).resolve().parents[1] / "src/oncofed/deid/safe_private_table.py"
TABLE_ID = 'id="table_E.3.10-1"'
TAG = re.compile(r"^\(([0-9A-Fa-f]{4}),xx([0-9A-Fa-f]{2})\)$")
VRS = frozenset(str(vr) for vr in STANDARD_VR)


class _Table(HTMLParser):
    """Collects the text of every cell of the first table after ``TABLE_ID``, row by row."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._done:
            return
        if tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if self._done:
            return
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None
        elif tag == "table":
            self._done = True

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def load(source: str | None) -> bytes:
    """Read the HTML from ``source`` (a path) or download the pinned copy."""
    if source:
        data = pathlib.Path(source).read_bytes()
    else:
        with urllib.request.urlopen(URL, timeout=120) as response:
            data = response.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        raise SystemExit(
            f"source SHA-256 {digest} differs from the pinned {SHA256}: update the pin"
        )
    return data


def parse(html: str) -> list[tuple[str, int, int, str, str, str, str]]:
    """Return (creator, group, element, VR, VM, action, meaning) for every row of the table."""
    start = html.index(TABLE_ID)
    table = _Table()
    table.feed(html[start:])
    header, *body = table.rows
    columns = {name.lower(): i for i, name in enumerate(header)}
    for required in ("data element", "private creator", "vr", "vm", "meaning"):
        if required not in columns:
            raise SystemExit(f"Table E.3.10-1 has no {required!r} column: {header}")
    rows = []
    for row in body:
        match = TAG.match(row[columns["data element"]])
        if not match:
            raise SystemExit(f"unparseable data element {row[columns['data element']]!r}")
        group, element = int(match[1], 16), int(match[2], 16)
        if not group & 1:
            raise SystemExit(f"({group:04X},xx{element:02X}) is not in a private group")
        vr = row[columns["vr"]]
        if vr and vr not in VRS:
            raise SystemExit(f"({group:04X},xx{element:02X}) has unknown VR {vr!r}")
        # Editions without an Action column list attributes to retain: K.
        action = row[columns["action"]] if "action" in columns else "K"
        creator = row[columns["private creator"]]
        rows.append((creator, group, element, vr, row[columns["vm"]], action, row[-1]))
    return rows


def render(rows: list[tuple[str, int, int, str, str, str, str]]) -> str:
    """Return the generated module's source text."""
    lines = []
    for creator, group, element, vr, vm, action, meaning in rows:
        lines.append(f"    # {meaning[:90]}")
        lines.append(
            f"    ({creator!r}, 0x{group:04X}, 0x{element:02X}, {vr!r}, {vm!r}, {action!r}),"
        )
    return "\n".join(
        [
            "# Generated by scripts/deid_build_safe_private.py from innolitics/dicom-standard",
            f"# commit {COMMIT},",
            f"# dicom_standard/standard/part15.html (sha256 {SHA256[:16]}...),",
            f"# i.e. DICOM PS3.15 {EDITION}, Table E.3.10-1. Do not edit: regenerate.",
            '"""PS3.15 Table E.3.10-1 Safe Private Attributes (generated)."""',
            "",
            "from __future__ import annotations",
            "",
            "# (private creator, group, element offset in the creator's block, VR ('' where the",
            "# table gives none), VM, action)",
            "SafePrivate = tuple[str, int, int, str, str, str]",
            "",
            f'EDITION = "{EDITION}"',
            f'SOURCE = "innolitics/dicom-standard@{COMMIT}"',
            "",
            "SAFE_PRIVATE: tuple[SafePrivate, ...] = (",
            *lines,
            ")",
            "",
        ]
    )


def main() -> None:
    """Parse arguments, build the module, write it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", help="local copy of part15.html")
    parser.add_argument("--output", default=str(OUTPUT))
    args = parser.parse_args()
    rows = parse(load(args.source).decode("utf-8"))
    pathlib.Path(args.output).write_text(render(rows), encoding="utf-8")
    subprocess.run([sys.executable, "-m", "ruff", "format", "--quiet", args.output], check=True)
    print(f"wrote {args.output}: {len(rows)} rows from PS3.15 {EDITION} Table E.3.10-1")


if __name__ == "__main__":
    main()
