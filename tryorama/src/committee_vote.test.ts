// CommitteeVote on real conductors. Committee membership is a hash lottery
// (committee_rate 0.5 in the test DNA) that every validator evaluates from
// the voter's key, the round and the DNA properties; the test asks the zome
// for a round where the voters are and are not members.

import type { AgentPubKey } from "@holochain/client";
import type { CallableCell } from "@holochain/tryorama";
import { describe, expect, test } from "vitest";

import {
  appActionsOnChain,
  castVote,
  cellOf,
  expectValidationRejection,
  getSubmissionVotes,
  hex,
  isCommitteeMember,
  runWithAgents,
  sampleSubmission,
  submitGradient,
  syncAll,
} from "./common.js";

/** The first round from `start` where each agent's membership is as wanted. */
async function findRound(cell: CallableCell, want: [AgentPubKey, boolean][], start = 10): Promise<number> {
  for (let round = start; round < start + 500; round++) {
    let ok = true;
    for (const [agent, member] of want) {
      if ((await isCommitteeMember(cell, agent, round)) !== member) {
        ok = false;
        break;
      }
    }
    if (ok) return round;
  }
  throw new Error("no round with the wanted committee in 500 rounds");
}

describe("CommitteeVote", () => {
  test("a member's vote is accepted and read by others; a non-member's, a second, a non-finite and an own vote are rejected", async () => {
    await runWithAgents(3, async (players) => {
      const [alice, bob, carol] = players;
      // Alice and Bob on the committee, Carol not.
      const round = await findRound(cellOf(alice), [
        [alice.agentPubKey, true],
        [bob.agentPubKey, true],
        [carol.agentPubKey, false],
      ]);
      // Every agent evaluates the lottery the same way.
      for (const p of players) {
        expect(await isCommitteeMember(cellOf(p), bob.agentPubKey, round)).toBe(true);
        expect(await isCommitteeMember(cellOf(p), carol.agentPubKey, round)).toBe(false);
      }
      const otherRound = await findRound(cellOf(bob), [[bob.agentPubKey, true]], round + 1);

      const submission = await submitGradient(cellOf(alice), sampleSubmission({ round }));
      await syncAll(players);

      const vote = { round, submission, quality: 0.25, accept: true };
      const voteHash = await castVote(cellOf(bob), vote);

      const before = await appActionsOnChain(carol);
      await expectValidationRejection(
        castVote(cellOf(carol), vote),
        new RegExp(`CommitteeVote\\.author: .* is not on the committee of round ${round}`),
      );
      expect(await appActionsOnChain(carol)).toBe(before);

      await expectValidationRejection(
        castVote(cellOf(bob), { ...vote, accept: false }),
        /CommitteeVote\.submission: this member already voted on /,
      );
      await expectValidationRejection(castVote(cellOf(bob), { ...vote, quality: NaN }), /CommitteeVote\.quality: must be finite, got NaN/);
      await expectValidationRejection(
        castVote(cellOf(bob), { ...vote, round: otherRound }),
        new RegExp(`CommitteeVote\\.submission: a submission of round ${round}, the vote is for round ${otherRound}`),
      );
      await expectValidationRejection(castVote(cellOf(alice), vote), /CommitteeVote\.submission: a member cannot vote on its own submission/);

      await syncAll(players);
      for (const reader of [alice, carol]) {
        const votes = await getSubmissionVotes(cellOf(reader), submission);
        expect(votes).toHaveLength(1);
        expect(hex(votes[0].action_hash)).toBe(hex(voteHash));
        expect(hex(votes[0].author)).toBe(hex(bob.agentPubKey));
        expect(votes[0].vote).toEqual({ ...vote, submission: votes[0].vote.submission });
        expect(hex(votes[0].vote.submission)).toBe(hex(submission));
      }
    });
  });
});
