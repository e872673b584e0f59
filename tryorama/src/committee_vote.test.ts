// CommitteeVote on real conductors. Committee membership is a hash lottery
// (committee_rate 0.5 in the test DNA) that every validator evaluates from
// the node key of the voter's NodeRegistration, the round and the DNA
// properties; the test asks the zome for a round where the voters are and
// are not members.

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
  nodeKeys,
  registerNode,
  runWithAgents,
  sampleRegistration,
  sampleSubmission,
  submitGradient,
  syncAll,
} from "./common.js";

/** The first round from `start` where each node key's membership is as wanted. */
async function findRound(cell: CallableCell, want: [Uint8Array, boolean][], start = 10): Promise<number> {
  for (let round = start; round < start + 500; round++) {
    let ok = true;
    for (const [key, member] of want) {
      if ((await isCommitteeMember(cell, key, round)) !== member) {
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
      const [ka, kb, kc] = [nodeKeys(), nodeKeys(), nodeKeys()];
      const regAlice = await registerNode(cellOf(alice), sampleRegistration(alice.agentPubKey, "alice", ka));
      const regBob = await registerNode(cellOf(bob), sampleRegistration(bob.agentPubKey, "bob", kb));
      const regCarol = await registerNode(cellOf(carol), sampleRegistration(carol.agentPubKey, "carol", kc));
      // Alice's and Bob's node keys on the committee, Carol's not.
      const round = await findRound(cellOf(alice), [
        [ka.publicKey, true],
        [kb.publicKey, true],
        [kc.publicKey, false],
      ]);
      // Every agent evaluates the lottery the same way.
      for (const p of players) {
        expect(await isCommitteeMember(cellOf(p), kb.publicKey, round)).toBe(true);
        expect(await isCommitteeMember(cellOf(p), kc.publicKey, round)).toBe(false);
      }
      const otherRound = await findRound(cellOf(bob), [[kb.publicKey, true]], round + 1);

      const submission = await submitGradient(cellOf(alice), sampleSubmission({ round }));
      await syncAll(players);

      const vote = {
        round,
        submission,
        quality: 0.25,
        accept: true,
        signature: new Uint8Array(64).fill(3),
        registration: regBob,
      };
      const voteHash = await castVote(cellOf(bob), vote);

      const before = await appActionsOnChain(carol);
      await expectValidationRejection(
        castVote(cellOf(carol), { ...vote, registration: regCarol }),
        new RegExp(`CommitteeVote\\.registration: node key .* is not on the committee of round ${round}`),
      );
      // Carol cannot borrow Bob's seat: the registration must be the voter's own.
      await expectValidationRejection(
        castVote(cellOf(carol), vote),
        /CommitteeVote\.registration: the registration of another agent/,
      );
      expect(await appActionsOnChain(carol)).toBe(before);

      await expectValidationRejection(
        castVote(cellOf(bob), { ...vote, accept: false }),
        /CommitteeVote\.submission: this member already voted on /,
      );
      await expectValidationRejection(castVote(cellOf(bob), { ...vote, quality: NaN }), /CommitteeVote\.quality: must be finite, got NaN/);
      await expectValidationRejection(
        castVote(cellOf(bob), { ...vote, signature: new Uint8Array(10) }),
        /CommitteeVote\.signature: must be empty or 64 bytes, got 10/,
      );
      await expectValidationRejection(
        castVote(cellOf(bob), { ...vote, round: otherRound }),
        new RegExp(`CommitteeVote\\.submission: a submission of round ${round}, the vote is for round ${otherRound}`),
      );
      await expectValidationRejection(
        castVote(cellOf(alice), { ...vote, registration: regAlice }),
        /CommitteeVote\.submission: a member cannot vote on its own submission/,
      );

      await syncAll(players);
      for (const reader of [alice, carol]) {
        const votes = await getSubmissionVotes(cellOf(reader), submission);
        expect(votes).toHaveLength(1);
        expect(hex(votes[0].action_hash)).toBe(hex(voteHash));
        expect(hex(votes[0].author)).toBe(hex(bob.agentPubKey));
        expect(votes[0].vote).toEqual({
          ...vote,
          submission: votes[0].vote.submission,
          signature: votes[0].vote.signature,
          registration: votes[0].vote.registration,
          beacon: votes[0].vote.beacon,
        });
        expect(votes[0].vote.beacon).toHaveLength(0); // dna.yaml's network is open: no beacon
        expect(hex(votes[0].vote.registration)).toBe(hex(regBob));
        expect(hex(votes[0].vote.submission)).toBe(hex(submission));
        expect(hex(votes[0].vote.signature)).toBe(hex(vote.signature));
      }
    });
  });
});
