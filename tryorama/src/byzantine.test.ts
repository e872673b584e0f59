// Attacks that need a coordinator of the attacker's own. Mallory installs
// workdir/zerotrustml-byzantine.happ: the same DNA with the test-only
// `byzantine` coordinator, which writes what the honest coordinator never
// does (a chunk referenced by nothing, a link written again). Her own
// (unmodified) conductor runs the integrity zome on every commit, as every
// validator does, so each refusal below is the rule itself.

import type { ActionHash } from "@holochain/client";
import { describe, expect, test } from "vitest";

import {
  BYZANTINE_HAPP_PATH,
  HAPP_PATH,
  appActionsOnChain,
  cellOf,
  expectValidationRejection,
  getRoundSubmissions,
  hex,
  runWithAgents,
  sampleSubmission,
  submitGradient,
  syncAll,
} from "./common.js";

describe("A Byzantine coordinator", () => {
  test("joins the same network, cannot write a link twice, and its chunks outside payloads are bounded", async () => {
    await runWithAgents(
      2,
      async (players) => {
        const [honest, mallory] = players;
        // Coordinators are not part of the DNA hash: Mallory's cell is on the honest network.
        expect(hex(cellOf(mallory).cell_id[0])).toBe(hex(cellOf(honest).cell_id[0]));
        const byzantine = <T>(fn_name: string, payload: unknown): Promise<T> =>
          cellOf(mallory).callZome<T>({ zome_name: "byzantine", fn_name, payload });

        // Links: each points at something its author wrote once, so the same link again is refused.
        const sub = await submitGradient(cellOf(mallory), sampleSubmission({ round: 1 }));
        await expectValidationRejection(
          byzantine<ActionHash>("link_round_submission", { round: 1, submission: sub }),
          /RoundToSubmissions link: its author already linked this base to this target/,
        );
        await expectValidationRejection(
          byzantine<ActionHash>("link_participant", null),
          /Participants link: its author already linked this base to this target/,
        );

        // Chunks: 24 dims in chunks of 10 is 3 per payload; after one submission Mallory may run 6 ahead.
        const before = await appActionsOnChain(mallory);
        for (let i = 0; i < 6; i++) {
          await byzantine<ActionHash>("create_raw_chunk", { index: 0, values: [i] });
        }
        await expectValidationRejection(
          byzantine<ActionHash>("create_raw_chunk", { index: 0, values: [6] }),
          /GradientChunk: its author already wrote 9 chunks for 1 submissions and aggregates/,
        );
        expect(await appActionsOnChain(mallory)).toBe(before + 6);

        // The honest agent reads Mallory's one submission once.
        await submitGradient(cellOf(honest), sampleSubmission({ round: 1, values: sampleSubmission().values.map((v) => v / 2) }));
        await syncAll(players);
        const seen = await getRoundSubmissions(cellOf(honest), 1);
        expect(seen.map((s) => hex(s.author)).sort()).toEqual([hex(honest.agentPubKey), hex(mallory.agentPubKey)].sort());
        expect(seen.filter((s) => hex(s.action_hash) === hex(sub))).toHaveLength(1);
      },
      [HAPP_PATH, BYZANTINE_HAPP_PATH],
    );
  });
});
