"""WSI speed goals, each against a peer in the same run.

1. Random 256x256 level-0 tile reads: oncofed vs raw openslide-python vs tiffslide (goal: within
   10% of the fastest raw reader).
2. Tissue detection + tile grid of a big slide (default 100,000 x 80,000; goal < 5 s).
3. DZI tiles over HTTP on 127.0.0.1 under concurrent load vs direct decoded 256x256 region reads
   (goal >= 70%), with the same tiles taken in-process for reference. The server runs in its own
   process; the load generator uses keep-alive stdlib connections.

Usage: python benchmarks/wsi.py [--width 100000 --height 80000 --reads 2000 --workers 8]
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import random
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import openslide
import tiffslide
import uvicorn
from fastapi import FastAPI

from oncofed.testing.wsi import make_slide
from oncofed.wsi.dzi import DeepZoom
from oncofed.wsi.open import open_slide
from oncofed.wsi.router import make_router
from oncofed.wsi.tiling import tile_grid


def _rate(fn: object, coords: list[tuple[int, int]]) -> float:
    start = time.perf_counter()
    for x, y in coords:
        fn(x, y)  # type: ignore[operator]
    return len(coords) / (time.perf_counter() - start)


def bench_reads(path: Path, n: int) -> None:
    rng = random.Random(0)
    osr, tsr, ours = openslide.OpenSlide(path), tiffslide.TiffSlide(path), open_slide(path)
    w, h = ours.dimensions
    coords = [(rng.randrange(0, w - 256), rng.randrange(0, h - 256)) for _ in range(n)]
    peers = {
        "openslide": lambda x, y: np.asarray(osr.read_region((x, y), 0, (256, 256))),
        "tiffslide": lambda x, y: tsr.read_region((x, y), 0, (256, 256), as_array=True),
        "oncofed": lambda x, y: ours.read_region(x, y, 0, 256, 256),
    }
    for fn in peers.values():
        fn(*coords[0])
    rates = {name: _rate(fn, coords) for name, fn in peers.items()}
    best_raw = max(rates["openslide"], rates["tiffslide"])
    for name, r in rates.items():
        print(f"  {name:10s} {r:8.0f} tiles/s")
    print(f"  oncofed / fastest raw = {rates['oncofed'] / best_raw:.2f} (goal >= 0.90)")


def bench_grid(path: Path) -> None:
    start = time.perf_counter()
    with open_slide(path) as slide:
        grid = tile_grid(slide, mpp=0.5, size=256, min_tissue=0.5)
    took = time.perf_counter() - start
    print(f"  open + tissue + grid: {took:.2f} s, {len(grid)} tiles (goal < 5 s)")


def _serve(path: Path, port: int) -> None:
    """The tile server, alone in its own process (as in production)."""
    app = FastAPI()
    app.include_router(make_router({"s": path}.get), prefix="/wsi")
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _load(port: int, urls: list[str], latencies: list[float]) -> None:
    """One keep-alive connection fetching ``urls`` in turn (stdlib client: light on CPU)."""
    conn = http.client.HTTPConnection("127.0.0.1", port)
    for url in urls:
        t0 = time.perf_counter()
        conn.request("GET", url)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200 or not body:
            raise RuntimeError(f"GET {url}: HTTP {resp.status}")
        latencies.append(time.perf_counter() - t0)
    conn.close()


def _threaded_rate(
    fn: Callable[[tuple[int, int]], object], items: list[tuple[int, int]], workers: int
) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(fn, items))
    return len(items) / (time.perf_counter() - start)


def _http_rate(port: int, urls: list[str], workers: int) -> tuple[float, float]:
    """Tiles/s and p95 latency (ms) of ``workers`` keep-alive clients fetching ``urls``."""
    latencies: list[float] = []
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(
            pool.map(
                _load,
                [port] * workers,
                [urls[i::workers] for i in range(workers)],
                [latencies] * workers,
            )
        )
    rate = len(urls) / (time.perf_counter() - start)
    return rate, statistics.quantiles(latencies, n=20)[18] * 1000


def bench_http(path: Path, n: int, workers: int) -> None:
    """Deep Zoom tiles of the full-resolution level over HTTP (stored JPEG tiles, sent as they
    are), next to direct decoded 256x256 region reads of the slide (the goal's direct-read rate),
    the same tiles taken in-process, and in-process tiles on the overlapping 254+1 grid (every
    tile read, resampled and encoded: what the server did before)."""
    rng = random.Random(1)
    with open_slide(path) as slide:
        dz = DeepZoom(slide)
        rendered = DeepZoom(slide, tile_size=254, overlap=1)
        top = dz.level_count - 1
        cols, rows = (d // dz.tile_size for d in dz.level_dimensions[top])
        tiles = [(rng.randrange(cols), rng.randrange(rows)) for _ in range(n)]
        w, h = slide.dimensions
        regions = [(rng.randrange(w - 256), rng.randrange(h - 256)) for _ in range(n)]
        direct_reads = _threaded_rate(
            lambda xy: slide.read_region(xy[0], xy[1], 0, 256, 256), regions, workers
        )
        in_process = _threaded_rate(lambda t: dz.tile(top, *t), tiles, workers)
        in_process_rendered = _threaded_rate(lambda t: rendered.tile(top, *t), tiles, workers)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = multiprocessing.get_context("spawn").Process(target=_serve, args=(path, port))
    server.start()
    try:
        for _ in range(600):  # wait for the server (spawn + imports)
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        _load(port, ["/wsi/s.dzi"], [])  # open the slide once
        urls = [f"/wsi/s_files/{top}/{c}_{r}.jpeg" for c, r in tiles]
        rate, p95 = _http_rate(port, urls, workers)
    finally:
        server.terminate()
        server.join()
    print(f"  direct decoded 256x256 region reads: {direct_reads:.0f}/s")
    print(
        f"  in-process Deep Zoom tiles: stored {in_process:.0f}/s, "
        f"rendered {in_process_rendered:.0f}/s"
    )
    print(f"  HTTP {rate:.0f} tiles/s, p95 {p95:.1f} ms")
    print(f"  HTTP / direct reads = {rate / direct_reads:.2f} (goal >= 0.70)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=100_000)
    ap.add_argument("--height", type=int, default=80_000)
    ap.add_argument("--reads", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=1, help="Run each measurement this often.")
    ap.add_argument("--only", default="reads,grid,http", help="Comma-separated measurements.")
    args = ap.parse_args()
    only = set(args.only.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.tiff"
        start = time.perf_counter()
        make_slide(path, "tiff", width=args.width, height=args.height, seed=0)
        print(f"slide {args.width}x{args.height}: generated in {time.perf_counter() - start:.1f} s")
        for _ in range(args.repeat):
            if "reads" in only:
                print("random 256x256 level-0 reads")
                bench_reads(path, args.reads)
            if "grid" in only:
                print("tissue detection + tile grid (0.5 mpp, 256 px)")
                bench_grid(path)
            if "http" in only:
                print(f"DZI over HTTP, {args.workers} concurrent clients")
                bench_http(path, args.reads, args.workers)


if __name__ == "__main__":
    main()
