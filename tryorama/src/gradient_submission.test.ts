// GradientSubmission (and its GradientChunks) on real conductors: three
// agents, each on its own Holochain 0.6.3 conductor, networked through
// tryorama's local kitsune2-bootstrap-srv (bootstrap + webrtc signalling on
// 127.0.0.1). The DNA's model has 24 parameters in chunks of 10, so every
// payload is stored as 3 chunk entries.

import { encode } from "@msgpack/msgpack";
import { describe, expect, test } from "vitest";

import {
  ACTIONS_PER_SUBMISSION,
  appActionsOnChain,
  cellOf,
  collectSignals,
  expectSameSubmission,
  expectValidationRejection,
  getAgentSubmissions,
  getRoundSubmissions,
  hex,
  payloadHash,
  runWithAgents,
  sampleProof,
  sampleSubmission,
  sampleValues,
  submitGradient,
  syncAll,
  waitFor,
  type SubmitGradientInput,
} from "./common.js";

const AGENTS = 3;

describe("GradientSubmission", () => {
  test("three agents submit chunked payloads in one round; every agent reads all three intact and hears the others' signals", async () => {
    await runWithAgents(AGENTS, async (players) => {
      const round = 4;
      // Every agent's participant link (written by init) must reach the
      // others before they submit, or nobody is there to signal.
      await syncAll(players);
      const listeners = players.map(collectSignals);

      const sent = players.map((_, i) =>
        sampleSubmission({ round, values: sampleValues(i + 1, i), example_count: 10 * (i + 1) }),
      );
      const hashes = await Promise.all(players.map((p, i) => submitGradient(cellOf(p), sent[i])));
      hashes.forEach((h) => expect(h.length).toBe(39));

      await syncAll(players);
      for (const reader of players) {
        const outputs = await getRoundSubmissions(cellOf(reader), round);
        expect(outputs).toHaveLength(AGENTS);
        for (const out of outputs) {
          const i = hashes.findIndex((h) => hex(h) === hex(out.action_hash));
          expect(i).toBeGreaterThanOrEqual(0);
          expectSameSubmission(out, sent[i], players[i].agentPubKey);
        }
      }
      // The agent index reads the same submission; another round is empty.
      const [alice, bob, carol] = players;
      const byAlice = await getAgentSubmissions(cellOf(carol), alice.agentPubKey);
      expect(byAlice.map((o) => hex(o.action_hash))).toEqual([hex(hashes[0])]);
      expect(await getRoundSubmissions(cellOf(bob), round + 1)).toEqual([]);

      // Each agent: its own commit locally, the other two by remote signal.
      for (const [i, { signals, stop }] of listeners.entries()) {
        await waitFor(
          `agent ${i} signals`,
          async () => signals,
          (s) => s.filter((x) => x.type === "NewSubmission").length >= AGENTS - 1,
          30_000,
        );
        stop();
        const own = signals.filter((s) => s.type === "SubmissionCommitted");
        expect(own.map((s) => hex(s.action_hash))).toEqual([hex(hashes[i])]);
        const others = signals.filter((s) => s.type === "NewSubmission");
        const expected = hashes.filter((_, j) => j !== i).map(hex).sort();
        expect(others.map((s) => hex(s.action_hash)).sort()).toEqual(expected);
        for (const s of others) {
          if (s.type !== "NewSubmission") continue;
          const j = hashes.findIndex((h) => hex(h) === hex(s.action_hash));
          expect(hex(s.author)).toBe(hex(players[j].agentPubKey));
          expect(s.round).toBe(round);
        }
      }
    });
  });

  test("every submission rule rejects its bad entry, nothing of it is stored, and only the valid one is seen", async () => {
    await runWithAgents(AGENTS, async (players) => {
      const [alice, bob, carol] = players;
      const round = 2;
      const before = await appActionsOnChain(alice);
      const reject = async (input: SubmitGradientInput, reason: RegExp) => {
        await expectValidationRejection(submitGradient(cellOf(alice), input), reason);
        expect(await appActionsOnChain(alice)).toBe(before);
      };

      // NaN: a real NaN goes on the wire (msgpack float64 0x7ff8...).
      const nanValues = sampleValues();
      nanValues[1] = NaN;
      const nan = sampleSubmission({ round, values: nanValues, norm: 3.0 });
      expect(Buffer.from(encode(nan)).includes(Buffer.from("cb7ff8000000000000", "hex"))).toBe(true);
      await reject(nan, /GradientSubmission\.values: non-finite value NaN at index 1/);
      // Without a norm claim the zome computes one from the values: NaN too.
      await reject(
        sampleSubmission({ round, values: nanValues }),
        /GradientSubmission\.norm: NaN is not a finite non-negative number/,
      );

      // Wrong dims: fewer values than the model has, and too many for the size limit.
      await reject(
        sampleSubmission({ round, values: sampleValues().slice(0, 20) }),
        /GradientSubmission\.dims: the model has 24 parameters, got 20/,
      );
      await reject(
        sampleSubmission({ round, values: [...sampleValues(), ...sampleValues()] }),
        /GradientSubmission\.values: payload of 192 bytes exceeds 96/,
      );

      // Bad hash: the claim is another payload's hash, the chunks are these values.
      const other = sampleValues(2);
      await reject(
        sampleSubmission({ round, payload_hash: payloadHash(other) }),
        new RegExp(
          `GradientSubmission\\.payload_hash: claimed ${hex(payloadHash(other))} but the payload hashes to ${hex(payloadHash(sampleValues()))}`,
        ),
      );
      await reject(
        sampleSubmission({ round, payload_hash: new Uint8Array(31) }),
        /GradientSubmission\.payload_hash: must be 32 bytes, got 31/,
      );

      // Other claims: a lying norm, another model, no examples, a malformed proof.
      await reject(sampleSubmission({ round, norm: 1.0 }), /GradientSubmission\.norm: claimed 1 but the payload's norm is/);
      await reject(sampleSubmission({ round, model_id: "other-model" }), /GradientSubmission\.model_id: expected "mnist-mlp-v1", got "other-model"/);
      await reject(sampleSubmission({ round, example_count: 0 }), /GradientSubmission\.example_count: must be at least 1/);
      await reject(
        sampleSubmission({ round, proof: sampleProof({ nonce: new Uint8Array(4) }) }),
        /GradientSubmission\.proof\.nonce: must be 16 bytes, got 4/,
      );

      // The valid one: chunks + entry + round link + agent link.
      const good = sampleSubmission({ round });
      const goodHash = await submitGradient(cellOf(alice), good);
      expect(await appActionsOnChain(alice)).toBe(before + ACTIONS_PER_SUBMISSION);

      // A second submission in the same round, even with other values, is a duplicate...
      await expectValidationRejection(
        submitGradient(cellOf(alice), sampleSubmission({ round, values: sampleValues(3) })),
        /GradientSubmission\.round: this author already submitted in round 2/,
      );
      expect(await appActionsOnChain(alice)).toBe(before + ACTIONS_PER_SUBMISSION);
      // ...while the next round is fine.
      await submitGradient(cellOf(alice), sampleSubmission({ round: round + 1 }));

      await syncAll(players);
      for (const reader of [alice, bob, carol]) {
        const outputs = await getRoundSubmissions(cellOf(reader), round);
        expect(outputs.map((o) => hex(o.action_hash))).toEqual([hex(goodHash)]);
        expectSameSubmission(outputs[0], good, alice.agentPubKey);
      }
      expect(await getAgentSubmissions(cellOf(bob), alice.agentPubKey)).toHaveLength(2);
    });
  });
});
