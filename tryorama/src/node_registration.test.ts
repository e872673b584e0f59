// NodeRegistration on real conductors: a node's id and Ed25519 node key,
// bound to the agent by the node key's signature over the agent key. The
// attacks: replaying another agent's registration, registering twice,
// malformed keys.

import { describe, expect, test } from "vitest";

import {
  cellOf,
  expectValidationRejection,
  getNodeRegistrations,
  hex,
  nodeKeys,
  registerNode,
  runWithAgents,
  sampleRegistration,
  syncAll,
} from "./common.js";

describe("NodeRegistration", () => {
  test("a signed registration is accepted and read by all; a replayed, a second and a malformed one are rejected", async () => {
    await runWithAgents(2, async (players) => {
      const [alice, bob] = players;
      const ka = nodeKeys();
      const registration = sampleRegistration(alice.agentPubKey, "node-alice", ka);

      // Bob replays Alice's registration (signed over Alice's agent key) under his own agent.
      await expectValidationRejection(
        registerNode(cellOf(bob), registration),
        /NodeRegistration\.signature: does not verify under node_key for this agent and node_id/,
      );
      // A key that is not 32 bytes.
      await expectValidationRejection(
        registerNode(cellOf(bob), { ...sampleRegistration(bob.agentPubKey, "node-bob", nodeKeys()), node_key: new Uint8Array(31) }),
        /NodeRegistration\.node_key: must be 32 bytes, got 31/,
      );

      const hash = await registerNode(cellOf(alice), registration);
      // One registration per agent, even under another id and key.
      await expectValidationRejection(
        registerNode(cellOf(alice), sampleRegistration(alice.agentPubKey, "node-alice-2", nodeKeys())),
        /NodeRegistration\.agent: this agent is already registered/,
      );

      await syncAll(players);
      for (const reader of players) {
        const regs = await getNodeRegistrations(cellOf(reader));
        expect(regs.map((r) => hex(r.action_hash))).toEqual([hex(hash)]);
        expect(hex(regs[0].agent)).toBe(hex(alice.agentPubKey));
        expect(regs[0].registration.node_id).toBe("node-alice");
        expect(hex(regs[0].registration.node_key)).toBe(hex(ka.publicKey));
      }
    });
  });
});
