"""FastAPI router serving Deep Zoom tiles, thumbnails and an OpenSeadragon viewer per slide."""

from __future__ import annotations

import html
import io
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from oncofed.errors import OncofedError
from oncofed.wsi.dzi import DeepZoom
from oncofed.wsi.errors import SlideError, SlideNotFoundError
from oncofed.wsi.heatmap import SUFFIX, TileHeatmap, check_name, heatmap_names
from oncofed.wsi.open import open_slide

STATIC = Path(str(resources.files("oncofed.wsi"))) / "static"
CACHE_HEADERS = {"Cache-Control": "public, max-age=86400"}
VIEWER = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Slide {title}</title>
<style>html,body{{margin:0;height:100%;background:#222;color:#eee;font-family:sans-serif}}
#bar{{padding:6px 10px;font-size:14px}}#view{{position:absolute;top:30px;bottom:0;left:0;right:0}}
#bar label{{margin-left:16px}}</style></head><body>
<div id="bar">oncofed slide {title}{controls}</div><div id="view"></div>
<script src="../static/openseadragon/openseadragon.min.js"></script>
<script>const viewer=OpenSeadragon({{id:"view",prefixUrl:"../static/openseadragon/images/",
tileSources:"../{slide_id}.dzi",showNavigator:true,maxZoomPixelRatio:2}});
const heatmaps={heatmaps};
viewer.addHandler("open",()=>heatmaps.forEach(name=>viewer.addSimpleImage({{
  url:"heatmaps/"+encodeURIComponent(name)+".png",x:0,y:0,width:1,opacity:0,
  success:e=>{{const box=document.getElementById("heatmap-"+name),
    show=()=>e.item.setOpacity(box.checked?{opacity}:0);box.onchange=show;show();}}}})));
</script></body></html>"""
HEATMAP_OPACITY = 0.6
HEATMAP_CONTROL = (
    '<label><input type="checkbox" id="heatmap-{name}"{checked}> heatmap: {name}</label>'
)


class _SlideCache:
    """A few open slides (Deep Zoom wrappers), least recently used closed first."""

    def __init__(self, resolve: Callable[[str], Path | None], size: int) -> None:
        self.resolve, self.size = resolve, size
        self._open: OrderedDict[str, DeepZoom] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, slide_id: str) -> DeepZoom:
        with self._lock:
            if slide_id in self._open:
                self._open.move_to_end(slide_id)
                return self._open[slide_id]
            path = self.resolve(slide_id)
            if path is None:
                raise SlideNotFoundError(f"no slide with id {slide_id!r}")
            dz = DeepZoom(open_slide(path, check=False))
            self._open[slide_id] = dz
            if len(self._open) > self.size:
                _, old = self._open.popitem(last=False)
                old.slide.close()
            return dz


def _problem(exc: OncofedError) -> JSONResponse:
    status = (
        404 if isinstance(exc, SlideNotFoundError) else 422 if isinstance(exc, SlideError) else 400
    )
    return JSONResponse(
        {
            "type": exc.code,
            "title": exc.code.replace("_", " "),
            "status": status,
            "detail": exc.message,
        },
        status_code=status,
        media_type="application/problem+json",
    )


def make_router(
    resolve: Callable[[str], Path | None],
    *,
    cache_size: int = 16,
    heatmaps: Callable[[str], Path] | None = None,
) -> APIRouter:
    """Router with ``/{id}.dzi``, ``/{id}_files/{level}/{col}_{row}.jpeg``,
    ``/{id}/thumbnail.jpeg``, ``/{id}/viewer``, ``/{id}/heatmaps`` (names),
    ``/{id}/heatmaps/{name}.png`` and ``/static/...``; ``resolve`` maps a slide id to its file
    (or ``None`` when unknown), ``heatmaps`` a known slide id to its heatmap folder. Mount it
    under any prefix (e.g. ``/wsi``)."""
    router = APIRouter(tags=["wsi"])
    cache = _SlideCache(resolve, cache_size)

    def heatmap_folder(slide_id: str) -> Path | None:
        cache.get(slide_id)  # unknown slides are 404s before any path is built from the id
        return heatmaps(slide_id) if heatmaps is not None else None

    @router.get("/{slide_id}.dzi")
    def dzi(slide_id: str) -> Response:
        try:
            return Response(cache.get(slide_id).xml(), media_type="application/xml")
        except OncofedError as exc:
            return _problem(exc)

    @router.get("/{slide_id}_files/{level}/{col}_{row}.jpeg")
    def tile(slide_id: str, level: int, col: int, row: int) -> Response:
        try:
            data = cache.get(slide_id).tile(level, col, row)
        except OncofedError as exc:
            return _problem(exc)
        return Response(data, media_type="image/jpeg", headers=CACHE_HEADERS)

    @router.get("/{slide_id}/thumbnail.jpeg")
    def thumbnail(slide_id: str, size: int = Query(512, ge=16, le=4096)) -> Response:
        try:
            img = cache.get(slide_id).slide.thumbnail(size)
        except OncofedError as exc:
            return _problem(exc)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=85)
        return Response(buf.getvalue(), media_type="image/jpeg", headers=CACHE_HEADERS)

    @router.get("/{slide_id}/viewer", response_class=HTMLResponse)
    def viewer(
        slide_id: str, heatmap: str | None = Query(None, description="Heatmap shown at first.")
    ) -> Response:
        try:
            folder = heatmap_folder(slide_id)
        except OncofedError as exc:
            return _problem(exc)
        names = heatmap_names(folder) if folder is not None else []
        safe = html.escape(slide_id)
        controls = "".join(
            HEATMAP_CONTROL.format(name=name, checked=" checked" if name == heatmap else "")
            for name in names
        )
        page = VIEWER.format(title=safe, slide_id=safe, controls=controls,
                             heatmaps=json.dumps(names), opacity=HEATMAP_OPACITY)  # fmt: skip
        return HTMLResponse(page)

    @router.get("/{slide_id}/heatmaps")
    def heatmap_list(slide_id: str) -> Response:
        try:
            folder = heatmap_folder(slide_id)
        except OncofedError as exc:
            return _problem(exc)
        return JSONResponse(heatmap_names(folder) if folder is not None else [])

    @router.get("/{slide_id}/heatmaps/{name}.png")
    def heatmap_png(slide_id: str, name: str, size: int = Query(1024, ge=16, le=4096)) -> Response:
        try:
            folder = heatmap_folder(slide_id)
            path = None if folder is None else folder / f"{check_name(name)}{SUFFIX}"
            if path is None or not path.is_file():
                raise SlideNotFoundError(f"slide {slide_id!r} has no heatmap {name!r}")
            data = TileHeatmap.read(path).png(size)
        except OncofedError as exc:
            return _problem(exc)
        return Response(data, media_type="image/png", headers={"Cache-Control": "no-cache"})

    @router.get("/static/{path:path}")
    def static(path: str) -> Response:
        target = (STATIC / path).resolve()
        if not target.is_file() or not target.is_relative_to(STATIC.resolve()):
            return _problem(SlideNotFoundError(f"no static file {path!r}"))
        return FileResponse(target, headers=CACHE_HEADERS)

    return router
