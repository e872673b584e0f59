// RoundAggregate on real conductors: agents compute a round's aggregate
// with the shared core, publish it, and the integrity zome recomputes every
// published aggregate (the model is far below the DNA's recompute_limit), so
// a forged one is refused at commit.

import type { PlayerApp } from "@holochain/tryorama";
import { describe, expect, test } from "vitest";

import {
  appActionsOnChain,
  byRawBytes,
  cellOf,
  computeRoundAggregate,
  expectValidationRejection,
  f32,
  getRoundAggregates,
  hex,
  payloadHash,
  publishAggregate,
  publishComputedAggregate,
  runWithAgents,
  sampleSubmission,
  sampleValues,
  submitGradient,
  syncAll,
  type PublishComputedInput,
} from "./common.js";

/** Honest updates: one direction, small per-agent offsets. */
const honestValues = (i: number): number[] => sampleValues().map((v, j) => v + 0.01 * (i + 1) * ((j % 3) - 1));
/** The Byzantine update: a scaled sign flip (norm ~ 20, under the bound). */
const byzantineValues = (): number[] => sampleValues(-8);

async function submitAll(players: PlayerApp[], round: number, values: (i: number) => number[]) {
  return Promise.all(
    players.map((p, i) => submitGradient(cellOf(p), sampleSubmission({ round, values: values(i), example_count: 10 }))),
  );
}

describe("RoundAggregate", () => {
  test("5 agents: two agents compute the same multi_krum aggregate, the Byzantine update is flagged, the published aggregate validates and a forged one does not", async () => {
    await runWithAgents(5, async (players) => {
      const [alice, bob, carol, dave, mallory] = players;
      const round = 5;
      const hashes = await submitAll(players, round, (i) => (i === 4 ? byzantineValues() : honestValues(i)));
      await syncAll(players);

      const fromBob = await computeRoundAggregate(cellOf(bob), round, "multi_krum", 1);
      const fromCarol = await computeRoundAggregate(cellOf(carol), round, "multi_krum", 1);
      expect(fromCarol).toEqual(fromBob);
      expect(fromBob.contributors.map(hex)).toEqual([...hashes].sort(byRawBytes).map(hex));
      expect(fromBob.flagged.map(hex)).toEqual([hex(mallory.agentPubKey)]);
      expect(hex(fromBob.result_hash)).toBe(hex(payloadHash(fromBob.values)));
      // Multi-Krum with m = n - f = 4 averages exactly the honest four.
      const honestMean = f32(sampleValues().map((_, j) => [0, 1, 2, 3].reduce((s, i) => s + honestValues(i)[j], 0) / 4));
      fromBob.values.forEach((v, j) => expect(v).toBeCloseTo(honestMean[j], 5));

      // Krum keeps one update: the Byzantine one is among the four it drops.
      const krum = await computeRoundAggregate(cellOf(dave), round, "krum", 1);
      expect(krum.flagged).toHaveLength(4);
      expect(krum.flagged.map(hex)).toContain(hex(mallory.agentPubKey));
      // The plain mean flags nobody and is dragged by the Byzantine update.
      const mean = await computeRoundAggregate(cellOf(dave), round, "mean");
      expect(mean.flagged).toEqual([]);
      expect(Math.abs(mean.values[0] - fromBob.values[0])).toBeGreaterThan(0.5);

      // Published: the author's conductor recomputed it at commit.
      const published = await publishAggregate(cellOf(bob), round, "multi_krum", 1);
      await syncAll(players);
      for (const reader of [alice, dave]) {
        const aggregates = await getRoundAggregates(cellOf(reader), round);
        expect(aggregates).toHaveLength(1);
        const [a] = aggregates;
        expect(hex(a.action_hash)).toBe(hex(published));
        expect(hex(a.author)).toBe(hex(bob.agentPubKey));
        expect(a.values).toEqual(fromBob.values);
        expect(a.aggregate.rule).toBe("multi_krum");
        expect(a.aggregate.f).toBe(1);
        expect(a.aggregate.flagged.map(hex)).toEqual([hex(mallory.agentPubKey)]);
        expect(a.aggregate.contributors.map(hex)).toEqual(fromBob.contributors.map(hex));
        expect(hex(a.aggregate.result_hash)).toBe(hex(fromBob.result_hash));
        expect(a.aggregate.result_chunks).toHaveLength(3);
      }

      // The Byzantine agent tries to publish an aggregate that keeps it in.
      // As published with the default result hash (that of `values`).
      const { result_hash: _bobHash, ...honest } = fromBob;
      const before = await appActionsOnChain(mallory);
      await expectValidationRejection(
        publishComputedAggregate(cellOf(mallory), { ...honest, values: mean.values }),
        /RoundAggregate\.result_hash: multi_krum over the contributors gives [0-9a-f]{64}, the aggregate claims/,
      );
      await expectValidationRejection(
        publishComputedAggregate(cellOf(mallory), { ...honest, flagged: [] }),
        /RoundAggregate\.flagged: 0 flagged, but multi_krum flags 1 of 5 contributors/,
      );
      await expectValidationRejection(
        publishComputedAggregate(cellOf(mallory), { ...honest, flagged: [alice.agentPubKey] }),
        /RoundAggregate\.flagged: multi_krum flags contributors \[\d\], the aggregate lists other agents/,
      );
      expect(await appActionsOnChain(mallory)).toBe(before);
    });
  });

  test("forged aggregates are rejected: result, result hash, flagged, order, round, precondition, rule", async () => {
    await runWithAgents(3, async (players) => {
      const [alice, , carol] = players;
      const round = 6;
      await submitAll(players, round, honestValues);
      const otherRound = await submitGradient(cellOf(alice), sampleSubmission({ round: round + 1 }));
      await syncAll(players);

      const honest = await computeRoundAggregate(cellOf(carol), round, "mean");
      expect(honest.contributors).toHaveLength(3);
      const { result_hash: _hash, ...base } = honest;
      const before = await appActionsOnChain(carol);
      const reject = (input: PublishComputedInput, reason: RegExp) =>
        expectValidationRejection(publishComputedAggregate(cellOf(carol), input), reason);

      const forged = [...honest.values];
      forged[0] += 1;
      await reject({ ...base, values: forged }, /RoundAggregate\.result_hash: mean over the contributors gives/);
      await reject(
        { ...base, result_hash: payloadHash(forged) },
        new RegExp(`RoundAggregate\\.result_hash: claimed ${hex(payloadHash(forged))} but the payload hashes to`),
      );
      await reject(
        { ...base, flagged: [alice.agentPubKey] },
        /RoundAggregate\.flagged: 1 flagged, but mean flags 0 of 3 contributors/,
      );
      await reject(
        { ...base, contributors: [...base.contributors].reverse() },
        /RoundAggregate\.contributors\[1\]: not strictly ascending/,
      );
      const mixed = [...base.contributors.slice(1), otherRound].sort(byRawBytes);
      await reject({ ...base, contributors: mixed }, /RoundAggregate\.contributors\[\d\]: a submission of round 7, not of round 6/);
      await reject(
        { ...base, rule: "trimmed_mean", f: 2 },
        /RoundAggregate\.f: trimmed_mean needs n > 2f \(got n=3, f=2\)/,
      );
      await reject({ ...base, rule: "bulyan" }, /RoundAggregate\.rule: unknown rule "bulyan"/);
      await reject({ ...base, values: honest.values.slice(0, 20) }, /RoundAggregate\.result_chunks: 2 chunks, expected 3/);
      expect(await appActionsOnChain(carol)).toBe(before);

      // The honest one goes through, and another agent reads it.
      const published = await publishAggregate(cellOf(carol), round, "mean");
      await syncAll(players);
      const read = await getRoundAggregates(cellOf(alice), round);
      expect(read.map((a) => hex(a.action_hash))).toEqual([hex(published)]);
      expect(read[0].values).toEqual(honest.values);
    });
  });
});
