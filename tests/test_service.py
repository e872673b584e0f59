"""The HTTP service (`zerotrustml serve`) as its clients meet it: a real process on loopback, real signatures,
the embedded SQLite store underneath, killed and restarted."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import httpx
import nacl.signing
import numpy as np
import websockets
from live_service import LiveService

from zerotrustml.backends import EmbeddedStore
from zerotrustml.defence import proofs
from zerotrustml.service import protocol
from zerotrustml.service.commands import openapi_document
from zerotrustml.validation import payload_hash

ROOT = Path(__file__).resolve().parents[1]
DIMS = 4


def keys(n: int) -> dict[str, nacl.signing.SigningKey]:
    return {f"node-{i}": nacl.signing.SigningKey(bytes([i + 1]) * 32) for i in range(n)}


def register(svc: LiveService, ks: dict[str, nacl.signing.SigningKey], **kw: Any) -> None:
    fed = svc.health()["federation"]
    for nid, k in ks.items():
        r = httpx.post(f"{svc.url}/v1/nodes", json=protocol.registration_body(k, federation=fed, node_id=nid, **kw))
        assert r.status_code == 201, r.text


def body(svc: LiveService, key: nacl.signing.SigningKey, nid: str, rnd: int, values: Any, **kw: Any) -> dict[str, Any]:
    return protocol.submission_body(
        key,
        federation=svc.health()["federation"],
        node_id=nid,
        round=rnd,
        model_id="model",
        values=values,
        example_count=kw.pop("example_count", 10),
        **kw,
    )


def problem(r: httpx.Response, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    doc = dict(r.json())
    assert doc["status"] == status and doc["code"] == code and doc["type"] == f"urn:zerotrustml:problem:{code}"
    assert doc["detail"] and doc["title"]
    if field is not None:
        assert doc["field"] == field, doc
    return doc


def export(data_dir: Path) -> bytes:
    async def dump() -> dict[str, Any]:
        async with EmbeddedStore(data_dir) as store:
            return await store.export()

    return json.dumps(asyncio.run(dump()), sort_keys=True).encode()


def test_nodes_register_submit_and_the_round_closes_when_all_have_submitted(tmp_path: Path) -> None:
    ks = keys(3)
    rows = np.array([[1, 2, 3, 4], [2, 3, 4, 5], [9, -9, 9, -9]], np.float32)
    with LiveService(tmp_path / "s", "--dims", str(DIMS), "--aggregator", "median", "--server-lr", "0.5") as svc:
        register(svc, ks)
        assert svc.health()["nodes"] == 3 and svc.health()["admission"] == "open"
        before = httpx.get(f"{svc.url}/v1/model").json()
        assert before["round"] == 0 and before["values"] == [0.0] * DIMS
        hashes = []
        for (nid, k), row in zip(ks.items(), rows, strict=True):
            r = httpx.post(f"{svc.url}/v1/submissions", json=body(svc, k, nid, 0, row))
            assert r.status_code == 202, r.text
            hashes.append(r.json()["payload_hash"])
            assert hashes[-1] == payload_hash(row).hex()
        agg = httpx.get(f"{svc.url}/v1/rounds/0/aggregate").json()
        assert agg["final"] and agg["rule"] == "median" and agg["missing"] == []
        assert agg["aggregate"] == np.median(rows, axis=0).tolist()
        # The seed system's path answers the same.
        assert httpx.get(f"{svc.url}/round/0/aggregate").json() == agg
        after = httpx.get(f"{svc.url}/v1/model").json()
        assert after["round"] == 1
        np.testing.assert_array_equal(np.float32(after["values"]), (-0.5 * np.median(rows, axis=0)).astype(np.float32))
        info = httpx.get(f"{svc.url}/v1/rounds/0").json()
        assert info["status"] == "closed" and [s["payload_hash"] for s in info["submissions"]] == hashes
        assert httpx.get(f"{svc.url}/v1/rounds/1").json()["status"] == "open"
        # The seed's submit path takes the seed's field name.
        seed_body = body(svc, ks["node-0"], "node-0", 1, rows[0])
        seed_body["gradient"] = seed_body.pop("values")
        assert httpx.post(f"{svc.url}/submit_gradient", json=seed_body).status_code == 202
        assert [s["node_id"] for s in httpx.get(f"{svc.url}/v1/rounds/1").json()["submissions"]] == ["node-0"]
        metrics = httpx.get(f"{svc.url}/metrics").text
        assert 'zerotrustml_submissions_total{outcome="accepted"} 4.0' in metrics
        assert 'zerotrustml_rounds_closed_total{reason="complete"} 1.0' in metrics


def test_every_bad_request_is_a_problem_naming_its_field_and_nothing_is_stored(tmp_path: Path) -> None:
    ks = keys(3)
    data_dir = tmp_path / "s"
    row = np.ones(DIMS, np.float32)
    with LiveService(data_dir, "--dims", str(DIMS), "--aggregator", "median") as svc:
        register(svc, ks)
        for nid, k in ks.items():
            assert httpx.post(f"{svc.url}/v1/submissions", json=body(svc, k, nid, 0, row)).status_code == 202
        good = body(svc, ks["node-0"], "node-0", 1, row)
        assert httpx.post(f"{svc.url}/v1/submissions", json=good).status_code == 202
        problem(httpx.post(f"{svc.url}/v1/submissions", json=good), 409, "replayed", "nonce")
    held = export(data_dir)

    with LiveService(data_dir, "--dims", str(DIMS), "--aggregator", "median") as svc:
        url = f"{svc.url}/v1/submissions"
        post = lambda **kw: httpx.post(url, headers={"content-type": "application/json"}, **kw)  # noqa: E731
        problem(post(content=b'{"node_id": '), 400, "malformed_json")
        problem(post(content=b"[1, 2]"), 400, "malformed_json")
        # After a restart the replay is still refused: the node already has its submission for the round.
        problem(httpx.post(url, json=good), 409, "duplicate", "node_id")
        problem(
            httpx.post(url, json=body(svc, ks["node-1"], "node-1", 1, np.ones(DIMS + 1))), 422, "too_large", "values"
        )
        nan = json.dumps(body(svc, ks["node-1"], "node-1", 1, row)).replace(
            "[1.0, 1.0, 1.0, 1.0]", "[1.0, NaN, 1.0, 1.0]"
        )
        problem(post(content=nan.encode()), 422, "non_finite", "values")
        huge = json.dumps(body(svc, ks["node-1"], "node-1", 1, row)).replace(
            "[1.0, 1.0, 1.0, 1.0]", "[1.0, 1e300, 1.0, 1.0]"
        )
        problem(post(content=huge.encode()), 422, "non_finite", "values")
        forged = body(svc, ks["node-2"], "node-1", 1, row)  # node-2's key signing for node-1
        problem(httpx.post(url, json=forged), 401, "bad_signature", "signature")
        tampered = body(svc, ks["node-1"], "node-1", 1, row)
        tampered["example_count"] = 10**9  # signed for 10
        problem(httpx.post(url, json=tampered), 401, "bad_signature", "signature")
        stranger = nacl.signing.SigningKey(b"\x07" * 32)
        problem(httpx.post(url, json=body(svc, stranger, "mallory", 1, row)), 403, "unknown_node", "node_id")
        problem(httpx.post(url, json=body(svc, ks["node-1"], "node-1", 0, row)), 409, "round_closed", "round")
        problem(httpx.post(url, json=body(svc, ks["node-1"], "node-1", 7, row)), 409, "round_not_open", "round")
        missing = body(svc, ks["node-1"], "node-1", 1, row)
        del missing["nonce"]
        problem(httpx.post(url, json=missing), 422, "invalid", "nonce")
        problem(
            httpx.post(url, json={**body(svc, ks["node-1"], "node-1", 1, row), "extra": 1}), 422, "invalid", "extra"
        )
        problem(
            httpx.post(url, json={**body(svc, ks["node-1"], "node-1", 1, row), "round": -1}), 422, "invalid", "round"
        )
        # An oversized body: refused from its Content-Length, and when streamed without one, before it is read whole.
        limit = 32 * DIMS + 65536
        problem(post(content=b" " * (limit + 1)), 413, "body_too_large")

        def chunks() -> Any:
            for _ in range(1000):
                yield b" " * 1024

        problem(post(content=chunks()), 413, "body_too_large")
        # Registration: a key registered again under another id's signature, or another key for a taken id.
        fed = svc.health()["federation"]
        again = protocol.registration_body(stranger, federation=fed, node_id="node-0")
        problem(httpx.post(f"{svc.url}/v1/nodes", json=again), 409, "key_conflict", "public_key")
        bad_sig = {**protocol.registration_body(stranger, federation=fed, node_id="mallory"), "node_id": "eve"}
        problem(httpx.post(f"{svc.url}/v1/nodes", json=bad_sig), 401, "bad_signature", "signature")
        problem(httpx.get(f"{svc.url}/v1/nodes/nobody/reputation"), 404, "unknown_node", "node_id")
        problem(httpx.get(f"{svc.url}/v1/rounds/9/aggregate"), 404, "no_aggregate", "round")
        problem(httpx.post(f"{svc.url}/v1/rounds/1/close"), 401, "not_operator", "authorization")
        problem(httpx.get(f"{svc.url}/v1/nothing"), 404, "not_found")
        assert 'zerotrustml_requests_refused_total{code="body_too_large"} 2.0' in httpx.get(f"{svc.url}/metrics").text
    assert export(data_dir) == held


def test_a_closed_federation_admits_only_nodes_its_key_signed(tmp_path: Path) -> None:
    admission = nacl.signing.SigningKey(b"\x42" * 32)
    ks = keys(2)
    args = ("--dims", str(DIMS), "--admission-key", bytes(admission.verify_key).hex())
    with LiveService(tmp_path / "s", *args) as svc:
        assert svc.health()["admission"] == "closed"
        fed = svc.health()["federation"]
        url = f"{svc.url}/v1/nodes"
        problem(
            httpx.post(url, json=protocol.registration_body(ks["node-0"], federation=fed, node_id="node-0")),
            403,
            "not_admitted",
            "admission",
        )
        self_admitted = protocol.registration_body(
            ks["node-0"], federation=fed, node_id="node-0", admission_key=ks["node-0"]
        )
        problem(httpx.post(url, json=self_admitted), 403, "not_admitted", "admission")
        other_federation = protocol.registration_body(
            ks["node-0"], federation="elsewhere", node_id="node-0", admission_key=admission
        )
        problem(httpx.post(url, json=other_federation), 401, "bad_signature", "signature")
        r = httpx.post(
            url,
            json=protocol.registration_body(ks["node-0"], federation=fed, node_id="node-0", admission_key=admission),
        )
        assert r.status_code == 201 and r.json() == {"node_id": "node-0", "created": True}
        r = httpx.post(
            url,
            json=protocol.registration_body(ks["node-0"], federation=fed, node_id="node-0", admission_key=admission),
        )
        assert r.status_code == 200 and r.json()["created"] is False
        assert [n["node_id"] for n in httpx.get(url).json()] == ["node-0"]


def test_killed_with_sigkill_mid_round_every_acknowledged_submission_is_there_and_the_run_goes_on(
    tmp_path: Path,
) -> None:
    ks = keys(5)
    data_dir = tmp_path / "s"
    rng = np.random.default_rng(0)
    rows = {nid: rng.normal(size=DIMS).astype(np.float32) for nid in ks}
    svc = LiveService(data_dir, "--dims", str(DIMS), "--aggregator", "trimmed_mean", "--assumed-f", "1").start()
    try:
        register(svc, ks)
        acked = {}
        for nid in list(ks)[:3]:
            r = httpx.post(f"{svc.url}/v1/submissions", json=body(svc, ks[nid], nid, 0, rows[nid]))
            assert r.status_code == 202
            acked[nid] = r.json()["payload_hash"]
        svc.stop(signal.SIGKILL)
        svc.start()
        info = httpx.get(f"{svc.url}/v1/rounds/0").json()
        assert info["status"] == "open"
        assert {s["node_id"]: s["payload_hash"] for s in info["submissions"]} == acked
        assert info["missing"] == list(ks)[3:]
        for nid in list(ks)[3:]:
            assert (
                httpx.post(f"{svc.url}/v1/submissions", json=body(svc, ks[nid], nid, 0, rows[nid])).status_code == 202
            )
        agg = httpx.get(f"{svc.url}/v1/rounds/0/aggregate").json()
        assert agg["final"] and sorted(agg["kept"]) == sorted(ks)
        assert svc.health()["round"] == 1
    finally:
        svc.stop()


def test_a_round_closes_at_its_deadline_without_a_silent_node_and_events_stream_live(tmp_path: Path) -> None:
    ks = keys(3)
    with LiveService(tmp_path / "s", "--dims", str(DIMS), "--aggregator", "median", "--round-deadline", "1.5") as svc:
        register(svc, ks)

        async def watch() -> list[dict[str, Any]]:
            seen: list[dict[str, Any]] = []
            async with websockets.connect(f"ws://127.0.0.1:{svc.port}/v1/events") as ws:
                hello = json.loads(await ws.recv())
                assert hello["type"] == "hello" and hello["round"] == 0
                for nid in ("node-0", "node-1"):
                    b = await asyncio.to_thread(body, svc, ks[nid], nid, 0, np.ones(DIMS))
                    r = await asyncio.to_thread(httpx.post, f"{svc.url}/v1/submissions", json=b)
                    assert r.status_code == 202
                while not any(e["type"] == "round_closed" for e in seen):
                    seen.append(json.loads(await asyncio.wait_for(ws.recv(), timeout=30)))
            return seen

        seen = asyncio.run(watch())
        assert [e["node_id"] for e in seen if e["type"] == "submission"] == ["node-0", "node-1"]
        closed = next(e for e in seen if e["type"] == "round_closed")
        assert closed["round"] == 0 and closed["reason"] == "deadline" and closed["missing"] == ["node-2"]
        assert httpx.get(f"{svc.url}/v1/rounds/0/aggregate").json()["missing"] == ["node-2"]


def test_the_operator_closes_a_round_with_its_token_and_no_one_else_can(tmp_path: Path) -> None:
    ks = keys(3)
    with LiveService(tmp_path / "s", "--dims", str(DIMS), "--aggregator", "median") as svc:
        register(svc, ks)
        assert (
            httpx.post(
                f"{svc.url}/v1/submissions", json=body(svc, ks["node-0"], "node-0", 0, np.ones(DIMS))
            ).status_code
            == 202
        )
        preview = httpx.get(f"{svc.url}/v1/rounds/0/aggregate").json()
        assert preview["final"] is False and preview["missing"] == ["node-1", "node-2"]
        close = f"{svc.url}/v1/rounds/0/close"
        problem(httpx.post(close, headers={"authorization": "Bearer wrong"}), 401, "not_operator", "authorization")
        r = httpx.post(close, headers={"authorization": f"Bearer {svc.token}"})
        assert r.status_code == 200 and r.json()["final"] is True and r.json()["kept"] == ["node-0"]
        assert svc.health()["round"] == 1


def test_the_pipeline_flags_sign_flipped_updates_from_their_signed_proofs_and_geometry(tmp_path: Path) -> None:
    ks = keys(10)
    rng = np.random.default_rng(3)
    direction = rng.normal(size=DIMS * 8).astype(np.float32)
    liars = {"node-2", "node-5", "node-7"}
    with LiveService(tmp_path / "s", "--dims", str(DIMS * 8), "--assumed-f", "3", "--rounds", "3") as svc:
        register(svc, ks)
        for rnd in range(3):
            for nid, k in ks.items():
                row = direction + 0.1 * rng.normal(size=direction.size).astype(np.float32)
                if nid in liars:
                    row = -3 * row
                claim = proofs.sign_claim(
                    k,
                    node_id=nid,
                    round=rnd,
                    payload_hash=payload_hash(row.astype(np.float32)),
                    loss_before=1.0,
                    loss_after=0.9,
                    holdout_size=10,
                    lr=0.1,
                )
                r = httpx.post(f"{svc.url}/v1/submissions", json=body(svc, k, nid, rnd, row, proof=claim.to_json()))
                assert r.status_code == 202, r.text
            agg = httpx.get(f"{svc.url}/v1/rounds/{rnd}/aggregate").json()
            assert set(agg["flagged"]) == liars, agg
        history = httpx.get(f"{svc.url}/v1/nodes/node-2/reputation").json()
        assert [p["round"] for p in history["history"]] == [0, 1, 2]
        honest = httpx.get(f"{svc.url}/v1/nodes/node-0/reputation").json()
        assert history["current"] < honest["current"]
        assert svc.health()["finished"] is True


def test_the_committed_openapi_document_matches_the_service() -> None:
    committed = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert committed == openapi_document(), (
        "docs/openapi.json drifted: zerotrustml serve --print-openapi > docs/openapi.json"
    )


def test_port_0_takes_a_free_port_and_says_which_and_a_taken_port_is_named(tmp_path: Path) -> None:
    import re
    import subprocess
    import sys
    import time

    cmd = [
        sys.executable,
        "-m",
        "zerotrustml",
        "serve",
        "--dims",
        "2",
        "--port",
        "0",
        "--data-dir",
        str(tmp_path / "s"),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 60
        url = None
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            assert line or proc.poll() is None, "serve exited"
            found = re.search(r"serving \S+ on (http://127\.0\.0\.1:(\d+))", line)
            if found:
                url, port = found.group(1), int(found.group(2))
        assert url is not None and port > 0
        for _ in range(100):
            try:
                assert httpx.get(f"{url}/v1/health").json()["dims"] == 2
                break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise AssertionError(f"nothing answers at {url}")
        taken = subprocess.run(
            [*cmd[:-4], "--port", str(port), "--data-dir", str(tmp_path / "t")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert taken.returncode == 2 and f"--port: cannot listen on 127.0.0.1:{port}" in taken.stderr, taken.stderr
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
