"""Schemathesis against the live service: generated requests for every route of the committed OpenAPI
document, each answer checked against that document (status codes, content types, bodies), and no 5xx.

Bounded (``max_examples`` per route) so it stays a few seconds in ``make test``. Valid-looking requests are
still refused (their signatures do not verify), so "positive data is accepted" is not among the checks; every
other default check is."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import httpx
import nacl.signing
import pytest
from live_service import LiveService

from zerotrustml.service import protocol


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    with LiveService(tmp_path_factory.mktemp("schemathesis") / "s", "--dims", "4", "--aggregator", "median") as svc:
        fed = svc.health()["federation"]
        for i in range(3):
            key = nacl.signing.SigningKey(bytes([i + 1]) * 32)
            httpx.post(f"{svc.url}/v1/nodes", json=protocol.registration_body(key, federation=fed, node_id=f"node-{i}"))
        yield svc


CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
    "response_headers_conformance,negative_data_rejection"
)


def test_every_route_answers_as_its_document_says(service: LiveService, tmp_path: Path) -> None:
    report = tmp_path / "junit.xml"
    run = subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"),
            "run",
            f"{service.url}/openapi.json",
            "--checks",
            CHECKS,
            "--max-examples",
            "15",
            "--seed",
            "1",
            "--workers",
            "1",
            "--report",
            "junit",
            "--report-junit-path",
            str(report),
            "--no-color",
            "--header",
            f"Authorization: Bearer {service.token}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,  # its example database stays out of the repository
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    # Every route of the document was exercised.
    tested = ElementTree.parse(report).getroot().iter("testcase")
    names = {case.get("name", "") for case in tested}
    paths = json.loads((Path(__file__).resolve().parents[1] / "docs" / "openapi.json").read_text())["paths"]
    for path, methods in paths.items():
        for method in methods:
            assert any(name.startswith(f"{method.upper()} {path}") for name in names), (method, path, sorted(names))


def test_the_document_it_serves_is_the_committed_one(service: LiveService) -> None:
    committed = json.loads((Path(__file__).resolve().parents[1] / "docs" / "openapi.json").read_text())
    assert httpx.get(f"{service.url}/openapi.json").json() == committed
