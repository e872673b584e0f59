"""The dashboard as a person sees it: headless Chromium (Debian's `chromium`, driven by Playwright) on the
page `zerotrustml serve` serves, while a live cluster runs, and on a finished run's store opened read-only."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import nacl.signing
import pytest
from live_service import LiveService, free_port
from playwright.sync_api import Browser, Page, sync_playwright
from test_service import export as _export

from zerotrustml.service import protocol

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("ZTML_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
#: Set to a path (docs/img/dashboard.png) to refresh the README's screenshot from the live-cluster test.
SCREENSHOT = os.environ.get("ZTML_DASHBOARD_SCREENSHOT")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM}: apt-get install chromium (make test does)"
    assert (ROOT / "python/zerotrustml/service/static/index.html").exists(), (
        "the dashboard is not built: make dashboard"
    )
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def export(data_dir: Path) -> bytes:
    """The store's export, from a thread of its own (Playwright's sync API runs an event loop in this one)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(_export, data_dir).result()


def rounds_shown(page: Page) -> int:
    return int(page.locator("body").get_attribute("data-rounds") or 0)


def test_the_dashboard_follows_a_live_cluster_and_shows_flagged_nodes(browser: Browser, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cluster = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "zerotrustml",
            "cluster",
            "--nodes",
            "6",
            "--rounds",
            "400",
            "--port",
            str(port),
            "--attack",
            "gaussian",
            "--byzantine-fraction",
            "0.34",
            "--round-deadline",
            "8",
            "--quiet",
            "--data-dir",
            str(tmp_path / "cluster"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            assert cluster.poll() is None, cluster.communicate()[1]
            try:
                if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the cluster's service did not start"
            time.sleep(0.2)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url + "/")
        page.wait_for_function("Number(document.body.dataset.rounds || 0) >= 1", timeout=120_000)
        first = rounds_shown(page)
        page.screenshot(path=str(tmp_path / "dashboard-early.png"), full_page=True)
        # Rounds appear as they close, without a reload.
        page.wait_for_function(f"Number(document.body.dataset.rounds || 0) > {first}", timeout=120_000)
        assert page.locator("#live").inner_text() == "live"
        # A node the service flagged is shown as flagged.
        page.wait_for_selector("#node-table tr.flagged td.state", timeout=120_000)
        shown = set(page.locator("#node-table tr.flagged").evaluate_all("rows => rows.map(r => r.dataset.node)"))
        assert shown and all(
            page.locator(f'#node-table tr[data-node="{n}"] td.state').inner_text() == "flagged" for n in shown
        )
        page.wait_for_function("Number(document.body.dataset.rounds || 0) >= 8", timeout=300_000)
        # One render, read at once: the last round in the round table and the nodes the node table flags.
        view = page.evaluate(
            """() => ({
                round: document.querySelector('#round-table tbody tr').dataset.round,
                cells: [...document.querySelectorAll('#round-table tbody tr:first-child td')].map(td => td.textContent),
                flagged: [...document.querySelectorAll('#node-table tr.flagged')].map(tr => tr.dataset.node),
            })"""
        )
        record = httpx.get(f"{url}/v1/rounds?since={view['round']}").json()[0]
        assert record["round"] == int(view["round"])
        assert sorted(view["flagged"]) == sorted(record["flagged"])
        # The round table says who was flagged, and the accuracy against honest-only.
        assert view["cells"][2] == ", ".join(record["flagged"]) and view["cells"][4] != "–"
        page.wait_for_function(
            "[...document.querySelectorAll('#round-table tbody td:nth-child(6)')].some(td => td.textContent !== '–')",
            timeout=60_000,
        )
        page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        if SCREENSHOT:
            page.screenshot(path=SCREENSHOT, full_page=False)
        assert (tmp_path / "dashboard.png").stat().st_size > 20_000
    finally:
        cluster.terminate()  # the cluster stops its service and nodes on SIGTERM too
        cluster.communicate(timeout=60)


def test_the_dashboard_opens_a_finished_run_read_only(browser: Browser, tmp_path: Path) -> None:
    data_dir = tmp_path / "run"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "zerotrustml",
            "run",
            "--dataset",
            "synthetic",
            "--nodes",
            "8",
            "--rounds",
            "4",
            "--quiet",
            "--data-dir",
            str(data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    before = export(data_dir)
    with LiveService(data_dir, "--read-only") as svc:
        page = browser.new_page()
        page.goto(svc.url + "/")
        page.wait_for_function("Number(document.body.dataset.rounds || 0) === 4", timeout=60_000)
        assert page.locator("#round").inner_text() == "finished"
        rows = page.locator("#round-table tbody tr")
        assert rows.count() == 4
        # The simulator scored its own rounds: honest-only accuracy is there for every round.
        assert all(row.locator("td").nth(5).inner_text() != "–" for row in rows.all())
        page.screenshot(path=str(tmp_path / "finished.png"), full_page=True)
        # Read-only: a well-formed, signed write is refused, and the store is as it was.
        key = nacl.signing.SigningKey(b"\x01" * 32)
        fed = svc.health()["federation"]
        body = protocol.submission_body(
            key, federation=fed, node_id="node-0", round=4, model_id="m", values=[0.0], example_count=1
        )
        reply = httpx.post(f"{svc.url}/v1/submissions", json=body)
        assert reply.status_code == 409 and reply.json()["code"] == "read_only"
        reply = httpx.post(f"{svc.url}/v1/nodes", json=protocol.registration_body(key, federation=fed, node_id="x"))
        assert reply.status_code == 409 and reply.json()["code"] == "read_only"
        assert httpx.post(f"{svc.url}/v1/rounds/0/close", headers={"authorization": "Bearer x"}).status_code == 401
    assert export(data_dir) == before
