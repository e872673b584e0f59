// The hApp's DHT through @holochain/client: the same dashboard, reading what the agents published.
//
// In a Holochain launcher the app websocket and the zome-call signer come from the launcher. Elsewhere (the
// tests, a conductor of your own) the page's URL fragment names them: `#app_ws=ws://127.0.0.1:PORT&token=HEX`,
// plus `cell=DNA_HEX,AGENT_HEX&cap=HEX&seed=HEX&pub=HEX&signer=HEX` for the signing credentials the
// conductor granted (a capability secret, an Ed25519 key pair and its 39-byte agent-form signing key).
//
// The DHT holds no ground truth and no accuracy: the charts of accuracy and detection stay empty, and the
// tables show what the agents published: each round's results (the shared view: the result most agents
// published), the nodes' registrations, and reputation records (the median opinion per node and round).
import { AppWebsocket, setSigningCredentials, type AgentPubKey, type CellId } from "@holochain/client";
import type { Health, RoundSummary, Source } from "./types";

const ROLE = "zerotrustml";
const ZOME = "gradients";

interface Aggregate {
  action_hash: Uint8Array;
  author: AgentPubKey;
  aggregate: { round: number; rule: string; contributors: Uint8Array[]; flagged: AgentPubKey[]; result_hash: Uint8Array };
}
interface SubmissionOut {
  action_hash: Uint8Array;
  author: AgentPubKey;
}
interface Registration {
  agent: AgentPubKey;
  registration: { node_id: string };
}
interface ReputationOut {
  author: AgentPubKey;
  record: { agent: AgentPubKey; round: number; score: number };
}

const hex = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const unhex = (s: string): Uint8Array => new Uint8Array((s.match(/../g) ?? []).map((x) => parseInt(x, 16)));

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export class DhtSource implements Source {
  readonly kind = "DHT";
  private client: Promise<AppWebsocket>;
  private names = new Map<string, string>(); // agent key (hex) -> node id

  constructor() {
    this.client = this.connect();
  }

  private async connect(): Promise<AppWebsocket> {
    const p = new URLSearchParams(window.location.hash.slice(1));
    const url = p.get("app_ws");
    if (!url) return AppWebsocket.connect(); // the launcher's environment
    const client = await AppWebsocket.connect({ url: new URL(url), token: Array.from(unhex(p.get("token") ?? "")) });
    const [dna, agent] = (p.get("cell") ?? ",").split(",");
    const pub = unhex(p.get("pub") ?? "");
    const cellId: CellId = [unhex(dna), unhex(agent)];
    setSigningCredentials(cellId, {
      capSecret: unhex(p.get("cap") ?? ""),
      keyPair: { publicKey: pub, privateKey: new Uint8Array([...unhex(p.get("seed") ?? ""), ...pub]), keyType: "ed25519" },
      signingKey: unhex(p.get("signer") ?? ""),
    });
    return client;
  }

  private async call<T>(fn_name: string, payload: unknown): Promise<T> {
    const client = await this.client;
    return (await client.callZome({ role_name: ROLE, zome_name: ZOME, fn_name, payload })) as T;
  }

  private name(agent: AgentPubKey): string {
    return this.names.get(hex(agent)) ?? `agent ${hex(agent).slice(6, 14)}`;
  }

  private async registrations(): Promise<Registration[]> {
    const regs = await this.call<Registration[]>("get_node_registrations", null);
    for (const r of regs) this.names.set(hex(r.agent), r.registration.node_id);
    return regs;
  }

  async health(): Promise<Health> {
    const client = await this.client;
    const info = await client.appInfo();
    const cell = info.cell_info[ROLE]?.[0];
    const props = await this.call<{ admission?: string }>("get_model_properties", null);
    const regs = await this.registrations();
    let closed = 0;
    while ((await this.call<Aggregate[]>("get_round_aggregates", closed)).length) closed++;
    return {
      status: "ok",
      federation: cell && cell.type === "provisioned" ? hex(cell.value.cell_id[0]).slice(6) : info.installed_app_id,
      round: closed,
      finished: false,
      admission: props.admission === "open" ? "open" : "closed",
      nodes: regs.length,
      aggregator: "personal results",
    };
  }

  async rounds(since: number): Promise<RoundSummary[]> {
    const regs = await this.registrations();
    const opinions = new Map<string, ReputationOut[]>();
    for (const r of regs) {
      opinions.set(hex(r.agent), await this.call<ReputationOut[]>("get_reputation_history", r.agent));
    }
    const out: RoundSummary[] = [];
    for (let round = since; ; round++) {
      const aggs = await this.call<Aggregate[]>("get_round_aggregates", round);
      if (!aggs.length) break;
      // The shared view: the result most agents published (their results agree bit for bit when all is well).
      const groups = new Map<string, Aggregate[]>();
      for (const a of aggs) {
        const key = hex(a.aggregate.result_hash);
        groups.set(key, [...(groups.get(key) ?? []), a]);
      }
      const chosen = [...groups.values()].sort((a, b) => b.length - a.length)[0][0];
      const subs = await this.call<SubmissionOut[]>("get_round_submissions", round);
      const authorOf = new Map(subs.map((s) => [hex(s.action_hash), s.author]));
      const flagged = chosen.aggregate.flagged.map((a) => this.name(a));
      const kept = chosen.aggregate.contributors
        .map((c) => authorOf.get(hex(c)))
        .filter((a): a is AgentPubKey => a !== undefined)
        .map((a) => this.name(a))
        .filter((n) => !flagged.includes(n));
      const submitted = new Set(subs.map((s) => this.name(s.author)));
      const reputation: Record<string, number> = {};
      for (const r of regs) {
        const scores = (opinions.get(hex(r.agent)) ?? []).filter((o) => o.record.round === round).map((o) => o.record.score);
        if (scores.length) reputation[r.registration.node_id] = median(scores);
      }
      out.push({
        round,
        rule: chosen.aggregate.rule,
        kept: kept.sort(),
        flagged: flagged.sort(),
        missing: regs.map((r) => r.registration.node_id).filter((n) => !submitted.has(n)).sort(),
        reasons: {},
        reputation,
        metrics: { results_published: aggs.length, results_agreeing: groups.get(hex(chosen.aggregate.result_hash))?.length ?? 0 },
        evaluation: null,
      });
    }
    return out;
  }

  listen(changed: () => void, live: (state: string) => void): void {
    this.client.then(
      (client) => {
        live("live (DHT)");
        client.on("signal", () => changed());
      },
      (e: unknown) => live(`no conductor: ${e instanceof Error ? e.message : String(e)}`),
    );
  }
}
