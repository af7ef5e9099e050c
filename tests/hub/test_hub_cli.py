"""`oncofed hub ...` and `oncofed node join` on the command line, against a served hub."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from federation_support import free_port, oncofed, stop, wait_until
from typer.testing import CliRunner

from oncofed.agent.membership import HubChannel, Membership
from oncofed.cli.app import app
from oncofed.errors import AuthError, ConfigError, OncofedError

runner = CliRunner()


@pytest.fixture
def served_hub(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A hub made by `oncofed hub init` and run by `oncofed hub serve`: (URL, admin token)."""
    home = tmp_path / "hub"
    made = runner.invoke(app, ["hub", "init", str(home), "--name", "cli-hub"])
    assert made.exit_code == 0, made.output
    token = (home / "admin.token").read_text().strip()
    assert token in made.output and oct((home / "admin.token").stat().st_mode)[-3:] == "600"
    port = free_port()
    process = oncofed("hub", "serve", str(home), "--port", str(port))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{url}/hub/v1/health").status_code == 200)
        yield url, token
    finally:
        stop(process)


def test_join_approve_list_and_search_from_the_cli(
    served_hub: tuple[str, str], tmp_path: Path
) -> None:
    url, token = served_hub
    node = tmp_path / "clinic"
    assert runner.invoke(app, ["node", "init", str(node)]).exit_code == 0
    joined = runner.invoke(app, ["node", "join", url, "--node", str(node)])
    assert joined.exit_code == 0 and "clinic" in joined.output and "pending" in joined.output
    assert json.loads((node / "hub.json").read_text())["hub_id"] == "cli-hub"
    hub = ["--hub", url, "--token", token]
    listed = runner.invoke(app, ["hub", "nodes", "list", *hub])
    assert "clinic" in listed.output and "pending" in listed.output
    approved = runner.invoke(app, ["hub", "nodes", "approve", "clinic", *hub])
    assert approved.exit_code == 0 and "approved" in approved.output

    found = runner.invoke(app, ["hub", "search", *hub, "-w", "modality=CT", "--json"])
    assert found.exit_code == 0, found.output
    lines = [json.loads(line) for line in found.output.splitlines()]
    assert lines[1] == {"node": "clinic", "status": "offline"}  # it never polled
    assert lines[-1]["summary"]["counts"]["patients"] == {"low": 0, "high": 0}
    table = runner.invoke(app, ["hub", "search", *hub, "-w", "modality=CT"])
    assert "offline" in table.output and "0 answered" in table.output

    unknown = runner.invoke(app, ["hub", "search", *hub, "-w", "no_such_field=1"])
    assert isinstance(unknown.exception, OncofedError)
    assert "HTTP 400" in unknown.exception.message and "no_such_field" in str(unknown.exception)
    wrong_key = runner.invoke(
        app, ["node", "join", url, "--node", str(node), "--hub-key-fingerprint", "SHA256:00"]
    )
    assert isinstance(wrong_key.exception, ConfigError) and "refusing" in str(wrong_key.exception)
    removed = runner.invoke(app, ["hub", "nodes", "remove", "clinic", *hub])
    assert removed.exit_code == 0 and "removed" in removed.output
    after = runner.invoke(app, ["hub", "search", *hub, "--json"])
    assert "clinic" not in after.output  # no longer a member
    channel = HubChannel(node, Membership.read(node), httpx.Client())
    with pytest.raises(ConfigError, match="401"):  # and its messages are refused
        channel.call("poll", "poll", {"wait_s": 0}, "tasks")
    channel.close()
    bad_token = runner.invoke(app, ["hub", "nodes", "list", "--hub", url, "--token", "nope"])
    assert isinstance(bad_token.exception, AuthError)
