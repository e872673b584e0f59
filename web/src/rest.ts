// The service's REST routes and its WebSocket of events (`zerotrustml serve`).
import type { Health, RoundSummary, Source } from "./types";

async function getJson<T>(path: string): Promise<T> {
  const reply = await fetch(path);
  if (!reply.ok) throw new Error(`${path}: ${reply.status}`);
  return (await reply.json()) as T;
}

export class RestSource implements Source {
  readonly kind = "service";

  health(): Promise<Health> {
    return getJson<Health>("./v1/health");
  }

  rounds(since: number): Promise<RoundSummary[]> {
    return getJson<RoundSummary[]>(`./v1/rounds?since=${since}`);
  }

  listen(changed: () => void, live: (state: string) => void): void {
    const url = new URL("./v1/events", window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(url);
    ws.onopen = () => live("live");
    ws.onmessage = () => changed();
    ws.onclose = () => {
      live("reconnecting");
      setTimeout(() => this.listen(changed, live), 2000);
    };
  }
}
