// GradientSubmission on real conductors: three agents, each on its own
// Holochain 0.6.3 conductor, networked through tryorama's local
// kitsune2-bootstrap-srv (bootstrap + webrtc signalling on 127.0.0.1).

import { encode } from "@msgpack/msgpack";
import { encodeHashToBase64 } from "@holochain/client";
import { describe, expect, test } from "vitest";

import {
  authorOf,
  cellOf,
  decodeSubmission,
  expectSameSubmission,
  expectValidationRejection,
  getRoundSubmissions,
  runWithAgents,
  sampleGradientSubmission,
  appActionsOnChain,
  submitGradient,
  syncAll,
  type GradientSubmission,
} from "./common.js";

const AGENTS = 3;

describe("GradientSubmission", () => {
  test("A submits; B and C read it from the round after DHT sync, fields intact", async () => {
    await runWithAgents(AGENTS, async (players) => {
      const [alice, bob, carol] = players;
      const sent = sampleGradientSubmission({ round: 7, model_id: "tryorama-a", example_count: 128 });

      const hash = await submitGradient(cellOf(alice), sent);
      expect(hash).toBeInstanceOf(Uint8Array);
      expect(hash.length).toBe(39);

      await syncAll(players);

      for (const reader of [bob, carol]) {
        const records = await getRoundSubmissions(cellOf(reader), 7);
        expect(records).toHaveLength(1);
        expect(records[0].signed_action.hashed.hash).toEqual(hash);
        expect(encodeHashToBase64(authorOf(records[0]))).toBe(encodeHashToBase64(alice.agentPubKey));
        expectSameSubmission(decodeSubmission(records[0]), sent);
      }
      // Another round's anchor stays empty.
      expect(await getRoundSubmissions(cellOf(bob), 8)).toEqual([]);
    });
  });

  test("a NaN in values is rejected by validation and nothing is stored", async () => {
    await runWithAgents(AGENTS, async (players) => {
      const [alice, bob, carol] = players;
      const bad = sampleGradientSubmission({ round: 2, values: [0.5, NaN, 1.0], norm: 1.0 });
      // A real NaN goes on the wire: msgpack float64 0x7ff8..., not null as
      // JSON would make it (the zome narrows it to an f32 NaN).
      expect(Buffer.from(encode(bad)).includes(Buffer.from("cb7ff8000000000000", "hex"))).toBe(true);

      const appActionsBefore = await appActionsOnChain(alice);
      await expectValidationRejection(
        submitGradient(cellOf(alice), bad),
        /GradientSubmission\.values\[1\] is not finite \(NaN\)/,
      );
      expect(await appActionsOnChain(alice)).toBe(appActionsBefore);

      // A valid submission to the same round afterwards is the only one
      // anybody sees once the DHT has synced.
      const good = sampleGradientSubmission({ round: 2 });
      await submitGradient(cellOf(alice), good);
      expect(await appActionsOnChain(alice)).toBe(appActionsBefore + 2); // the entry and its round link
      await syncAll(players);
      for (const reader of [alice, bob, carol]) {
        const records = await getRoundSubmissions(cellOf(reader), 2);
        expect(records).toHaveLength(1);
        expectSameSubmission(decodeSubmission(records[0]), good);
      }
    });
  });

  test("a submission whose values do not match dims is rejected", async () => {
    await runWithAgents(AGENTS, async (players) => {
      const [alice, bob, carol] = players;
      const appActionsBefore = await appActionsOnChain(bob);
      const tooFew = sampleGradientSubmission({ round: 3, values: [1, 2, 3, 4], dims: 5 });
      await expectValidationRejection(
        submitGradient(cellOf(bob), tooFew),
        /GradientSubmission\.values has 4 elements but dims is 5/,
      );
      const tooMany = sampleGradientSubmission({ round: 3, values: [1, 2, 3], dims: 2 });
      await expectValidationRejection(
        submitGradient(cellOf(bob), tooMany),
        /GradientSubmission\.values has 3 elements but dims is 2/,
      );
      expect(await appActionsOnChain(bob)).toBe(appActionsBefore);

      const good = sampleGradientSubmission({ round: 3, model_id: "after-rejections" });
      await submitGradient(cellOf(bob), good);
      expect(await appActionsOnChain(bob)).toBe(appActionsBefore + 2);
      await syncAll(players);
      for (const reader of [alice, bob, carol]) {
        const records = await getRoundSubmissions(cellOf(reader), 3);
        expect(records).toHaveLength(1);
        expectSameSubmission(decodeSubmission(records[0]), good);
      }
    });
  });

  test("all three agents submit in one round and every agent reads all three", async () => {
    await runWithAgents(AGENTS, async (players) => {
      const round = 4;
      const sent = new Map<string, GradientSubmission>();
      players.forEach((p, i) => {
        const values = Array.from({ length: 16 }, (_, j) => (i + 1) * 0.1 * (j - 8));
        sent.set(
          encodeHashToBase64(p.agentPubKey),
          sampleGradientSubmission({ round, model_id: `agent-${i}`, values, example_count: 10 * (i + 1) }),
        );
      });

      // Concurrent submissions, one per agent.
      await Promise.all(players.map((p) => submitGradient(cellOf(p), sent.get(encodeHashToBase64(p.agentPubKey))!)));
      await syncAll(players);

      for (const reader of players) {
        const records = await getRoundSubmissions(cellOf(reader), round);
        expect(records).toHaveLength(AGENTS);
        const authors = records.map((r) => encodeHashToBase64(authorOf(r)));
        expect(new Set(authors)).toEqual(new Set(sent.keys()));
        for (const record of records) {
          expectSameSubmission(decodeSubmission(record), sent.get(encodeHashToBase64(authorOf(record)))!);
        }
      }
    });
  });
});
