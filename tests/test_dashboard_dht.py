"""The dashboard as the hApp's UI: the page packed into workdir/zerotrustml.webhapp reads the DHT of a real
holochain run through @holochain/client, in headless Chromium, with signed zome calls."""

from __future__ import annotations

import asyncio
import functools
import http.server
import json
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dht_cases import SMALL_RUN
from playwright.sync_api import sync_playwright
from test_dashboard_browser import CHROMIUM

from zerotrustml.backends import holochain as hc_backend
from zerotrustml.fl import simulation
from zerotrustml.fl.simulation import RunConfig, Simulation

pytestmark = pytest.mark.conductors

ROOT = Path(__file__).resolve().parents[1]
WEBHAPP = ROOT / "workdir" / "zerotrustml.webhapp"


class _Paused(hc_backend.HolochainBackend):
    """A Holochain backend that, when the run closes it, keeps its network up until the test is done."""

    ready = threading.Event()
    release = threading.Event()
    instance: _Paused | None = None
    loop: asyncio.AbstractEventLoop | None = None

    async def close(self) -> None:
        type(self).instance, type(self).loop = self, asyncio.get_running_loop()
        type(self).ready.set()
        await asyncio.to_thread(type(self).release.wait, 900)
        await super().close()


@pytest.fixture
def ui_dir(tmp_path: Path) -> Path:
    """The UI exactly as the webhapp ships it: ui.zip out of the .webhapp bundle, unpacked."""
    assert WEBHAPP.exists(), "no workdir/zerotrustml.webhapp: make webhapp"
    out = tmp_path / "ui"
    with zipfile.ZipFile(ROOT / "workdir" / "web" / "ui.zip") as zf:
        zf.extractall(out)
    assert (out / "index.html").exists()
    return out


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def static_server(ui_dir: Path) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(ui_dir)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(10)


def test_the_webhapp_ui_reads_a_holochain_run_from_the_dht(
    tmp_path: Path, static_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        simulation,
        "open_backend",
        lambda name, data_dir, **kw: _Paused(data_dir, mode="conductors", **kw),
    )
    _Paused.ready.clear()
    _Paused.release.clear()
    config = RunConfig(**{**SMALL_RUN, "rounds": 2, "backend": "holochain", "attack": "gaussian"})
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["summary"] = Simulation(config, tmp_path / "run", backend_options={"conductors": 2}).run()
        except BaseException as e:  # noqa: BLE001 - reported by the test below
            result["error"] = e
            _Paused.ready.set()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert _Paused.ready.wait(900), "the holochain run did not finish its rounds"
        assert "error" not in result, result.get("error")
        backend, loop = _Paused.instance, _Paused.loop
        assert backend is not None and loop is not None
        net = backend.network
        agent = net.agents[0]
        conductor = net.conductors[agent.conductor]

        async def credentials() -> tuple[bytes, Any]:
            token = await conductor.admin.issue_app_token(agent.app_id, expiry_seconds=600, single_use=False)
            return token, await conductor.admin.authorize_signing(agent.cell.cell_id)

        token, creds = asyncio.run_coroutine_threadsafe(credentials(), loop).result(120)
        public = bytes(creds.signing_key.verify_key)
        fragment = "&".join(
            [
                f"app_ws=ws://127.0.0.1:{conductor.app_port}",
                f"token={bytes(token).hex()}",
                f"cell={agent.cell.cell_id[0].hex()},{agent.cell.cell_id[1].hex()}",
                f"cap={creds.cap_secret.hex()}",
                f"seed={bytes(creds.signing_key).hex()}",
                f"pub={public.hex()}",
                f"signer={creds.signer_key.hex()}",
            ]
        )
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{static_server}/#{fragment}")
            page.wait_for_function("Number(document.body.dataset.rounds || 0) >= 2", timeout=180_000)
            assert page.locator("body").get_attribute("data-source") == "DHT"
            assert page.locator("#nodes").inner_text() == str(config.nodes)
            shown = page.locator("#round-table tbody tr")
            assert shown.count() == 2
            table = {row.get_attribute("data-round"): row.locator("td").nth(2).inner_text() for row in shown.all()}
            page.screenshot(path=str(tmp_path / "dht.png"), full_page=True)
            browser.close()
        assert not errors, errors
    finally:
        _Paused.release.set()
        thread.join(600)
    assert "error" not in result, result.get("error")
    # The run's own record of who was flagged, round by round, is what the page showed from the DHT.
    rows = [json.loads(line) for line in (tmp_path / "run" / "run.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    for row in rows:
        flagged = sorted(n for n, v in row["verdicts"].items() if v in ("TP", "FP"))
        assert table[str(row["round"])] == ", ".join(flagged), (row["round"], table)
    assert any(table.values())  # the Gaussian attacker is flagged at least once: the check is not vacuous
