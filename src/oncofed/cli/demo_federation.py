"""`oncofed demo`, federation part: a hub and four nodes on 127.0.0.1: federated searches, an
access request, and the evaluation facility's site-shift study.

Three nodes hold different synthetic cohorts (pathology-heavy, breast imaging, mixed); the fourth
is the demo node with the NCI IDC reference metadata. Each node joins the hub with its own key,
the hub admin approves it, and its agent (a thread here; `oncofed node agent` in production)
long-polls the hub. The three hospitals also hold graded biopsy slides of one stain site each
for the facility (:mod:`oncofed.cli.demo_facility`). Everything runs in this process so the demo
needs no ports but loopback.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.rule import Rule
from rich.table import Table

from oncofed.agent.loop import Agent, load_handler_modules
from oncofed.agent.membership import MEMBERSHIP_FILE, Membership, join
from oncofed.catalog.writer import CollectionSpec
from oncofed.cli.demo_facility import facility_demo
from oncofed.cli.demo_serve import free_port, serving
from oncofed.cli.demo_site_shift import SiteShift, prepare_site_shift, stock_node
from oncofed.cli.hub import print_search
from oncofed.config import CONFIG_FILE, write_settings
from oncofed.hub.app import create_hub_app
from oncofed.hub.service import Hub
from oncofed.node import Node
from oncofed.server.service import NodeService
from oncofed.tef.spec import load_spec

ADMIN_TOKEN_FILE = "admin.token"
SITE_NODES = {"site-a": "pathology-node", "site-b": "mixed-node", "site-c": "breast-node"}
"""Which node holds which stain site's evaluation slides."""
EVALUATION_K = 3
SEARCHES: tuple[tuple[str, dict[str, Any], list[str]], ...] = (
    ("Prostate: MR or whole-slide images", {"body_part": ["PROSTATE"]}, ["modality", "collection"]),
    ("Breast imaging (MG, US)", {"modality": ["MG", "US"]}, ["modality", "manufacturer"]),
)


def federation_demo(console: Console, root: Path, idc_node: Path, patients: int) -> None:
    """Build (or reuse) the nodes, start the hub and the agents, search, stop."""
    homes = {
        "pathology-node": _pathology_node(root / "pathology-node", patients),
        "breast-node": _breast_node(root / "breast-node", patients),
        "mixed-node": _mixed_node(root / "mixed-node", patients),
        "idc-node": idc_node,
    }
    study = prepare_site_shift(root / "site-shift", console)
    for site, node_id in SITE_NODES.items():
        _take_part(homes[node_id], study, site)
    with _hub(root / "hub") as (url, token), ExitStack() as stack:
        headers = {"Authorization": f"Bearer {token}"}
        load_handler_modules()
        for node_id, home in homes.items():
            if not (home / MEMBERSHIP_FILE).exists():
                join(home, url, node_id, name=node_id)
            elif (member := Membership.read(home)).hub_url != url:  # a new port each run
                replace(member, hub_url=url).write(home)
            httpx.post(f"{url}/hub/v1/nodes/{node_id}/approve", headers=headers, timeout=30)
            stack.enter_context(_agent(home))
        _wait_online(url, headers, set(homes))
        console.print(f"hub at {url}: {len(homes)} nodes joined (each with its own Ed25519 key)")
        _print_catalogue(console, url)
        for title, where, facets in SEARCHES:
            console.print(f"[bold]{title}[/]  filter {json.dumps(where)}")
            body = {"where": where, "facets": facets, "deadline_s": 10}
            with httpx.stream(
                "POST", f"{url}/hub/v1/search", json=body, headers=headers, timeout=60
            ) as answer:
                lines = [json.loads(line) for line in answer.iter_lines() if line]
            print_search(console, lines)
        console.print(
            "Every number above left its node through that node's disclosure control (counts"
            f" below k suppressed, k = {EVALUATION_K} at the three hospitals and 10 at the IDC"
            " node; others rounded to 10); totals are ranges where a node suppressed a count."
        )
        _access_request(console, url, headers)
        console.print(Rule("evaluation facility: one grader, three sites (synthetic)"))
        facility_demo(console, url, headers, study, list(SITE_NODES.values()), root / "reports")


DEMO_PEOPLE = {
    "demo-rita": ("researcher", []),
    "demo-carl": ("access_committee", []),
    "demo-dana": ("data_manager", ["pathology-node"]),
}


def _access_request(console: Console, url: str, admin: dict[str, str]) -> None:
    """A researcher asks for the prostate biopsies; the committee and the data holder agree;
    the hub sends the grant to the node (HTTP API, as `oncofed hub requests ...` does)."""
    with httpx.Client(base_url=f"{url}/hub/v1", timeout=60) as hub:
        auth: dict[str, dict[str, str]] = {}
        known = {u["user_id"] for u in hub.get("/users", headers=admin).json()}
        for user, (role, nodes) in DEMO_PEOPLE.items():
            if user not in known:
                body = {"user_id": user, "roles": [role], "nodes": nodes}
                hub.post("/users", json=body, headers=admin).raise_for_status()
            token = hub.post(f"/users/{user}/tokens", json={"days": 1}, headers=admin).json()
            auth[user] = {"Authorization": f"Bearer {token['token']}"}
        draft = {
            "project": "PROSTATE-ISUP-DEMO",
            "purpose": "validate an ISUP grading model on biopsy slides (synthetic demo)",
            "cohort": {"body_part": ["PROSTATE"]},
            "collections": {"pathology-node": ["prostate-biopsies"]},
            "tier": 3,
            "duration_days": 90,
        }
        created = hub.post("/requests", json=draft, headers=auth["demo-rita"])
        created.raise_for_status()
        request_id = created.json()["request_id"]
        steps: tuple[tuple[str, str, dict[str, Any]], ...] = (
            ("demo-rita", "submit", {}),
            ("demo-carl", "review", {}),
            ("demo-carl", "approve", {"reason": "ethics approval seen", "grant_days": 30}),
        )
        for user, verb, step in steps:
            answer = hub.post(f"/requests/{request_id}/{verb}", json=step, headers=auth[user])
            answer.raise_for_status()
        refused = hub.post(f"/requests/{request_id}/approve", json={}, headers=auth["demo-rita"])
        decision = f"/requests/{request_id}/nodes/pathology-node/accept"
        hub.post(decision, json={}, headers=auth["demo-dana"]).raise_for_status()
        for _ in range(300):  # the grant travels to the node through the broker
            shown = hub.get(f"/requests/{request_id}", headers=auth["demo-carl"]).json()
            deliveries = shown["deliveries"]
            if deliveries and all(d["state"] == "done" for d in deliveries):
                break
            time.sleep(0.1)
    table = Table(title=f"access request {request_id} (every step in the hub's audit chain)")
    for column in ("when", "who", "step", "state"):
        table.add_column(column)
    for event in shown["history"]:
        table.add_row(
            str(event["time"])[:19], str(event["actor"]), str(event["action"]),
            str(event["to"]) + (f" ({event['node']})" if event["node"] else ""),
        )  # fmt: skip
    console.print(table)
    console.print(
        f"state {shown['state']}, expires {shown['expires_at']}; grant delivered to "
        f"{[(d['node_id'], d['kind'], d['state']) for d in shown['deliveries']]}; the researcher "
        f"approving her own request was refused with HTTP {refused.status_code}."
    )


@contextmanager
def _hub(home: Path) -> Iterator[tuple[str, str]]:
    """The demo hub served on a free loopback port; yields its URL and the admin token."""
    if not home.exists():
        hub, issued = Hub.init(home, name="demo-hub")
        hub.close()
        (home / ADMIN_TOKEN_FILE).write_text(issued.token, encoding="ascii")
        (home / ADMIN_TOKEN_FILE).chmod(0o600)
    token = (home / ADMIN_TOKEN_FILE).read_text(encoding="ascii").strip()
    port = free_port()
    with Hub(home) as hub, serving(create_hub_app(hub), port):
        yield f"http://127.0.0.1:{port}", token


@contextmanager
def _agent(home: Path) -> Iterator[None]:
    with NodeService.open(home) as service:
        agent = Agent(service, wait_s=2.0)
        agent.start()
        try:
            yield
        finally:
            agent.stop()


def _wait_online(url: str, headers: dict[str, str], names: set[str]) -> None:
    for _ in range(600):
        rows = httpx.get(f"{url}/hub/v1/nodes", headers=headers, timeout=30).json()
        if names <= {r["node_id"] for r in rows if r["online"]}:
            return
        time.sleep(0.1)


def _print_catalogue(console: Console, url: str) -> None:
    table = Table(title="public catalogue at the hub (GET /hub/v1/catalogue, no login)")
    for column in ("node", "collection", "patients", "series"):
        table.add_column(column)
    for _ in range(100):  # nodes send their catalogue right after approval
        entries = httpx.get(f"{url}/hub/v1/catalogue", timeout=30).json()
        if len(entries) >= 4:
            break
        time.sleep(0.1)
    for entry in entries:
        collections = entry["collections"]
        for c in collections[:4]:
            table.add_row(entry["node"], c["collection_id"], str(c["patients"]), str(c["series"]))
        if len(collections) > 4:
            table.add_row(entry["node"], f"... {len(collections) - 4} more", "", "")
    console.print(table)


def _take_part(home: Path, study: SiteShift, site: str) -> None:
    """Stock the node with the site's graded biopsies and opt it into the benchmark. These
    hospitals release counts of 3 or more (k = 3): with 3 slides per grade at a site, the
    confusion matrix the hub pools would be withheld at k = 10."""
    benchmark = load_spec(study.benchmark).id
    with Node(home) as node:
        update = {"min_count": EVALUATION_K, "evaluation_benchmarks": [benchmark]}
        write_settings(home, node.settings.model_copy(update=update))
        stock_node(node, study.sites[site])


def _new_node(home: Path) -> Node | None:
    """A fresh node at ``home``, or None when the demo made it before."""
    return None if (home / CONFIG_FILE).exists() else Node.init(home, name=home.name)


def _pathology_node(home: Path, patients: int) -> Path:
    from oncofed.ingest.slides import SlideInput
    from oncofed.testing.dicom import generate_cohort
    from oncofed.testing.wsi import make_slide

    node = _new_node(home)
    if node is None:
        return home
    with node:
        mr = generate_cohort(home / "input-mr", patients=patients, seed=21, modalities=("MR",))
        node.ingest(mr.files, CollectionSpec("prostate-mr", "Prostate MR (synthetic)"))
        slides = []
        for number in range(1, 7):
            path = home / "input-slides" / f"FAKE-BIOPSY-{number:04d}.svs"
            path.parent.mkdir(parents=True, exist_ok=True)
            make_slide(path, "svs", width=2048, height=1536, seed=number)
            slides.append(SlideInput(path, f"FAKE-P{number:04d}", "biopsy", "H&E", "PROSTATE"))
        node.ingest_slides(slides, "prostate-biopsies")
    return home


def _breast_node(home: Path, patients: int) -> Path:
    from oncofed.testing.breast_us import generate_breast_us
    from oncofed.testing.dicom import generate_cohort

    node = _new_node(home)
    if node is None:
        return home
    with node:
        us = generate_breast_us(home / "input-us", cases=patients, seed=5)
        node.ingest([us.dicom_dir], CollectionSpec("breast-us", "Breast ultrasound (synthetic)"))
        node.import_labels(us.labels_csv, "breast-us")
        mg = generate_cohort(home / "input-mg", patients=patients, seed=22, modalities=("MG",))
        node.ingest(mg.files, CollectionSpec("breast-mg", "Mammography (synthetic)"))
    return home


def _mixed_node(home: Path, patients: int) -> Path:
    from oncofed.testing.dicom import generate_cohort

    node = _new_node(home)
    if node is None:
        return home
    with node:
        cohort = generate_cohort(home / "input", patients=patients, seed=23)
        node.ingest(cohort.files, CollectionSpec("mixed", "Mixed CT/MR/MG/US (synthetic)"))
    return home
