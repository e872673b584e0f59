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
//
// Wire encoding: @holochain/client msgpacks payloads with @msgpack/msgpack's
// defaults, so integers go as msgpack ints, every other number (NaN
// included) as float64, and Uint8Array as binary. The zome narrows float64
// into its `f32` fields (NaN stays NaN). Values read back are msgpack of the
// Rust structs: `Vec<f32>` as float32, hashes as 39-byte binaries, 32-byte
// digests as binaries.

import type { ActionHash, AgentPubKey, DhtOp, EntryHash, Signal } from "@holochain/client";
import { addAllAgentsToAllConductors, areDhtsSynced, runScenario, type CallableCell, type PlayerApp, type Scenario } from "@holochain/tryorama";
import { createHash, generateKeyPairSync, sign, type KeyObject } from "node:crypto";
import { fileURLToPath } from "node:url";
import { expect } from "vitest";

/** The packed hApp (`make happ`). Absolute: the conductor resolves the path. */
export const HAPP_PATH = fileURLToPath(new URL("../../workdir/zerotrustml.happ", import.meta.url));
/**
 * The attack tests' hApp (`make happ` packs it too): the same DNA with the
 * test-only `byzantine` coordinator beside the honest one, so its agents join
 * the same network and can write what the honest coordinator never does.
 */
export const BYZANTINE_HAPP_PATH = fileURLToPath(
  new URL("../../workdir/zerotrustml-byzantine.happ", import.meta.url),
);
export const ROLE = "zerotrustml";
export const ZOME = "gradients";

/** Upper bound for gossip to settle between the conductors of one test. */
export const DHT_SYNC_TIMEOUT_MS = 90_000;
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

/** How long a fresh network may take until every agent reads every other one's join link. */
export const CONNECT_TIMEOUT_MS = 75_000;

/**
 * Runs `body` with `n` agents, each on its own conductor, all with the hApp
 * installed under one fresh network seed, and shuts everything down after
 * (also when the body throws). Agents' peer infos are exchanged up front so
 * no test waits for bootstrap discovery, and every cell makes one call
 * first, so its `init` (capability grant for remote signals, link from the
 * `participants` anchor) is on the chain before the test counts anything.
 * `happs[i]`, when given, is player i's hApp (e.g. `BYZANTINE_HAPP_PATH`).
 *
 * The body runs only once every agent reads every agent's join link through
 * the network. Now and then a conductor's transport never reaches the
 * others, or gossip between two of them stalls for minutes (`syncAll`'s
 * `DhtNotInSync`); such a network gets one fresh start (new conductors, new
 * seed, the body from its beginning) before the test fails, naming how many
 * agents each conductor could see or what each one held. A fresh start is
 * written to stderr, so it shows in the log of a passing run. Any other
 * error of the body fails the test at once.
 */
export async function runWithAgents(
  n: number,
  body: (players: PlayerApp[], scenario: Scenario) => Promise<void>,
  happs: string[] = [],
): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    let seen: number[] = [];
    let stalled: DhtNotInSync | undefined;
    await runScenario(
      async (scenario) => {
        const players = await timed(`${n} conductors started, hApp installed`, () =>
          scenario.addPlayersWithApps(
            Array.from({ length: n }, (_, i) => ({
              appBundleSource: { type: "path" as const, value: happs[i] ?? HAPP_PATH },
            })),
          ),
        );
        await scenario.shareAllAgents();
        await Promise.all(players.map((p) => getModelProperties(cellOf(p))));
        seen = await timed(`${n} agents connected`, () => awaitConnected(players, scenario, CONNECT_TIMEOUT_MS));
        if (!seen.every((count) => count === n)) return;
        try {
          await body(players, scenario);
        } catch (e) {
          if (!(e instanceof DhtNotInSync) || attempt >= 2) throw e;
          stalled = e;
        }
      },
      true,
      { timeout: REQUEST_TIMEOUT_MS },
    );
    if (stalled) {
      process.stderr.write(`[ztml] ${stalled.message}: one fresh start\n`);
      continue;
    }
    if (seen.every((count) => count === n)) return;
    const counts = seen.map((count, i) => `conductor ${i}: ${count}`).join(", ");
    if (attempt >= 2) {
      throw new Error(`network not connected after ${CONNECT_TIMEOUT_MS / 1000} s, twice: agents seen of ${n} (${counts})`);
    }
    process.stderr.write(`[ztml] network not connected after ${CONNECT_TIMEOUT_MS / 1000} s (${counts}): one fresh start\n`);
  }
}

/**
 * Polls each player's `get_participants` (a network read of the join links)
 * until every player sees all agents or `timeoutMs` passes, sharing peer
 * infos again between polls. Returns how many agents each player saw.
 */
async function awaitConnected(players: PlayerApp[], scenario: Scenario, timeoutMs: number): Promise<number[]> {
  const want = new Set(players.map((p) => hex(p.agentPubKey)));
  const seen = players.map(() => 0);
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    for (const [i, player] of players.entries()) {
      if (seen[i] === want.size) continue;
      try {
        const got = await getParticipants(cellOf(player));
        seen[i] = new Set(got.map(hex).filter((k) => want.has(k))).size;
      } catch {
        // A read that times out counts as not connected yet.
      }
    }
    if (seen.every((count) => count === want.size) || performance.now() > deadline) return seen;
    await scenario.shareAllAgents();
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

/** The agents that joined (linked from the `participants` anchor) and this agent can reach. */
export async function getParticipants(cell: CallableCell): Promise<AgentPubKey[]> {
  return cell.callZome<AgentPubKey[]>({ zome_name: ZOME, fn_name: "get_participants", payload: null });
}

/** The hApp's only cell for a player. */
export function cellOf(player: PlayerApp): CallableCell {
  const cell = player.namedCells.get(ROLE);
  if (!cell) throw new Error(`player has no cell for role ${ROLE}`);
  return cell;
}

/** How often `syncAll` hands every conductor the others' peer infos again while ops are missing. */
export const RESHARE_EVERY_MS = 15_000;

/**
 * Waits until every player's conductor has integrated the same DHT ops, with
 * nothing left in its integration or validation limbo (tryorama's
 * `areDhtsSynced`). While they differ, every conductor gets the others' peer
 * infos again every `RESHARE_EVERY_MS`: now and then a conductor's transport
 * to another drops and gossip between the two stops until it learns the peer
 * again. After `DHT_SYNC_TIMEOUT_MS` it fails with what each conductor holds,
 * including the kinds of the ops stuck in its limbos.
 */
export async function syncAll(players: PlayerApp[]): Promise<void> {
  const dna = cellOf(players[0]).cell_id[0];
  await timed(`dhtSync of ${players.length} agents`, async () => {
    const start = performance.now();
    let shared = start;
    for (;;) {
      if (await areDhtsSynced(players, dna)) return;
      const now = performance.now();
      if (now - start > DHT_SYNC_TIMEOUT_MS) {
        throw new DhtNotInSync(`DHT not in sync after ${DHT_SYNC_TIMEOUT_MS / 1000} s: ${await dhtStates(players)}`);
      }
      if (now - shared > RESHARE_EVERY_MS) {
        process.stderr.write(`[ztml] DHT not in sync after ${((now - start) / 1000).toFixed(0)} s: ${await dhtStates(players)}; peer infos shared again\n`);
        await addAllAgentsToAllConductors(players.map((p) => p.conductor));
        shared = now;
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  });
}

/** Gossip did not bring the conductors to the same DHT state in time (see `syncAll`). */
export class DhtNotInSync extends Error {
  override name = "DhtNotInSync";
}

/** Per conductor: integrated ops, and the kinds of the ops in its integration and validation limbos. */
async function dhtStates(players: PlayerApp[]): Promise<string> {
  const kinds = (ops: DhtOp[]): string => {
    const names = ops.map((op) => ("ChainOp" in op ? Object.keys(op.ChainOp)[0] : "WarrantOp"));
    const counts = new Map<string, number>();
    for (const name of names) counts.set(name, (counts.get(name) ?? 0) + 1);
    return [...counts].map(([name, count]) => `${count} ${name}`).join(", ") || "none";
  };
  const states = await Promise.all(
    players.map((p) => p.conductor.adminWs().dumpFullState({ cell_id: cellOf(p).cell_id, dht_ops_cursor: undefined })),
  );
  return states
    .map(
      ({ integration_dump: d }, i) =>
        `conductor ${i}: ${d.integrated.length} integrated, integration limbo ${kinds(d.integration_limbo)}, validation limbo ${kinds(d.validation_limbo)}`,
    )
    .join("; ");
}

/**
 * The app-level actions on a player's own source chain: creates of app
 * entries and link creates. Genesis, `InitZomesComplete` and capability
 * grants are left out, so the count changes only when the hApp itself
 * commits something.
 */
export async function appActionsOnChain(player: PlayerApp): Promise<number> {
  const dump = await player.conductor.adminWs().dumpFullState({ cell_id: cellOf(player).cell_id });
  return dump.source_chain_dump.records.filter(({ action }) => {
    if (action.type === "CreateLink") return true;
    return action.type === "Create" && typeof action.entry_type === "object" && "App" in action.entry_type;
  }).length;
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

/** Polls `read` until `done` holds for its result, or fails after `timeoutMs`. */
export async function waitFor<T>(
  label: string,
  read: () => Promise<T>,
  done: (value: T) => boolean,
  timeoutMs = 60_000,
): Promise<T> {
  return timed(label, async () => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = await read();
      if (done(value)) return value;
      if (Date.now() > deadline) throw new Error(`${label}: not reached within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 250));
    }
  });
}

// ---------------------------------------------------------------------------
// bytes and floats

/** Lower-case hex of a hash or digest. */
export const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString("hex");

/** Sorts hashes by their raw bytes (the contributor order of an aggregate). */
export const byRawBytes = (a: Uint8Array, b: Uint8Array): number => Buffer.compare(Buffer.from(a), Buffer.from(b));

/** Values as float32, as the zome stores them. */
export const f32 = (values: number[]): number[] => Array.from(new Float32Array(values));

/** SHA-256 of the values' little-endian float32 bytes: the core's payload hash. */
export function payloadHash(values: number[]): Uint8Array {
  const bytes = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => bytes.writeFloatLE(v, i * 4));
  return new Uint8Array(createHash("sha256").update(bytes).digest());
}

// ---------------------------------------------------------------------------
// ModelProperties (zomes/integrity/gradients/src/properties.rs)

export interface ModelProperties {
  model_id: string;
  dims: number;
  max_norm: number;
  max_payload_bytes: number;
  max_round: number | null;
  chunk_values: number;
  committee_rate: number;
  committee_seed: string;
  recompute_limit: number;
  max_contributors: number;
  example_cap: number;
  admission: string;
}

/** `get_model_properties`: the DNA properties the cell validates against. */
export async function getModelProperties(cell: CallableCell): Promise<ModelProperties> {
  return cell.callZome<ModelProperties>({ zome_name: ZOME, fn_name: "get_model_properties", payload: null });
}

// ---------------------------------------------------------------------------
// GradientSubmission + GradientChunk (gradient_submission.rs, gradient_chunk.rs)

/** The model of dnas/zerotrustml/dna.yaml. */
export const MODEL_ID = "mnist-mlp-v1";
export const DIMS = 24;
export const CHUNK_VALUES = 10;

export interface EdgeProof {
  loss_before: number;
  loss_after: number;
  holdout_size: number;
  lr: number;
  nonce: Uint8Array;
  /** The node key's signature over the proof (64 bytes), or empty. */
  signature: Uint8Array;
}

/** The entry as stored. */
export interface GradientSubmission {
  round: number;
  model_id: string;
  dims: number;
  dtype: string;
  payload_hash: Uint8Array;
  norm: number;
  example_count: number;
  chunk_hashes: EntryHash[];
  proof: EdgeProof | null;
}

/** What `submit_gradient` takes; `norm` and `payload_hash` are optional claims. */
export interface SubmitGradientInput {
  round: number;
  model_id: string;
  values: number[];
  example_count: number;
  proof?: EdgeProof | null;
  norm?: number;
  payload_hash?: Uint8Array;
}

/** A submission as the read calls return it. */
export interface SubmissionOutput {
  action_hash: ActionHash;
  author: AgentPubKey;
  submission: GradientSubmission;
  values: number[];
}

/** A deterministic payload of `DIMS` values: `scale * ((i + shift) % 7 - 3) / 4`. */
export function sampleValues(scale = 1, shift = 0): number[] {
  return Array.from({ length: DIMS }, (_, i) => (scale * (((i + shift) % 7) - 3)) / 4);
}

export function sampleProof(overrides: Partial<EdgeProof> = {}): EdgeProof {
  return {
    loss_before: 0.9,
    loss_after: 0.7,
    holdout_size: 50,
    lr: 0.1,
    nonce: new Uint8Array(16).fill(7),
    signature: new Uint8Array(64).fill(9),
    ...overrides,
  };
}

/** A well-formed input; `overrides` replace fields. */
export function sampleSubmission(overrides: Partial<SubmitGradientInput> = {}): SubmitGradientInput {
  return { round: 1, model_id: MODEL_ID, values: sampleValues(), example_count: 32, proof: sampleProof(), ...overrides };
}

/** `submit_gradient`: commits the chunks, the entry and its two links. */
export async function submitGradient(cell: CallableCell, input: SubmitGradientInput): Promise<ActionHash> {
  return cell.callZome<ActionHash>({ zome_name: ZOME, fn_name: "submit_gradient", payload: input });
}

/** `get_round_submissions`: every submission of `round` this agent can reach, reassembled. */
export async function getRoundSubmissions(cell: CallableCell, round: number): Promise<SubmissionOutput[]> {
  return cell.callZome<SubmissionOutput[]>({ zome_name: ZOME, fn_name: "get_round_submissions", payload: round });
}

/** `get_agent_submissions`: every submission of `agent` this agent can reach. */
export async function getAgentSubmissions(cell: CallableCell, agent: AgentPubKey): Promise<SubmissionOutput[]> {
  return cell.callZome<SubmissionOutput[]>({ zome_name: ZOME, fn_name: "get_agent_submissions", payload: agent });
}

/** App actions one valid submission adds: its chunks, the entry, two links. */
export const ACTIONS_PER_SUBMISSION = Math.ceil(DIMS / CHUNK_VALUES) + 3;

/** Asserts that a read-back submission is what was sent, floats compared as f32. */
export function expectSameSubmission(actual: SubmissionOutput, sent: SubmitGradientInput, author: AgentPubKey): void {
  expect(hex(actual.author)).toBe(hex(author));
  expect(actual.values).toEqual(f32(sent.values));
  const s = actual.submission;
  expect(s.round).toBe(sent.round);
  expect(s.model_id).toBe(sent.model_id);
  expect(s.dims).toBe(sent.values.length);
  expect(s.dtype).toBe("f32");
  expect(s.example_count).toBe(sent.example_count);
  expect(hex(s.payload_hash)).toBe(hex(payloadHash(sent.values)));
  expect(s.norm).toBeCloseTo(Math.hypot(...f32(sent.values)), 5);
  expect(s.chunk_hashes).toHaveLength(Math.ceil(sent.values.length / CHUNK_VALUES));
  // Binaries come back as Buffers: compare the nonce as hex.
  const proof = (p: EdgeProof | null | undefined) =>
    p ? { ...p, nonce: hex(p.nonce), signature: hex(p.signature) } : null;
  expect(proof(s.proof)).toEqual(proof(sent.proof));
}

// ---------------------------------------------------------------------------
// RoundAggregate (round_aggregate.rs)

export type Rule = "mean" | "krum" | "multi_krum" | "median" | "trimmed_mean";

export interface RoundAggregate {
  round: number;
  rule: Rule;
  f: number;
  contributors: ActionHash[];
  flagged: AgentPubKey[];
  result_hash: Uint8Array;
  result_chunks: EntryHash[];
}

export interface AggregateComputation {
  round: number;
  rule: Rule;
  f: number;
  values: number[];
  contributors: ActionHash[];
  flagged: AgentPubKey[];
  result_hash: Uint8Array;
}

export interface AggregateOutput {
  action_hash: ActionHash;
  author: AgentPubKey;
  aggregate: RoundAggregate;
  values: number[];
  /** Whether validators recomputed it (a recomputable rule within recompute_limit). */
  verified: boolean;
}

export interface PublishComputedInput {
  round: number;
  rule: string;
  f: number;
  contributors: ActionHash[];
  flagged: AgentPubKey[];
  values: number[];
  result_hash?: Uint8Array;
}

/** `compute_round_aggregate`: the rule over what this agent sees, not published. */
export async function computeRoundAggregate(
  cell: CallableCell,
  round: number,
  rule: Rule,
  f = 0,
): Promise<AggregateComputation> {
  return cell.callZome<AggregateComputation>({
    zome_name: ZOME,
    fn_name: "compute_round_aggregate",
    payload: { round, rule, f },
  });
}

/** `publish_aggregate`: compute and publish (validators recompute). */
export async function publishAggregate(cell: CallableCell, round: number, rule: Rule, f = 0): Promise<ActionHash> {
  return cell.callZome<ActionHash>({ zome_name: ZOME, fn_name: "publish_aggregate", payload: { round, rule, f } });
}

/** `publish_computed_aggregate`: publish a caller-computed aggregate as given. */
export async function publishComputedAggregate(cell: CallableCell, input: PublishComputedInput): Promise<ActionHash> {
  return cell.callZome<ActionHash>({ zome_name: ZOME, fn_name: "publish_computed_aggregate", payload: input });
}

/** `get_round_aggregates`: the aggregates of `round` with their values. */
export async function getRoundAggregates(cell: CallableCell, round: number): Promise<AggregateOutput[]> {
  return cell.callZome<AggregateOutput[]>({ zome_name: ZOME, fn_name: "get_round_aggregates", payload: round });
}

// ---------------------------------------------------------------------------
// CommitteeVote (committee_vote.rs)

export interface CommitteeVote {
  round: number;
  submission: ActionHash;
  quality: number;
  accept: boolean;
  /** The member's node-key signature over the vote (64 bytes), or empty. */
  signature: Uint8Array;
  /** The member's NodeRegistration action: its node key decides membership. */
  registration: ActionHash;
  /** The round's beacon on a closed network (the admission key's signature); empty or absent on an open one. */
  beacon?: Uint8Array;
}

export interface VoteOutput {
  action_hash: ActionHash;
  author: AgentPubKey;
  vote: CommitteeVote;
}

/** `is_committee_member`: the hash lottery on a node key that the integrity zome applies to votes. */
export async function isCommitteeMember(cell: CallableCell, nodeKey: Uint8Array, round: number): Promise<boolean> {
  return cell.callZome<boolean>({ zome_name: ZOME, fn_name: "is_committee_member", payload: { node_key: nodeKey, round } });
}

/** `cast_vote`: commits the vote and its link from the submission. */
export async function castVote(cell: CallableCell, vote: CommitteeVote): Promise<ActionHash> {
  return cell.callZome<ActionHash>({ zome_name: ZOME, fn_name: "cast_vote", payload: vote });
}

/** `get_submission_votes`: every vote on a submission this agent can reach. */
export async function getSubmissionVotes(cell: CallableCell, submission: ActionHash): Promise<VoteOutput[]> {
  return cell.callZome<VoteOutput[]>({ zome_name: ZOME, fn_name: "get_submission_votes", payload: submission });
}

// ---------------------------------------------------------------------------
// ReputationRecord (reputation_record.rs)

export interface ReputationRecord {
  agent: AgentPubKey;
  round: number;
  score: number;
}

export interface ReputationOutput {
  action_hash: ActionHash;
  author: AgentPubKey;
  timestamp: number;
  record: ReputationRecord;
}

/** `publish_reputation`: commits the record and its link from the rated agent. */
export async function publishReputation(cell: CallableCell, record: ReputationRecord): Promise<ActionHash> {
  return cell.callZome<ActionHash>({ zome_name: ZOME, fn_name: "publish_reputation", payload: record });
}

export interface ReputationView {
  agent: AgentPubKey;
  /** Each author's latest opinion (highest round, then newest), sorted by author. */
  opinions: ReputationOutput[];
  /** The median of the opinions' scores, or null without opinions. */
  median: number | null;
}

/** `get_reputation`: every author's latest opinion of `agent` and their median. */
export async function getReputation(cell: CallableCell, agent: AgentPubKey): Promise<ReputationView> {
  return cell.callZome<ReputationView>({ zome_name: ZOME, fn_name: "get_reputation", payload: agent });
}

// ---------------------------------------------------------------------------
// signals (coordinator signals.rs)

export type ZtmlSignal =
  | { type: "SubmissionCommitted"; round: number; action_hash: ActionHash }
  | { type: "NewSubmission"; round: number; action_hash: ActionHash; author: AgentPubKey };

/** Collects the hApp signals a player's app websocket receives from now on. */
export function collectSignals(player: PlayerApp): { signals: ZtmlSignal[]; stop: () => void } {
  const signals: ZtmlSignal[] = [];
  const stop = player.appWs.on("signal", (signal: Signal) => {
    if (signal.type === "app" && signal.value.zome_name === ZOME) signals.push(signal.value.payload as ZtmlSignal);
  });
  return { signals, stop };
}

// ---------------------------------------------------------------------------
// NodeRegistration (node_registration.rs)

export interface NodeRegistration {
  node_id: string;
  node_key: Uint8Array;
  signature: Uint8Array;
}

/** A node's Ed25519 key pair; `publicKey` is the raw 32 bytes. */
export interface NodeKeys {
  publicKey: Uint8Array;
  privateKey: KeyObject;
}

export function nodeKeys(): NodeKeys {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const der = publicKey.export({ format: "der", type: "spki" });
  return { publicKey: new Uint8Array(der.subarray(der.length - 32)), privateKey };
}

function lp(bytes: Uint8Array): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(bytes.length);
  return Buffer.concat([len, Buffer.from(bytes)]);
}

/** The bytes a registration's signature covers (node_registration.rs). */
export function registrationMessage(agent: AgentPubKey, nodeId: string, nodeKey: Uint8Array): Buffer {
  return Buffer.concat([
    lp(Buffer.from("zerotrustml/node-registration/v1")),
    lp(agent),
    lp(Buffer.from(nodeId, "utf8")),
    lp(nodeKey),
  ]);
}

/** A registration of `nodeId` on `agent`, signed by the node key. */
export function sampleRegistration(agent: AgentPubKey, nodeId: string, keys: NodeKeys): NodeRegistration {
  const signature = new Uint8Array(sign(null, registrationMessage(agent, nodeId, keys.publicKey), keys.privateKey));
  return { node_id: nodeId, node_key: keys.publicKey, signature };
}

/** `register_node`: commits the registration and its link from the `nodes` anchor. */
export async function registerNode(cell: CallableCell, registration: NodeRegistration): Promise<ActionHash> {
  return cell.callZome<ActionHash>({ zome_name: ZOME, fn_name: "register_node", payload: registration });
}

export interface RegistrationOutput {
  action_hash: ActionHash;
  agent: AgentPubKey;
  registration: NodeRegistration;
}

/** `get_node_registrations`: every registration this agent can reach, by action hash. */
export async function getNodeRegistrations(cell: CallableCell): Promise<RegistrationOutput[]> {
  return cell.callZome<RegistrationOutput[]>({ zome_name: ZOME, fn_name: "get_node_registrations", payload: null });
}
