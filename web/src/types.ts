// What the dashboard draws, whichever source it reads: the service's REST routes or the hApp on the DHT.

export interface Health {
  status: string;
  federation: string;
  round: number | null;
  finished: boolean;
  admission: string;
  nodes: number;
  aggregator: string;
}

export interface RoundSummary {
  round: number;
  rule: string;
  kept: string[];
  flagged: string[];
  missing: string[];
  reasons: Record<string, string[]>;
  reputation: Record<string, number>;
  metrics: Record<string, unknown>;
  evaluation: Record<string, unknown> | null;
}

export interface Source {
  /** Where the data comes from, for the header. */
  readonly kind: string;
  health(): Promise<Health>;
  /** Every closed round from `since` on. */
  rounds(since: number): Promise<RoundSummary[]>;
  /** Calls `changed` when something new may be there; `live` with the connection's state. */
  listen(changed: () => void, live: (state: string) => void): void;
}

/** Whether this page should read the DHT: in a launcher, or when the URL fragment names an app websocket. */
export function wantsDht(): boolean {
  return "__HC_LAUNCHER_ENV__" in window || new URLSearchParams(window.location.hash.slice(1)).has("app_ws");
}
