"""`oncofed tef`: validate algorithm packages, evaluate them on a benchmark at a local node."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from oncofed.cli.options import JsonOption, NodeOption
from oncofed.node import Node
from oncofed.tef.algorithm import load_package, validate_package
from oncofed.tef.sandbox import Limits
from oncofed.tef.spec import load_spec

app = typer.Typer(help="Testing and experimentation facility: benchmarks and algorithms.")
console = Console()

AllowNetwork = Annotated[
    bool,
    typer.Option(
        "--allow-network",
        help="Run even where the algorithm cannot be cut off from the network (not advised).",
    ),
]
MemoryOption = Annotated[int, typer.Option(help="Memory limit of the algorithm, MiB.")]
TimeOption = Annotated[float, typer.Option(help="Wall-clock limit of the algorithm, seconds.")]


@app.command("validate")
def validate(
    algorithm: Annotated[Path, typer.Argument(help="Algorithm package folder (manifest.toml).")],
    allow_network: AllowNetwork = False,
    memory_mb: MemoryOption = 2048,
    wall_seconds: TimeOption = 300.0,
    as_json: JsonOption = False,
) -> None:
    """Check the manifest and files, the ONNX graph, and dry-run it in the sandbox."""
    limits = Limits(memory_mb=memory_mb, wall_seconds=wall_seconds)
    report = validate_package(algorithm.resolve(), limits=limits, allow_network=allow_network)
    summary = {
        "algorithm": report.package.to_dict(),
        "graph": report.graph,
        "dry_run_output_shape": list(report.dry_run_shape),
        "isolation": report.isolation,
        "seconds": report.seconds,
    }
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    info = report.package.to_dict()
    console.print(f"[green]valid[/green] {info['name']} {info['version']} ({info['kind']})")
    console.print(f"  sha256 {info['sha256']}")
    console.print(f"  dry run: output shape {tuple(report.dry_run_shape)} in {report.seconds} s")
    console.print(f"  isolation: {report.isolation.get('network')}; {report.isolation.get('user')}")


@app.command("run")
def run(
    benchmark: Annotated[Path, typer.Argument(help="Benchmark spec (.yaml, .json or .toml).")],
    algorithm: Annotated[Path, typer.Argument(help="Algorithm package folder.")],
    node: NodeOption = Path("."),
    allow_network: AllowNetwork = False,
    memory_mb: MemoryOption = 2048,
    wall_seconds: TimeOption = 900.0,
    as_json: JsonOption = False,
) -> None:
    """Evaluate ALGORITHM on BENCHMARK at one node; predictions stay in the node home."""
    # imported here: the metrics stack loads only when something is evaluated
    from oncofed.tef.evaluate import EvaluationOptions, evaluate_at_node

    spec = load_spec(benchmark)
    package = load_package(algorithm)
    options = EvaluationOptions(
        limits=Limits(memory_mb=memory_mb, wall_seconds=wall_seconds), allow_network=allow_network
    )
    with Node(node.resolve()) as opened:  # the sandbox hides the node home by its full path
        result = evaluate_at_node(opened, spec, package, options)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        _print_result(result)
    if result["status"] != "completed":
        sys.exit(1)


def _print_result(result: dict[str, Any]) -> None:
    bench, algo = result["benchmark"], result["algorithm"]
    console.print(f"{bench['id']} {bench['version']}  x  {algo['name']} {algo['version']}"
                  f"  at node {result['node']}: [bold]{result['status']}[/bold]")  # fmt: skip
    if result["status"] != "completed":
        failure = result["failure"]
        console.print(f"[red]{failure['reason']}[/red]: {failure['detail']}")
        return
    console.print(f"cases: {result['data']['cases']}  per class: {result['data']['per_class']}"
                  f"  left out: {result['data']['excluded'] or 'none'}")  # fmt: skip
    primary = result["primary_metric"]
    table = Table("group", "value", "cases", primary)
    table.add_row(
        "all", "", str(result["metrics"].get("cases")), _metric(result["metrics"], primary)
    )
    for key, groups in result["subgroups"].items():
        for value, entry in groups.items():
            table.add_row(key, value, str(entry.get("cases")), _metric(entry, primary))
    console.print(table)
    console.print(f"predictions (kept at the node): {result['predictions']['stored_at_node']}")


def _metric(entry: dict[str, Any], name: str) -> str:
    if "withheld" in entry:
        return f"withheld ({entry['withheld']})"
    return json.dumps(entry.get(name))
