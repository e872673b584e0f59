// ReputationRecord on real conductors: a record is its author's opinion of
// another agent. Scores outside [0, 1] and opinions of oneself are refused,
// and a record's round number never lets one author decide an agent's
// standing: readers get each author's latest opinion and their median.

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
  test("out-of-range scores and self-ratings are refused; no single author decides the view", async () => {
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
      // The attack before this rule: raise one's own standing.
      const bobBefore = await appActionsOnChain(bob);
      await expectValidationRejection(
        publishReputation(cellOf(bob), { agent: bob.agentPubKey, round: 1, score: 1 }),
        /ReputationRecord\.agent: an agent cannot publish its own reputation/,
      );
      expect(await appActionsOnChain(bob)).toBe(bobBefore);

      await publishReputation(cellOf(alice), { agent: bob.agentPubKey, round: 1, score: 0.4 });
      await publishReputation(cellOf(carol), { agent: bob.agentPubKey, round: 2, score: 0.1 });
      // The other attack before this rule: a record at a huge round won for every reader.
      const late = await publishReputation(cellOf(alice), {
        agent: bob.agentPubKey,
        round: Number.MAX_SAFE_INTEGER,
        score: 0.9,
      });
      await syncAll(players);

      for (const reader of players) {
        const view = await getReputation(cellOf(reader), bob.agentPubKey);
        expect(hex(view.agent)).toBe(hex(bob.agentPubKey));
        const byAuthor = new Map(view.opinions.map((o) => [hex(o.author), o]));
        expect(byAuthor.size).toBe(2); // one opinion per author: alice's latest and carol's
        expect(hex(byAuthor.get(hex(alice.agentPubKey))!.action_hash)).toBe(hex(late));
        expect(byAuthor.get(hex(carol.agentPubKey))!.record.score).toBe(0.1);
        expect(view.median).toBeCloseTo(0.5, 12); // (0.9 + 0.1) / 2: alice's round number decides nothing
      }
      const none = await getReputation(cellOf(bob), carol.agentPubKey);
      expect(none.opinions).toEqual([]);
      expect(none.median).toBeNull();
    });
  });
});
