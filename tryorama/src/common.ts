// Helpers shared by the tryorama tests of the ZeroTrustML hApp.
//
// The tests run real Holochain 0.6.3 conductors. tryorama 0.19 spawns the
// binaries `kitsune2-bootstrap-srv`, `hc` and `holochain` by bare name, so
// they must be on PATH (`make test-tryorama` puts the cached build from
// scripts/install-holochain.sh there).
//
// Adding a test for a new entry type: add its TypeScript shape, a
// `sample<Entry>(overrides)` and a `call<Fn>(cell, ...)` wrapper here, and a
// `src/<entry_type>.test.ts` using `runWithAgents`.

import { decode } from "@msgpack/msgpack";
import type { ActionHash, AgentPubKey, Record as HcRecord } from "@holochain/client";
import { dhtSync, runScenario, type CallableCell, type PlayerApp, type Scenario } from "@holochain/tryorama";
import { fileURLToPath } from "node:url";
import { expect } from "vitest";

/** The packed hApp (`make happ`). Absolute: the conductor resolves the path. */
export const HAPP_PATH = fileURLToPath(new URL("../../workdir/zerotrustml.happ", import.meta.url));
export const ROLE = "zerotrustml";
export const ZOME = "gradients";

/** Upper bound for gossip to settle between the conductors of one test. */
export const DHT_SYNC_TIMEOUT_MS = 120_000;
/** Per-request timeout of the admin and app websockets. */
export const REQUEST_TIMEOUT_MS = 90_000;

// ---------------------------------------------------------------------------
// scenarios

/**
 * Runs `fn` and prints how long it took. Written straight to stderr, so it
 * shows even with vitest's `silent: "passed-only"` (which hides the
 * conductors' console output of passing tests).
 */
export async function timed<T>(label: string, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  try {
    return await fn();
  } finally {
    process.stderr.write(`[ztml] ${label}: ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  }
}

/**
 * Runs `body` with `n` agents, each on its own conductor, all with the hApp
 * installed under one fresh network seed, and shuts everything down after
 * (also when the body throws). Agents' peer infos are exchanged up front so
 * no test waits for bootstrap discovery.
 */
export async function runWithAgents(
  n: number,
  body: (players: PlayerApp[], scenario: Scenario) => Promise<void>,
): Promise<void> {
  await runScenario(
    async (scenario) => {
      const players = await timed(`${n} conductors started, hApp installed`, () =>
        scenario.addPlayersWithApps(
          Array.from({ length: n }, () => ({ appBundleSource: { type: "path" as const, value: HAPP_PATH } })),
        ),
      );
      await scenario.shareAllAgents();
      await body(players, scenario);
    },
    true,
    { timeout: REQUEST_TIMEOUT_MS },
  );
}

/** The hApp's only cell for a player. */
export function cellOf(player: PlayerApp): CallableCell {
  const cell = player.namedCells.get(ROLE);
  if (!cell) throw new Error(`player has no cell for role ${ROLE}`);
  return cell;
}

/** Waits until every player's conductor has integrated the same DHT ops. */
export async function syncAll(players: PlayerApp[]): Promise<void> {
  await timed(`dhtSync of ${players.length} agents`, () =>
    dhtSync(players, cellOf(players[0]).cell_id[0], 500, DHT_SYNC_TIMEOUT_MS),
  );
}

/**
 * The app-level actions on a player's own source chain: creates of app
 * entries and link creates. Genesis, `InitZomesComplete` and the capability
 * grant that tryorama writes before a cell's first zome call are left out,
 * so the count changes only when the hApp itself commits something.
 */
export async function appActionsOnChain(player: PlayerApp): Promise<number> {
  const dump = await player.conductor.adminWs().dumpFullState({ cell_id: cellOf(player).cell_id });
  return dump.source_chain_dump.records.filter(({ action }) => {
    if (action.type === "CreateLink") return true;
    return action.type === "Create" && typeof action.entry_type === "object" && "App" in action.entry_type;
  }).length;
}

// ---------------------------------------------------------------------------
// GradientSubmission (zomes/integrity/gradients/src/gradient_submission.rs)

/**
 * The entry as the zome sees it. Wire encoding: @holochain/client msgpacks
 * the payload with @msgpack/msgpack's defaults, so integers go as msgpack
 * ints and every non-integer number (NaN included) as float64; rmp-serde
 * narrows float64 to the entry's `f32` fields (NaN stays NaN). Entries
 * read back are msgpack of the Rust struct, so `values` and `norm` come
 * back as float32.
 */
export interface GradientSubmission {
  round: number;
  model_id: string;
  dims: number;
  values: number[];
  norm: number;
  example_count: number;
}

/**
 * A well-formed submission; `overrides` replace fields. `dims` and `norm`
 * follow `values` unless overridden themselves.
 */
export function sampleGradientSubmission(overrides: Partial<GradientSubmission> = {}): GradientSubmission {
  const values = overrides.values ?? [0.5, -1.25, 2.0, 0.125];
  return {
    round: 1,
    model_id: "mnist-cnn-v1",
    dims: values.length,
    values,
    norm: Math.fround(Math.hypot(...values.filter(Number.isFinite))),
    example_count: 32,
    ...overrides,
  };
}

/** `submit_gradient`: commits the entry and its round link. */
export async function submitGradient(cell: CallableCell, submission: GradientSubmission): Promise<ActionHash> {
  return cell.callZome<ActionHash>({ zome_name: ZOME, fn_name: "submit_gradient", payload: submission });
}

/** `get_round_submissions`: every submission of `round` this agent can reach. */
export async function getRoundSubmissions(cell: CallableCell, round: number): Promise<HcRecord[]> {
  return cell.callZome<HcRecord[]>({ zome_name: ZOME, fn_name: "get_round_submissions", payload: round });
}

/** The submission stored in a record (its app entry, msgpack-decoded). */
export function decodeSubmission(record: HcRecord): GradientSubmission {
  if (!("Present" in record.entry)) throw new Error(`record has no entry: ${JSON.stringify(Object.keys(record.entry))}`);
  const entry = record.entry.Present;
  if (entry.entry_type !== "App") throw new Error(`expected an app entry, got ${entry.entry_type}`);
  return decode(entry.entry) as GradientSubmission;
}

/** The author of a record. */
export function authorOf(record: HcRecord): AgentPubKey {
  return record.signed_action.hashed.content.author;
}

/** Asserts that a stored submission equals what was sent, floats compared as f32. */
export function expectSameSubmission(actual: GradientSubmission, sent: GradientSubmission): void {
  expect(actual).toEqual({
    ...sent,
    values: sent.values.map(Math.fround),
    norm: Math.fround(sent.norm),
  });
}

/** Asserts that a zome call was refused by the integrity zome's validation. */
export async function expectValidationRejection(call: Promise<unknown>, reason: RegExp): Promise<void> {
  const error = await call.then(
    (value) => {
      throw new Error(`expected a validation error, the call returned ${JSON.stringify(value)}`);
    },
    (e: unknown) => e,
  );
  const message = error instanceof Error ? error.message : JSON.stringify(error);
  expect(message).toMatch(/Validation failed/i);
  expect(message).toMatch(reason);
}
