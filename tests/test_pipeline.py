"""The full defence on small scenarios: proofs, similarity, committee, reputation, aggregation."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zerotrustml.defence import committee, pipeline, proofs
from zerotrustml.defence.config import DefenceConfig
from zerotrustml.defence.reputation import ReputationLedger
from zerotrustml.exceptions import ParameterError
from zerotrustml.fl import models
from zerotrustml.fl.simulation import RunConfig, run
from zerotrustml.validation import Submission

SMALL = {"dataset": "synthetic", "nodes": 10, "rounds": 6, "local_steps": 2, "aggregator": "pipeline"}


def small(**kw: Any) -> RunConfig:
    return RunConfig(**{**SMALL, **kw})


def test_pipeline_finds_scaled_sign_flips_and_keeps_accuracy(tmp_path: Path) -> None:
    s = run(small(attack="scaled_sign_flip", byzantine_fraction=0.3), tmp_path)
    assert s["tpr"] >= 0.9 and s["fpr"] <= 0.05
    assert s["final_accuracy"] >= s["honest_only_accuracy"] - 0.03


def test_pipeline_finds_colluding_copies(tmp_path: Path) -> None:
    s = run(small(attack="alie", byzantine_fraction=0.3), tmp_path)
    assert s["tpr"] >= 0.9 and s["fpr"] <= 0.05


def test_clean_run_flags_nobody_and_matches_plain_averaging(tmp_path: Path) -> None:
    s = run(small(attack="none", byzantine_fraction=0.0, distribution="dirichlet", alpha=0.5), tmp_path)
    assert s["fpr"] == 0.0
    assert abs(s["final_accuracy"] - s["honest_only_accuracy"]) <= 0.01


def test_reputation_is_stored_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = small(attack="scaled_sign_flip", byzantine_fraction=0.3, rounds=4)
    whole = run(cfg, tmp_path / "whole")
    from zerotrustml.backends.embedded import EmbeddedStore

    real = EmbeddedStore.put_round_record

    async def crash(self: EmbeddedStore, record: Any, **kw: Any) -> None:
        if record.round == 2:
            raise OSError("power cut")
        await real(self, record, **kw)

    monkeypatch.setattr(EmbeddedStore, "put_round_record", crash)
    with pytest.raises(OSError):
        run(cfg, tmp_path / "cut")
    monkeypatch.setattr(EmbeddedStore, "put_round_record", real)
    resumed = run(cfg, tmp_path / "cut")
    assert resumed["final_accuracy"] == whole["final_accuracy"] and resumed["tpr"] == whole["tpr"]

    import asyncio

    async def reputations() -> dict[str, float]:
        async with EmbeddedStore(tmp_path / "cut") as store:
            return await store.get_reputations()

    reps = asyncio.run(reputations())
    byz = set(whole["byzantine_nodes"])
    assert max(v for k, v in reps.items() if k in byz) < min(v for k, v in reps.items() if k not in byz)


def _round(n: int = 6, d: int = 30) -> tuple[list[Submission], dict[str, Any], Any, np.ndarray]:
    rng = np.random.default_rng(0)
    model = models.make_model("softmax", 5, 6)  # 36 parameters
    params = model.init(0)
    x, y = rng.normal(size=(40, 5)).astype(np.float32), rng.integers(0, 6, 40)
    keys = {f"n{i}": pipeline.signing_key(7, f"n{i}") for i in range(n)}
    subs = []
    for i in range(n):
        g, _ = models.local_update(model, params, x, y, steps=1, lr=0.1, batch_size=None, rng=rng)
        proof = proofs.EdgeProofGenerator(keys[f"n{i}"]).prove(
            model, params, g, x[:10], y[:10], node_id=f"n{i}", round=0, lr=0.1
        )
        subs.append(Submission.create(f"n{i}", 0, "m", g, 40, proof=proof.to_json()))
    return subs, keys, model, params


def test_forged_or_missing_proofs_are_flagged_without_committee_help() -> None:
    subs, keys, model, params = _round()
    ring = proofs.KeyRing()
    for nid, k in keys.items():
        ring.register(nid, k.verify_key)
    tampered = dict(subs[1].proof)
    tampered["loss_after"] = 0.0  # claims a perfect update; the signature no longer covers it
    subs[1] = dataclasses.replace(subs[1], proof=tampered)
    subs[2] = dataclasses.replace(subs[2], proof={})

    def no_votes(members: Any, s: Any) -> list[committee.Vote]:
        return []

    verdict = pipeline.run_round(
        0,
        subs,
        config=DefenceConfig(),
        keys=ring,
        ledger=ReputationLedger(DefenceConfig()),
        votes=no_votes,
        seed=1,
        f=1,
        previous=None,
    )
    assert set(verdict.flagged) >= {"n1", "n2"}
    assert verdict.evidence["reasons"]["n1"][0] == "proof bad_signature"
    assert verdict.evidence["reasons"]["n2"][0] == "proof missing"
    assert "n1" not in verdict.kept
    rate = pipeline.lottery_rate(DefenceConfig(), len(subs))
    drawn = committee.select_committee(dict(ring), 0, pipeline.committee_seed(1), rate, pipeline.round_beacon(1, 0))
    assert verdict.committee == drawn
    assert verdict.vector.shape == (model.dims,)


def test_committee_is_deterministic_and_among_nodes_in_good_standing() -> None:
    config = DefenceConfig()
    ledger = ReputationLedger(config)
    ids = [f"n{i}" for i in range(12)]
    for r in range(4):  # n0 and n1 flagged every round: excluded
        ledger.update(r, {nid: nid in ("n0", "n1") for nid in ids})
    assert ledger.excluded("n0") and ledger.excluded("n1")
    keys = {nid: bytes(pipeline.signing_key(3, nid).verify_key) for nid in ids}
    for r in range(4, 30):
        members = pipeline.committee_members(r, ids, ledger=ledger, keys=keys, seed=3, rate=0.5)
        assert members == pipeline.committee_members(r, ids, ledger=ledger, keys=keys, seed=3, rate=0.5)
        drawn = committee.select_committee(keys, r, pipeline.committee_seed(3), 0.5, pipeline.round_beacon(3, r))
        # The lottery's members, less the excluded: an excluded node's seat counts for nothing.
        assert members == [m for m in drawn if m not in ("n0", "n1")]
    assert pipeline.lottery_rate(config, 20) == config.committee_size / 20
    assert pipeline.lottery_rate(config, 2) == 1.0


def test_member_scores_reward_helpful_updates() -> None:
    rng = np.random.default_rng(3)
    model = models.make_model("softmax", 4, 3)
    params = model.init(0)
    x, y = rng.normal(size=(60, 4)).astype(np.float32), rng.integers(0, 3, 60)
    _, g = model.loss_grad(params, x, y)
    updates = [g + rng.normal(0, 0.01, g.shape).astype(np.float32) for _ in range(5)] + [-5 * g]
    q = pipeline.contributions(model, params, updates, 0.5, x, y)
    assert (q[:5] > q[5]).all() and q[5] < 0


def test_run_summary_records_the_defence_configuration(tmp_path: Path) -> None:
    env = tmp_path / ".env.optimal"
    env.write_text("REPUTATION_PENALTY=0.5\n")
    s = run(small(rounds=1, defence_config=str(env)), tmp_path / "d")
    assert s["defence_config"]["reputation_penalty"] == 0.5
    row = json.loads((tmp_path / "d" / "run.jsonl").read_text().splitlines()[0])
    assert set(row["verdicts"].values()) <= {"TP", "FP", "FN", "TN"}


def test_each_stage_switch_turns_exactly_its_stage_off() -> None:
    """The ablation switches (issue 13, item 7): each one removes its stage and nothing else."""
    subs, keys, model, params = _round(n=8)
    ring = proofs.KeyRing()
    for nid, k in keys.items():
        ring.register(nid, k.verify_key)
    rng = np.random.default_rng(1)
    base = np.asarray(subs[0].values)
    scale = float(np.linalg.norm(base)) / np.sqrt(base.size)
    for i, sub in enumerate(subs):  # honest nodes differ (own data): no two updates are near-duplicates
        values = (base + rng.normal(scale=0.3 * scale, size=base.size)).astype(np.float32)
        if i == 3:
            values = (-4 * base).astype(np.float32)  # a scaled sign flip: similarity's case
        key = keys[sub.node_id]
        proof = proofs.EdgeProofGenerator(key).prove(
            model, params, values, np.zeros((4, 5), np.float32), np.zeros(4, np.int64), node_id=sub.node_id, round=0,
            lr=0.1,
        )  # fmt: skip
        subs[i] = Submission.create(sub.node_id, 0, "m", values, 40, proof=proof.to_json())
    subs[1] = dataclasses.replace(subs[1], proof={})  # a missing proof: the proof stage's case

    def decide(**switches: int) -> Any:
        config = DefenceConfig(**switches)
        ledger = ReputationLedger(config)
        verdict = pipeline.run_round(
            0, subs, config=config, keys=ring, ledger=ledger, votes=lambda m, s: [], seed=1, f=2, previous=None,
            committee_rate=1.0,
        )  # fmt: skip
        return verdict, ledger

    full, ledger = decide()
    assert {"n1", "n3"} <= set(full.flagged) and full.committee and ledger.last_round == 0
    assert any(r.startswith("cosine") or r.startswith("distance") for r in full.evidence["reasons"]["n3"])
    no_proofs, _ = decide(stage_proofs=0)
    assert "n1" not in no_proofs.flagged and "n3" in no_proofs.flagged  # similarity still finds the noise
    no_similarity, _ = decide(stage_similarity=0)
    assert "suspicion" not in no_similarity.evidence
    assert not any(r.startswith(("cosine", "distance", "Krum")) for rs in no_similarity.evidence["reasons"].values()
                   for r in rs)  # fmt: skip
    assert "n1" in no_similarity.flagged  # the proof stage still runs
    no_committee, _ = decide(stage_committee=0)
    assert no_committee.committee == [] and set(no_committee.flagged) == set(full.flagged)
    no_reputation, untouched = decide(stage_reputation=0)
    assert untouched.last_round is None and untouched.scores == {}
    assert set(no_reputation.flagged) == set(full.flagged)
    with pytest.raises(ParameterError, match="STAGE_COMMITTEE"):
        DefenceConfig(stage_committee=2)
