"""The node's FastAPI application factory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi import Depends, FastAPI

from oncofed import __version__
from oncofed.server import api, auth, dicomweb, problems
from oncofed.server.service import NodeService
from oncofed.wsi.heatmap import HEATMAPS_DIR
from oncofed.wsi.router import make_router as make_slide_router


def create_app(service: NodeService) -> FastAPI:
    """An app serving ``service``'s node: REST API and slide viewer."""
    app = FastAPI(
        title=f"oncofed node {service.node.settings.name}",
        version=__version__,
        description="A hospital's oncofed node: catalogue, cohort queries, images.",
    )
    app.state.service = service
    problems.install(app)
    app.include_router(api.make_router())
    app.include_router(dicomweb.make_router(), prefix="/dicomweb", tags=["dicomweb"])
    app.include_router(
        make_slide_router(
            _slide_resolver(service),
            heatmaps=lambda slide_id: service.node.home / HEATMAPS_DIR / slide_id,
        ),
        prefix="/wsi",
        tags=["wsi"],
        dependencies=[Depends(auth.slide_access)],
    )
    return app


def _slide_resolver(service: NodeService) -> Callable[[str], Path | None]:
    """Slide id → its blob, through the catalog."""

    def resolve(slide_id: str) -> Path | None:
        with service.connection() as con:
            row = con.execute("SELECT sha256 FROM slide WHERE slide_id = ?", [slide_id]).fetchone()
        return service.blob_path(row[0]) if row else None

    return resolve
