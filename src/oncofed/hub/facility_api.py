"""The evaluation facility's HTTP API at the hub (``/hub/v1/tef``), for people with tokens.

Admins register benchmarks; AI providers submit algorithm packages (the zip as the request body,
``application/zip``), start runs and read their results and reports; every signed-in user reads
benchmarks and leaderboards. A refused package, spec or pairing is a 422 problem naming why.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from oncofed.errors import OncofedError, QueryError
from oncofed.hub.deps import Caller
from oncofed.hub.facility import MAX_PACKAGE_BYTES, Facility
from oncofed.hub.facility_compare import Comparisons
from oncofed.server.problems import problem
from oncofed.tef.algorithm import AlgorithmError
from oncofed.tef.evaluate import EvaluationError
from oncofed.tef.sandbox import AlgorithmFailed, SandboxUnavailable
from oncofed.tef.spec import SpecError

ZIP = "application/zip"
_UNPROCESSABLE = (AlgorithmError, AlgorithmFailed, EvaluationError, SpecError)


class NewBenchmark(BaseModel):
    """A benchmark spec and the nodes that take part."""

    spec: dict[str, Any]
    nodes: list[str] = Field(min_length=1, max_length=1000)


class NewComparison(BaseModel):
    """Two completed runs of one binary benchmark."""

    run_a: str
    run_b: str


class NewRun(BaseModel):
    """Which algorithm to run on which benchmark."""

    benchmark: str = Field(description="benchmark id")
    version: str
    algorithm: str = Field(pattern=r"^[0-9a-f]{64}$", description="package sha256")
    deadline_s: float = Field(default=6 * 3600, gt=0, le=7 * 24 * 3600)
    leaderboard: bool = Field(default=True, description="list the result on the leaderboard")


def install_facility_problems(app: FastAPI) -> None:
    """Refused packages, specs and pairings are 422; a hub that cannot sandbox is 503."""

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, OncofedError)
        status = 503 if isinstance(exc, SandboxUnavailable) else 422
        return problem(status, exc.code, exc.message, request.url.path)

    for kind in (*_UNPROCESSABLE, SandboxUnavailable):
        app.add_exception_handler(kind, handle)


def facility_router(facility: Facility, comparisons: Comparisons) -> APIRouter:
    """Routes of the facility (mounted under ``/hub/v1``)."""
    router = APIRouter(prefix="/tef", tags=["evaluation facility (bearer tokens)"])

    @router.post("/benchmarks")
    def register(body: NewBenchmark, who: Caller) -> dict[str, Any]:
        """Register a benchmark version for approved nodes (admin)."""
        return facility.register_benchmark(body.spec, body.nodes, who).to_dict()

    @router.get("/benchmarks")
    def benchmarks(who: Caller) -> list[dict[str, Any]]:
        """Every registered benchmark."""
        return [b.to_dict() for b in facility.benchmarks()]

    @router.get("/benchmarks/{benchmark_id}/{version}")
    def benchmark(benchmark_id: str, version: str, who: Caller) -> dict[str, Any]:
        """One benchmark with its full spec."""
        return facility.benchmark(benchmark_id, version).to_dict()

    @router.get("/benchmarks/{benchmark_id}/{version}/leaderboard")
    def leaderboard(benchmark_id: str, version: str, who: Caller) -> list[dict[str, Any]]:
        """Listed, completed runs by their pooled primary metric, best first."""
        return [dict(entry) for entry in facility.leaderboard(benchmark_id, version)]

    @router.get("/benchmarks/{benchmark_id}/{version}/leaderboard.html")
    def leaderboard_page(benchmark_id: str, version: str, who: Caller) -> HTMLResponse:
        """The leaderboard as a page, best first."""
        return HTMLResponse(facility.leaderboard_html(benchmark_id, version))

    @router.post("/algorithms")
    async def submit(request: Request, who: Caller) -> dict[str, Any]:
        """Submit a package zip (AI provider): checked and dry-run in the hub's sandbox."""
        if request.headers.get("content-type", "").split(";")[0].strip() != ZIP:
            raise QueryError(f"send the package as {ZIP}")
        archive = bytearray()
        async for chunk in request.stream():
            archive += chunk
            if len(archive) > MAX_PACKAGE_BYTES:
                raise QueryError(f"package archive is over {MAX_PACKAGE_BYTES} bytes")
        return await run_in_threadpool(facility.submit_algorithm, bytes(archive), who)

    @router.get("/algorithms")
    def algorithms(who: Caller) -> list[dict[str, Any]]:
        """Your submitted algorithms (an admin sees all)."""
        return facility.algorithms(who)

    @router.post("/runs")
    async def start(body: NewRun, who: Caller) -> dict[str, Any]:
        """Run a submitted algorithm on a benchmark at all its nodes."""
        run_id = facility.start_run(
            body.benchmark, body.version, body.algorithm, who,
            deadline=timedelta(seconds=body.deadline_s), leaderboard=body.leaderboard,
        )  # fmt: skip
        return facility.run(run_id, who)

    @router.get("/runs/{run_id}")
    def run(run_id: str, who: Caller) -> dict[str, Any]:
        """Progress, or the outcome: released node results, failures, pooled result."""
        return facility.run(run_id, who)

    @router.get("/runs/{run_id}/report.html")
    def report(run_id: str, who: Caller) -> HTMLResponse:
        """The run's report page (PDF: ``oncofed tef report --pdf``)."""
        return HTMLResponse(facility.report_html(run_id, who))

    @router.post("/comparisons")
    async def compare(body: NewComparison, who: Caller) -> dict[str, Any]:
        """Paired DeLong test of two runs at every node that completed both, combined."""
        return comparisons.get(comparisons.start(body.run_a, body.run_b, who), who)

    @router.get("/comparisons/{comparison_id}")
    def comparison(comparison_id: str, who: Caller) -> dict[str, Any]:
        """Progress, or the per-node tests and their combination."""
        return comparisons.get(comparison_id, who)

    return router
