// ReputationRecord on real conductors: scores outside [0, 1] are refused,
// and any agent reads the latest record about an agent.

import { describe, expect, test } from "vitest";

import {
  appActionsOnChain,
  cellOf,
  expectValidationRejection,
  getReputation,
  hex,
  publishReputation,
  runWithAgents,
  syncAll,
} from "./common.js";

describe("ReputationRecord", () => {
  test("scores out of range are rejected; get_reputation returns the latest record across agents", async () => {
    await runWithAgents(3, async (players) => {
      const [alice, bob, carol] = players;
      const before = await appActionsOnChain(alice);
      for (const score of [1.5, -0.1, NaN, Infinity]) {
        await expectValidationRejection(
          publishReputation(cellOf(alice), { agent: bob.agentPubKey, round: 1, score }),
          /ReputationRecord\.score: must be a finite number in \[0, 1\]/,
        );
      }
      expect(await appActionsOnChain(alice)).toBe(before);

      await publishReputation(cellOf(alice), { agent: bob.agentPubKey, round: 1, score: 0.4 });
      const latest = await publishReputation(cellOf(alice), { agent: bob.agentPubKey, round: 3, score: 0.9 });
      await publishReputation(cellOf(carol), { agent: bob.agentPubKey, round: 2, score: 0.1 });
      await syncAll(players);

      for (const reader of players) {
        const rep = await getReputation(cellOf(reader), bob.agentPubKey);
        expect(rep).not.toBeNull();
        expect(hex(rep!.action_hash)).toBe(hex(latest));
        expect(hex(rep!.author)).toBe(hex(alice.agentPubKey));
        expect(rep!.record.round).toBe(3);
        expect(rep!.record.score).toBe(0.9);
        expect(hex(rep!.record.agent)).toBe(hex(bob.agentPubKey));
      }
      expect(await getReputation(cellOf(bob), carol.agentPubKey)).toBeNull();
    });
  });
});
