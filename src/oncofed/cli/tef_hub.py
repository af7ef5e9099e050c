"""`oncofed tef register|benchmarks|submit|report|leaderboard|compare`: the facility at a hub.

Admins register benchmarks for nodes; AI providers submit a package to a benchmark (the hub
validates it, then every node of the benchmark evaluates it in its sandbox) and fetch the run's
report as HTML or PDF; anyone signed in reads a benchmark's leaderboard.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from oncofed.cli.hub import HubUrl, Token, hub_request
from oncofed.cli.options import JsonOption
from oncofed.errors import ConfigError
from oncofed.storage.atomic import write_atomic
from oncofed.tef.algorithm import load_package, zip_package
from oncofed.tef.spec import load_spec

console = Console()
BenchmarkRef = Annotated[str, typer.Argument(help="Benchmark as ID@VERSION.")]
WaitOption = Annotated[float, typer.Option(help="Seconds to wait for the run to finish.")]
POLL_S = 1.0


def _benchmark_ref(reference: str) -> tuple[str, str]:
    """``ID@VERSION`` as (id, version)."""
    benchmark_id, _, version = reference.partition("@")
    if not benchmark_id or not version:
        raise ConfigError(f"name a benchmark as ID@VERSION, not {reference!r}")
    return benchmark_id, version


def register(
    spec: Annotated[Path, typer.Argument(help="Benchmark spec (.yaml, .json or .toml).")],
    node: Annotated[list[str], typer.Option(help="A node that takes part (repeatable).")],
    hub: HubUrl,
    token: Token,
) -> None:
    """Register a benchmark version at the hub for the named nodes (admin)."""
    body = {"spec": load_spec(spec).model_dump(mode="json"), "nodes": node}
    answer = hub_request("POST", f"{hub}/hub/v1/tef/benchmarks", token, json=body).json()
    console.print(f"registered {answer['id']}@{answer['version']} (sha256 {answer['sha256']})"
                  f" for {', '.join(answer['nodes'])}")  # fmt: skip


def benchmarks(hub: HubUrl, token: Token, as_json: JsonOption = False) -> None:
    """The benchmarks registered at the hub."""
    rows = hub_request("GET", f"{hub}/hub/v1/tef/benchmarks", token).json()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("benchmark", "task", "primary metric", "nodes", "synthetic")
    for row in rows:
        table.add_row(f"{row['id']}@{row['version']}", row["task"], row["primary_metric"],
                      ", ".join(row["nodes"]), "yes" if row["synthetic"] else "")  # fmt: skip
    console.print(table)


def submit(
    algorithm: Annotated[Path, typer.Argument(help="Algorithm package folder.")],
    benchmark: Annotated[str, typer.Option(help="Benchmark as ID@VERSION.")],
    hub: HubUrl,
    token: Token,
    leaderboard: Annotated[bool, typer.Option(help="List the result on the leaderboard.")] = True,
    wait: WaitOption = 0.0,
) -> None:
    """Submit a package (validated and dry-run at the hub) and run it at the benchmark's nodes;
    prints the run id (``oncofed tef report RUN`` fetches the outcome)."""
    load_package(algorithm)  # a clear local error before anything is sent
    archive = zip_package(algorithm.resolve())
    record = hub_request(
        "POST", f"{hub}/hub/v1/tef/algorithms", token, content=archive,
        headers={"Content-Type": "application/zip"}, timeout=300,
    ).json()  # fmt: skip
    console.print(f"accepted {record['name']} {record['version']} (sha256 {record['sha256']});"
                  f" dry run in {record['validation']['seconds']} s")  # fmt: skip
    benchmark_id, version = _benchmark_ref(benchmark)
    body = {"benchmark": benchmark_id, "version": version, "algorithm": record["sha256"],
            "leaderboard": leaderboard}  # fmt: skip
    run = hub_request("POST", f"{hub}/hub/v1/tef/runs", token, json=body).json()
    console.print(f"run {run['run_id']} started at {', '.join(run.get('progress', {}))}")
    if wait > 0:
        print_outcome(wait_for_run(hub, token, run["run_id"], wait))


def wait_for_run(hub: str, token: str, run_id: str, wait_s: float) -> dict[str, Any]:
    """The run's state, polled until it is no longer running or ``wait_s`` has passed."""
    end = time.monotonic() + wait_s
    while True:
        run: dict[str, Any] = hub_request("GET", f"{hub}/hub/v1/tef/runs/{run_id}", token).json()
        if run["state"] != "running" or time.monotonic() >= end:
            return run
        time.sleep(POLL_S)


def print_outcome(run: dict[str, Any], out: Console = console) -> None:
    """One line per node, then the pooled primary metric."""
    if run["state"] == "running":
        out.print(f"run {run['run_id']} still running: {run['progress']}")
        return
    out.print(f"run {run['run_id']}: [bold]{run['state']}[/]")
    for node in run["nodes"]:
        metric = node["primary_metric"]
        out.print(f"  {node['node']}: {node['data']['cases']} cases, {metric} "
                  f"{estimate_line(node['metrics'].get(metric))}")  # fmt: skip
    for node, reason in run["failures"].items():
        out.print(f"  {node}: [red]no result[/] ({reason})")
    pooled = run["pooled"]
    if pooled:
        metric = run["nodes"][0]["primary_metric"]
        value = estimate_line(pooled.get(metric))
        out.print(f"  pooled over {pooled['nodes']} nodes: {metric} {value}"
                  f" (pooling bound ±{pooled['bound']:.4f})")  # fmt: skip


def estimate_line(entry: Any, digits: int = 3) -> str:
    """``0.940 [0.870, 0.970]``, or ``withheld`` where a node released no value."""
    if not isinstance(entry, dict) or entry.get("value") is None:
        return "withheld" if entry is None else str(entry)
    ci = entry.get("ci")
    interval = f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else ""
    return f"{entry['value']:.{digits}f}{interval}"


def report(
    run_id: Annotated[str, typer.Argument(help="Run id (from `oncofed tef submit`).")],
    hub: HubUrl,
    token: Token,
    out: Annotated[Path, typer.Option(help="Where to write the HTML report.")] = Path(
        "report.html"
    ),
    pdf: Annotated[Path | None, typer.Option(help="Also print it to this PDF.")] = None,
    wait: WaitOption = 0.0,
) -> None:
    """Fetch a finished run's report (HTML, optionally PDF through headless Chromium)."""
    run = wait_for_run(hub, token, run_id, wait)
    print_outcome(run)
    if run["state"] != "completed":
        raise ConfigError(f"run {run_id} is {run['state']}: no report yet")
    html = hub_request("GET", f"{hub}/hub/v1/tef/runs/{run_id}/report.html", token).text
    write_atomic(out, html.encode())
    console.print(f"report: {out}")
    if pdf is not None:
        # imported here: the report stack (matplotlib) loads only when a PDF is asked for
        from oncofed.tef.report import export_pdf

        console.print(f"pdf: {export_pdf(html, pdf)}")


def leaderboard(
    benchmark: BenchmarkRef,
    hub: HubUrl,
    token: Token,
    html: Annotated[Path | None, typer.Option(help="Also save the leaderboard page.")] = None,
    as_json: JsonOption = False,
) -> None:
    """A benchmark's leaderboard, best first."""
    benchmark_id, version = _benchmark_ref(benchmark)
    base = f"{hub}/hub/v1/tef/benchmarks/{benchmark_id}/{version}/leaderboard"
    rows = hub_request("GET", base, token).json()
    if html is not None:
        write_atomic(html, hub_request("GET", f"{base}.html", token).content)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    print_leaderboard(rows)


def print_leaderboard(rows: list[dict[str, Any]], out: Console = console) -> None:
    """The rows as a table, in the hub's order (best first)."""
    table = Table("algorithm", "version", "value [CI]", "nodes", "cases", "date")
    for row in rows:
        table.add_row(row["algorithm"], row["version"], estimate_line(row), str(row["nodes"]),
                      str(row["cases"]), row["date"])  # fmt: skip
    out.print(table)


def compare(
    run_a: Annotated[str, typer.Argument(help="Run id of algorithm A.")],
    run_b: Annotated[str, typer.Argument(help="Run id of algorithm B (same benchmark).")],
    hub: HubUrl,
    token: Token,
    wait: WaitOption = 120.0,
    as_json: JsonOption = False,
) -> None:
    """Paired DeLong test of two binary runs at every node that completed both, combined by
    inverse-variance weighting (AUROC A - AUROC B)."""
    started = hub_request("POST", f"{hub}/hub/v1/tef/comparisons", token,
                          json={"run_a": run_a, "run_b": run_b}).json()  # fmt: skip
    url = f"{hub}/hub/v1/tef/comparisons/{started['comparison_id']}"
    end = time.monotonic() + wait
    result: dict[str, Any] = started
    while result["state"] == "running" and time.monotonic() < end:
        time.sleep(POLL_S)
        result = hub_request("GET", url, token).json()
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    console.print(f"comparison {result['comparison_id']}: [bold]{result['state']}[/]")
    for node in result.get("nodes", []):
        console.print(f"  {node['node']}: {_difference(node)}")
    for node, reason in result.get("failures", {}).items():
        console.print(f"  {node}: [red]no result[/] ({reason})")
    if result.get("combined"):
        console.print(f"  combined over {result['combined']['nodes']} nodes:"
                      f" {_difference(result['combined'])}")  # fmt: skip


def _difference(entry: dict[str, Any]) -> str:
    if "withheld" in entry:
        return f"withheld ({entry['withheld']})"
    low, high = entry["ci"]
    return (f"AUROC difference {entry['difference']:+.3f} [{low:+.3f}, {high:+.3f}],"
            f" z {entry['z'] if entry['z'] is None else round(entry['z'], 2)},"
            f" p {entry['p_value']:.2g}")  # fmt: skip
