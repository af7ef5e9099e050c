"""Options shared by several command groups."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

NodeOption = Annotated[
    Path,
    typer.Option(
        "--node",
        "-n",
        envvar="ONCOFED_NODE",
        help="Node home folder (made by `oncofed node init`).",
        show_default=True,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
